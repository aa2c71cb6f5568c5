"""Electron optics: aberrations (Krivanek notation), apertures, envelopes and the CTF.

Conventions (see docs/conventions.md)
-------------------------------------
* Aberration coefficients ``Cnm`` are in Å and their angles ``phinm`` in rad, following
  Krivanek/Haider: ``χ(α, φ) = (2π/λ) Σ Cnm α^(n+1) cos(m(φ − φnm)) / (n+1)``, α = λ|k|.
* ``defocus = −C10``: a positive defocus is an *underfocus*, the usual HRTEM setting
  (Scherzer defocus is positive for positive Cs).
* A lens multiplies the wave's Fourier transform by ``A(k) exp(−iχ(k))``. With this sign a
  weak phase object imaged at Scherzer defocus shows atoms dark.
* Focal spread is the *standard deviation* σ_f (Å) of the defocus distribution; the temporal
  envelope is ``exp(−½(πλσ_f)²|k|⁴)`` (= ``exp(−(½πλΔ|k|²)²)`` for the 1/e half-width
  Δ = √2 σ_f, the form some codes use: convert before comparing).
* Angular (source) spread is the 1/e half-width θ_s (mrad) of a Gaussian distribution of
  illumination angles; the spatial envelope is ``exp(−(θ_s/2)² |∇_α χ|²)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from temsim.backend import array_namespace
from temsim.constants import check_energy, wavelength
from temsim.errors import InputError

__all__ = [
    "Aberrations",
    "aberration_phase",
    "aberration_gradient",
    "scherzer_defocus",
    "soft_aperture",
    "temporal_envelope",
    "spatial_envelope",
    "contrast_transfer_function",
    "polar_frequencies",
]

# (n, m) of every coefficient up to fifth order; m = 0 terms are round and have no angle.
_ORDERS = [
    (1, 0),
    (1, 2),
    (2, 1),
    (2, 3),
    (3, 0),
    (3, 2),
    (3, 4),
    (4, 1),
    (4, 3),
    (4, 5),
    (5, 0),
    (5, 2),
    (5, 4),
    (5, 6),
]


@dataclass(frozen=True)
class Aberrations:
    """Coherent axial aberrations up to fifth order (Krivanek notation).

    Coefficients ``Cnm`` in Å, angles ``phinm`` in rad. ``C10`` is *minus* the defocus
    (``defocus = −C10``); ``C30`` is the spherical aberration Cs, ``C50`` is C5.
    Use :meth:`from_defocus` to give a defocus and Cs directly.

    Examples
    --------
    >>> ab = Aberrations.from_defocus(defocus=100.0, Cs=1e4)
    >>> ab.C10, ab.C30
    (-100.0, 10000.0)
    """

    C10: float = 0.0
    C12: float = 0.0
    phi12: float = 0.0
    C21: float = 0.0
    phi21: float = 0.0
    C23: float = 0.0
    phi23: float = 0.0
    C30: float = 0.0
    C32: float = 0.0
    phi32: float = 0.0
    C34: float = 0.0
    phi34: float = 0.0
    C41: float = 0.0
    phi41: float = 0.0
    C43: float = 0.0
    phi43: float = 0.0
    C45: float = 0.0
    phi45: float = 0.0
    C50: float = 0.0
    C52: float = 0.0
    phi52: float = 0.0
    C54: float = 0.0
    phi54: float = 0.0
    C56: float = 0.0
    phi56: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InputError(f"aberration {f.name} must be a number (Å or rad), got {value!r}") from None
            if not math.isfinite(value):
                raise InputError(f"aberration {f.name} must be finite, got {value!r}")
            object.__setattr__(self, f.name, value)

    @classmethod
    def from_defocus(cls, defocus: float = 0.0, Cs: float = 0.0, C5: float = 0.0, **others) -> Aberrations:
        """Aberrations from a defocus (Å, positive = underfocus), Cs (Å) and C5 (Å)."""
        return cls(C10=-float(defocus), C30=float(Cs), C50=float(C5), **others)

    @property
    def defocus(self) -> float:
        """Defocus in Å (``−C10``; positive = underfocus)."""
        return -self.C10

    @property
    def Cs(self) -> float:
        """Spherical aberration C30 in Å."""
        return self.C30

    def with_defocus(self, defocus: float) -> Aberrations:
        """Copy with ``C10 = −defocus``."""
        from dataclasses import replace

        return replace(self, C10=-float(defocus))

    def nonzero(self) -> dict[str, float]:
        """The non-zero coefficients and angles (for attrs and reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != 0.0}

    def terms(self):
        """Yield ``(n, m, C, phi)`` for every non-zero coefficient."""
        for n, m in _ORDERS:
            c = getattr(self, f"C{n}{m}")
            if c != 0.0:
                phi = getattr(self, f"phi{n}{m}") if m else 0.0
                yield n, m, c, phi


