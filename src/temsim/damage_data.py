"""The damage data table: displacement and sputtering energies, Debye temperatures, critical doses.

Every number the damage models use lives in ``temsim/data/damage.toml`` with its unit, the
conditions it holds for, its source (DOI and where in the paper) and its status
(:data:`STATUSES`). :func:`entries` returns them all as :class:`DamageEntry`;
:func:`lookup` finds one and, when it is missing, raises :class:`MissingDamageDataError`
saying which study key provides it instead.

>>> lookup("graphene", "C", "displacement_energy").value
21.14
>>> lookup("graphene", "C", "debye_temperature").status
'calculated'
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from temsim.errors import InputError

__all__ = [
    "DamageEntry",
    "UnquantifiedChannel",
    "MissingDamageDataError",
    "STATUSES",
    "QUANTITIES",
    "entries",
    "unquantified",
    "lookup",
    "find",
    "displacement_energy",
    "materials",
    "critical_dose_entries",
    "cross_sections",
]

#: What an entry's number is: read from an experiment, fitted to one, calculated, a stand-in
#: for a class of materials, or quoted but not checked against the paper.
STATUSES = ("measured", "fitted", "calculated", "representative", "unverified")
#: Quantity → unit of the table's entries.
QUANTITIES = {
    "displacement_energy": "eV",
    "sputtering_energy": "eV",
    "debye_temperature": "K",
    "critical_dose": "e/Å²",
    "cross_section": "barn",
}
#: Which study key supplies a quantity when the table has none.
_STUDY_KEY = {
    "displacement_energy": "damage.displacement_energy (eV)",
    "sputtering_energy": "damage.displacement_energy (eV, the sputtering threshold)",
    "debye_temperature": "damage.debye_temperature (K) or damage.mean_square_displacement (Å²)",
    "critical_dose": "damage.critical_dose (e/Å²)",
    "cross_section": "a cross-section measured at this energy",
}
_DATA = Path(__file__).parent / "data" / "damage.toml"
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")


class MissingDamageDataError(InputError):
    """The damage table has no number for what was asked; the message says what to provide."""


@dataclass(frozen=True)
class DamageEntry:
    """One number of the damage table.

    Attributes
    ----------
    material, element, quantity : str
        What it describes (``element`` is ``""`` for a material-wide number such as a
        critical dose); ``quantity`` is a key of :data:`QUANTITIES`.
    value : float
        The number, in ``unit``.
    unit, conditions, source, doi, where, status : str
        Unit; conditions it holds for (energy, temperature, dose rate, signal); the reference,
        its DOI, where in it (table, figure, text); one of :data:`STATUSES`.
    variant : str
        ``""`` for the entry the planner uses, otherwise a second value of the same quantity
        (e.g. ``"average"`` over directions).
    process : str
        For cross-sections: the event (e.g. ``"direct exchange with a C neighbour"``).
    energy : float or None
        Beam energy (eV) a cross-section was measured at.
    dose_kind : str
        For critical doses: ``"1/e"`` (the signal falls to 1/e) or ``"end-point"`` (the signal
        is gone; used as a 1/e dose it overstates the budget).
    """

    material: str
    element: str
    quantity: str
    value: float
    unit: str
    conditions: str
    source: str
    doi: str
    where: str
    status: str
    variant: str = ""
    process: str = ""
    energy: float | None = None
    dose_kind: str = ""

    def cite(self) -> str:
        """``source, where, doi:…`` in one line."""
        return f"{self.source}, {self.where}, doi:{self.doi}"

    def describe(self) -> str:
        """The entry in words for reports: what, value with unit, status and source."""
        what = " ".join(w for w in (self.material, self.element, self.quantity.replace("_", " ")) if w)
        if self.process:
            what += f" ({self.process}"
            what += f", {self.energy / 1e3:g} kV)" if self.energy else ")"
        if self.variant:
            what += f" [{self.variant}]"
        return f"{what}: {self.value:g} {self.unit} — {self.status}; {self.cite()}"


@dataclass(frozen=True)
class UnquantifiedChannel:
    """A published damage channel whose cross-section is not in the table (reported as a caveat)."""

    material: str
    element: str
    process: str
    conditions: str
    source: str
    doi: str
    where: str
    note: str

    def describe(self) -> str:
        return f"{self.process} of {self.element} in {self.material} ({self.conditions}): {self.note}; " + (
            f"{self.source}, {self.where}, doi:{self.doi}"
        )


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def _check_common(item: dict, where: str) -> None:
    for key in ("source", "doi", "where"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise InputError(f"{where}: '{key}' must be a non-empty string")
    if not _DOI.match(item["doi"]):
        raise InputError(f"{where}: doi {item['doi']!r} is not of the form 10.NNNN/…")


def _entry(item: dict, index: int) -> DamageEntry:
    where = f"damage table entry {index} ({item.get('material')}, {item.get('element', '')}, {item.get('quantity')})"
    allowed = set(DamageEntry.__dataclass_fields__)
    unknown = set(item) - allowed
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}")
    _check_common(item, where)
    quantity = item.get("quantity")
    if quantity not in QUANTITIES:
        raise InputError(f"{where}: quantity must be one of {sorted(QUANTITIES)}")
    if item.get("unit") != QUANTITIES[quantity]:
        raise InputError(f"{where}: unit must be {QUANTITIES[quantity]!r}, got {item.get('unit')!r}")
    if item.get("status") not in STATUSES:
        raise InputError(f"{where}: status must be one of {STATUSES}, got {item.get('status')!r}")
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{where}: value must be a finite number > 0, got {value!r}")
    if quantity == "cross_section" and not item.get("energy"):
        raise InputError(f"{where}: a cross-section needs the beam energy (eV) it was measured at")
    if quantity == "critical_dose" and item.get("dose_kind") not in ("1/e", "end-point"):
        raise InputError(f"{where}: a critical dose needs dose_kind = '1/e' or 'end-point'")
    fields = {k: item[k] for k in allowed if k in item}
    fields.setdefault("element", "")
    fields["value"] = float(value)
    if "energy" in fields:
        fields["energy"] = float(fields["energy"])
    return DamageEntry(**fields)


def _unquantified(item: dict, index: int) -> UnquantifiedChannel:
    where = f"damage table unquantified channel {index}"
    _check_common(item, where)
    missing = set(UnquantifiedChannel.__dataclass_fields__) - set(item)
    if missing or set(item) - set(UnquantifiedChannel.__dataclass_fields__):
        raise InputError(f"{where}: needs exactly the keys {sorted(UnquantifiedChannel.__dataclass_fields__)}")
    return UnquantifiedChannel(**item)


def _read(path: str) -> tuple[tuple[DamageEntry, ...], tuple[UnquantifiedChannel, ...]]:
    data = _load_toml(Path(path))
    if data.get("schema") != 1:
        raise InputError(f"{path}: unknown damage-table schema {data.get('schema')!r} (expected 1)")
    rows = tuple(_entry(item, i) for i, item in enumerate(data.get("entry", [])))
    keys = [(r.material, r.element, r.quantity, r.variant, r.process, r.energy) for r in rows]
    if len(set(keys)) != len(keys):
        raise InputError(f"{path}: two entries describe the same material, element, quantity and variant")
    caveats = tuple(_unquantified(item, i) for i, item in enumerate(data.get("unquantified", [])))
    return rows, caveats


@functools.lru_cache(maxsize=1)
def _table() -> tuple[tuple[DamageEntry, ...], tuple[UnquantifiedChannel, ...]]:
    """The packaged table, read and checked once."""
    return _read(str(_DATA))


def entries(path=None) -> tuple[DamageEntry, ...]:
    """Every entry of the damage table (``path``: another table of the same schema)."""
    return _read(str(path))[0] if path is not None else _table()[0]


def unquantified(material: str | None = None, element: str | None = None) -> tuple[UnquantifiedChannel, ...]:
    """Published channels without a number in the table, for ``material``/``element`` if given."""
    return tuple(
        c
        for c in _table()[1]
        if (material is None or c.material == material) and (element is None or c.element == element)
    )


def materials() -> tuple[str, ...]:
    """Materials with knock-on data (displacement/sputtering energies) in the table."""
    return tuple(sorted({e.material for e in entries() if e.quantity in ("displacement_energy", "sputtering_energy")}))


def find(material: str, element: str, quantity: str, variant: str = "") -> DamageEntry | None:
    """The entry for ``material``, ``element``, ``quantity`` (and ``variant``), or None."""
    for e in entries():
        if (e.material, e.element, e.quantity, e.variant) == (material, element, quantity, variant):
            return e
    return None


def lookup(material: str, element: str, quantity: str, variant: str = "") -> DamageEntry:
    """Like :func:`find`, but a missing number raises :class:`MissingDamageDataError` saying what to give."""
    if quantity not in QUANTITIES:
        raise InputError(f"quantity must be one of {sorted(QUANTITIES)}, got {quantity!r}")
    found = find(material, element, quantity, variant)
    if found is None:
        have = sorted({e.quantity for e in entries() if (e.material, e.element) == (material, element)})
        known = materials()
        raise MissingDamageDataError(
            f"the damage table has no {quantity.replace('_', ' ')} for {element or 'the material'} in "
            f"{material!r} (it has {', '.join(have) or 'nothing'} for it; materials with knock-on data: "
            f"{', '.join(known)}): give {_STUDY_KEY[quantity]} in the study"
        )
    return found


def displacement_energy(material: str, element: str) -> DamageEntry:
    """The bulk displacement energy of ``element`` in ``material``, else its sputtering energy.

    Raises :class:`MissingDamageDataError` (naming ``damage.displacement_energy``) when the table
    has neither.
    """
    found = find(material, element, "displacement_energy") or find(material, element, "sputtering_energy")
    if found is None:
        have = sorted({e.quantity for e in entries() if (e.material, e.element) == (material, element)})
        raise MissingDamageDataError(
            f"the damage table has no displacement or sputtering energy for {element} in {material!r} (it has "
            f"{', '.join(have) or 'nothing'} for it; materials with knock-on data: {', '.join(materials())}): "
            f"give {_STUDY_KEY['displacement_energy']} in the study, or another damage.material"
        )
    return found


def critical_dose_entries() -> dict[str, DamageEntry]:
    """Radiolysis presets by name (the material key)."""
    return {e.material: e for e in entries() if e.quantity == "critical_dose"}


def cross_sections(material: str, element: str, energy: float) -> tuple[DamageEntry, ...]:
    """Measured cross-sections of events of ``element`` in ``material`` at ``energy`` (eV, ±0.5 kV)."""
    return tuple(
        e
        for e in entries()
        if e.quantity == "cross_section"
        and (e.material, e.element) == (material, element)
        and abs(e.energy - float(energy)) <= 500.0
    )
