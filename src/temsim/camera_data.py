"""The camera characterisation table (``temsim/data/cameras.toml``) and its resolution by beam energy.

Every number a camera preset uses lives in one data file with its unit, conditions, source
(DOI and table/figure) and status (``measured``, ``fitted``, ``representative`` or
``definition``). :func:`resolve_preset` gives a preset's parameters at a beam energy:

* between two characterised energies every numeric parameter is interpolated **linearly in
  energy** (``p(E) = p₁ + (p₂ − p₁)(E − E₁)/(E₂ − E₁)``; a parameter infinite at both ends stays
  infinite); its status is the weaker of the two (representative < fitted < measured);
* outside ``[first, last]`` characterised energy the preset is refused
  (:class:`~temsim.errors.InputError` naming the range), unless ``allow_extrapolation=True``:
  then the values of the nearest characterised energy are used and every energy-dependent
  number is marked ``extrapolated``. Overriding every energy-dependent parameter (measured
  values of your own camera) needs no extrapolation.

:func:`describe_number` turns one provenance row a camera model carries into a report line.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources

from temsim.errors import InputError

__all__ = [
    "CameraNumber",
    "camera_table",
    "resolve_preset",
    "characterised_range",
    "describe_number",
    "STATUSES",
]

#: Allowed statuses, weakest first (an interpolated number takes the weaker of its two ends).
STATUSES = ("representative", "fitted", "measured", "definition")
_FIELDS = ("unit", "status", "conditions", "source", "doi", "where")


@dataclass(frozen=True)
class CameraNumber:
    """One resolved camera number: its value and where it comes from.

    ``status`` is one of :data:`STATUSES`, or ``"override"`` (given by the user), or carries
    ``"extrapolated"`` / ``"interpolated"`` in ``conditions``.
    """

    name: str
    value: float
    unit: str
    status: str
    conditions: str
    source: str
    doi: str
    where: str

    def row(self) -> tuple:
        """``(name, value, unit, status, conditions, source, doi, where)`` (JSON-friendly)."""
        v = None if isinstance(self.value, float) and math.isinf(self.value) else self.value
        return (self.name, v, self.unit, self.status, self.conditions, self.source, self.doi, self.where)


def _load_toml(text: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def _check_entry(preset: str, key: str, entry: dict, n_energies: int) -> None:
    where = f"cameras.toml [{preset}.{key}]"
    missing = [f for f in _FIELDS if f not in entry]
    if missing:
        raise InputError(f"{where} lacks {missing}")
    if entry["status"] not in STATUSES:
        raise InputError(f"{where}: status {entry['status']!r} is not one of {STATUSES}")
    if ("value" in entry) == ("values" in entry):
        raise InputError(f"{where} needs exactly one of value / values")
    if "values" in entry and len(entry["values"]) != n_energies:
        raise InputError(f"{where}: {len(entry['values'])} values for {n_energies} energies")
    if "values" in entry and len({math.isinf(float(v)) for v in entry["values"]}) > 1:
        raise InputError(f"{where}: a value is infinite at some energies only (it cannot be interpolated)")


@functools.lru_cache(maxsize=1)
def camera_table() -> dict:
    """The parsed and checked camera table: ``{preset: {"model", "energies", "summary", "parameters"}}``."""
    text = (resources.files("temsim") / "data" / "cameras.toml").read_text(encoding="utf-8")
    out = {}
    for preset, raw in _load_toml(text).items():
        energies = tuple(float(e) for e in raw["energies"])
        if list(energies) != sorted(set(energies)):
            raise InputError(f"cameras.toml [{preset}]: energies must be ascending and distinct")
        parameters = {}
        for key, entry in raw.items():
            if isinstance(entry, dict):
                _check_entry(preset, key, entry, len(energies))
                parameters[key] = entry
        out[preset] = {"model": raw["model"], "energies": energies, "summary": raw["summary"], "parameters": parameters}
    return out


def characterised_range(preset: str) -> tuple[float, float] | None:
    """``(first, last)`` characterised energy (eV) of a preset; ``None``: energy-independent."""
    energies = camera_table()[preset]["energies"]
    return (energies[0], energies[-1]) if energies else None


def _interpolate(a: float, b: float, t: float) -> float:
    if a == b:
        return a
    return a + (b - a) * t


def _weaker(s1: str, s2: str) -> str:
    return min(s1, s2, key=STATUSES.index)


def _number(preset: str, key: str, entry: dict, energy: float | None, how: tuple) -> CameraNumber:
    """The table entry resolved at ``energy``; ``how`` = (kind, i, j, t) from :func:`_bracket`."""
    info = {f: str(entry[f]) for f in _FIELDS}
    if "value" in entry:
        return CameraNumber(key, float(entry["value"]), **info)
    values = [float(v) for v in entry["values"]]
    kind, i, j, t = how
    energies = camera_table()[preset]["energies"]
    if kind == "at":
        info["conditions"] += f" (at {energies[i] / 1e3:g} keV)"
        return CameraNumber(key, values[i], **info)
    if kind == "between":
        info["conditions"] += f" (interpolated linearly between {energies[i] / 1e3:g} and {energies[j] / 1e3:g} keV)"
        return CameraNumber(key, _interpolate(values[i], values[j], t), **info)
    info["conditions"] += f" (extrapolated: the value at {energies[i] / 1e3:g} keV used at {energy / 1e3:g} keV)"
    info["status"] = info["status"] + ", extrapolated"
    return CameraNumber(key, values[i], **info)


def _bracket(energies: tuple, energy: float) -> tuple:
    """``("at", i, i, 0)``, ``("between", i, i+1, t)`` or ``("outside", nearest, nearest, 0)``."""
    for i, e in enumerate(energies):
        if math.isclose(energy, e, rel_tol=1e-9):
            return ("at", i, i, 0.0)
    if energies[0] < energy < energies[-1]:
        j = next(k for k, e in enumerate(energies) if e > energy)
        return ("between", j - 1, j, (energy - energies[j - 1]) / (energies[j] - energies[j - 1]))
    nearest = 0 if energy < energies[0] else len(energies) - 1
    return ("outside", nearest, nearest, 0.0)


def resolve_preset(
    preset: str, energy: float | None = None, *, allow_extrapolation: bool = False, overridden=()
) -> tuple[str, dict, tuple[CameraNumber, ...]]:
    """A preset's model class name, parameters and their provenance at beam energy ``energy`` (eV).

    Parameters
    ----------
    preset : str
        A key of the camera table.
    energy : float, optional
        Beam energy (eV). ``None``: the last (highest) characterised energy.
    allow_extrapolation : bool
        Outside the characterised range, use the values of the nearest characterised energy
        (marked ``extrapolated``) instead of refusing.
    overridden : iterable of str
        Parameters the caller gives itself: they need no energy and are not reported from the table.

    Raises
    ------
    InputError
        ``energy`` outside the characterised range without ``allow_extrapolation`` while some
        energy-dependent parameter is not overridden.
    """
    entry = camera_table()[preset]
    energies = entry["energies"]
    overridden = set(overridden)
    if not energies or energy is None:
        how = ("at", len(energies) - 1, len(energies) - 1, 0.0) if energies else ("at", 0, 0, 0.0)
    else:
        how = _bracket(energies, float(energy))
    dependent = [k for k, e in entry["parameters"].items() if "values" in e and k not in overridden]
    if how[0] == "outside" and dependent and not allow_extrapolation:
        raise InputError(
            f"camera preset {preset!r} is characterised from {energies[0] / 1e3:g} to {energies[-1] / 1e3:g} keV, "
            f"not at {float(energy) / 1e3:g} keV; its numbers {dependent} depend on energy. Give your camera's "
            f"measured values at this energy (camera_model({preset!r}, energy=..., "
            f"{', '.join(f'{k}=...' for k in dependent)}), or in a study modes[].camera_parameters), or pass "
            f"allow_extrapolation=True to use the {energies[how[1]] / 1e3:g} keV values, marked 'extrapolated'"
        )
    numbers = tuple(
        _number(preset, key, e, energy, how) for key, e in entry["parameters"].items() if key not in overridden
    )
    return entry["model"], {n.name: n.value for n in numbers}, numbers


def describe_number(row) -> str:
    """One report line for a provenance row: value, unit, status, conditions and source."""
    name, value, unit, status, conditions, source, doi, where = row
    shown = "inf" if value is None else f"{value:.4g}"
    cite = source + (f", doi:{doi}" if doi else "") + (f", {where}" if where else "")
    return f"{name} = {shown} {unit if unit != '1' else ''}".rstrip() + f" — {status}; {conditions}; {cite}"
