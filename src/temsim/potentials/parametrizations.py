"""Electron scattering-factor parametrizations and the atomic potentials they imply.

Two published parametrizations of the elastic electron scattering factor ``f_e`` of neutral
atoms (Z = 1–103) are shipped as data (``potentials/*.json``, installed as
``temsim._tables``):

* ``"lobato"`` (default) — Lobato & Van Dyck (2014),
  ``f_e(g) = Σ_{i=1..5} a_i (2 + b_i g²) / (1 + b_i g²)²``;
* ``"kirkland"`` — Kirkland (2010), Appendix C,
  ``f_e(q) = Σ_{i=1..3} a_i / (q² + b_i) + Σ_{i=1..3} c_i exp(−d_i q²)``,

with ``g = q = 1/d = 2 sin(θ)/λ`` in 1/Å and ``f_e`` in Å.

Internally every element is a sum of three kinds of terms in ``q`` (1/Å), so each physical
quantity is written once:

``L(q) = A / (q² + B)``, ``L2(q) = A / (q² + B)²``, ``G(q) = A exp(−B q²)``.

Kirkland's terms are ``L`` (A = a_i, B = b_i) and ``G`` (A = c_i, B = d_i); Lobato's
``a (2 + b q²)/(1 + b q²)² = a/(1 + b q²) + a/(1 + b q²)²`` are ``L`` (A = a/b, B = 1/b) plus
``L2`` (A = a/b², B = 1/b).

Fourier convention: ``F(q) = ∫ f(r) exp(−2πi q·r) d³r``. The potential's transform is
``V(q) = (h²/(2π m0 e)) f_e(q) = K f_e(q)`` with ``K = SCATTERING_FACTOR_TO_VOLT_A2``
= 47.878 V·Å² (equal to 2π a0 e in Kirkland's notation: a0 = 0.529 Å, e = 14.40 V·Å). The
inverse transforms used (β = √B, α = 2πβ):

============  ====================================  ========================================
term          V(r) / K  (3-D)                       v_z(r) / K  (infinite projection, 2-D)
============  ====================================  ========================================
A/(q²+B)      A π e^{−α r} / r                      2π A K0(α r)
A/(q²+B)²     A π² e^{−α r} / β                     2π² A r K1(α r) / β
A e^{−B q²}   A (π/B)^{3/2} e^{−π² r²/B}            A (π/B) e^{−π² r²/B}
============  ====================================  ========================================

The 2-D Fourier transform of the projected potential is ``K f_e(|k|)`` (V·Å³, the area
integral ∫ v_z d²r = K f_e(0) in V·Å³ — i.e. V·Å per unit area).

References
----------
I. Lobato and D. Van Dyck, Acta Cryst. A70 (2014) 636–649, doi:10.1107/S205327331401643X.
E. J. Kirkland, *Advanced Computing in Electron Microscopy*, 2nd ed., Springer (2010),
Appendix C, doi:10.1007/978-1-4419-6533-2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Literal

import numpy as np

from temsim.backend import array_namespace
from temsim.constants import SCATTERING_FACTOR_TO_VOLT_A2
from temsim.errors import InputError

__all__ = [
    "ParametrizationName",
    "PARAMETRIZATIONS",
    "Parametrization",
    "ElementTerms",
    "load_parametrization",
]

ParametrizationName = Literal["lobato", "kirkland"]
#: Names accepted by :func:`load_parametrization`.
PARAMETRIZATIONS: tuple[str, ...] = ("lobato", "kirkland")

_K = SCATTERING_FACTOR_TO_VOLT_A2


@dataclass(frozen=True)
class ElementTerms:
    """One element's scattering factor as a sum of ``L``, ``L2`` and ``G`` terms.

    Each field is a tuple of ``(A, B)`` pairs of floats (units: q in 1/Å, f_e in Å).
    """

    lorentzian: tuple[tuple[float, float], ...]
    lorentzian_squared: tuple[tuple[float, float], ...]
    gaussian: tuple[tuple[float, float], ...]

    def scattering_factor_at_zero(self) -> float:
        """f_e(0) in Å."""
        return (
            sum(a / b for a, b in self.lorentzian)
            + sum(a / b**2 for a, b in self.lorentzian_squared)
            + sum(a for a, _ in self.gaussian)
        )


def _check_z(Z, terms: Mapping[int, ElementTerms]) -> int:
    try:
        z = int(Z)
    except (TypeError, ValueError):
        raise InputError(f"atomic number must be an integer 1–103, got {Z!r}") from None
    if z != Z or z not in terms:
        raise InputError(f"atomic number must be an integer 1–103, got {Z!r}")
    return z


@dataclass(frozen=True)
class Parametrization:
    """A frozen electron scattering-factor parametrization (Z = 1–103).

    Obtain one with :func:`load_parametrization`. Every method takes an integer atomic
    number ``Z`` and an array of distances or spatial frequencies; frequency methods work on
    any array-API namespace (numpy, cupy, array_api_strict), real-space ones need numpy
    (modified Bessel functions from scipy).

    Attributes
    ----------
    name : str
        ``"lobato"`` or ``"kirkland"``.
    citation, doi, form : str
        Reference and the published functional form.
    """

    name: str
    citation: str
    doi: str
    form: str
    terms: Mapping[int, ElementTerms] = field(repr=False)
    symbols: Mapping[int, str] = field(repr=False)

    # ---------------------------------------------------------------- reciprocal space
    def element_terms(self, Z: int) -> ElementTerms:
        """The ``L``/``L2``/``G`` terms of element ``Z`` (see module docstring)."""
        return self.terms[_check_z(Z, self.terms)]

    def scattering_factor(self, Z: int, k):
        """Electron scattering factor ``f_e`` (Å) at spatial frequency ``k`` = 1/d (1/Å).

        Parameters
        ----------
        Z : int
            Atomic number, 1–103.
        k : array_like
            |g| = 1/d = 2 sin(θ)/λ in 1/Å (any shape; array-API arrays keep their namespace).
        """
        t = self.element_terms(Z)
        xp = array_namespace(k) if not np.isscalar(k) else np
        k = xp.asarray(k)
        if not xp.isdtype(k.dtype, "real floating"):
            k = xp.astype(k, xp.float64)
        q2 = k * k
        out = xp.zeros_like(q2)
        for a, b in t.lorentzian:
            out = out + a / (q2 + b)
        for a, b in t.lorentzian_squared:
            out = out + a / (q2 + b) ** 2
        for a, b in t.gaussian:
            out = out + a * xp.exp(-b * q2)
        return out

    def projected_potential_fourier(self, Z: int, k):
        """2-D Fourier transform of the infinitely projected potential, V·Å³.

        ``v_z(k) = ∫ v_z(r) exp(−2πi k·r) d²r = K f_e(|k|)`` with
        ``K = SCATTERING_FACTOR_TO_VOLT_A2`` = 47.878 V·Å²; ``k`` in 1/Å. Its value at
        ``k = 0`` is the area integral of ``v_z`` (V·Å · Å²).
        """
        return _K * self.scattering_factor(Z, k)

    def finite_projection_fourier(self, Z: int, k, z_start: float, z_stop: float):
        """2-D Fourier transform of the potential integrated over ``z_start ≤ z ≤ z_stop``.

        ``∫_{z_start}^{z_stop} dz ∫ V(x, y, z) exp(−2πi (kx x + ky y)) dx dy`` (V·Å³), with
        ``z`` measured from the atom (Å; ±inf allowed). For ``(−inf, inf)`` it equals
        :meth:`projected_potential_fourier`.

        Notes
        -----
        With ``β = √(k² + B)`` and ``s(t) = sign(t)``:

        * ``A/(q²+B)`` → ``A/(2β²) [s(t)(1 − e^{−2πβ|t|})]_{t1}^{t2}``
        * ``A/(q²+B)²`` → ``A/(4β⁴) [s(t)(2 − (2 + 2πβ|t|) e^{−2πβ|t|})]_{t1}^{t2}``
        * ``A e^{−Bq²}`` → ``A e^{−Bk²} ½ [erf(π t/√B)]_{t1}^{t2}``
        """
        t = self.element_terms(Z)
        xp = array_namespace(k) if not np.isscalar(k) else np
        k = xp.asarray(k)
        if not xp.isdtype(k.dtype, "real floating"):
            k = xp.astype(k, xp.float64)
        z1, z2 = float(z_start), float(z_stop)
        k2 = k * k
        out = xp.zeros_like(k2)
        for a, b in t.lorentzian:
            beta = xp.sqrt(k2 + b)
            out = out + a / (2 * beta**2) * (_lor_edge(xp, beta, z2) - _lor_edge(xp, beta, z1))
        for a, b in t.lorentzian_squared:
            beta = xp.sqrt(k2 + b)
            out = out + a / (4 * beta**4) * (_lor2_edge(xp, beta, z2) - _lor2_edge(xp, beta, z1))
        for a, b in t.gaussian:
            weight = 0.5 * (_erf(math.pi * z2 / math.sqrt(b)) - _erf(math.pi * z1 / math.sqrt(b)))
            out = out + (a * weight) * xp.exp(-b * k2)
        return _K * out

    # ---------------------------------------------------------------- real space
    def potential(self, Z: int, r):
        """3-D electrostatic potential V(r) of the neutral atom, in V (``r`` in Å, numpy)."""
        t = self.element_terms(Z)
        r = np.asarray(r, dtype=float)
        out = np.zeros_like(r)
        with np.errstate(divide="ignore", invalid="ignore"):
            for a, b in t.lorentzian:
                out += a * math.pi * np.exp(-2 * math.pi * math.sqrt(b) * r) / r
            for a, b in t.lorentzian_squared:
                out += a * math.pi**2 * np.exp(-2 * math.pi * math.sqrt(b) * r) / math.sqrt(b)
        for a, b in t.gaussian:
            out += a * (math.pi / b) ** 1.5 * np.exp(-(math.pi**2) * r**2 / b)
        return _K * out

    def projected_potential(self, Z: int, r):
        """Infinitely projected potential v_z(r) = ∫ V(√(r² + z²)) dz, in V·Å (``r`` in Å).

        Diverges logarithmically at ``r = 0`` (returns inf there). numpy only.
        """
        from scipy.special import k0, k1

        t = self.element_terms(Z)
        r = np.asarray(r, dtype=float)
        out = np.zeros_like(r)
        with np.errstate(divide="ignore", invalid="ignore"):
            for a, b in t.lorentzian:
                out += 2 * math.pi * a * k0(2 * math.pi * math.sqrt(b) * r)
            for a, b in t.lorentzian_squared:
                beta = math.sqrt(b)
                out += 2 * math.pi**2 * a * r * k1(2 * math.pi * beta * r) / beta
        out = np.where(r == 0, np.inf, out)
        for a, b in t.gaussian:
            out = out + a * (math.pi / b) * np.exp(-(math.pi**2) * r**2 / b)
        return _K * out

    def projected_fraction_outside(self, Z: int, radius):
        """Fraction of ∫ v_z d²r lying outside the disc of ``radius`` Å (closed form)."""
        from scipy.special import k1, kn

        t = self.element_terms(Z)
        R = np.asarray(radius, dtype=float)
        out = np.zeros_like(R)
        for a, b in t.lorentzian:
            alpha = 2 * math.pi * math.sqrt(b)
            with np.errstate(invalid="ignore"):
                term = np.where(R > 0, alpha * R * k1(alpha * R), 1.0)
            out += a / b * term
        for a, b in t.lorentzian_squared:
            alpha = 2 * math.pi * math.sqrt(b)
            with np.errstate(invalid="ignore"):
                term = np.where(R > 0, 0.5 * (alpha * R) ** 2 * kn(2, alpha * R), 1.0)
            out += a / b**2 * term
        for a, b in t.gaussian:
            out += a * np.exp(-(math.pi**2) * R**2 / b)
        return out / t.scattering_factor_at_zero()

    def cutoff_radius(self, Z: int, tolerance: float = 1e-3) -> float:
        """Radius (Å) outside which at most ``tolerance`` of the atom's projected potential lies.

        The criterion is relative to the atom's total: ``∫_{|r|>R} v_z d²r ≤ tolerance ×
        ∫ v_z d²r`` (equivalently a fraction ``tolerance`` of ``K f_e(0)``). Used by finite
        projection to decide which atoms reach a slice along z.

        Parameters
        ----------
        Z : int
            Atomic number.
        tolerance : float
            Fraction in (0, 1), default 1e-3.
        """
        tolerance = float(tolerance)
        if not (0 < tolerance < 1):
            raise InputError(f"cutoff tolerance must be a fraction in (0, 1), got {tolerance!r}")
        return _cutoff_radius_cached(self.name, _check_z(Z, self.terms), tolerance)


def _lor_edge(xp, beta, t: float):
    if t == 0:
        return xp.zeros_like(beta)
    if math.isinf(t):
        return xp.ones_like(beta) * math.copysign(1.0, t)
    return math.copysign(1.0, t) * (1 - xp.exp(-2 * math.pi * abs(t) * beta))


def _lor2_edge(xp, beta, t: float):
    if t == 0:
        return xp.zeros_like(beta)
    if math.isinf(t):
        return 2 * xp.ones_like(beta) * math.copysign(1.0, t)
    u = 2 * math.pi * abs(t) * beta
    return math.copysign(1.0, t) * (2 - (2 + u) * xp.exp(-u))


def _erf(x: float) -> float:
    return math.copysign(1.0, x) if math.isinf(x) else math.erf(x)


@lru_cache(maxsize=4096)
def _cutoff_radius_cached(name: str, Z: int, tolerance: float) -> float:
    p = load_parametrization(name)
    r = np.linspace(0.0, 40.0, 40001)[1:]
    frac = p.projected_fraction_outside(Z, r)
    above = np.flatnonzero(np.abs(frac) > tolerance)
    if above.size == 0:
        return float(r[0])
    i = min(above[-1] + 1, r.size - 1)
    return float(r[i])


def _split_terms(name: str, entry: dict) -> ElementTerms:
    if name == "lobato":
        a = [float(v) for v in entry["a"]]
        b = [float(v) for v in entry["b"]]
        return ElementTerms(
            lorentzian=tuple((ai / bi, 1.0 / bi) for ai, bi in zip(a, b)),
            lorentzian_squared=tuple((ai / bi**2, 1.0 / bi) for ai, bi in zip(a, b)),
            gaussian=(),
        )
    return ElementTerms(
        lorentzian=tuple((float(a), float(b)) for a, b in zip(entry["a"], entry["b"])),
        lorentzian_squared=(),
        gaussian=tuple((float(c), float(d)) for c, d in zip(entry["c"], entry["d"])),
    )


def read_table(name: str) -> dict:
    """The raw JSON table ``name``.json shipped in ``temsim._tables`` (a new dict)."""
    text = resources.files("temsim._tables").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _load(name: str) -> Parametrization:
    table = read_table(name)
    terms = {}
    symbols = {}
    for symbol, entry in table["elements"].items():
        z = int(entry["Z"])
        terms[z] = _split_terms(name, entry)
        symbols[z] = symbol
    return Parametrization(
        name=name,
        citation=table["citation"],
        doi=table["doi"],
        form=table["form"],
        terms=MappingProxyType(terms),
        symbols=MappingProxyType(symbols),
    )


def load_parametrization(name: ParametrizationName | Parametrization = "lobato") -> Parametrization:
    """Load a shipped electron scattering-factor parametrization.

    Parameters
    ----------
    name : {"lobato", "kirkland"}
        Lobato & Van Dyck (2014) or Kirkland (2010). A :class:`Parametrization` is returned
        unchanged.

    Raises
    ------
    InputError
        For an unknown name (the message lists the valid names).

    Examples
    --------
    >>> p = load_parametrization("lobato")
    >>> round(float(p.scattering_factor(6, 0.0)), 3)  # carbon f_e(0) in Å
    2.51
    """
    if isinstance(name, Parametrization):
        return name
    if name not in PARAMETRIZATIONS:
        raise InputError(f"unknown parametrization {name!r}; valid names are {', '.join(map(repr, PARAMETRIZATIONS))}")
    return _load(name)
