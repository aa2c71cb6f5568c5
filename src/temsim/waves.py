"""Incident waves: plane waves (HRTEM, diffraction) and aberrated probes (STEM).

A wave object is a small frozen description; it becomes an array only when a solver
builds it on the potential's grid, so one description serves every grid and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from temsim.backend import ifft2
from temsim.constants import check_energy, wavelength
from temsim.errors import GridMismatchError, InputError
from temsim.grid import Grid
from temsim.optics import Aberrations, aberration_phase, polar_frequencies, soft_aperture

__all__ = ["PlaneWave", "Probe", "check_tilt"]


def check_tilt(tilt) -> tuple[float, float]:
    """Validate a beam tilt ``(θx, θy)`` in mrad and return it as floats."""
    try:
        tx, ty = (float(t) for t in tilt)
    except (TypeError, ValueError):
        raise InputError(f"tilt must be two angles (θx, θy) in mrad, got {tilt!r}") from None
    if not (math.isfinite(tx) and math.isfinite(ty)):
        raise InputError(f"tilt must be finite, got {tilt!r}")
    if max(abs(tx), abs(ty)) > 200:
        raise InputError(f"tilt {tilt!r} mrad is beyond the paraxial range of multislice (|θ| ≤ 200 mrad)")
    return tx, ty


def _check_grid(grid: Grid | None, potential_grid: Grid) -> Grid:
    if grid is None:
        return potential_grid
    if not grid.same_as(potential_grid):
        raise GridMismatchError(
            f"the wave's grid ({grid.gpts[0]}×{grid.gpts[1]} points over {grid.extent[0]:.3f}×{grid.extent[1]:.3f} Å) "
            f"does not match the potential's ({potential_grid.gpts[0]}×{potential_grid.gpts[1]} over "
            f"{potential_grid.extent[0]:.3f}×{potential_grid.extent[1]:.3f} Å); leave the wave's grid unset so it "
            "takes the potential's, or build the potential with the same sampling/gpts"
        )
    return grid


@dataclass(frozen=True)
class PlaneWave:
    """A unit-amplitude plane wave incident along +z (optionally tilted).

    Parameters
    ----------
    energy : float
        Beam energy, eV.
    tilt : (float, float)
        Beam tilt ``(θx, θy)`` in mrad. Multislice applies it through the propagator, so the
        exit wave is expressed in the frame of the tilted beam (its diffraction pattern is
        centred on the transmitted beam).
    grid : Grid, optional
        Only to insist on a grid: a mismatch with the potential's raises
        :class:`~temsim.errors.GridMismatchError`. By default the wave takes the potential's grid.
    """

    energy: float
    tilt: tuple[float, float] = (0.0, 0.0)
    grid: Grid | None = None

    def __post_init__(self):
        object.__setattr__(self, "energy", check_energy(self.energy))
        object.__setattr__(self, "tilt", check_tilt(self.tilt))

    @property
    def wavelength(self) -> float:
        """Wavelength in Å."""
        return wavelength(self.energy)

    def resolve_grid(self, potential_grid: Grid) -> Grid:
        """The grid to use against a potential on ``potential_grid`` (checks a mismatch)."""
        return _check_grid(self.grid, potential_grid)

    def build(self, grid: Grid, xp=np, dtype: str = "complex64"):
        """The wave on ``grid`` as an ``(nx, ny)`` array of namespace ``xp`` (all ones)."""
        return xp.ones(grid.gpts, dtype=getattr(xp, dtype))


@dataclass(frozen=True)
class Probe:
    """A focused, aberrated STEM probe.

    Parameters
    ----------
    energy : float
        Beam energy, eV.
    semiangle_cutoff : float
        Convergence semiangle of the condenser aperture, mrad.
    aberrations : Aberrations
        Probe-forming lens aberrations (Å, rad); default aberration-free.
    aperture_edge : float or None
        Width (mrad) of the aperture's soft edge; ``None`` (default) uses one reciprocal
        pixel of the grid it is built on, ``0`` a hard edge.
    tilt : (float, float)
        Beam tilt in mrad (applied by the propagator, as for :class:`PlaneWave`).
    focal_spread : float
        Focal-spread standard deviation σ_f (Å). STEM averages intensities over
        ``focal_samples`` defoci with Gauss–Hermite weights (partial temporal coherence).
    focal_samples : int
        Number of defocus samples when ``focal_spread > 0``.
    grid : Grid, optional
        As for :class:`PlaneWave`.

    Notes
    -----
    The probe at position r₀ is ``ψ(r) = F⁻¹[A(k) exp(−iχ(k)) exp(−2πi k·r₀)]`` normalized
    so that ``Σ_pixels |ψ|² = 1``: detector signals are fractions of the incident beam.
    """

    energy: float
    semiangle_cutoff: float
    aberrations: Aberrations = field(default_factory=Aberrations)
    aperture_edge: float | None = None
    tilt: tuple[float, float] = (0.0, 0.0)
    focal_spread: float = 0.0
    focal_samples: int = 5
    grid: Grid | None = None

    def __post_init__(self):
        object.__setattr__(self, "energy", check_energy(self.energy))
        object.__setattr__(self, "tilt", check_tilt(self.tilt))
        try:
            alpha = float(self.semiangle_cutoff)
        except (TypeError, ValueError):
            raise InputError(f"semiangle_cutoff must be an angle in mrad, got {self.semiangle_cutoff!r}") from None
        if not (alpha > 0 and math.isfinite(alpha)):
            raise InputError(f"semiangle_cutoff must be a positive angle in mrad, got {self.semiangle_cutoff!r}")
        if alpha > 300:
            raise InputError(f"semiangle_cutoff {alpha} mrad is far beyond any probe-forming aperture (≤ 300 mrad)")
        object.__setattr__(self, "semiangle_cutoff", alpha)
        if not isinstance(self.aberrations, Aberrations):
            raise InputError("aberrations must be a temsim.Aberrations (e.g. Aberrations(C10=-50.0, C30=1e4))")
        if self.aperture_edge is not None and self.aperture_edge < 0:
            raise InputError(f"aperture_edge must be ≥ 0 mrad, got {self.aperture_edge!r}")
        if self.focal_spread < 0:
            raise InputError(f"focal_spread must be ≥ 0 Å, got {self.focal_spread!r}")
        if int(self.focal_samples) < 1:
            raise InputError(f"focal_samples must be ≥ 1, got {self.focal_samples!r}")

    @property
    def wavelength(self) -> float:
        """Wavelength in Å."""
        return wavelength(self.energy)

    def resolve_grid(self, potential_grid: Grid) -> Grid:
        """The grid to use against a potential on ``potential_grid`` (checks mismatch and angles)."""
        grid = _check_grid(self.grid, potential_grid)
        grid.check_angle(self.semiangle_cutoff, self.energy, "the probe's convergence semiangle")
        return grid

    def edge(self, grid: Grid) -> float:
        """Aperture soft-edge width (mrad) used on ``grid``."""
        if self.aperture_edge is not None:
            return float(self.aperture_edge)
        return max(grid.reciprocal_sampling) * self.wavelength * 1e3

    def fourier_coefficients(self, grid: Grid, xp=np, defocus_offset: float = 0.0):
        """``A(k) exp(−iχ(k))`` on the FFT grid (complex128 of namespace ``xp``), unnormalized."""
        kx = xp.asarray(grid.kx())[:, None]
        ky = xp.asarray(grid.ky())[None, :]
        k, phi = polar_frequencies(kx, ky)
        aberrations = self.aberrations
        if defocus_offset:
            aberrations = aberrations.with_defocus(aberrations.defocus + defocus_offset)
        amplitude = soft_aperture(k * self.wavelength * 1e3, self.semiangle_cutoff, self.edge(grid))
        chi = aberration_phase(k, phi, self.energy, aberrations)
        return amplitude * xp.exp(-1j * chi)

    def defocus_samples(self):
        """Defocus offsets (Å) and weights for focal-spread averaging (one sample if none)."""
        from temsim.optics import gauss_hermite_defoci

        if self.focal_spread == 0:
            return np.zeros(1), np.ones(1)
        return gauss_hermite_defoci(self.focal_spread, int(self.focal_samples))

    def spectrum(self, grid: Grid, positions, xp=np, dtype: str = "complex64", defocus_offset: float = 0.0, out=None):
        """Fourier coefficients of probes at ``positions`` (Å, shape (n, 2)), shape (n, nx, ny).

        Scaled so that an *unnormalized* inverse FFT (``FFTPlan.backward``) gives probes with
        ``Σ|ψ|² = 1``. With ``out`` (a numpy array of the right shape) the result is written
        in place, which keeps a batch's memory to one complex array.
        """
        coefficients = self.fourier_coefficients(grid, xp, defocus_offset)
        norm = xp.sqrt(xp.sum(xp.abs(coefficients) ** 2))
        n_pixels = grid.gpts[0] * grid.gpts[1]
        # Σ_r |F⁻¹ c|² = Σ_k |c|² / N; the unnormalized inverse multiplies by N.
        coefficients = xp.astype(coefficients * (1.0 / (math.sqrt(n_pixels) * norm)), getattr(xp, dtype))
        positions = xp.asarray(np.asarray(positions, dtype=float).reshape(-1, 2))
        kx = xp.asarray(grid.kx())
        ky = xp.asarray(grid.ky())
        phase_x = xp.astype(xp.exp(-2j * math.pi * kx[None, :] * positions[:, 0:1]), getattr(xp, dtype))
        phase_y = xp.astype(xp.exp(-2j * math.pi * ky[None, :] * positions[:, 1:2]), getattr(xp, dtype))
        if out is not None and isinstance(out, np.ndarray):
            np.multiply(coefficients[None, :, :], phase_x[:, :, None], out=out)
            out *= phase_y[:, None, :]
            return out
        return coefficients[None, :, :] * phase_x[:, :, None] * phase_y[:, None, :]

    def build(self, grid: Grid, positions, xp=np, dtype: str = "complex64", defocus_offset: float = 0.0):
        """Probes at ``positions`` (Å, shape (n, 2)) as an ``(n, nx, ny)`` array, Σ|ψ|² = 1 each."""
        spectrum = self.spectrum(grid, positions, xp, "complex128", defocus_offset)
        n_pixels = grid.gpts[0] * grid.gpts[1]
        return xp.astype(ifft2(spectrum) * n_pixels, getattr(xp, dtype))

    def intensity(self, grid: Grid, position=(0.0, 0.0)):
        """Real-space intensity of one probe at ``position`` as a numpy ``(nx, ny)`` array."""
        wave = self.build(grid, np.asarray(position, dtype=float)[None, :], np, "complex128")[0]
        return np.abs(wave) ** 2
