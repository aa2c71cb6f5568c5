"""Frozen phonons: random thermal displacements of atoms, reproducible from a seed.

Each configuration displaces every atom by an independent Gaussian vector with standard
deviation σ per Cartesian direction (Å). σ comes from one of three sources:

* ``sigmas``: given directly, one value for all elements, one per element, or an
  anisotropic pair ``(σ_xy, σ_z)`` per element (in-plane vs along the beam);
* ``b_factors``: Debye–Waller B factors (Å²), ``σ² = ⟨u_x²⟩ = B / (8π²)`` [1]_ [2]_;
* ``debye_temperature``: the Debye model at the specimen ``temperature`` (K),
  :func:`debye_mean_square_displacement`.

Averaging intensities over such configurations is the frozen-phonon method [3]_.

Configurations are drawn with ``numpy.random.SeedSequence(seed).spawn(num_configs)`` and a
PCG64 generator per configuration, so configuration ``i`` is bit-identical on every machine
and can be drawn on its own (:meth:`FrozenPhonons.configuration`).

References
----------
.. [1] R. W. James, *The Optical Principles of the Diffraction of X-rays* (Bell, 1962), ch. 5;
   B. T. M. Willis and A. W. Pryor, *Thermal Vibrations in Crystallography* (CUP, 1975).
.. [2] L.-M. Peng, G. Ren, S. L. Dudarev and M. J. Whelan, "Debye–Waller factors and
   absorptive scattering factors of elemental crystals", Acta Cryst. A52, 456–470 (1996),
   doi:10.1107/S010876739600089X.
.. [3] R. F. Loane, P. Xu and J. Silcox, "Thermal vibrations in convergent-beam electron
   diffraction", Acta Cryst. A47, 267–278 (1991), doi:10.1107/S0108767390013538.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from temsim.constants import ATOMIC_MASS_UNIT, BOLTZMANN_EV, ELEMENTARY_CHARGE, HBAR_EV
from temsim.errors import InputError
from temsim.structure import as_atoms

__all__ = [
    "FrozenPhonons",
    "b_factor_to_sigma",
    "sigma_to_b_factor",
    "debye_mean_square_displacement",
    "debye_b_factor",
]

_EIGHT_PI2 = 8.0 * math.pi**2


def b_factor_to_sigma(b_factor):
    """Displacement standard deviation per direction σ (Å) from a Debye–Waller B (Å²).

    ``σ = sqrt(B / 8π²)``, since ``B = 8π² ⟨u_x²⟩`` for one Cartesian component.
    """
    b = np.asarray(b_factor, dtype=float)
    if np.any(~np.isfinite(b)) or np.any(b < 0):
        raise InputError(f"B factors must be finite and ≥ 0 Å², got {b_factor!r}")
    return np.sqrt(b / _EIGHT_PI2) if b.ndim else math.sqrt(float(b) / _EIGHT_PI2)


def sigma_to_b_factor(sigma):
    """Debye–Waller B (Å²) from the displacement standard deviation per direction σ (Å)."""
    s = np.asarray(sigma, dtype=float)
    if np.any(~np.isfinite(s)) or np.any(s < 0):
        raise InputError(f"σ must be finite and ≥ 0 Å, got {sigma!r}")
    return _EIGHT_PI2 * s**2 if s.ndim else _EIGHT_PI2 * float(s) ** 2


def _debye_integral_over_x2(x: float) -> float:
    """φ(x)/x = (1/x²) ∫₀ˣ t/(eᵗ − 1) dt, with φ the first Debye function (→ 0 as x → ∞)."""
    if x < 1e-3:  # series: φ(x) = 1 − x/4 + x²/36 − x⁴/3600
        return (1.0 - x / 4.0 + x * x / 36.0) / x
    if x > 60.0:  # tail e^{-x} below double precision relative to π²/6
        return (math.pi**2 / 6.0) / (x * x)
    from scipy.integrate import quad

    integral, _ = quad(lambda t: t / math.expm1(t) if t > 0 else 1.0, 0.0, x, epsabs=0, epsrel=1e-12, limit=200)
    return integral / (x * x)


def debye_mean_square_displacement(debye_temperature: float, temperature: float, mass: float) -> float:
    """Mean-square displacement ⟨u_x²⟩ (Å², one Cartesian direction) in the Debye model.

    Parameters
    ----------
    debye_temperature : float
        Θ_D in K (> 0). Use a Debye temperature fitted to Debye–Waller data where one exists;
        the calorimetric Θ_D can differ by 10–20 %.
    temperature : float
        Specimen temperature T in K (≥ 0; T = 0 gives the zero-point motion).
    mass : float
        Atomic mass M in atomic mass units (u).

    Returns
    -------
    float
        ⟨u_x²⟩ in Å².

    Notes
    -----
    With x = Θ_D/T and the first Debye function φ(x) = (1/x) ∫₀ˣ t/(eᵗ − 1) dt,

    .. math:: ⟨u_x^2⟩ = \\frac{3ħ^2}{M k_B Θ_D}\\left[\\frac{φ(x)}{x} + \\frac14\\right]
              = \\frac{3ħ^2 T}{M k_B Θ_D^2}\\left[φ(x) + \\frac{x}{4}\\right],

    i.e. ``B = 8π²⟨u_x²⟩ = (6h²T/(M k_B Θ_D²))[φ(x) + x/4]`` (James 1962; Willis & Pryor
    1975; the form tabulated by Peng et al. 1996). Limits: T ≫ Θ_D gives the classical
    ``3ħ²T/(M k_B Θ_D²)``; T = 0 gives the zero-point ``3ħ²/(4 M k_B Θ_D)``.

    Examples
    --------
    >>> round(8 * math.pi**2 * debye_mean_square_displacement(543.0, 300.0, 28.0855), 3)
    0.453
    """
    for name, value, lower in (("debye_temperature", debye_temperature, 0.0), ("mass", mass, 0.0)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > lower):
            raise InputError(f"{name} must be a positive number, got {value!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise InputError(f"temperature must be ≥ 0 K, got {temperature!r}")
    x = math.inf if temperature == 0 else debye_temperature / temperature
    bracket = 0.25 + (0.0 if math.isinf(x) else _debye_integral_over_x2(x))
    # ħ²/(M k_B Θ): (eV s)² / (kg · eV/K · K) = eV s²/kg → × e (J/eV) → m² → × 1e20 Å²
    prefactor = 3.0 * HBAR_EV**2 * ELEMENTARY_CHARGE / (mass * ATOMIC_MASS_UNIT * BOLTZMANN_EV * debye_temperature)
    return prefactor * bracket * 1e20


def debye_b_factor(debye_temperature: float, temperature: float, mass: float) -> float:
    """Debye–Waller B (Å²) = 8π²⟨u_x²⟩ in the Debye model (see :func:`debye_mean_square_displacement`)."""
    return _EIGHT_PI2 * debye_mean_square_displacement(debye_temperature, temperature, mass)


# --------------------------------------------------------------------------------------------


def _symbol(key) -> str:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 1 <= key < len(chemical_symbols):
        return chemical_symbols[int(key)]
    if isinstance(key, str) and key in atomic_numbers and atomic_numbers[key] > 0:
        return key
    raise InputError(f"unknown element {key!r} in the mapping: use symbols such as 'Si' or atomic numbers")


def _non_negative(value, what: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise InputError(f"{what} must be finite and ≥ 0, got {value!r}")
    return number


def _pair(value, what: str) -> tuple[float, float]:
    """(in-plane, along-beam) pair from a number or a 2-sequence."""
    if isinstance(value, (tuple, list, np.ndarray)):
        if len(value) != 2:
            raise InputError(f"{what} must be one number or a pair (in-plane, along the beam), got {value!r}")
        return (_non_negative(value[0], what), _non_negative(value[1], what))
    number = _non_negative(value, what)
    return (number, number)


def _normalize(source, what: str, allow_pairs: bool):
    """float, or a read-only tuple of (symbol, value) pairs sorted by symbol."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        if not source:
            raise InputError(f"{what} mapping is empty: give a value per element, e.g. {{'Si': ...}}")
        items = {}
        for key, value in source.items():
            symbol = _symbol(key)
            if symbol in items:
                raise InputError(f"element {symbol} appears twice in {what}")
            items[symbol] = (
                _pair(value, f"{what}[{symbol}]") if allow_pairs else _non_negative(value, f"{what}[{symbol}]")
            )
        return tuple(sorted(items.items()))
    if allow_pairs and isinstance(source, (tuple, list, np.ndarray)):
        return _pair(source, what)
    return _non_negative(source, what)


