"""Probe positions for STEM: grid scans, line scans and custom positions.

Positions are in Å in the potential's cell; the cell is periodic, so a scan may not leave
it (the probe would see the periodic image, which is rarely what was meant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from temsim.errors import InputError
from temsim.memory import available_memory, require

__all__ = ["GridScan", "LineScan", "CustomScan", "nyquist_sampling"]


def nyquist_sampling(semiangle_cutoff: float, energy: float) -> float:
    """Probe-position spacing (Å) that samples a probe of ``semiangle_cutoff`` mrad at Nyquist.

    The STEM image transfers frequencies up to 2α/λ, so Nyquist is ``λ / (4α)``.
    """
    from temsim.constants import wavelength

    return wavelength(energy) / (4 * semiangle_cutoff * 1e-3)


def _pair(value, name):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be two lengths (x, y) in Å, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise InputError(f"{name} must be finite, got {value!r}")
    return a, b


def _check_inside(positions: np.ndarray, extent, what: str) -> None:
    tol = 1e-6
    outside = (
        (positions[:, 0] < -tol)
        | (positions[:, 1] < -tol)
        | (positions[:, 0] > extent[0] + tol)
        | (positions[:, 1] > extent[1] + tol)
    )
    if np.any(outside):
        bad = positions[outside][0]
        raise InputError(
            f"{what} reaches ({bad[0]:.3f}, {bad[1]:.3f}) Å, outside the cell "
            f"(0–{extent[0]:.3f}, 0–{extent[1]:.3f} Å); "
            "keep positions inside the cell or tile the structure"
        )


@dataclass(frozen=True)
class GridScan:
    """A raster of probe positions from ``start`` to ``end`` (Å).

    Parameters
    ----------
    start, end : (float, float) or None
        Corners in Å; default the whole cell ``(0, 0)`` → ``extent``.
    sampling : float or (float, float), optional
        Probe step in Å; default the probe's Nyquist sampling λ/(4α).
    gpts : (int, int), optional
        Number of positions instead of ``sampling``.
    endpoint : bool
        Include ``end`` (default False: a scan over a whole periodic cell then tiles exactly,
        which the Fourier integration of iDPC/iCoM relies on).
    """

    start: tuple[float, float] | None = None
    end: tuple[float, float] | None = None
    sampling: float | tuple[float, float] | None = None
    gpts: tuple[int, int] | None = None
    endpoint: bool = False

    def __post_init__(self):
        if self.sampling is not None and self.gpts is not None:
            raise InputError("give either sampling or gpts for a GridScan, not both")
        if self.sampling is not None:
            s = np.broadcast_to(np.asarray(self.sampling, dtype=float), (2,))
            if np.any(~np.isfinite(s)) or np.any(s <= 0):
                raise InputError(f"scan sampling must be positive (Å), got {self.sampling!r}")
        if self.gpts is not None and any(int(g) < 1 for g in self.gpts):
            raise InputError(f"scan gpts must be ≥ 1, got {self.gpts!r}")

    def resolve(self, extent, probe_sampling: float) -> ResolvedScan:
        start = (0.0, 0.0) if self.start is None else _pair(self.start, "scan start")
        end = tuple(extent) if self.end is None else _pair(self.end, "scan end")
        if end[0] <= start[0] or end[1] <= start[1]:
            raise InputError(f"scan end {end} must be beyond start {start} along x and y")
        corners = np.array([start, end])
        _check_inside(corners, extent, "the scan")
        length = np.subtract(end, start)
        if self.gpts is not None:
            gpts = tuple(int(g) for g in self.gpts)
        else:
            sampling = np.broadcast_to(
                np.asarray(self.sampling if self.sampling is not None else probe_sampling, dtype=float), (2,)
            )
            gpts = tuple(
                max(1, int(math.ceil(length[i] / sampling[i] - 1e-9)) + (1 if self.endpoint else 0)) for i in range(2)
            )
        positions_bytes = 16 * gpts[0] * gpts[1]
        require(
            positions_bytes,
            available_memory() // 4,
            f"a scan of {gpts[0]}×{gpts[1]} probe positions",
            "scan a smaller area or use a larger scan step (sampling=)",
        )
        axes = []
        for i in range(2):
            n = gpts[i]
            if self.endpoint and n > 1:
                axes.append(np.linspace(start[i], end[i], n))
            else:
                axes.append(start[i] + np.arange(n) * length[i] / n)
        return ResolvedScan(kind="grid", x=axes[0], y=axes[1])


@dataclass(frozen=True)
class LineScan:
    """Probe positions along a line from ``start`` to ``end`` (Å), ``gpts`` points or ``sampling`` Å apart."""

    start: tuple[float, float]
    end: tuple[float, float]
    gpts: int | None = None
    sampling: float | None = None

    def resolve(self, extent, probe_sampling: float) -> ResolvedScan:
        start = np.array(_pair(self.start, "line start"))
        end = np.array(_pair(self.end, "line end"))
        length = float(np.linalg.norm(end - start))
        if length == 0:
            raise InputError("line scan start and end coincide")
        n = self.gpts or int(math.ceil(length / (self.sampling or probe_sampling))) + 1
        if n < 2:
            raise InputError(f"a line scan needs ≥ 2 positions, got {n}")
        t = np.linspace(0.0, 1.0, n)
        positions = start[None, :] + t[:, None] * (end - start)[None, :]
        _check_inside(positions, extent, "the line scan")
        return ResolvedScan(kind="line", positions=positions)


@dataclass(frozen=True)
class CustomScan:
    """Arbitrary probe positions, shape (n, 2), Å."""

    positions: tuple

    def resolve(self, extent, probe_sampling: float) -> ResolvedScan:
        positions = np.asarray(self.positions, dtype=float).reshape(-1, 2)
        if len(positions) == 0:
            raise InputError("CustomScan needs at least one position")
        _check_inside(positions, extent, "a custom scan position")
        return ResolvedScan(kind="custom", positions=positions)


class ResolvedScan:
    """Concrete positions of a scan, with the dims and coordinates its outputs carry."""

    def __init__(self, kind: str, x=None, y=None, positions=None):
        self.kind = kind
        if kind == "grid":
            self.x = np.asarray(x, dtype=float)
            self.y = np.asarray(y, dtype=float)
            xx, yy = np.meshgrid(self.x, self.y, indexing="ij")
            self.positions = np.stack([xx.ravel(), yy.ravel()], axis=1)
            self.shape = (len(self.x), len(self.y))
            self.dims = ("scan_x", "scan_y")
        else:
            self.positions = np.asarray(positions, dtype=float)
            self.shape = (len(self.positions),)
            self.dims = ("scan_position",)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def step(self) -> tuple[float, float] | None:
        """Scan step (Å) of a grid scan along x and y."""
        if self.kind != "grid":
            return None
        sx = self.x[1] - self.x[0] if len(self.x) > 1 else float("nan")
        sy = self.y[1] - self.y[0] if len(self.y) > 1 else float("nan")
        return (float(sx), float(sy))

    def coords(self) -> dict:
        if self.kind == "grid":
            return {"scan_x": ("scan_x", self.x, {"units": "Å"}), "scan_y": ("scan_y", self.y, {"units": "Å"})}
        return {
            "scan_position": ("scan_position", np.arange(len(self.positions))),
            "position_x": ("scan_position", self.positions[:, 0], {"units": "Å"}),
            "position_y": ("scan_position", self.positions[:, 1], {"units": "Å"}),
        }
