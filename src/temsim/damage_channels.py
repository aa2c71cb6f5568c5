"""Damage channels of a study at one beam energy: radiolysis, knock-on of host elements, feature survival.

Each channel gives a dose budget (e/Å²) and says in words what sets it:

* **radiolysis** — the critical dose Dc (first-order fading, :mod:`temsim.beam_damage`);
* **knock-on of element X** — the dose at which an atom of X is displaced with probability
  ``budget_probability`` (10 % in the planner), from the thermal McKinley–Feshbach σ;
* **feature** — the dose at which the feature (a dopant and its neighbours, or the neighbours
  of a vacancy) survives with probability ``1 − budget_probability``:
  ``S(D) = exp(−σ_f·D)``, ``σ_f = Σ_atoms σ_i`` (every atom's displacement, and every measured
  dopant event of the damage table at this energy, destroys the feature).

**No false precision.** A knock-on channel whose displacement probability per atom stays below
:data:`NEGLIGIBLE_PROBABILITY` even at :data:`DOSE_CAP` is reported as none (*no knock-on
(E_max < E_d)* below the static threshold): the thermal tail there is far beyond any dose an
experiment gives. Budgets above :data:`DOSE_CAP` are shown as ``> 1e12 e/Å²``
(:func:`format_damage_dose`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from temsim import damage_data
from temsim.beam_damage import BARN_TO_A2, critical_dose, knock_on
from temsim.errors import InputError

__all__ = [
    "DamageChannel",
    "DOSE_CAP",
    "NEGLIGIBLE_PROBABILITY",
    "radiolysis_channel",
    "knock_on_channel",
    "feature_channel",
    "feature_sites",
    "survival_probability",
    "format_damage_dose",
    "knock_on_elements",
]

#: Largest dose (e/Å²) a damage figure is quoted at; larger budgets are shown as "> 1e12".
DOSE_CAP = 1e12
#: A channel whose event probability per atom at DOSE_CAP is below this is reported as none.
NEGLIGIBLE_PROBABILITY = 1e-12
_SPEC_KEYS = ("material", "temperature", "debye_temperature", "mean_square_displacement")


@dataclass(frozen=True)
class DamageChannel:
    """One damage channel at one energy.

    Attributes
    ----------
    name : str
        ``"radiolysis"``, ``"knock-on of C"`` or ``"feature"``.
    dose : float
        The budget this channel allows (e/Å²); ``inf`` when it causes no damage.
    cross_section : float or None
        Event cross-section (barn): per atom for knock-on, summed over the feature's atoms for
        the feature; None for radiolysis.
    description : str
        What sets the number, in words (e.g. ``"no knock-on (E_max < E_d)"``).
    sources : tuple of str
        The damage-table entries (value, status, source) the number was computed from.
    caveat : str
        Published channels that are not in the number (the feature's survival is then an
        upper bound), or ``""``.
    """

    name: str
    dose: float
    cross_section: float | None
    description: str
    sources: tuple[str, ...] = ()
    caveat: str = ""


def _negligible(sigma: float) -> bool:
    return sigma * BARN_TO_A2 * DOSE_CAP < NEGLIGIBLE_PROBABILITY


def _budget_dose(sigma: float, probability: float) -> float:
    return -math.log1p(-probability) / (sigma * BARN_TO_A2) if sigma > 0 and not _negligible(sigma) else math.inf


def format_damage_dose(dose: float) -> str:
    """A damage dose (e/Å²) with two significant digits, ``"> 1e12"`` above :data:`DOSE_CAP`, ``"∞"`` for none."""
    if dose is None or (isinstance(dose, float) and math.isnan(dose)):
        return "—"
    if math.isinf(dose):
        return "∞"
    if dose > DOSE_CAP:
        return f"> {DOSE_CAP:.0e}".replace("e+", "e")
    return f"{dose:.2g}"


def radiolysis_channel(spec) -> DamageChannel:
    """The radiolysis channel of a critical dose (e/Å², preset name or CriticalDose)."""
    cd = critical_dose(spec)
    kind = " (an end-point dose used as Dc)" if cd.dose_kind == "end-point" else ""
    origin = "user-given" if cd.status == "user" else cd.status
    what = "user-given" if cd.status == "user" else cd.material
    return DamageChannel(
        "radiolysis",
        float(cd.value),
        None,
        f"radiolysis Dc = {cd.value:.3g} e/Å² ({what}{kind})",
        (f"critical dose {cd.value:g} e/Å² ({cd.material}) — {origin}; {cd.source}",),
    )


def knock_on_elements(spec: Mapping) -> tuple[str, ...]:
    """The element(s) of a knock-on specification, as a tuple."""
    element = spec["element"]
    return (element,) if isinstance(element, str) else tuple(element)


def _knock_on(element: str, energy: float, spec: Mapping, own_energy: bool = True):
    kwargs = {k: spec[k] for k in _SPEC_KEYS if k in spec}
    ed = spec.get("displacement_energy") if own_energy else None
    return knock_on(element, energy, ed, **kwargs)


def knock_on_channel(element: str, energy: float, spec: Mapping, probability: float) -> DamageChannel:
    """Knock-on of ``element`` at ``energy`` (eV): the dose at which an atom is displaced with ``probability``."""
    r = _knock_on(element, energy, spec)
    sources = r.sources or (f"{element} E_d = {r.displacement_energy:g} eV — user-given (study file)",)
    if _negligible(r.cross_section):
        why = "E_max < E_d" if r.below_threshold else f"σ < {NEGLIGIBLE_PROBABILITY / DOSE_CAP / BARN_TO_A2:.0e} b"
        text = f"no knock-on of {element} ({why}: E_max = {r.max_transferred_energy:.3g} eV, E_d = "
        text += f"{r.displacement_energy:g} eV)"
        return DamageChannel(f"knock-on of {element}", math.inf, float(r.cross_section), text, sources)
    tail = " from the thermal tail (E_max < E_d)" if r.below_threshold else ""
    text = f"knock-on of {element} (σ = {r.cross_section:.2g} b{tail}): {probability:.0%} displacement probability"
    return DamageChannel(
        f"knock-on of {element}", _budget_dose(r.cross_section, probability), float(r.cross_section), text, sources
    )


def _own_events(dopant: str, energy: float, spec: Mapping) -> tuple[float, list[str], list[str], list[str]]:
    """σ (barn), parts, sources and caveats of the dopant's own events: knock-on, measured cross-sections."""
    material = spec.get("material")
    sigma, parts, sources, caveats = 0.0, [], [], []
    if material is None:
        return sigma, [f"{dopant} itself not included (no damage.material)"], sources, caveats
    has_energy = damage_data.find(material, dopant, "displacement_energy") or damage_data.find(
        material, dopant, "sputtering_energy"
    )
    if has_energy:
        r = _knock_on(dopant, energy, spec, own_energy=False)
        sigma += 0.0 if _negligible(r.cross_section) else r.cross_section
        parts.append(f"{dopant} knock-on {r.cross_section:.2g} b")
        sources.extend(r.sources)
    for e in damage_data.cross_sections(material, dopant, energy):
        sigma += e.value
        parts.append(f"{e.process} {e.value:g} b")
        sources.append(e.describe())
    if not has_energy and not parts:
        parts.append(f"{dopant}'s own displacement not included (no data for {dopant} in {material})")
    for c in damage_data.unquantified(material, dopant):
        caveats.append(f"{c.process.split(' (')[0]} not included")
        sources.append(c.describe())
    return sigma, parts, sources, caveats


