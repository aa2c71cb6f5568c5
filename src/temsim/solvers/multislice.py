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
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import xarray as xr

from temsim._version import __version__
from temsim.backend import FFTPlan, array_namespace, fft2, ifft2, to_numpy
from temsim.constants import interaction_parameter, wavelength
from temsim.errors import AccuracyWarning, InputError, SamplingError
from temsim.grid import Grid
from temsim.memory import cache_batch_size
from temsim.progress import progress_bar
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.solvers.engine import Engine, diffraction_intensity

__all__ = [
    "transmission_function",
    "fresnel_propagator",
    "SliceStack",
    "propagate",
    "multislice",
    "check_plane_wave_sampling",
    "MultisliceEngine",
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


def fresnel_propagator(
    grid: Grid,
    energy: float,
    thickness: float,
    tilt=(0.0, 0.0),
    xp=np,
    dtype: str = "complex64",
    normalize: bool = True,
):
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

    def __init__(
        self, potential, energy: float, xp=np, tilt=(0.0, 0.0), dtype: str = "complex64", cache_bytes: int = 2 * 1024**3
    ):
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
        self._lock = threading.Lock()  # the caches are shared by the threads of scheduler="threads"
        itemsize = 8 if dtype == "complex64" else 16
        self._max_cached = max(1, int(cache_bytes // (itemsize * self.grid.gpts[0] * self.grid.gpts[1])))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def num_slices(self) -> int:
        return self.potential.num_slices

    def propagator(self, index: int):
        dz = round(float(self.potential.slice_thicknesses[index]), 9)
        propagator = self._propagators.get(dz)
        if propagator is None:
            propagator = fresnel_propagator(self.grid, self.energy, dz, self.tilt, self.xp, self.dtype)
            self._propagators[dz] = propagator  # a race computes the same array twice, harmlessly
        return propagator

    def transmissions(self, start: int = 0, stop: int | None = None):
        """Yield ``(index, transmission)`` for slices ``start … stop−1``, computing lazily."""
        stop = self.num_slices if stop is None else stop
        pending = None
        pending_index = -1
        for index in range(start, stop):
            key = self.potential.slice_key(index)
            with self._lock:
                t = self._transmissions.get(key)
                if t is not None:
                    self._transmissions.move_to_end(key)
            if t is not None:
                yield index, t
                continue
            if pending is None or pending_index != index:
                pending = self.potential.iter_slices(xp=self.xp, start=index, stop=stop)
                pending_index = index
            projected = next(pending)
            pending_index += 1
            t = transmission_function(projected, self.sigma, self._aperture, self.dtype)
            with self._lock:
                self._transmissions[key] = t
                if len(self._transmissions) > self._max_cached:
                    self._transmissions.popitem(last=False)
            yield index, t


def propagate(
    plan: FFTPlan,
    stack: SliceStack,
    start: int = 0,
    stop: int | None = None,
    on_slice: Callable[[int], None] | None = None,
    *,
    end_in_fourier: bool = False,
) -> None:
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
            f"{required_sampling(MIN_BAND_LIMIT_MRAD * 3, energy):.3f} Å "
            f"(band limit ≥ {3 * MIN_BAND_LIMIT_MRAD:.0f} mrad)"
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


def multislice(
    wave,
    potential,
    save_every: int | None = None,
    *,
    settings: ExecutionSettings | None = None,
    dtype: str | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> xr.DataArray:
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
    settings : ExecutionSettings, optional
        Device, precision, FFT threads and progress bar (default: CPU, complex64, no bar).
    dtype, device, progress
        The same as single keywords (kept for existing scripts; not together with a
        different value in ``settings``).

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
    from temsim.waves import PlaneWave

    if not isinstance(wave, PlaneWave):
        raise InputError(f"multislice takes a temsim.PlaneWave, got {type(wave).__name__}; for probes use temsim.scan")
    settings = resolve_settings(settings, dtype=dtype, device=device, progress=progress)
    xp, dtype = settings.xp, settings.dtype
    grid = wave.resolve_grid(potential.grid)
    check_plane_wave_sampling(grid, wave.energy)
    indices = _save_indices(potential.num_slices, save_every)
    saved = []
    with settings.activate():
        stack = SliceStack(potential, wave.energy, xp, wave.tilt, dtype)
        plan = FFTPlan(grid.gpts, xp, dtype)
        plan.load(wave.build(grid, xp, dtype))
        bar = progress_bar(potential.num_slices, bool(settings.progress), "multislice")

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
    return xr.DataArray(np.stack(saved), dims=("thickness", "x", "y"), coords=coords, attrs=attrs, name="exit_wave")


def _wave_attrs(wave, potential, grid: Grid, dtype: str) -> dict:
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
        "temsim_version": __version__,
    }


class MultisliceEngine(Engine):
    """STEM probes propagated through the specimen slice by slice (the solver-engine protocol).

    One :class:`SliceStack` per frozen-phonon configuration; in-place FFT plans per batch
    size. Exit planes are the slices in ``save_slices`` (default the last): at an
    intermediate plane the wave is copied and transformed; at the last one the final
    backward/forward FFT pair is skipped (the propagation ends in Fourier space).

    Parameters
    ----------
    probe : Probe
    configurations : sequence of Potential
        Static potentials (one per frozen-phonon configuration) on ``grid``.
    grid : Grid
    xp : namespace
    dtype : {"complex64", "complex128"}
    save_slices : sequence of int, optional
        Slice indices after which intensities are produced (a thickness series).
    """

    name = "multislice"
    #: Safe to share between the threads of ``scheduler="threads"`` (locked caches, FFT buffers per thread).
    thread_safe = True

    def __init__(self, probe, configurations, grid: Grid, xp, dtype: str = "complex64", save_slices=None):
        self.probe = probe
        self.detector_grid = grid
        self.xp = xp
        self.dtype = dtype
        self.num_configurations = len(configurations)
        budget = max(256 * 1024**2, (2 * 1024**3) // max(1, len(configurations)))
        self.stacks = [SliceStack(p, probe.energy, xp, probe.tilt, dtype, cache_bytes=budget) for p in configurations]
        num_slices = configurations[0].num_slices
        self.series = save_slices is not None
        self.save_slices = sorted({int(i) for i in (save_slices or [num_slices - 1])} | {num_slices - 1})
        self.thicknesses = np.asarray(configurations[0].slice_limits)[np.asarray(self.save_slices) + 1]
        self._plans: dict = {}
        self.n_pixels = grid.gpts[0] * grid.gpts[1]
        # batches that stay in cache run 20-25% faster per probe than one large batch
        self.batch_cap = cache_batch_size(grid.gpts, 8 if dtype == "complex64" else 16)

    def __getstate__(self) -> dict:
        """Pickled (sent to a dask worker) without FFT plans, which each process makes itself."""
        state = dict(self.__dict__)
        state["_plans"] = {}
        return state

    def _plan(self, n: int, which: str = "main") -> FFTPlan:
        """The in-place FFT plan (and its buffer) of a batch of ``n`` waves, one per thread."""
        key = (threading.get_ident(), n, which)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = FFTPlan((n,) + self.detector_grid.gpts, self.xp, self.dtype)
        return plan

    def _spectra(self, config_index: int, positions, defocus: float):
        """Yield ``(thickness index, F[ψ])`` (unnormalized spectra, in a plan's buffer) per exit plane."""
        plan = self._plan(len(positions))
        if isinstance(plan.buffer, np.ndarray):
            self.probe.spectrum(self.detector_grid, positions, self.xp, self.dtype, defocus, out=plan.buffer)
        else:
            plan.load(self.probe.spectrum(self.detector_grid, positions, self.xp, self.dtype, defocus))
        plan.backward()
        stack = self.stacks[config_index]
        start = 0
        last = self.save_slices[-1]
        for t, index in enumerate(self.save_slices):
            if index == last:
                # the last slice's backward FFT and the forward FFT to the detector plane cancel:
                # stop in Fourier space (buffer = F[ψ_exit]/N) and rescale, one FFT pair fewer
                propagate(plan, stack, start, index + 1, end_in_fourier=True)
                plan.buffer *= float(self.n_pixels)
                yield t, plan.buffer
            else:
                propagate(plan, stack, start, index + 1)
                side = self._plan(len(positions), "plane")
                side.load(plan.buffer)
                side.forward()
                yield t, side.buffer
            start = index + 1

    def intensities(self, config_index: int, positions, defocus: float):
        for t, spectrum in self._spectra(config_index, positions, defocus):
            yield t, diffraction_intensity(spectrum, self.n_pixels)

    def amplitudes(self, config_index: int, positions, defocus: float):
        for t, spectrum in self._spectra(config_index, positions, defocus):
            yield t, spectrum * (1.0 / math.sqrt(self.n_pixels))

    def check(self) -> None:
        probe_tail_warning(self.probe, self.detector_grid)


#: Fraction of the probe's intensity beyond half the cell that triggers the wrap-around warning.
PROBE_TAIL_TOLERANCE = 0.02


def probe_tail_warning(probe, grid) -> None:
    """Warn when more than 2% of the probe's intensity lies beyond half the cell from its centre.

    The cell is periodic, so that part of the probe overlaps its own periodic images.
    """
    from temsim.grid import Grid

    radius = 0.5 * min(grid.extent)
    # the probe on a 4x larger cell (same sampling) is free of wrap-around for small cells
    # and a sampling just fine enough to hold the aperture (Nyquist 1.5 α/λ) keeps it cheap
    factor = 4 if min(grid.extent) < 40.0 else 1
    coarse = probe.wavelength / (3 * probe.semiangle_cutoff * 1e-3)
    reference = Grid.from_sampling(tuple(e * factor for e in grid.extent), max(coarse, max(grid.sampling)))
    intensity = probe.intensity(reference, (0.0, 0.0))
    x = np.minimum(reference.x(), reference.extent[0] - reference.x())
    y = np.minimum(reference.y(), reference.extent[1] - reference.y())
    outside = intensity[(x[:, None] ** 2 + y[None, :] ** 2) > radius**2].sum() / intensity.sum()
    if outside > PROBE_TAIL_TOLERANCE:
        warnings.warn(
            f"{outside:.1%} of the probe's intensity lies farther than {radius:.1f} Å (half the "
            f"{grid.extent[0]:.1f}×{grid.extent[1]:.1f} Å cell) from its centre: the probe's tails wrap around and "
            "overlap its periodic images; tile the structure (temsim.structure.tile) for an isolated probe, "
            "or ignore this for an intentionally periodic calculation",
            AccuracyWarning,
            stacklevel=4,
        )
