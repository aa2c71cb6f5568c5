"""Exact checks of a plan's detection limits: the Poisson Monte-Carlo and its notes.

:func:`monte_carlo_check` measures the exact error rates of the likelihood-ratio test at each
mode's required dose, with their binomial standard errors; :func:`monte_carlo_notes` flags
a power, false-alarm rate or probability of error that misses the target by more than two
standard errors (the Gaussian approximation was optimistic there). Both are re-exported by
:mod:`temsim.planning`.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from temsim import detection

__all__ = ["monte_carlo_check", "monte_carlo_notes"]


def _channel_rates(da: xr.DataArray, energy: float) -> tuple[np.ndarray, np.ndarray]:
    """(H0, H1) rates per configuration: arrays (configuration, channels…); channels the mode
    does not record at this energy (NaN) are dropped."""
    values = da.sel(energy=energy).transpose("hypothesis", "configuration", ...).values
    recorded = np.all(np.isfinite(values), axis=(0, 1))
    if not np.all(recorded):
        values = values[:, :, recorded]
    return values[0], values[1]


def _critical(limits: xr.Dataset, ei: int):
    dc = float(limits.critical_dose.values[ei])
    return None if math.isnan(dc) else dc


def monte_carlo_check(
    rates: xr.Dataset, limits: xr.Dataset, target: detection.DecisionTarget, *, seed: int = 0, trials: int = 2000
) -> xr.Dataset:
    """Exact Poisson Monte-Carlo of the likelihood-ratio test at each mode's required dose.

    Mode ``m`` at energy ``e`` uses the ``m · n_energies + e``-th child of
    ``numpy.random.SeedSequence(seed)``; modes without a finite dose get NaN.
    Returns ``mc_false_alarm``, ``mc_power``, ``mc_probability_of_error`` and their binomial
    standard errors ``mc_false_alarm_se``, ``mc_power_se``, ``mc_probability_of_error_se``
    (dims mode, energy).
    """
    names = ("false_alarm", "power", "probability_of_error")
    names += tuple(f"{name}_se" for name in names)
    shape = (limits.sizes["mode"], limits.sizes["energy"])
    out = {name: np.full(shape, np.nan) for name in names}
    seeds = np.random.SeedSequence(seed).spawn(shape[0] * shape[1])
    for mi, label in enumerate(limits.mode.values):
        for ei, energy in enumerate(limits.energy.values):
            dose = float(limits.required_dose.values[mi, ei])
            if not np.isfinite(dose):
                continue
            r0s, r1s = _channel_rates(rates[str(label)], float(energy))
            child = int(seeds[mi * shape[1] + ei].generate_state(1)[0])
            mc = detection.monte_carlo_error_rates(
                np.mean(r0s, axis=0),
                np.mean(r1s, axis=0),
                dose,
                target,
                trials=trials,
                seed=child,
                critical_dose=_critical(limits, ei),
            )
            mc["probability_of_error_se"] = 0.5 * math.hypot(mc["false_alarm_se"], mc["power_se"])
            for name in names:
                out[name][mi, ei] = mc[name]
    return xr.Dataset(
        {f"mc_{name}": (("mode", "energy"), value) for name, value in out.items()},
        coords={"mode": limits.mode, "energy": limits.energy},
        attrs={"monte_carlo_trials": trials},
    )


def monte_carlo_notes(checks: xr.Dataset, target: detection.DecisionTarget, limits=2.0) -> xr.DataArray:
    """Per mode × energy, a note where the Monte-Carlo check misses the target by more than
    ``limits`` standard errors (power below, false-alarm rate or probability of error above);
    ``""`` where it does not (or where no dose was checked)."""

    def note(mi: int, ei: int) -> str:
        value = {n: float(checks[f"mc_{n}"].values[mi, ei]) for n in ("false_alarm", "power", "probability_of_error")}
        se = {n: float(checks[f"mc_{n}_se"].values[mi, ei]) for n in value}
        if math.isnan(value["power"]):
            return ""
        if target.probability_of_error is not None:
            misses = {"probability_of_error": (value["probability_of_error"], target.probability_of_error, "above")}
        else:
            misses = {
                "power": (value["power"], target.power, "below"),
                "false_alarm": (value["false_alarm"], target.effective_false_alarm, "above"),
            }
        words = [
            f"Monte-Carlo {name.replace('_', ' ')} {v:.3f} ± {se[name]:.3f} is {side} the target {goal:g} "
            f"by more than {limits:g} standard errors"
            for name, (v, goal, side) in misses.items()
            if (goal - v if side == "below" else v - goal) > limits * se[name]
        ]
        return "; ".join(words)

    words = [[note(mi, ei) for ei in range(checks.sizes["energy"])] for mi in range(checks.sizes["mode"])]
    return xr.DataArray(
        np.array(words, dtype=str), dims=("mode", "energy"), coords={"mode": checks.mode, "energy": checks.energy}
    )