@dataclasses.dataclass(frozen=True, eq=True)
class FrozenPhonons:
    """Gaussian thermal displacements for frozen-phonon averaging.

    Give exactly one of ``sigmas``, ``b_factors`` or ``debye_temperature``.

    Parameters
    ----------
    sigmas : float or mapping, optional
        Standard deviation σ (Å) of the displacement along each Cartesian direction: one
        number for every element, a mapping ``element → σ``, or ``element → (σ_xy, σ_z)``
        (in-plane, along the beam). A single pair ``(σ_xy, σ_z)`` applies to all elements.
    b_factors : float or mapping, optional
        Debye–Waller B factors in Å² (``σ² = B/8π²``), as a number, ``element → B``, or
        ``element → (B_xy, B_z)``.
    debye_temperature : float or mapping, optional
        Debye temperature Θ_D in K (number or ``element → Θ_D``); σ follows from the
        Debye model at ``temperature`` with each atom's mass (``atoms.get_masses()``).
    temperature : float
        Specimen temperature in K (used with ``debye_temperature`` only). Default 300 K.
    num_configs : int
        Number of configurations (≥ 1).
    seed : int
        Non-negative seed; configuration ``i`` uses ``SeedSequence(seed).spawn(num_configs)[i]``.
    displace_z : bool
        False keeps every z coordinate fixed (in-plane displacements only).

    Notes
    -----
    Mappings are stored normalized, as sorted tuples of ``(symbol, value)`` pairs (σ and B
    values as ``(in-plane, along-beam)`` pairs), so the dataclass is immutable and hashable;
    :meth:`to_dict` gives plain dictionaries for provenance.

    Examples
    --------
    >>> from temsim.structure import srtio3
    >>> phonons = FrozenPhonons(sigmas={"Sr": 0.08, "Ti": 0.06, "O": (0.09, 0.07)}, num_configs=4, seed=1)
    >>> len(phonons), phonons.sigma_per_atom(srtio3()).shape
    (4, (5, 3))
    >>> cells = list(phonons.configurations(srtio3()))
    """

    sigmas: float | Mapping | None = None
    b_factors: float | Mapping | None = None
    debye_temperature: float | Mapping | None = None
    temperature: float = 300.0
    num_configs: int = 8
    seed: int = 0
    displace_z: bool = True

    def __post_init__(self):
        given = [name for name in ("sigmas", "b_factors", "debye_temperature") if getattr(self, name) is not None]
        if len(given) != 1:
            detail = "none was given" if not given else f"got {', '.join(given)}"
            raise InputError(
                f"give exactly one of sigmas (Å), b_factors (Å²) or debye_temperature (K) to FrozenPhonons; {detail}"
            )
        object.__setattr__(self, "sigmas", _normalize(self.sigmas, "sigmas", allow_pairs=True))
        object.__setattr__(self, "b_factors", _normalize(self.b_factors, "b_factors", allow_pairs=True))
        theta = _normalize(self.debye_temperature, "debye_temperature", allow_pairs=False)
        if theta is not None:
            values = [v for _, v in theta] if isinstance(theta, tuple) else [theta]
            if min(values) <= 0:
                raise InputError(f"Debye temperatures must be > 0 K, got {self.debye_temperature!r}")
        object.__setattr__(self, "debye_temperature", theta)
        temperature = _non_negative(self.temperature, "temperature (K)")
        object.__setattr__(self, "temperature", temperature)
        if (
            isinstance(self.num_configs, bool)
            or not isinstance(self.num_configs, (int, np.integer))
            or self.num_configs < 1
        ):
            raise InputError(f"num_configs must be an integer ≥ 1, got {self.num_configs!r}")
        object.__setattr__(self, "num_configs", int(self.num_configs))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer (record it to reproduce), got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if not isinstance(self.displace_z, (bool, np.bool_)):
            raise InputError(f"displace_z must be True or False, got {self.displace_z!r}")
        object.__setattr__(self, "displace_z", bool(self.displace_z))

    # -- sizes and seeds ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_configs

    def seeds(self) -> list[np.random.SeedSequence]:
        """The per-configuration seed sequences ``SeedSequence(seed).spawn(num_configs)``."""
        return np.random.SeedSequence(self.seed).spawn(self.num_configs)

    @property
    def model(self) -> str:
        """Which source defines σ: ``"sigmas"``, ``"b_factors"`` or ``"debye"``."""
        if self.sigmas is not None:
            return "sigmas"
        return "b_factors" if self.b_factors is not None else "debye"

    def to_dict(self) -> dict:
        """JSON-ready description (for provenance attrs): every field plus the model name."""

        def plain(value):
            if isinstance(value, tuple) and value and isinstance(value[0], tuple) and isinstance(value[0][0], str):
                return {k: list(v) if isinstance(v, tuple) else v for k, v in value}
            return list(value) if isinstance(value, tuple) else value

        out = {field.name: plain(getattr(self, field.name)) for field in dataclasses.fields(self)}
        out["model"] = self.model
        return out

    # -- σ ------------------------------------------------------------------------------------

    def sigma_per_atom(self, atoms: Atoms) -> np.ndarray:
        """Standard deviation of the displacement of each atom along x, y, z.

        Parameters
        ----------
        atoms : ase.Atoms
            Structure to displace.

        Returns
        -------
        (N, 3) ndarray of float64
            σ in Å (the z column is 0 when ``displace_z`` is False).

        Raises
        ------
        InputError
            If an element of ``atoms`` has no entry in the mapping (lists the missing ones).
        """
        symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
        sigma = np.zeros((len(atoms), 3))
        if self.model == "debye":
            theta = self.debye_temperature
            thetas = (
                self._lookup(theta, symbols, "debye_temperature")
                if isinstance(theta, tuple)
                else np.full(len(atoms), theta)
            )
            masses = atoms.get_masses()
            cache: dict[tuple[float, float], float] = {}
            for i, (t, m) in enumerate(zip(thetas, masses)):
                key = (float(t), float(m))
                if key not in cache:
                    cache[key] = math.sqrt(debye_mean_square_displacement(key[0], self.temperature, key[1]))
                sigma[i] = cache[key]
        else:
            source = self.sigmas if self.model == "sigmas" else self.b_factors
            name = "sigmas" if self.model == "sigmas" else "b_factors"
            if isinstance(source, tuple) and source and isinstance(source[0], tuple):
                pairs = self._lookup(source, symbols, name)
            else:
                pair = source if isinstance(source, tuple) else (source, source)
                pairs = [pair] * len(atoms)
            pairs = np.asarray(pairs, dtype=float).reshape(len(atoms), 2)
            sigma[:, :2] = pairs[:, :1]
            sigma[:, 2] = pairs[:, 1]
            if self.model == "b_factors":
                sigma = np.sqrt(sigma / _EIGHT_PI2)
        if not self.displace_z:
            sigma[:, 2] = 0.0
        return sigma

    @staticmethod
    def _lookup(table: tuple, symbols: np.ndarray, name: str) -> list:
        mapping = dict(table)
        missing = sorted(set(symbols) - set(mapping))
        if missing:
            raise InputError(
                f"{name} has no value for {', '.join(missing)} (it has {', '.join(mapping)}); "
                f"add {'them' if len(missing) > 1 else 'it'} to the mapping"
            )
        return [mapping[s] for s in symbols]

    # -- configurations -------------------------------------------------------------------------

    def displacements(self, atoms: Atoms, index: int) -> np.ndarray:
        """Displacements (N, 3) in Å of configuration ``index`` (0 ≤ index < num_configs).

        Three standard normal numbers are drawn per atom in every case, so the in-plane
        displacements of a configuration do not depend on ``displace_z``.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.num_configs:
            raise InputError(f"configuration index must be an integer in [0, {self.num_configs}), got {index!r}")
        sigma = self.sigma_per_atom(atoms)
        rng = np.random.default_rng(self.seeds()[int(index)])
        return rng.standard_normal((len(atoms), 3)) * sigma

    def configuration(self, atoms: Atoms, index: int) -> Atoms:
        """Displaced copy of ``atoms`` for configuration ``index`` (input never modified).

        Positions are not wrapped into the cell (:func:`temsim.structure.prepare_for_slicing`
        wraps them laterally). ``info["phonon_configuration"]`` and ``info["phonon_seed"]``
        record the index and the seed.
        """
        atoms = as_atoms(atoms)
        shift = self.displacements(atoms, index)
        positions = atoms.positions + shift
        if not self.displace_z:
            positions[:, 2] = atoms.positions[:, 2]
        atoms.positions = positions
        atoms.info["phonon_configuration"] = int(index)
        atoms.info["phonon_seed"] = self.seed
        return atoms

    def configurations(self, atoms: Atoms) -> Iterator[Atoms]:
        """Iterate over the ``num_configs`` displaced copies of ``atoms`` in index order."""
        atoms = as_atoms(atoms)
        self.sigma_per_atom(atoms)  # fail before the first configuration if an element is missing
        for index in range(self.num_configs):
            yield self.configuration(atoms, index)