def polar_frequencies(kx, ky):
    """|k| (1/Å) and azimuth φ (rad) of frequency grids ``kx[:, None]``, ``ky[None, :]``."""
    xp = array_namespace(kx, ky)
    k = xp.sqrt(kx**2 + ky**2)
    phi = xp.atan2(ky, kx)
    return k, phi


def aberration_phase(k, phi, energy: float, aberrations: Aberrations):
    """Aberration phase χ(k, φ) in rad.

    Parameters
    ----------
    k : array
        Spatial frequency magnitude |k| in 1/Å.
    phi : array
        Azimuth in rad (same shape as ``k`` or broadcastable).
    energy : float
        Beam energy in eV.
    aberrations : Aberrations
        Coefficients in Å, angles in rad.
    """
    xp = array_namespace(k, phi)
    lam = wavelength(energy)
    alpha = k * lam
    chi = xp.zeros_like(alpha * phi)
    for n, m, c, phi_nm in aberrations.terms():
        term = c * alpha ** (n + 1) / (n + 1)
        if m:
            term = term * xp.cos(m * (phi - phi_nm))
        chi = chi + term
    return (2 * math.pi / lam) * chi


def aberration_gradient(k, phi, energy: float, aberrations: Aberrations):
    """Gradient of χ with respect to the angle α (rad per rad), as ``(d_alpha, d_phi_over_alpha)``.

    Returns the radial derivative ∂χ/∂α and the azimuthal one (1/α)∂χ/∂φ; the spatial
    envelope uses ``|∇_α χ|² = (∂χ/∂α)² + ((1/α)∂χ/∂φ)²``.
    """
    xp = array_namespace(k, phi)
    lam = wavelength(energy)
    alpha = k * lam
    radial = xp.zeros_like(alpha * phi)
    azimuthal = xp.zeros_like(alpha * phi)
    for n, m, c, phi_nm in aberrations.terms():
        base = c * alpha**n
        if m:
            radial = radial + base * xp.cos(m * (phi - phi_nm))
            azimuthal = azimuthal - base * m * xp.sin(m * (phi - phi_nm)) / (n + 1)
        else:
            radial = radial + base
    scale = 2 * math.pi / lam
    return scale * radial, scale * azimuthal


def scherzer_defocus(Cs: float, energy: float, convention: Literal["scherzer", "extended"] = "scherzer") -> float:
    """Scherzer defocus in Å (positive = underfocus, i.e. ``C10 = −defocus``).

    ``"scherzer"``: Δf = √(4/3 · Cs λ) (Scherzer 1949, the broad first passband);
    ``"extended"``: Δf = √(3/2 · Cs λ) ("extended Scherzer", ≈ 1.22√(Csλ)).
    Codes differ on this; the convention used is recorded wherever a result depends on it.

    >>> round(scherzer_defocus(1.2e7, 200e3), 1)  # Cs = 1.2 mm at 200 keV
    633.5
    """
    factors = {"scherzer": 4.0 / 3.0, "extended": 1.5}
    if convention not in factors:
        raise InputError(f"Scherzer convention must be one of {sorted(factors)}, got {convention!r}")
    if Cs <= 0:
        raise InputError(f"Scherzer defocus needs a positive Cs (Å), got {Cs!r}")
    return math.sqrt(factors[convention] * Cs * wavelength(energy))


