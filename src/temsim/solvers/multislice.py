"""Multislice: propagate waves through a sliced projected potential.

One step per slice, ``ψ ← F⁻¹[P(k) · F[t · ψ]]``, with

* transmission ``t = exp(iσ v_z)`` band-limited to 2/3 of Nyquist (computed once per
  distinct slice and reused: a crystal has only a few distinct slices);
* Fresnel propagator ``P(k) = exp(−iπλΔz|k|²) · exp(−2πiλΔz k·k_t)`` band-limited the
  same way, with the beam tilt k_t = θ/λ applied as a shift of the propagator (the wave stays
  in the tilted beam's frame), and the FFT's 1/N folded in;
* in-place FFTs through :class:`temsim.backend.FFTPlan` (pyFFTW with measured plans on the
  CPU), so a step costs one FFT pair and two multiplies — the lower bound.

The kernel works on any array namespace (numpy, cupy, array_api_strict).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np
import xarray as xr

from temsim.backend import FFTPlan, array_namespace, fft2, ifft2, to_numpy
from temsim.constants import interaction_parameter, wavelength
from temsim.errors import InputError, SamplingError
from temsim.grid import Grid

__all__ = [
    "transmission_function",
    "fresnel_propagator",
    "SliceStack",
    "propagate",
    "multislice",
    "check_plane_wave_sampling",
]

#: Below this band limit (mrad) a grid cannot hold even the low-order diffraction of a crystal.
MIN_BAND_LIMIT_MRAD = 30.0


def _antialias_mask(grid: Grid, xp):
    return xp.asarray(grid.antialias_aperture().astype(np.float32))


def transmission_function(projected, sigma: float, aperture, dtype: str = "complex64"):
    """Band-limited transmission function ``F⁻¹[A · F[exp(iσv)]]``.

    Parameters
    ----------
    projected : (nx, ny) array
        Projected potential of one slice, V·Å.
    sigma : float
        Interaction parameter, rad/(V·Å).
    aperture : (nx, ny) array
        Anti-aliasing mask (1 inside 2/3 Nyquist, 0 outside).
    """
    xp = array_namespace(projected, aperture)
    phase = xp.astype(projected, xp.float64) * sigma
    t = xp.cos(phase) + 1j * xp.sin(phase)
    t = ifft2(fft2(t) * aperture)
    return xp.astype(t, getattr(xp, dtype))


def fresnel_propagator(grid: Grid, energy: float, thickness: float, tilt=(0.0, 0.0), xp=np,
                       dtype: str = "complex64", normalize: bool = True):
    """Band-limited Fresnel propagator over ``thickness`` Å, in FFT order.

    ``normalize=True`` folds the 1/N of the unnormalized inverse FFT into it.
    """
    lam = wavelength(energy)
    kx = grid.kx()[:, None]
    ky = grid.ky()[None, :]
    ktx, kty = (t * 1e-3 / lam for t in tilt)
    phase = -math.pi * lam * thickness * (kx**2 + ky**2) - 2 * math.pi * lam * thickness * (kx * ktx + ky * kty)
    p = np.exp(1j * phase) * grid.antialias_aperture()
    if normalize:
        p = p / (grid.gpts[0] * grid.gpts[1])
    return xp.asarray(p.astype(dtype))


class SliceStack:
    """Transmission functions and propagators of one potential at one energy and tilt.

    Slices are produced lazily from ``potential.iter_slices``; transmission functions are
    cached by :meth:`Potential.slice_key` up to ``cache_bytes``, so repeating crystal slices
    are computed once and repeated passes (one per STEM batch) reuse them. Beyond the budget
    the oldest entries are dropped and recomputed when needed again.
    """

    def __init__(self, potential, energy: float, xp=np, tilt=(0.0, 0.0), dtype: str = "complex64",
                 cache_bytes: int = 2 * 1024**3):
        self.potential = potential
        self.energy = float(energy)
        self.xp = xp
        self.tilt = tuple(float(t) for t in tilt)
        self.dtype = dtype
        self.grid: Grid = potential.grid
        self.sigma = interaction_parameter(energy)
        self._aperture = _antialias_mask(self.grid, xp)
        self._transmissions: OrderedDict = OrderedDict()
        self._propagators: dict = {}
        itemsize = 8 if dtype == "complex64" else 16
        self._max_cached = max(1, int(cache_bytes // (itemsize * self.grid.gpts[0] * self.grid.gpts[1])))

    @property
    def num_slices(self) -> int:
        return self.potential.num_slices

    def propagator(self, index: int):
        dz = round(float(self.potential.slice_thicknesses[index]), 9)
        if dz not in self._propagators:
            self._propagators[dz] = fresnel_propagator(self.grid, self.energy, dz, self.tilt, self.xp, self.dtype)
        return self._propagators[dz]

    def transmissions(self, start: int = 0, stop: int | None = None):
        """Yield ``(index, transmission)`` for slices ``start … stop−1``, computing lazily."""
        stop = self.num_slices if stop is None else stop
        pending = None
        pending_index = -1
        for index in range(start, stop):
            key = self.potential.slice_key(index)
            if key in self._transmissions:
                self._transmissions.move_to_end(key)
                yield index, self._transmissions[key]
                continue
            if pending is None or pending_index != index:
                pending = self.potential.iter_slices(xp=self.xp, start=index, stop=stop)
                pending_index = index
            projected = next(pending)
            pending_index += 1
            t = transmission_function(projected, self.sigma, self._aperture, self.dtype)
            self._transmissions[key] = t
            if len(self._transmissions) > self._max_cached:
                self._transmissions.popitem(last=False)
            yield index, t


def propagate(plan: FFTPlan, stack: SliceStack, start: int = 0, stop: int | None = None,
              on_slice: Callable[[int], None] | None = None, *, end_in_fourier: bool = False) -> None:
    """Propagate the waves held in ``plan.buffer`` through slices ``start … stop−1`` in place.

    ``on_slice(i)`` is called after slice ``i`` (for thickness series and progress).

    With ``end_in_fourier=True`` the backward FFT of the last slice is skipped: on return
    the buffer holds ``F[ψ_exit] / N`` (the unnormalized forward FFT of the exit wave divided
    by the number of pixels) instead of ``ψ_exit``. A caller that wants the exit wave's
    spectrum (STEM detectors) so saves one FFT pair; the propagator's phase is kept, so
    the spectrum is exactly what ``plan.forward()`` after a full propagation gives, / N.
    """
    last = (stack.num_slices if stop is None else stop) - 1
    done = False
    for index, t in stack.transmissions(start, stop):
        plan.buffer *= t
        plan.forward()
        plan.buffer *= stack.propagator(index)
        if end_in_fourier and index == last:
            done = True
        else:
            plan.backward()
        if on_slice is not None:
            on_slice(index)
    if end_in_fourier and not done:  # no slice in the range: transform the input itself
        plan.forward()
        plan.buffer *= 1.0 / (stack.grid.gpts[0] * stack.grid.gpts[1])


def check_plane_wave_sampling(grid: Grid, energy: float) -> None:
    """Refuse grids whose band limit is too low to hold a crystal's diffraction at ``energy``."""
    limit = grid.max_angle(energy)
    if limit < MIN_BAND_LIMIT_MRAD:
        from temsim.grid import required_sampling

        raise SamplingError(
            f"sampling {max(grid.sampling):.3f} Å is too coarse for {energy / 1e3:g} keV: its band limit is only "
            f"{limit:.1f} mrad (2/3 anti-aliasing); atoms scatter strongly well beyond that. Use sampling ≤ "
            f"{required_sampling(MIN_BAND_LIMIT_MRAD * 3, energy):.3f} Å (band limit ≥ {3 * MIN_BAND_LIMIT_MRAD:.0f} mrad)"
        )