def feature_channel(
    energy: float, sites: Mapping[str, int], spec: Mapping, probability: float, dopant: str | None = None
) -> DamageChannel:
    """The feature's survival channel: the dose at which it survives with probability ``1 − probability``.

    Parameters
    ----------
    energy : float
        Beam energy (eV).
    sites : mapping element → count
        Atoms whose displacement destroys the feature (its neighbours; see :func:`feature_sites`).
    spec : mapping
        The knock-on specification (``material``, ``temperature``, …) of the study.
    probability : float
        Damage probability that defines the budget (0.1: 90 % survival).
    dopant : str, optional
        A substitutional dopant: its own knock-on (if the table has its displacement energy in
        the material) and its measured event cross-sections at this energy are added.
    """
    sigma, parts, sources, caveats = 0.0, [], [], []
    for element, count in sites.items():
        if count <= 0:
            continue
        r = _knock_on(element, energy, spec, own_energy=element in knock_on_elements(spec))
        s = 0.0 if _negligible(r.cross_section) else r.cross_section
        sigma += count * s
        parts.append(f"{count} {element} neighbour{'s' if count > 1 else ''} × {s:.2g} b")
        sources.extend(r.sources)
    if dopant is not None:
        own, more, more_sources, caveats = _own_events(dopant, energy, spec)
        sigma += own
        parts.extend(more)
        sources.extend(more_sources)
    text = f"feature survival (σ_f = {sigma:.2g} b: {'; '.join(parts) or 'no atoms at risk'})"
    dose = _budget_dose(sigma, probability)
    if math.isinf(dose):
        text = f"feature not damaged by knock-on ({'; '.join(parts) or 'no atoms at risk'})"
    caveat = f"upper bound: {'; '.join(caveats)}" if caveats else ""
    return DamageChannel("feature", dose, float(sigma), text, tuple(dict.fromkeys(sources)), caveat)


def survival_probability(cross_section: float, dose):
    """Probability that the feature survives dose(s) ``D`` (e/Å²): ``exp(−σ_f·D)``, σ_f in barn.

    Channels reported as none (:data:`NEGLIGIBLE_PROBABILITY`) count as σ = 0.
    """
    sigma = 0.0 if cross_section is None or _negligible(cross_section) else float(cross_section)
    d = np.asarray(dose, dtype=float)
    out = np.exp(-sigma * BARN_TO_A2 * np.where(np.isfinite(d), d, np.nan))
    return float(out) if out.ndim == 0 else out


def feature_sites(atoms, index: int, elements, shell: float = 1.15, reach: float = 3.5) -> dict[str, int]:
    """Atoms of each of ``elements`` in the first shell around atom ``index`` of ``atoms`` (itself excluded).

    The first shell of an element holds its atoms within ``shell`` × the nearest distance, if
    that nearest distance is below ``reach`` Å (lateral periodicity by minimum image; the cell
    must be orthogonal, as in temsim's prepared structures).
    """
    if not 0 <= int(index) < len(atoms):
        raise InputError(f"feature site index {index} is not an atom of the structure (0..{len(atoms) - 1})")
    cell = np.diag(np.asarray(atoms.cell))
    delta = atoms.positions - atoms.positions[int(index)]
    for axis in range(3):
        if atoms.pbc[axis] and cell[axis] > 0:
            delta[:, axis] -= cell[axis] * np.round(delta[:, axis] / cell[axis])
    dist = np.linalg.norm(delta, axis=1)
    symbols = np.asarray(atoms.get_chemical_symbols())
    out = {}
    for element in dict.fromkeys(elements):
        mask = (symbols == element) & (np.arange(len(atoms)) != int(index))
        if not mask.any() or dist[mask].min() > reach:
            out[element] = 0
            continue
        out[element] = int(np.count_nonzero(dist[mask] <= shell * dist[mask].min()))
    return out
