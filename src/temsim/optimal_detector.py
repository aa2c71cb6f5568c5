"""The best detector for a feature: searched annuli and segmented layouts from the 4D data.

Every annular or segmented detector is a sum of diffraction pixels, so one 4D simulation (the
expected counts per pixel and probe position under H0 and H1) gives the detection statistic
``j₁ = Σ (r¹ − r⁰)² / r̄`` of any detector without a new simulation. The searches here bin the
pixels once — radially (annulus) or in polar cells (segments) — and evaluate every candidate
exactly on those bins:

* :func:`optimal_annulus`: every (inner, outer) pair of the given radial edges;
* :func:`optimal_segmented`: N equal segments (N in ``segment_counts``) of one ring between
  any two radial edges, rotated in steps of one azimuthal bin.

The chosen detector maximises ``j₁``, i.e. minimises the required dose for every target
(the dose is ``J*/j₁`` without damage and decreases with ``j₁`` under fading). A search with
no candidate (fewer than two radial edges, an azimuthal grid that no segment count divides)
is refused with an :class:`OptimalDetectorError`.

Angles in mrad, azimuths in rad (counter-clockwise from +kx, as
:class:`temsim.detectors.SegmentedDetector`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from temsim.errors import StudyError

__all__ = [
    "AnnulusChoice",
    "SegmentedChoice",
    "OptimalDetectorError",
    "radial_index",
    "bin_rates",
    "annulus_information",
    "optimal_annulus",
    "optimal_segmented",
    "annulus_masks",
    "segment_masks",
]


class OptimalDetectorError(StudyError):
    """A detector search with no valid candidate."""


@dataclass(frozen=True)
class AnnulusChoice:
    """The best annulus: ``inner ≤ α < outer`` (mrad) and its ``j_per_dose``."""

    inner: float
    outer: float
    j_per_dose: float

    def describe(self) -> str:
        return f"annulus {self.inner:.3g}–{self.outer:.3g} mrad"


@dataclass(frozen=True)
class SegmentedChoice:
    """The best segmented layout: ``nsegments`` segments of the ring ``inner``–``outer`` (mrad),
    rotated by ``rotation`` (rad), and its ``j_per_dose``."""

    inner: float
    outer: float
    nsegments: int
    rotation: float
    j_per_dose: float

    def describe(self) -> str:
        return (
            f"{self.nsegments} segments {self.inner:.3g}–{self.outer:.3g} mrad, "
            f"rotation {math.degrees(self.rotation):.0f}°"
        )


def _edges(edges) -> np.ndarray:
    edges = np.unique(np.asarray(edges, dtype=float))
    if edges.size < 2:
        raise OptimalDetectorError(
            f"a detector search needs at least two radial edges (mrad) to form a ring, got {edges.tolist()}; "
            "give more edges or a wider angular range"
        )
    return edges


def radial_index(alpha, edges) -> np.ndarray:
    """Radial bin of every pixel: ``i`` with ``edges[i] ≤ α < edges[i+1]``, −1 outside."""
    edges = _edges(edges)
    index = np.searchsorted(edges, np.asarray(alpha, dtype=float), side="right") - 1
    return np.where(index >= edges.size - 1, -1, index)


def bin_rates(rates, index, nbins: int) -> np.ndarray:
    """Sum the last (pixel) axis of ``rates`` into ``nbins`` bins (pixels with index −1 are dropped)."""
    index = np.asarray(index).reshape(-1)
    keep = np.flatnonzero(index >= 0)
    rates = np.asarray(rates, dtype=np.float64)
    flat = rates.reshape(-1, rates.shape[-1])[:, keep]
    # one bincount over (row, bin) pairs: no pixels × bins weight matrix
    rows = np.repeat(np.arange(flat.shape[0]) * nbins, keep.size) + np.tile(index[keep], flat.shape[0])
    binned = np.bincount(rows, weights=flat.reshape(-1), minlength=flat.shape[0] * nbins)
    return binned.reshape(rates.shape[:-1] + (nbins,))


def _j(ring0: np.ndarray, ring1: np.ndarray, axis) -> np.ndarray:
    mean = 0.5 * (ring0 + ring1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(mean > 0, (ring1 - ring0) ** 2 / np.where(mean > 0, mean, 1.0), 0.0)
    return terms.sum(axis=axis)


def annulus_information(binned0, binned1) -> np.ndarray:
    """``j₁`` of every annulus made of consecutive radial bins.

    Parameters
    ----------
    binned0, binned1 : arrays (positions, bins)
        Expected counts per e/Å² per radial bin and probe position, H0 and H1.

    Returns
    -------
    ndarray (bins + 1, bins + 1)
        ``J[i, o]``: the annulus from edge ``i`` to edge ``o`` (NaN for ``o ≤ i``).
    """
    c0 = np.concatenate([np.zeros((binned0.shape[0], 1)), np.cumsum(binned0, axis=1)], axis=1)
    c1 = np.concatenate([np.zeros((binned1.shape[0], 1)), np.cumsum(binned1, axis=1)], axis=1)
    n = c0.shape[1]
    out = np.full((n, n), np.nan)
    for i in range(n - 1):
        out[i, i + 1 :] = _j(c0[:, i + 1 :] - c0[:, i : i + 1], c1[:, i + 1 :] - c1[:, i : i + 1], axis=0)
    return out


def optimal_annulus(rates0, rates1, alpha, edges) -> AnnulusChoice:
    """The annulus between two of ``edges`` (mrad) with the largest ``j₁``.

    Parameters
    ----------
    rates0, rates1 : arrays (positions, pixels)
        Expected counts per e/Å² per diffraction pixel and probe position (H0, H1), the
        annular camera's efficiency and the probe-step area included.
    alpha : array (pixels,)
        Scattering angle of every pixel (mrad).
    edges : array
        Candidate inner and outer angles (mrad).
    """
    edges = _edges(edges)
    index = radial_index(alpha, edges)
    table = annulus_information(bin_rates(rates0, index, edges.size - 1), bin_rates(rates1, index, edges.size - 1))
    best = np.nanargmax(np.where(np.isnan(table), -np.inf, table))
    i, o = np.unravel_index(best, table.shape)
    return AnnulusChoice(float(edges[i]), float(edges[o]), float(table[i, o]))


def _segment_sums(ring: np.ndarray, nsegments: int) -> np.ndarray:
    """(positions, n_azimuth) ring → (positions, rotations, nsegments) segment sums for every
    rotation by whole bins (``0 … n_azimuth/nsegments − 1``): segment j of rotation s sums the
    bins ``s + j·w … s + (j+1)·w − 1`` (w = n_azimuth/nsegments, modulo n_azimuth)."""
    n_azimuth = ring.shape[1]
    width = n_azimuth // nsegments
    cumulative = np.concatenate([np.zeros((ring.shape[0], 1)), np.cumsum(np.tile(ring, 2), axis=1)], axis=1)
    edges = np.arange(width)[:, None] + width * np.arange(nsegments + 1)[None, :]  # (rotations, n + 1)
    return cumulative[:, edges[:, 1:]] - cumulative[:, edges[:, :-1]]


def optimal_segmented(
    rates0, rates1, alpha, phi, edges, *, n_azimuth: int = 24, segment_counts=(2, 4, 8)
) -> SegmentedChoice:
    """The segmented ring (N segments, inner, outer, rotation) with the largest ``j₁``.

    Parameters
    ----------
    rates0, rates1 : arrays (positions, pixels)
        As for :func:`optimal_annulus`.
    alpha, phi : arrays (pixels,)
        Scattering angle (mrad) and azimuth (rad) of every pixel.
    edges : array
        Candidate inner and outer angles (mrad).
    n_azimuth : int
        Azimuthal bins; rotations are searched in steps of ``2π / n_azimuth``.
    segment_counts : sequence of int
        Numbers of segments tried (each must divide ``n_azimuth``).
    """
    edges = _edges(edges)
    counts = [int(n) for n in segment_counts if int(n) >= 1 and n_azimuth % int(n) == 0]
    if not counts:
        raise OptimalDetectorError(
            f"no segment count in {list(segment_counts)} divides the {n_azimuth} azimuthal bins; "
            "give segment counts that divide n_azimuth"
        )
    nr = edges.size - 1
    radial = radial_index(alpha, edges)
    azimuth = np.floor(np.mod(np.asarray(phi, dtype=float), 2 * np.pi) / (2 * np.pi / n_azimuth)).astype(int)
    azimuth = np.minimum(azimuth, n_azimuth - 1)
    index = np.where(radial >= 0, radial * n_azimuth + azimuth, -1)
    p0 = bin_rates(rates0, index, nr * n_azimuth).reshape(-1, nr, n_azimuth)
    p1 = bin_rates(rates1, index, nr * n_azimuth).reshape(-1, nr, n_azimuth)
    c0 = np.concatenate([np.zeros_like(p0[:, :1]), np.cumsum(p0, axis=1)], axis=1)
    c1 = np.concatenate([np.zeros_like(p1[:, :1]), np.cumsum(p1, axis=1)], axis=1)
    best = (-np.inf, None)
    for i in range(nr):
        for o in range(i + 1, nr + 1):
            ring0, ring1 = c0[:, o] - c0[:, i], c1[:, o] - c1[:, i]
            for n in counts:
                js = _j(_segment_sums(ring0, n), _segment_sums(ring1, n), axis=(0, 2))  # per rotation
                shift = int(np.argmax(js))
                if js[shift] > best[0]:
                    best = (float(js[shift]), (i, o, n, shift))
    j, (i, o, n, shift) = best
    return SegmentedChoice(float(edges[i]), float(edges[o]), n, 2 * np.pi * shift / n_azimuth, j)


def annulus_masks(alpha, choice: AnnulusChoice) -> np.ndarray:
    """(1, pixels) mask of the chosen annulus (the same bins as the search)."""
    alpha = np.asarray(alpha, dtype=float).reshape(-1)
    return ((alpha >= choice.inner) & (alpha < choice.outer))[None, :]


def segment_masks(alpha, phi, choice: SegmentedChoice, n_azimuth: int = 24) -> np.ndarray:
    """(nsegments, pixels) masks of the chosen segmented ring (the same bins as the search)."""
    alpha = np.asarray(alpha, dtype=float).reshape(-1)
    azimuth = np.floor(np.mod(np.asarray(phi, dtype=float).reshape(-1), 2 * np.pi) / (2 * np.pi / n_azimuth))
    azimuth = np.minimum(azimuth.astype(int), n_azimuth - 1)
    shift = int(round(choice.rotation / (2 * np.pi / n_azimuth)))
    segment = np.mod(azimuth - shift, n_azimuth) // (n_azimuth // choice.nsegments)
    ring = (alpha >= choice.inner) & (alpha < choice.outer)
    return np.stack([ring & (segment == s) for s in range(choice.nsegments)])