def _save_indices(num_slices: int, save_every: int | None) -> list[int]:
    if save_every is None:
        return [num_slices - 1]
    save_every = int(save_every)
    if save_every < 1:
        raise InputError(f"save_every must be a positive number of slices, got {save_every!r}")
    indices = list(range(save_every - 1, num_slices, save_every))
    if not indices or indices[-1] != num_slices - 1:
        indices.append(num_slices - 1)
    return indices


def multislice(wave, potential, save_every: int | None = None, *, dtype: str = "complex64",
               device: str = "cpu", progress: bool = False) -> xr.DataArray:
    """Exit wave(s) of a plane wave propagated through ``potential``.

    Parameters
    ----------
    wave : PlaneWave
        Incident wave (energy in eV, tilt in mrad).
    potential : Potential
        Sliced projected potential (its grid is the wave's grid).
    save_every : int, optional
        Also return the wave after every ``save_every`` slices (a thickness series);
        the exit wave is always included.
    dtype : {"complex64", "complex128"}
        Precision of the propagation.
    device : {"cpu", "gpu"}
        Where to run (``"gpu"`` needs cupy).
    progress : bool
        Show a progress bar over slices.

    Returns
    -------
    xarray.DataArray
        Complex exit wave, dims (``x``, ``y``) in Å, or (``thickness``, ``x``, ``y``) with
        ``save_every``; attrs record energy, tilt, sampling, slicing and parametrization.

    Examples
    --------
    >>> import temsim
    >>> from ase.build import bulk
    >>> atoms = bulk("Si", cubic=True)
    >>> potential = temsim.Potential(atoms, sampling=0.1, slice_thickness=1.3575)
    >>> exit_wave = temsim.multislice(temsim.PlaneWave(energy=200e3), potential)
    >>> exit_wave.dims
    ('x', 'y')
    """
    from temsim.backend import get_namespace
    from temsim.waves import PlaneWave

    if not isinstance(wave, PlaneWave):
        raise InputError(
            f"multislice takes a temsim.PlaneWave, got {type(wave).__name__}; for probes use temsim.scan"
        )
    xp = get_namespace(device)
    grid = wave.resolve_grid(potential.grid)
    check_plane_wave_sampling(grid, wave.energy)
    stack = SliceStack(potential, wave.energy, xp, wave.tilt, dtype)
    plan = FFTPlan(grid.gpts, xp, dtype)
    plan.load(wave.build(grid, xp, dtype))
    indices = _save_indices(potential.num_slices, save_every)
    saved = []
    bar = _progress(potential.num_slices, progress, "multislice")

    def on_slice(i):
        bar.update(1)
        if i in indices:
            saved.append(to_numpy(plan.buffer).copy())

    propagate(plan, stack, on_slice=on_slice)
    bar.close()
    limits = np.asarray(potential.slice_limits)
    attrs = _wave_attrs(wave, potential, grid, dtype)
    coords = {"x": ("x", grid.x(), {"units": "Å"}), "y": ("y", grid.y(), {"units": "Å"})}
    if save_every is None:
        return xr.DataArray(saved[-1], dims=("x", "y"), coords=coords, attrs=attrs, name="exit_wave")
    thickness = limits[np.asarray(indices) + 1]
    coords["thickness"] = ("thickness", thickness, {"units": "Å"})
    return xr.DataArray(np.stack(saved), dims=("thickness", "x", "y"), coords=coords, attrs=attrs,
                        name="exit_wave")


def _wave_attrs(wave, potential, grid: Grid, dtype: str) -> dict:
    import temsim

    return {
        "signal": "exit_wave",
        "energy": wave.energy,
        "energy_units": "eV",
        "wavelength": wavelength(wave.energy),
        "tilt": list(wave.tilt),
        "tilt_units": "mrad",
        "sampling": list(grid.sampling),
        "extent": list(grid.extent),
        "gpts": list(grid.gpts),
        "thickness_total": float(potential.thickness),
        "slice_thicknesses": [float(t) for t in potential.slice_thicknesses],
        "parametrization": potential.parametrization,
        "projection": potential.projection,
        "dtype": dtype,
        "temsim_version": temsim.__version__,
    }


class _NullBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool, description: str, unit: str = "slice"):
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit)
