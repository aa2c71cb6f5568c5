"""A potential given directly as projected-potential arrays (V·Å) per slice.

For potentials computed elsewhere (DFT, a weak phase object in a test, an experiment's
phase map) — anything the solvers accept as a :class:`~temsim.potentials.Potential`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import xarray as xr

from temsim.errors import InputError
from temsim.grid import Grid

__all__ = ["ArrayPotential"]


class ArrayPotential:
    """Projected-potential slices given as arrays.

    Parameters
    ----------
    slices : (num_slices, nx, ny) array_like
        Projected potential of each slice, V·Å (a 2-D array is one slice).
    extent : (float, float)
        Cell size (Å).
    slice_thickness : float or sequence of float
        Thickness of each slice (Å).
    """

    parametrization = "array"
    projection = "given"
    phonons = None

    def __init__(self, slices, extent, slice_thickness):
        array = np.asarray(slices, dtype=np.float32)
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise InputError(f"slices must have shape (num_slices, nx, ny), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InputError("the projected potential contains NaN or infinite values")
        self._slices = array
        self.grid = Grid(tuple(extent), array.shape[1:])
        thickness = np.broadcast_to(np.asarray(slice_thickness, dtype=float), (array.shape[0],)).copy()
        if np.any(thickness <= 0):
            raise InputError(f"slice thicknesses must be positive (Å), got {thickness.tolist()}")
        self.slice_thicknesses = thickness
        self._keys = [hashlib.sha1(s.tobytes() + np.float64(t).tobytes()).hexdigest() for s, t in zip(array, thickness)]

    @property
    def num_slices(self) -> int:
        return self._slices.shape[0]

    @property
    def slice_limits(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.slice_thicknesses)])

    @property
    def thickness(self) -> float:
        return float(self.slice_thicknesses.sum())

    def slice_key(self, index: int):
        return self._keys[index]

    def iter_slices(self, xp=None, start: int = 0, stop: int | None = None):
        xp = np if xp is None else xp
        stop = self.num_slices if stop is None else stop
        for i in range(start, stop):
            yield xp.asarray(self._slices[i])

    def projected(self) -> xr.DataArray:
        return xr.DataArray(
            self._slices.sum(0),
            dims=("x", "y"),
            coords={"x": self.grid.x(), "y": self.grid.y()},
            attrs={"units": "V·Å"},
        )
