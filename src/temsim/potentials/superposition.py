"""Exact placement of atoms on a periodic grid, built in Fourier space.

A slice's projected potential (V·Å) on the grid ``(nx, ny)`` with cell area ``A`` is

``v(r) = (1/A) Σ_{|k| ≤ k_c} v(k) exp(2πi k·r)``, ``v(k) = Σ_groups F_g(|k|) S_g(k)``,
``S_g(k) = Σ_{a ∈ g} exp(−2πi (kx x_a + ky y_a))``,

with ``k_c`` the grid's anti-aliasing band limit (2/3 Nyquist). The structure factor
factorizes per atom, ``S_g = EX_g · EY_gᵀ`` with ``EX[i, a] = exp(−2πi kx_i x_a)`` and
``EY[j, a] = exp(−2πi ky_j y_a)``: (nx + ny)·N exponentials and one matrix product (BLAS).
Only the rows/columns inside the band limit are computed, and only ``ky ≥ 0`` (the slice is
real, so its spectrum is Hermitian and a real inverse FFT finishes the job).

Consequences, by construction: every atom sits exactly at its position (no snapping or
spreading onto pixels — the pixel values *are* the band-limited projected potential sampled at
the pixel positions), shifting an atom is a Fourier shift, periodic images are included, and
``Σ pixels × pixel area = F(0)`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from temsim.backend import array_namespace, default_threads, is_numpy_namespace
from temsim.grid import Grid

__all__ = ["BandGeometry", "phase_factors", "band_spectrum_to_slice", "slice_from_groups"]


@dataclass(frozen=True)
class BandGeometry:
    """The frequencies of a grid inside its anti-aliasing band limit (numpy, float64).

    Attributes
    ----------
    grid : Grid
    kx : (n_kx,) ndarray
        Band frequencies along x (1/Å): the ``n_pos`` non-negative ones of FFT order followed
        by the ``n_neg`` negative ones.
    ky : (n_ky,) ndarray
        Non-negative band frequencies along y (1/Å), ascending from 0.
    n_pos, n_neg : int
        Split of ``kx`` into FFT rows ``0 … n_pos−1`` and ``nx−n_neg … nx−1``.
    k_abs : (n_kx, n_ky) ndarray
        |k| of each band pixel.
    inside : (n_kx, n_ky) bool ndarray
        ``|k| ≤ cutoff`` (the disc; the rectangle's corners are outside).
    cutoff : float
        Band limit (1/Å).
    """

    grid: Grid
    kx: np.ndarray
    ky: np.ndarray
    n_pos: int
    n_neg: int
    k_abs: np.ndarray
    inside: np.ndarray
    cutoff: float

    @classmethod
    def from_grid(cls, grid: Grid, cutoff: float | None = None) -> BandGeometry:
        """Band of ``grid`` up to ``cutoff`` (default ``grid.antialias_cutoff``) in 1/Å."""
        kc = grid.antialias_cutoff if cutoff is None else float(cutoff)
        nx, ny = grid.gpts
        kx_all = grid.kx()
        ky_all = grid.ky()
        n_pos = int(np.sum(np.abs(kx_all[: (nx + 1) // 2]) <= kc))
        n_neg = int(np.sum(np.abs(kx_all[(nx + 1) // 2 :]) <= kc))
        kx = np.concatenate([kx_all[:n_pos], kx_all[nx - n_neg :]]) if n_neg else kx_all[:n_pos]
        n_ky = int(np.sum(np.abs(ky_all[: ny // 2 + 1]) <= kc))
        ky = np.abs(ky_all[:n_ky])  # rfft columns are 0 … ny//2 (the Nyquist one as +)
        k_abs = np.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)
        inside = k_abs <= kc
        return cls(grid, kx, ky, n_pos, n_neg, k_abs, inside, kc)


def phase_factors(frequencies, coordinates, dtype="complex64"):
    """``exp(−2πi f_i c_a)`` as an ``(len(f), len(c))`` array (namespace of ``coordinates``).

    The phase is formed in float64 and reduced modulo 1 before the exponential so that
    large ``f·c`` keep full precision, then cast to ``dtype``.
    """
    xp = array_namespace(coordinates)
    f = xp.asarray(frequencies, dtype=xp.float64)
    c = xp.asarray(coordinates, dtype=xp.float64)
    turns = f[:, None] * c[None, :]
    turns = turns - xp.round(turns)
    angle = (-2.0 * math.pi) * turns
    out = xp.exp(xp.astype(angle, xp.complex128) * 1j)
    return xp.astype(out, getattr(xp, dtype))


def band_spectrum_to_slice(spectrum, band: BandGeometry):
    """Real-space slice (float32, V·Å, ``(nx, ny)``) from the band spectrum ``Σ F S`` (V·Å³).

    ``v = (N / A) · irfft2(spectrum placed into the half plane) = irfft2(...) / (dx·dy)``.
    """
    xp = array_namespace(spectrum)
    nx, ny = band.grid.gpts
    n_kx, n_ky = spectrum.shape
    n_half = ny // 2 + 1
    dtype = spectrum.dtype
    parts = [spectrum[: band.n_pos, :]]
    gap = nx - band.n_pos - band.n_neg
    if gap:
        parts.append(xp.zeros((gap, n_ky), dtype=dtype))
    if band.n_neg:
        parts.append(spectrum[band.n_pos :, :])
    half = xp.concat(parts, axis=0) if len(parts) > 1 else parts[0]
    if n_half > n_ky:
        half = xp.concat([half, xp.zeros((nx, n_half - n_ky), dtype=dtype)], axis=1)
    dx, dy = band.grid.sampling
    if is_numpy_namespace(xp):
        import scipy.fft

        real = scipy.fft.irfftn(np.asarray(half), s=(nx, ny), axes=(0, 1), workers=default_threads())
        real = np.asarray(real, dtype=np.float32)
    else:
        real = xp.fft.irfftn(half, s=(nx, ny), axes=(0, 1))
        real = xp.astype(real, xp.float32)
    return real * (1.0 / (dx * dy))


def slice_from_groups(band: BandGeometry, positions, group_of_atom, factors, *, kx=None, ky=None):
    """Projected potential of one slice from grouped atoms (array-API path).

    Parameters
    ----------
    band : BandGeometry
    positions : (N, 2) float64 array (namespace decides the backend)
        Lateral positions in Å.
    group_of_atom : (N,) int numpy array
        Group of each atom.
    factors : sequence of (n_kx, n_ky) float32 arrays
        Radial factor of each group on the band (zero outside the disc), V·Å³.
    kx, ky : arrays, optional
        ``band.kx``/``band.ky`` already in the namespace of ``positions``.

    Returns
    -------
    (nx, ny) float32 array, V·Å.
    """
    from temsim.potentials.projection import accumulate_radial_reference

    xp = array_namespace(positions)
    kx = xp.asarray(band.kx) if kx is None else kx
    ky = xp.asarray(band.ky) if ky is None else ky
    if positions.shape[0] == 0:
        return xp.zeros(band.grid.gpts, dtype=xp.float32)
    ex = phase_factors(kx, positions[:, 0])
    ey = phase_factors(ky, positions[:, 1])
    spectrum = accumulate_radial_reference(ex, ey, group_of_atom, factors)
    return band_spectrum_to_slice(spectrum, band)
