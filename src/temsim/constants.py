"""Physical constants (CODATA 2018) and the electron-optical conversions built on them.

Every other module takes its constants from here, so the CODATA version is pinned in one
place. Energies are in eV, lengths in Å.

Examples
--------
>>> round(wavelength(200e3), 6)
0.025079
>>> f"{interaction_parameter(200e3):.4e}"
'7.2884e-04'
"""

from __future__ import annotations

import math

import numpy as np

from temsim.errors import InputError

#: Planck constant, J s (CODATA 2018, exact).
PLANCK = 6.62607015e-34
#: Elementary charge, C (CODATA 2018, exact).
ELEMENTARY_CHARGE = 1.602176634e-19
#: Electron rest mass, kg (CODATA 2018).
ELECTRON_MASS = 9.1093837015e-31
#: Speed of light in vacuum, m/s (exact).
SPEED_OF_LIGHT = 299792458.0
#: Bohr radius, Å (CODATA 2018).
BOHR_RADIUS = 0.529177210903
#: Electron rest energy m0 c², eV.
ELECTRON_REST_ENERGY = ELECTRON_MASS * SPEED_OF_LIGHT**2 / ELEMENTARY_CHARGE
#: Atomic mass unit, kg (CODATA 2018).
ATOMIC_MASS_UNIT = 1.66053906660e-27
#: Boltzmann constant, eV/K (exact).
BOLTZMANN_EV = 8.617333262e-5
#: Reduced Planck constant, eV s.
HBAR_EV = PLANCK / (2 * math.pi) / ELEMENTARY_CHARGE

#: Conversion of the electron scattering factor f_e (Å) to the area integral of the
#: projected potential (V·Å²): ∫ v_z dA = (h²/(2π m0 e)) f_e(0) = 47.878 V·Å² × f_e(0) [Å].
SCATTERING_FACTOR_TO_VOLT_A2 = PLANCK**2 / (2 * math.pi * ELECTRON_MASS * ELEMENTARY_CHARGE) * 1e20

#: 1 C/cm² expressed in e/Å².
COULOMB_PER_CM2_TO_E_PER_A2 = 1.0 / ELEMENTARY_CHARGE * 1e-16

_MAX_ENERGY = 10e6


def check_energy(energy: float) -> float:
    """Return ``energy`` (eV) as float after checking it is a plausible beam energy.

    Raises
    ------
    InputError
        If the energy is not finite, ≤ 0 eV or above 10 MeV.
    """
    try:
        value = float(energy)
    except (TypeError, ValueError):
        raise InputError(f"energy must be a number in eV, got {energy!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"energy must be a positive number of eV (e.g. 200e3 for 200 keV), got {energy!r}")
    if value > _MAX_ENERGY:
        raise InputError(f"energy {value:g} eV is above 10 MeV; energies are in eV (200 keV is 200e3), not keV or J")
    if value < 1e3:
        raise InputError(f"energy {value:g} eV is below 1 keV; energies are in eV (200 keV is 200e3), not keV")
    return value


def relativistic_factor(energy: float) -> float:
    """Lorentz factor γ = 1 + eE/(m0c²) of an electron accelerated through ``energy`` eV."""
    return 1.0 + check_energy(energy) / ELECTRON_REST_ENERGY


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength in Å.

    ``λ = h / sqrt(2 m0 e E (1 + e E / (2 m0 c²)))``

    Parameters
    ----------
    energy : float
        Acceleration energy in eV.

    Returns
    -------
    float
        Wavelength in Å (200 keV → 0.025079 Å).
    """
    energy = check_energy(energy)
    momentum = math.sqrt(2 * ELECTRON_MASS * ELEMENTARY_CHARGE * energy * (1 + energy / (2 * ELECTRON_REST_ENERGY)))
    return PLANCK / momentum * 1e10


def interaction_parameter(energy: float) -> float:
    """Interaction parameter σ = 2π γ m0 e λ / h² in rad/(V·Å).

    The transmission function of a slice is ``exp(i σ v_z)`` with ``v_z`` in V·Å.

    Parameters
    ----------
    energy : float
        Acceleration energy in eV.
    """
    lam = wavelength(energy) * 1e-10
    gamma = relativistic_factor(energy)
    sigma_si = 2 * math.pi * gamma * ELECTRON_MASS * ELEMENTARY_CHARGE * lam / PLANCK**2  # rad/(V m)
    return sigma_si * 1e-10


def mrad_to_inverse_angstrom(angle_mrad, energy: float):
    """Spatial frequency |k| (1/Å) of a scattering angle in mrad (small-angle, k = α/λ)."""
    return np.asarray(angle_mrad) * 1e-3 / wavelength(energy)


def inverse_angstrom_to_mrad(k, energy: float):
    """Scattering angle (mrad) of a spatial frequency |k| in 1/Å (small-angle, α = λk)."""
    return np.asarray(k) * wavelength(energy) * 1e3
