"""Exit waves of both hypotheses in lockstep: diffraction patterns and state distances per probe position.

The planner's detectors see only intensities, one hypothesis at a time. The pixelated bound,
the joint dose of simultaneous detectors, the optimal-detector search and the quantum limit
need more: every diffraction pixel of every probe position (a 4D data set) and, for the quantum
limit, the complex exit waves of the feature-absent (H0) and feature-present (H1) specimens at
the same probe position. :func:`lockstep_pass` propagates each batch of probe positions
through H0 and H1 (one frozen-phonon configuration of each at a time, every focal-spread
defocus) and keeps

* the diffraction intensities of both hypotheses on the pixels within the band limit
  (fractions of the beam, float32, per configuration and probe position), and
* the state distance ``h = ½(‖ψ₀‖² + ‖ψ₁‖²) − |⟨ψ₀|ψ₁⟩|`` per configuration and position
  (:func:`temsim.quantum_limit.state_distance`), weighted over the defoci.

Memory: two float32 arrays of (configurations × positions × pixels); :func:`pass_bytes`
gives the estimate and :func:`lockstep_pass` refuses (:class:`~temsim.errors.MemoryLimitError`)
a pass that would not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from temsim.backend import to_numpy
from temsim.constants import wavelength
from temsim.detectors import PixelatedDetector
from temsim.memory import available_memory, require
from temsim.positions import nyquist_sampling
from temsim.potentials import Potential
from temsim.quantum_limit import state_distance
from temsim.settings import ExecutionSettings
from temsim.solvers.multislice import multislice
from temsim.solvers.stem import build_engine
from temsim.waves import PlaneWave

__all__ = ["ExitWaveData", "lockstep_pass", "pass_bytes", "plane_wave_distance"]


@dataclass(frozen=True)
class ExitWaveData:
    """What :func:`lockstep_pass` returns for one energy.

    Attributes
    ----------
    intensity : ndarray, float32, shape (2, configurations, positions, nkx, nky)
        Diffraction intensities of H0 (index 0) and H1 (index 1), fractions of the beam per
        pixel, on the pixels with ``|kx|``, ``|ky|`` within the band limit (centred, ascending k).
    distance : ndarray, float64, shape (configurations, positions)
        State distance h per configuration (H0 configuration i paired with H1 configuration i).
    kx, ky : ndarray
        Pixel frequencies (1/Å).
    alpha, phi : ndarray, shape (nkx, nky)
        Scattering angle (mrad) and azimuth (rad, from +kx) of every pixel.
    fft_index : (ndarray, ndarray)
        FFT-order indices of the kept pixels along x and y (to index a detector's weights).
    scan_x, scan_y : ndarray
        Probe positions (Å) of the grid scan; positions are ordered x-major.
    area : float
        Area per probe position (Å², the scan step area).
    energy : float
        Beam energy (eV).
    """

    intensity: np.ndarray
    distance: np.ndarray
    kx: np.ndarray
    ky: np.ndarray
    alpha: np.ndarray
    phi: np.ndarray
    fft_index: tuple
    scan_x: np.ndarray
    scan_y: np.ndarray
    area: float
    energy: float


def _pixels(grid, energy: float):
    compiled = PixelatedDetector().compile(grid, energy, np)
    kx, ky = compiled._ks
    lam_mrad = 1e3 * wavelength(energy)
    alpha = np.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2) * lam_mrad
    phi = np.arctan2(np.broadcast_to(ky[None, :], alpha.shape), np.broadcast_to(kx[:, None], alpha.shape))
    return compiled, kx, ky, alpha, phi


def pass_bytes(n_configurations: int, n_positions: int, n_pixels: int) -> int:
    """Bytes held by a lockstep pass: both hypotheses' float32 patterns plus one float64 working copy."""
    return (2 * 4 + 2 * 8) * n_configurations * n_positions * n_pixels


def lockstep_pass(
    probe,
    configurations: tuple,
    window,
    *,
    potential_keys: dict,
    settings: ExecutionSettings,
) -> ExitWaveData:
    """Diffraction patterns of both hypotheses and their state distance at every probe position.

    Parameters
    ----------
    probe : temsim.Probe
        The STEM probe (energy, aperture, aberrations, focal spread).
    configurations : (list of ase.Atoms, list of ase.Atoms)
        Frozen-phonon configurations of H0 and of H1 (the same number; configuration i of H0
        is paired with configuration i of H1 for the state distance).
    window : temsim.positions.GridScan
        Probe positions (the planner's scan window).
    potential_keys : dict
        Keyword arguments of :class:`temsim.Potential` (grid and slicing), as in the planner's
        simulations.
    settings : ExecutionSettings
        Device, precision, batch size.
    """
    configs0, configs1 = configurations
    potentials = [[Potential(atoms, **potential_keys) for atoms in configs] for configs in (configs0, configs1)]
    grid = probe.resolve_grid(potentials[0][0].grid)
    resolved = window.resolve(grid.extent, nyquist_sampling(probe.semiangle_cutoff, probe.energy))
    compiled, kx, ky, alpha, phi = _pixels(grid, probe.energy)
    n_conf, n_pos = len(configs0), len(resolved)
    require(
        pass_bytes(n_conf, n_pos, alpha.size),
        available_memory() // 2,
        f"the 4D data of the information pass ({n_conf} configurations × {n_pos} positions × {alpha.size} pixels)",
        "use a larger simulation.scan_step or a smaller simulation.window",
    )
    intensity = np.zeros((2, n_conf, n_pos) + alpha.shape, dtype=np.float32)
    distance = np.zeros((n_conf, n_pos))
    defoci, weights = probe.defocus_samples()
    quiet = settings.replace(progress=False)
    for c in range(n_conf):
        engines = [build_engine("multislice", probe, potentials[h][c], grid, quiet) for h in (0, 1)]
        batch = max(1, min(engines[0].batch_cap, 64))
        for start in range(0, n_pos, batch):
            positions = resolved.positions[start : start + batch]
            for defocus, weight in zip(defoci, weights):
                waves = []
                for h, engine in enumerate(engines):
                    *_, (_, amplitude) = engine.amplitudes(0, positions, float(defocus))
                    wave = np.array(to_numpy(amplitude), dtype=np.complex64, copy=True)
                    intensity[h, c, start : start + len(positions)] += float(weight) * _crop(compiled, wave)
                    waves.append(wave)
                distance[c, start : start + len(positions)] += float(weight) * state_distance(*waves)
    return ExitWaveData(
        intensity=intensity,
        distance=distance,
        kx=kx,
        ky=ky,
        alpha=alpha,
        phi=phi,
        fft_index=(np.asarray(compiled._ix), np.asarray(compiled._iy)),
        scan_x=resolved.x,
        scan_y=resolved.y,
        area=float(np.prod(resolved.step)),
        energy=float(probe.energy),
    )


def _crop(compiled, wave: np.ndarray) -> np.ndarray:
    """|ψ(k)|² on the kept pixels (float32)."""
    cropped = wave[:, compiled._ix][:, :, compiled._iy]
    return (cropped.real**2 + cropped.imag**2).astype(np.float32)


def plane_wave_distance(
    energy: float, configurations: tuple, *, potential_keys: dict, settings: ExecutionSettings
) -> tuple[np.ndarray, float]:
    """State distance of the plane-wave exit waves of H0 and H1 (HRTEM illumination).

    The exit waves are those of :func:`temsim.multislice` (1 per pixel in vacuum); with N
    pixels the per-electron states are ``ψ/√N`` over the cell of area A, so the quantum
    statistics per unit dose are ``j_Q = 8 A h(ψ/√N) = 8 a_pixel h(ψ)``.

    Returns
    -------
    (ndarray (configurations,), float)
        ``h`` of the raw exit waves per configuration pair, and the pixel area (Å²).
    """
    quiet = settings.replace(progress=False)
    distance = []
    for atoms0, atoms1 in zip(*configurations):
        waves = []
        for atoms in (atoms0, atoms1):
            potential = Potential(atoms, **potential_keys)
            waves.append(np.asarray(multislice(PlaneWave(energy=energy), potential, settings=quiet).values))
        distance.append(float(state_distance(*waves)))
    return np.asarray(distance), float(np.prod(potential.grid.sampling))
