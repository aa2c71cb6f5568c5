"""The planner's statistics: damage budgets, detection limits of every mode × energy, verdicts.

:func:`damage_budget` gives the dose budget at one energy (:class:`DamageBudget`);
:func:`evaluate` (pure) the detection limits from the rates of
:func:`temsim.plan_simulation.simulate` — the statistics are linear in dose, so the whole dose
axis follows without re-simulation; :func:`verdicts` the table's words. Part of
:mod:`temsim.planning`, which re-exports the public names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

import temsim
from temsim import damage_channels, detection
from temsim.beam_damage import BARN_TO_A2
from temsim.plan_checks import _channel_rates, monte_carlo_check, monte_carlo_notes
from temsim.study import Study

#: Knock-on budget: dose at which the displacement probability per atom reaches this value.
KNOCK_ON_BUDGET_PROBABILITY = 0.1


# ----------------------------------------------------------------------------- damage budget
@dataclass(frozen=True)
class DamageBudget:
    """The dose a specimen tolerates at one energy: the minimum over its damage channels.

    Attributes
    ----------
    dose : float
        Budget (e/Å²): the smallest dose over the channels; ``inf`` without a damage limit.
    critical_dose : float or None
        Radiolysis critical dose Dc (e/Å²): the feature's contrast fades as ``exp(−D/Dc)``.
    knock_on_cross_section : float or None
        Largest displacement cross-section (barn) of the host's knock-on elements at this energy.
    basis : str
        In words, which channel sets the budget (or why there is none).
    feature_cross_section : float or None
        Cross-section (barn) of the events that destroy the feature (its neighbours'
        displacements, the dopant's own events); the feature survives a dose D with
        probability ``exp(−σ_f·D)``. None when not computed.
    channels : tuple of DamageChannel
        Every channel (radiolysis, knock-on per element, feature), with its dose and sources.
    survival_caveat : str
        Published feature-damage channels not in ``feature_cross_section`` (the survival is
        then an upper bound), or ``""``.
    """

    dose: float = math.inf
    critical_dose: float | None = None
    knock_on_cross_section: float | None = None
    basis: str = "no damage limit given"
    feature_cross_section: float | None = None
    channels: tuple = ()
    survival_caveat: str = ""


def damage_budget(
    energy: float, critical_dose=None, knock_on: Mapping | None = None, feature: Mapping | None = None
) -> DamageBudget:
    """:class:`DamageBudget` at ``energy`` (eV): the minimum over the damage channels.

    Parameters
    ----------
    energy : float
        Beam energy (eV).
    critical_dose : float, str or CriticalDose, optional
        Radiolysis critical dose (e/Å²) or a preset name.
    knock_on : mapping, optional
        ``{"element": "C" or ["C", "N"], "material", "displacement_energy", "temperature",
        "debye_temperature", "mean_square_displacement"}``; E_d and the Debye temperature
        default to the damage table's values for ``material``.
    feature : mapping, optional
        ``{"sites": {element: count}, "dopant": element or None}``: the atoms whose events
        destroy the feature (:func:`temsim.damage_channels.feature_sites`).

    Notes
    -----
    The knock-on and feature budgets are the doses at which the displacement (damage)
    probability reaches :data:`KNOCK_ON_BUDGET_PROBABILITY`; negligible channels are reported
    as none (:mod:`temsim.damage_channels`). ``basis`` names the channel that sets the budget.
    """
    channels = []
    if critical_dose is not None:
        channels.append(damage_channels.radiolysis_channel(critical_dose))
    sigmas = []
    if knock_on:
        for element in damage_channels.knock_on_elements(knock_on):
            channel = damage_channels.knock_on_channel(element, energy, knock_on, KNOCK_ON_BUDGET_PROBABILITY)
            channels.append(channel)
            sigmas.append(channel.cross_section)
    feature_sigma, caveat = None, ""
    if knock_on and feature is not None:
        channel = damage_channels.feature_channel(
            energy, feature["sites"], knock_on, KNOCK_ON_BUDGET_PROBABILITY, feature.get("dopant")
        )
        channels.append(channel)
        feature_sigma, caveat = channel.cross_section, channel.caveat
    dc = float(temsim.critical_dose(critical_dose).value) if critical_dose is not None else None
    budget = min((c.dose for c in channels), default=math.inf)
    if math.isfinite(budget):
        basis = next(c.description for c in channels if c.dose == budget)
    else:
        basis = "; ".join(c.description for c in channels) or "no damage limit given"
    return DamageBudget(
        dose=budget,
        critical_dose=dc,
        knock_on_cross_section=max(sigmas) if sigmas else None,
        basis=basis,
        feature_cross_section=feature_sigma,
        channels=tuple(channels),
        survival_caveat=caveat,
    )


# ----------------------------------------------------------------------------- evaluation
#: Per mode × energy fields of :func:`evaluate` (all floats).
LIMIT_FIELDS = (
    "required_dose",
    "undamaged_dose",
    "dose_low",
    "dose_high",
    "rose_dose",
    "bhattacharyya_dose",
    "budget",
    "margin",
    "j_per_dose",
    "knock_on_probability",
    "survival_probability",
    "best_power_within_budget",
    "best_dose",
)
_UNITS = {
    "required_dose": "e/Å²",
    "undamaged_dose": "e/Å²",
    "dose_low": "e/Å²",
    "dose_high": "e/Å²",
    "rose_dose": "e/Å²",
    "bhattacharyya_dose": "e/Å²",
    "budget": "e/Å²",
    "best_dose": "e/Å²",
    "j_per_dose": "per e/Å²",
}


def _jackknife(r0s: np.ndarray, r1s: np.ndarray, stat, dose: float) -> tuple[float, float]:
    """Dose interval from ±2 jackknife standard errors of j₁ over phonon configurations."""
    n = len(r0s)
    if n < 2 or not np.isfinite(dose):
        return np.nan, np.nan
    js = []
    for leave in range(n):
        keep = [i for i in range(n) if i != leave]
        js.append(
            detection.detection_statistics(
                np.mean([r0s[i] for i in keep], 0), np.mean([r1s[i] for i in keep], 0)
            ).j_per_dose
        )
    return _interval(np.asarray(js), stat.j_per_dose, dose)


def _interval(js: np.ndarray, j: float, dose: float) -> tuple[float, float]:
    """Dose interval from ±2 jackknife standard errors of the leave-one-out values ``js`` of j₁ = ``j``."""
    n = len(js)
    if n < 2 or not np.isfinite(dose):
        return np.nan, np.nan
    se = math.sqrt((n - 1) / n * np.sum((js - js.mean()) ** 2))
    rel = se / j if j > 0 else np.nan
    return dose / (1 + 2 * rel), (dose / max(1e-12, 1 - 2 * rel) if rel < 0.5 else np.inf)


def _best_power(stat, target, dose: float, budget: DamageBudget, last_dose: float) -> tuple[float, float]:
    """(power, dose) reachable within the budget when the target is not: at the optimum under
    fading (capped by the budget) if no dose meets it, at the budget if the dose exceeds it."""
    dc = budget.critical_dose
    if stat.j_per_dose == 0 or (np.isfinite(dose) and dose <= budget.dose):
        return np.nan, np.nan
    if np.isfinite(dose):
        best_dose = budget.dose
    else:
        best_dose = min(detection.optimal_dose_under_fading(dc) if dc else last_dose, budget.dose)
    return float(detection.detection_power(stat, target, best_dose, dc)), float(best_dose)


def _limits(r0s: np.ndarray, r1s: np.ndarray, target, budget: DamageBudget, doses: np.ndarray) -> tuple:
    """Limits of one mode at one energy from its per-configuration rates."""
    stat = detection.detection_statistics(np.mean(r0s, axis=0), np.mean(r1s, axis=0))
    return _limits_of(stat, target, budget, doses, lambda dose: _jackknife(r0s, r1s, stat, dose))


def _limits_of(stat, target, budget: DamageBudget, doses: np.ndarray, interval) -> tuple:
    """Limits from per-unit-dose statistics; ``interval(dose)`` gives the phonon interval."""
    dc = budget.critical_dose
    dose = detection.required_dose(stat, target, dc)
    low, high = interval(dose)
    sigma = budget.knock_on_cross_section
    best, best_dose = _best_power(stat, target, dose, budget, doses[-1])
    values = dict(
        required_dose=dose,
        undamaged_dose=detection.required_dose(stat, target, None),
        dose_low=low,
        dose_high=high,
        rose_dose=detection.required_dose(stat, target, dc, criterion="rose"),
        bhattacharyya_dose=detection.required_dose(stat, target, None, criterion="bhattacharyya"),
        budget=budget.dose,
        margin=budget.dose / dose if np.isfinite(dose) and dose > 0 else np.nan,
        j_per_dose=stat.j_per_dose,
        knock_on_probability=(
            1 - math.exp(-sigma * BARN_TO_A2 * dose) if sigma is not None and np.isfinite(dose) else np.nan
        ),
        survival_probability=(
            damage_channels.survival_probability(budget.feature_cross_section, dose)
            if budget.feature_cross_section is not None and np.isfinite(dose)
            else np.nan
        ),
        best_power_within_budget=best,
        best_dose=best_dose,
        channels=stat.channels,
    )
    curve = detection.detection_power(stat, target, doses, dc) if stat.j_per_dose > 0 else np.zeros_like(doses)
    return values, curve


def _or_nan(value) -> float:
    return np.nan if value is None else float(value)


def _budgets(budget, energies) -> dict:
    if isinstance(budget, DamageBudget) or budget is None:
        return {float(e): budget or DamageBudget() for e in energies}
    return {float(e): budget[e] for e in energies}


def evaluate(rates: xr.Dataset, target: detection.DecisionTarget, budget=None, *, doses=None) -> xr.Dataset:
    """Detection limits of every mode × energy from the rates of :func:`simulate` (pure).

    Parameters
    ----------
    rates : xarray.Dataset
        Expected counts per unit dose, one variable per mode (see :func:`simulate`).
    target : DecisionTarget
        What "detected" means.
    budget : DamageBudget or mapping {energy: DamageBudget}, optional
        Damage budget (one for all energies, or one per energy); default: no damage.
    doses : array, optional
        Dose axis (e/Å²) of the detection-power curves; default 121 doses from 0.1 to 1e7.

    Returns
    -------
    xarray.Dataset
        Dims ``mode``, ``energy`` (and ``dose``): the fields of :data:`LIMIT_FIELDS`,
        ``channels``, ``detection_power`` (mode, energy, dose), and per energy
        ``critical_dose``, ``knock_on_cross_section``, ``feature_cross_section`` (barn; the
        feature survives dose D with probability ``exp(−σ_f·D)``, ``survival_probability``
        at each mode's minimum dose), ``budget_basis`` and ``damage_sources`` (the damage-table
        entries used, one per line). ``attrs["detection_probability"]`` is the target's
        probability of detecting a present feature.
    """
    labels = [str(name) for name in rates.data_vars]
    energies = [float(e) for e in rates.energy.values]
    doses = np.logspace(-1, 7, 121) if doses is None else np.asarray(doses, dtype=float)
    budgets = _budgets(budget, energies)
    shape = (len(labels), len(energies))
    arrays = {name: np.full(shape, np.nan) for name in LIMIT_FIELDS}
    channels = np.zeros(shape, dtype=np.int64)
    power = np.zeros(shape + (len(doses),))
    for mi, label in enumerate(labels):
        for ei, energy in enumerate(energies):
            values, power[mi, ei] = _limits(*_channel_rates(rates[label], energy), target, budgets[energy], doses)
            channels[mi, ei] = values.pop("channels")
            for name, value in values.items():
                arrays[name][mi, ei] = value
    data_vars = {
        name: (("mode", "energy"), value, {"units": _UNITS[name]} if name in _UNITS else {})
        for name, value in arrays.items()
    }
    data_vars.update(
        channels=(("mode", "energy"), channels),
        detection_power=(("mode", "energy", "dose"), power),
        critical_dose=("energy", [_or_nan(budgets[e].critical_dose) for e in energies], {"units": "e/Å²"}),
        knock_on_cross_section=(
            "energy",
            [_or_nan(budgets[e].knock_on_cross_section) for e in energies],
            {"units": "barn"},
        ),
        feature_cross_section=(
            "energy",
            [_or_nan(budgets[e].feature_cross_section) for e in energies],
            {"units": "barn"},
        ),
        budget_basis=("energy", [budgets[e].basis for e in energies]),
        damage_sources=("energy", [_damage_sources(budgets[e]) for e in energies]),
        survival_caveat=("energy", [budgets[e].survival_caveat for e in energies]),
        damage_channel_summary=("energy", [_channel_lines(budgets[e]) for e in energies]),
    )
    coords = {
        "mode": labels,
        "energy": ("energy", np.asarray(energies), {"units": "eV"}),
        "dose": ("dose", doses, {"units": "e/Å²"}),
    }
    attrs = {
        "target": target.describe(),
        "required_j": target.required_j,
        "detection_probability": _detection_probability(target),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _channel_lines(budget: DamageBudget) -> str:
    """Each damage channel as ``dose e/Å² — description``, one per line (dose with bounded digits)."""
    return "\n".join(f"{damage_channels.format_damage_dose(c.dose)} e/Å² — {c.description}" for c in budget.channels)


def _damage_sources(budget: DamageBudget) -> str:
    """The damage numbers a budget used (value, status, source), one per line, without repeats."""
    return "\n".join(dict.fromkeys(src for channel in budget.channels for src in channel.sources))


def _detection_probability(target: detection.DecisionTarget) -> float:
    """Probability that the test detects a present feature: the power, or 1 − Pe for an error target."""
    return 1 - target.probability_of_error if target.probability_of_error is not None else target.power


def _verdict(
    j_per_dose: float,
    dose: float,
    budget: float,
    best: float,
    best_dose: float,
    survival: float,
    limited: bool,
    detect: float,
) -> str:
    if j_per_dose == 0:
        return "undetectable: the feature changes nothing this mode records"
    if not np.isfinite(dose):
        return f"not detectable before damage (best power {best:.2f} at {best_dose:.3g} e/Å²)"
    if dose > budget:
        return f"exceeds budget (power {best:.2f} at the budget)"
    if np.isfinite(survival) and not np.isfinite(detect):
        return f"detectable; the feature survives with probability {math.floor(100 * survival) / 100:.2f}"
    if np.isfinite(survival):
        # P(detected and intact) ≥ P(detected) + P(intact) − 1 (no independence assumed), rounded down
        both = math.floor(100 * max(0.0, detect + survival - 1) + 1e-9) / 100
        return f"detected before the feature is damaged with probability ≥ {both:.2f}"
    if np.isfinite(budget):
        return "detectable within budget"
    if limited:
        return "detectable (no knock-on at this energy: E_max < E_d)"
    return "detectable (no damage limit given)"


def _with_caveat(verdict: str, limits: xr.Dataset, ei: int) -> str:
    """A survival verdict followed by `` (upper bound: …)`` when a published channel is not in the number."""
    note = str(limits.survival_caveat.values[ei]) if "survival_caveat" in limits else ""
    return f"{verdict} ({note})" if note and verdict.startswith("detected before") else verdict


def verdicts(limits: xr.Dataset) -> xr.DataArray:
    """The table's verdict per mode × energy, in words, from :func:`evaluate`'s limits."""
    fields = (
        "j_per_dose",
        "required_dose",
        "budget",
        "best_power_within_budget",
        "best_dose",
        "survival_probability",
    )
    detect = float(limits.attrs.get("detection_probability", np.nan))
    limited = [
        not (
            math.isnan(float(limits.critical_dose.values[ei]))
            and math.isnan(float(limits.knock_on_cross_section.values[ei]))
        )
        for ei in range(limits.sizes["energy"])
    ]
    words = [
        [
            _with_caveat(_verdict(*(float(limits[f].values[mi, ei]) for f in fields), limited[ei], detect), limits, ei)
            for ei in range(limits.sizes["energy"])
        ]
        for mi in range(limits.sizes["mode"])
    ]
    return xr.DataArray(
        np.array(words, dtype=str), dims=("mode", "energy"), coords={"mode": limits.mode, "energy": limits.energy}
    )


#: Fields of the exact Monte-Carlo check (temsim.plan_checks) at each reported dose.
MONTE_CARLO_FIELDS = (
    "mc_false_alarm",
    "mc_power",
    "mc_probability_of_error",
    "mc_false_alarm_se",
    "mc_power_se",
    "mc_probability_of_error_se",
)


def study_limits(study: Study, rates: xr.Dataset) -> xr.Dataset:
    """:func:`evaluate` of ``rates`` under the study's damage budgets, target and dose axis.

    The evaluation step of :func:`plan`, shared with sweeps (:mod:`temsim.sweeps`), which
    re-evaluate the same rates under other budgets or targets without simulating again.
    """
    return evaluate(rates, study.target, _study_budgets(study), doses=_study_doses(study))


def _study_budgets(study: Study) -> dict:
    feature = _feature_damage(study)
    return {e: damage_budget(e, study.critical_dose, study.knock_on, feature) for e in study.energies}


def _study_doses(study: Study) -> np.ndarray:
    return np.logspace(math.log10(study.dose_range[0]), math.log10(study.dose_range[1]), 121)


def _decided(study: Study, rates: xr.Dataset, monte_carlo_trials: int, seed: int) -> xr.Dataset:
    """Limits, Monte-Carlo checks, notes and verdicts of every variable of ``rates``."""
    limits = study_limits(study, rates)
    checks = monte_carlo_check(rates, limits, study.target, seed=seed, trials=monte_carlo_trials)
    notes = monte_carlo_notes(checks, study.target).to_dataset(name="mc_note")
    return xr.merge([limits, checks, verdicts(limits).to_dataset(name="verdict"), notes], combine_attrs="drop")


def _feature_damage(study: Study) -> dict | None:
    """The atoms whose events destroy the feature: first-shell neighbours of the knock-on elements
    around a substituted or removed atom, and a substitution's dopant (None without knock-on data)."""
    if not study.knock_on or study.feature.kind not in ("substitution", "vacancy"):
        return None
    h0, _, _ = study.hypotheses()
    site = study.feature_site()
    sites = damage_channels.feature_sites(h0, site["index"], damage_channels.knock_on_elements(study.knock_on))
    return {"sites": sites, "dopant": site.get("new_element")}