def soft_aperture(alpha_mrad, semiangle_cutoff: float, edge: float = 0.0):
    """Aperture transmission for angles ``alpha_mrad`` (mrad).

    A linear ramp of full width ``edge`` (mrad) centred on the cutoff: 1 inside
    ``cutoff − edge/2``, 0 outside ``cutoff + edge/2``. ``edge = 0`` is a hard aperture.
    A ramp about one reciprocal pixel wide makes the aperture's area (and so the probe's
    normalization and BF signal) vary smoothly with the cutoff instead of in pixel steps.
    """
    xp = array_namespace(alpha_mrad)
    if semiangle_cutoff <= 0:
        raise InputError(f"semiangle_cutoff must be a positive angle in mrad, got {semiangle_cutoff!r}")
    if edge < 0:
        raise InputError(f"aperture edge must be ≥ 0 mrad, got {edge!r}")
    if edge == 0:
        return xp.astype(alpha_mrad <= semiangle_cutoff, alpha_mrad.dtype)
    return xp.clip((semiangle_cutoff - alpha_mrad) / edge + 0.5, 0.0, 1.0)


def temporal_envelope(k, energy: float, focal_spread: float):
    """Temporal-coherence envelope ``exp(−½(πλσ_f)²|k|⁴)`` for focal-spread s.d. σ_f (Å)."""
    if focal_spread < 0:
        raise InputError(f"focal_spread must be ≥ 0 Å (a standard deviation), got {focal_spread!r}")
    xp = array_namespace(k)
    lam = wavelength(energy)
    return xp.exp(-0.5 * (math.pi * lam * focal_spread) ** 2 * k**4)


def spatial_envelope(k, phi, energy: float, aberrations: Aberrations, angular_spread: float):
    """Spatial-coherence envelope ``exp(−(θ_s/2)²|∇_α χ|²)`` for a 1/e angular spread θ_s (mrad)."""
    if angular_spread < 0:
        raise InputError(f"angular_spread must be ≥ 0 mrad, got {angular_spread!r}")
    xp = array_namespace(k, phi)
    radial, azimuthal = aberration_gradient(k, phi, energy, aberrations)
    theta = angular_spread * 1e-3
    return xp.exp(-((theta / 2) ** 2) * (radial**2 + azimuthal**2))


def contrast_transfer_function(
    kx,
    ky,
    energy: float,
    aberrations: Aberrations,
    semiangle_cutoff: float | None = None,
    focal_spread: float = 0.0,
    angular_spread: float = 0.0,
    aperture_edge: float = 0.0,
):
    """Complex lens transfer ``A(k) E_t(k) E_s(k) exp(−iχ(k))`` on a frequency grid.

    Parameters
    ----------
    kx, ky : array
        Frequencies (1/Å) broadcastable to the grid, e.g. ``kx[:, None]``, ``ky[None, :]``.
    energy : float
        Beam energy, eV.
    aberrations : Aberrations
        Lens aberrations (Å, rad).
    semiangle_cutoff : float, optional
        Objective aperture semiangle, mrad (``None``: no aperture).
    focal_spread : float
        Focal-spread standard deviation σ_f, Å.
    angular_spread : float
        1/e half-width of the illumination angles, mrad.
    aperture_edge : float
        Soft-edge width of the aperture, mrad.

    Returns
    -------
    complex array
        The transfer function; its imaginary part's negative, ``sin χ`` times the envelopes,
        is the phase-contrast transfer of a weak phase object.
    """
    check_energy(energy)
    k, phi = polar_frequencies(kx, ky)
    xp = array_namespace(k)
    chi = aberration_phase(k, phi, energy, aberrations)
    amplitude = xp.ones_like(k)
    if semiangle_cutoff is not None:
        amplitude = soft_aperture(k * wavelength(energy) * 1e3, semiangle_cutoff, aperture_edge)
    if focal_spread:
        amplitude = amplitude * temporal_envelope(k, energy, focal_spread)
    if angular_spread:
        amplitude = amplitude * spatial_envelope(k, phi, energy, aberrations, angular_spread)
    return amplitude * xp.exp(-1j * chi)


def gauss_hermite_defoci(focal_spread: float, num: int):
    """Defocus offsets (Å) and weights that average over a Gaussian focal spread (s.d. σ_f).

    Gauss–Hermite quadrature: ``Σ w_i f(δ_i) ≈ ⟨f(δ)⟩`` for δ ~ N(0, σ_f²), exact for
    polynomials of degree < 2·num.
    """
    if num < 1:
        raise InputError(f"number of focal-spread samples must be ≥ 1, got {num!r}")
    nodes, weights = np.polynomial.hermite_e.hermegauss(num)
    return nodes * focal_spread, weights / weights.sum()
