"""Convergent-beam Bloch waves: CBED patterns and STEM signals of perfect crystals.

A probe on a periodic cell of ``repetitions`` unit cells is a coherent sum of tilted plane
waves, ``ψ_in(r) = Σ_q a(q) exp(−2πi q·r₀) exp(2πi q·r)``, with ``q`` the grid frequencies
inside the condenser aperture and ``a(q) = A(q) exp(−iχ(q))`` the probe's Fourier coefficients
(:meth:`temsim.Probe.fourier_coefficients`, normalized so Σ|a|² = 1). Each partial wave is a
plane wave tilted by λq: its Bloch problem is solved once (an eigen-decomposition per
incident direction; the probe position only changes the weights), giving amplitudes
``φ_g(q, t)`` at reflections ``q + g``. The exit wave's spectrum is

``Ψ(k, t) = Σ_{q + g = k} a(q) exp(−2πi q·r₀) exp(−iπλt(|q|² + 2q·k_t)) φ_g(q, t)``,

the propagation phase of the partial wave itself included, so overlapping discs interfere
exactly as in multislice on the same periodic supercell. Its intensities ``|Ψ(k)|²`` (fractions
of the incident beam, FFT order) feed the STEM detectors of :mod:`temsim.detectors`
unchanged. Assembly runs on the host (numpy); the eigenproblems use the device solver.

:func:`bloch_scan` runs through the common scan driver (:func:`temsim.solvers.driver.run_scan`)
with :class:`BlochEngine`, so streaming to disk and resuming a killed run work as for
multislice.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import xarray as xr

from temsim._version import __version__
from temsim.backend import to_numpy
from temsim.constants import wavelength
from temsim.errors import InputError, SamplingError
from temsim.grid import Grid
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.solvers.bloch import _check_thickness, solve_bloch
from temsim.solvers.bloch_beams import orient_crystal
from temsim.solvers.driver import run_scan
from temsim.solvers.engine import Engine

__all__ = ["ConvergentBeamSolution", "solve_convergent_beam", "bloch_cbed", "bloch_scan", "BlochEngine"]


def _check_repetitions(repetitions) -> tuple[int, int]:
    try:
        rx, ry = (int(r) for r in repetitions)
    except (TypeError, ValueError):
        raise InputError(f"repetitions must be two positive integers (nx, ny), got {repetitions!r}") from None
    if rx < 1 or ry < 1 or (rx, ry) != tuple(repetitions):
        raise InputError(f"repetitions must be two positive integers (nx, ny), got {repetitions!r}")
    return rx, ry


class ConvergentBeamSolution:
    """Bloch solutions for every incident direction of a probe on a periodic supercell.

    Build with :func:`solve_convergent_beam`.

    Attributes
    ----------
    grid : Grid
        The supercell's grid (the multislice grid of the tiled zone-axis cell).
    crystal : OrientedCrystal
        The unit cell (``crystal.atoms`` tiled by ``repetitions`` is the multislice specimen).
    directions : (Q, 2) int ndarray
        FFT indices of the incident partial waves inside the aperture.
    num_beams : (Q,) int ndarray
        Beams per direction.
    """

    def __init__(self, probe, crystal, repetitions, grid, directions, solutions, thickness):
        self.probe = probe
        self.crystal = crystal
        self.repetitions = repetitions
        self.grid = grid
        self.directions = directions
        self.thickness = thickness
        self.num_beams = np.array([s.num_beams for s in solutions])
        nx, ny = grid.gpts
        rx, ry = repetitions
        lam = wavelength(probe.energy)
        kt = np.asarray(probe.tilt) * 1e-3 / lam
        q = directions / np.array(grid.extent)
        # pixels reached by any direction, and per direction its columns in that union
        flat = []
        for (i, j), s in zip(directions, solutions):
            kx = i + rx * s.beams.indices[:, 0]
            ky = j + ry * s.beams.indices[:, 1]
            if np.any(np.abs(kx) >= nx / 2) or np.any(np.abs(ky) >= ny / 2):
                raise SamplingError(
                    f"reflections reach beyond the grid's Nyquist frequency ({grid.nyquist:.2f} 1/Å); use a finer "
                    f"sampling (≤ {0.95 / (2 * (s.settings['g_max'] + np.hypot(*q.max(0)))):.4f} Å) or a smaller g_max"
                )
            flat.append((kx % nx) * ny + (ky % ny))
        self.pixels, inverse = np.unique(np.concatenate(flat), return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        starts = np.cumsum([0] + [len(f) for f in flat])
        # M[t, q, u]: amplitude reaching union pixel u from direction q at thickness t
        self._matrix = np.zeros((len(thickness), len(directions), len(self.pixels)), dtype=np.complex128)
        for iq, s in enumerate(solutions):
            phi = to_numpy(s.amplitudes(thickness))  # (T, N)
            own = np.exp(-1j * math.pi * lam * thickness * (q[iq] @ q[iq] + 2 * q[iq] @ kt))
            self._matrix[:, iq, inverse[starts[iq] : starts[iq + 1]]] = phi * own[:, None]
        self._q = q

    def weights(self, positions, defocus_offset: float = 0.0) -> np.ndarray:
        """Partial-wave weights ``a(q) exp(−2πi q·r₀)`` (P, Q) for probe ``positions`` (P, 2) Å."""
        coefficients = self.probe.fourier_coefficients(self.grid, np, defocus_offset)
        a = coefficients[self.directions[:, 0] % self.grid.gpts[0], self.directions[:, 1] % self.grid.gpts[1]]
        a = a / math.sqrt(float(np.sum(np.abs(a) ** 2)))
        positions = np.asarray(positions, dtype=float).reshape(-1, 2)
        return a[None, :] * np.exp(-2j * math.pi * positions @ self._q.T)

    def amplitudes(self, positions, thickness_index: int, defocus_offset: float = 0.0) -> np.ndarray:
        """Diffraction amplitudes (P, nx, ny), FFT order, ``Σ|·|² = 1`` per probe, at one defocus."""
        nx, ny = self.grid.gpts
        out = np.zeros((len(positions), nx * ny), dtype=np.complex128)
        out[:, self.pixels] = self.weights(positions, defocus_offset) @ self._matrix[thickness_index]
        return out.reshape(len(positions), nx, ny)

    def intensities(self, positions, thickness_index: int) -> np.ndarray:
        """Diffraction intensities (P, nx, ny), FFT order, fractions of the beam (focal-spread averaged)."""
        nx, ny = self.grid.gpts
        defoci, dweights = self.probe.defocus_samples()
        out = np.zeros((len(positions), nx * ny))
        for defocus, weight in zip(defoci, dweights):
            psi = self.weights(positions, float(defocus)) @ self._matrix[thickness_index]
            out[:, self.pixels] += float(weight) * (psi.real**2 + psi.imag**2)
        return out.reshape(len(positions), nx, ny)


class BlochEngine(Engine):
    """A :class:`ConvergentBeamSolution` as a solver engine (:mod:`temsim.solvers.engine`).

    Every thickness comes from the same solution, so a scan is always a thickness series.
    A perfect crystal has one configuration; its elastic part is the whole signal.
    """

    name = "bloch"
    series = True

    def __init__(self, solution: ConvergentBeamSolution, dtype: str = "complex64"):
        self.solution = solution
        self.detector_grid = solution.grid
        self.thicknesses = np.asarray(solution.thickness, dtype=float)
        self.dtype = dtype
        self._real = np.float32 if dtype == "complex64" else np.float64

    def _amplitudes(self, positions, defocus: float):
        for t in range(len(self.thicknesses)):
            yield t, self.solution.amplitudes(positions, t, defocus)

    def intensities(self, config_index: int, positions, defocus: float):
        for t, psi in self._amplitudes(positions, defocus):
            yield t, (psi.real**2 + psi.imag**2).astype(self._real)

    def amplitudes(self, config_index: int, positions, defocus: float):
        for t, psi in self._amplitudes(positions, defocus):
            yield t, psi.astype(self.dtype)

    def attrs(self) -> dict:
        return _attrs(self.solution)


def solve_convergent_beam(
    probe,
    atoms,
    zone_axis=(0, 0, 1),
    thickness=(100.0,),
    *,
    repetitions=(4, 4),
    sampling=None,
    g_max: float | None = 3.0,
    excitation_error_max: float | None = None,
    parametrization="lobato",
    b_factors=None,
    device: str = "cpu",
    potential_cutoff: float | None = None,
    holz: bool = False,
    holz_slice: float | None = None,
) -> ConvergentBeamSolution:
    """Solve the Bloch problem for every partial wave of ``probe`` (see module docstring).

    Parameters
    ----------
    probe : Probe
        Energy (eV), semiangle (mrad), aberrations, tilt (mrad), focal spread.
    atoms : ase.Atoms
        Bulk crystal, periodic in 3-D.
    zone_axis : (int, int, int)
        [uvw] in the basis of ``atoms.cell``.
    thickness : array of float
        Å (≥ 0).
    repetitions : (int, int)
        Unit cells of the zone-axis cell along x and y in the periodic supercell: the aperture
        is sampled at the supercell's reciprocal spacing (more repetitions → more directions,
        cost ∝ their number).
    sampling : float, optional
        Grid sampling (Å), default 0.05 Å.
    g_max, excitation_error_max, parametrization, b_factors, device, potential_cutoff, holz, holz_slice
        As for :func:`temsim.solvers.bloch.solve_bloch`; beams are selected per direction
        (|g| ≤ g_max relative to that partial wave).
    """
    from temsim.waves import Probe

    if not isinstance(probe, Probe):
        raise InputError(f"expected a temsim.Probe, got {type(probe).__name__}")
    t = _check_thickness(thickness)
    reps = _check_repetitions(repetitions)
    crystal = orient_crystal(atoms, zone_axis)
    extent = (crystal.extent[0] * reps[0], crystal.extent[1] * reps[1])
    grid = Grid.from_sampling(extent, 0.05 if sampling is None else sampling)
    grid.check_angle(probe.semiangle_cutoff, probe.energy, "the probe's convergence semiangle")
    coefficients = probe.fourier_coefficients(grid, np)
    inside = np.abs(coefficients) > 1e-12 * np.abs(coefficients).max()
    ii, jj = np.nonzero(inside)
    nx, ny = grid.gpts
    directions = np.stack([np.where(ii > nx // 2, ii - nx, ii), np.where(jj > ny // 2, jj - ny, jj)], axis=1)
    lam = wavelength(probe.energy)
    solutions = []
    for i, j in directions:
        tilt = (probe.tilt[0] + i / extent[0] * lam * 1e3, probe.tilt[1] + j / extent[1] * lam * 1e3)
        solutions.append(
            solve_bloch(
                None,
                probe.energy,
                zone_axis,
                g_max=g_max,
                excitation_error_max=excitation_error_max,
                tilt=tilt,
                parametrization=parametrization,
                b_factors=b_factors,
                device=device,
                potential_cutoff=potential_cutoff,
                crystal=crystal,
                holz=holz,
                holz_slice=holz_slice,
            )
        )
    return ConvergentBeamSolution(probe, crystal, reps, grid, directions, solutions, t)


def bloch_cbed(
    probe,
    atoms,
    zone_axis=(0, 0, 1),
    thickness=(100.0,),
    *,
    position=(0.0, 0.0),
    repetitions=(4, 4),
    max_angle: float | None = None,
    **kwargs,
) -> xr.DataArray:
    """Convergent-beam diffraction pattern(s) of a perfect crystal by Bloch waves.

    Parameters
    ----------
    probe : Probe
    atoms : ase.Atoms
    zone_axis : (int, int, int)
    thickness : float or array of float
        Å.
    position : (float, float)
        Probe position (Å) in the supercell (matters only where discs overlap).
    repetitions : (int, int)
        Supercell size in zone-axis cells (sets the angular sampling of the discs).
    max_angle : float, optional
        Crop to this angle (mrad); default the grid's band limit.
    **kwargs
        Passed to :func:`solve_convergent_beam`.

    Returns
    -------
    DataArray
        Dims (``thickness``, ``kx``, ``ky``) in 1/Å, centred (zero frequency in the middle),
        fractions of the incident beam per pixel; float64.
    """
    t = _check_thickness(thickness)
    sol = solve_convergent_beam(probe, atoms, zone_axis, t, repetitions=repetitions, **kwargs)
    grid = sol.grid
    patterns = np.stack([sol.intensities(np.asarray(position, dtype=float)[None], i)[0] for i in range(len(t))])
    patterns = np.fft.fftshift(patterns, axes=(-2, -1))
    kx = np.fft.fftshift(grid.kx())
    ky = np.fft.fftshift(grid.ky())
    limit = grid.antialias_cutoff if max_angle is None else max_angle * 1e-3 / wavelength(probe.energy)
    sx = np.abs(kx) <= limit * (1 + 1e-9)
    sy = np.abs(ky) <= limit * (1 + 1e-9)
    attrs = _attrs(sol)
    attrs.update(signal="diffraction", units="fraction of incident beam", position=list(map(float, position)))
    return xr.DataArray(
        patterns[:, sx][:, :, sy],
        dims=("thickness", "kx", "ky"),
        coords={
            "thickness": ("thickness", t, {"units": "Å"}),
            "kx": ("kx", kx[sx], {"units": "1/Å"}),
            "ky": ("ky", ky[sy], {"units": "1/Å"}),
        },
        attrs=attrs,
        name="cbed",
    )


def bloch_scan(
    probe,
    atoms,
    detectors: Mapping[str, object],
    zone_axis=(0, 0, 1),
    thickness=(100.0,),
    *,
    scan=None,
    repetitions=(4, 4),
    solution=None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = True,
    settings: ExecutionSettings | None = None,
    batch_size: int | None = None,
    **kwargs,
) -> xr.Dataset:
    """STEM signals of a perfect crystal by Bloch waves, for every thickness at once.

    Parameters
    ----------
    probe : Probe
    atoms : ase.Atoms
    detectors : mapping of str to detector
        The STEM detectors of :mod:`temsim.detectors` (e.g. ``{"HAADF": AnnularDetector(70, 200)}``).
    zone_axis : (int, int, int)
    thickness : array of float
        Å.
    scan : GridScan, LineScan or CustomScan, optional
        Positions in the supercell (default: the whole supercell at the probe's Nyquist step).
    repetitions : (int, int)
        Supercell size in zone-axis cells.
    solution : ConvergentBeamSolution, optional
        Re-use an earlier :func:`solve_convergent_beam` (its thicknesses; ``thickness``,
        ``repetitions`` and ``kwargs`` must then be left out).
    output, overwrite, resume
        Stream to a NetCDF file through a crash-safe store, as :func:`temsim.scan`.
    settings : ExecutionSettings, optional
        Batch size, memory limit, progress (the assembly runs on the host).
    batch_size : int, optional
        Probe positions assembled together (kept for existing scripts; or ``settings``).
    **kwargs
        Passed to :func:`solve_convergent_beam`.

    Returns
    -------
    xarray.Dataset
        One variable per detector with dims (``thickness``, scan dims, detector dims);
        fractions of the incident beam.
    """
    from temsim.positions import GridScan, nyquist_sampling

    settings = resolve_settings(settings, batch_size=batch_size)
    if settings.device != "cpu":
        raise InputError("bloch_scan assembles probes on the host; use ExecutionSettings(device='cpu') (the default)")
    if not detectors:
        raise InputError("give at least one detector, e.g. detectors={'HAADF': temsim.AnnularDetector(70, 200)}")
    if solution is None:
        sol = solve_convergent_beam(
            probe, atoms, zone_axis, _check_thickness(thickness), repetitions=repetitions, **kwargs
        )
    else:
        if kwargs:
            raise InputError(f"with solution= the solver settings are the solution's; remove {sorted(kwargs)}")
        sol = solution
    resolved = (GridScan() if scan is None else scan).resolve(
        sol.grid.extent, nyquist_sampling(probe.semiangle_cutoff, probe.energy)
    )
    attrs = {"signal": "stem"}
    if resolved.kind == "grid":
        attrs["scan_step"] = list(resolved.step)
    return run_scan(
        BlochEngine(sol, settings.dtype),
        probe,
        detectors,
        resolved,
        settings=settings,
        output=output,
        overwrite=overwrite,
        resume=resume,
        attrs=attrs,
    )


def _attrs(sol: ConvergentBeamSolution) -> dict:
    probe = sol.probe
    return {
        "solver": "bloch",
        "energy": probe.energy,
        "semiangle_cutoff": probe.semiangle_cutoff,
        "tilt": list(probe.tilt),
        "zone_axis": list(sol.crystal.zone_axis),
        "repetitions": list(sol.repetitions),
        "sampling": list(sol.grid.sampling),
        "extent": list(sol.grid.extent),
        "gpts": list(sol.grid.gpts),
        "incident_directions": int(len(sol.directions)),
        "beams_per_direction_max": int(sol.num_beams.max()),
        "temsim_version": __version__,
    }
