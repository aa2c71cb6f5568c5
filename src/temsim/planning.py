"""The planner: minimum detectable dose per imaging mode and energy, against the damage budget.

A plan is a pipeline of small steps, each usable on its own (all re-exported here):

1. :func:`simulate` (:mod:`temsim.plan_simulation`) — for each energy, the specimen without
   (H0) and with (H1) the feature is simulated once per frozen-phonon configuration; every
   mode's raw channels (annular detector per probe position, DPC segments per position,
   diffraction pixels per position, or camera pixels) become expected counts per unit dose
   ``r = a · η · I`` (channel area × camera efficiency × fraction of the beam), returned as one
   :class:`xarray.Dataset` with one variable per mode.
2. :func:`damage_budget` (:mod:`temsim.plan_limits`) — the dose budget at one energy
   (:class:`DamageBudget`).
3. :func:`evaluate` (:mod:`temsim.plan_limits`) — pure: the detection limits of every mode ×
   energy from the rates. The detection statistics (:mod:`temsim.detection`) are linear in
   dose, so the whole dose axis follows without re-simulation. Damage enters as first-order
   fading of the feature's contrast (radiolysis, critical dose Dc) and as displacement
   probabilities (knock-on of the host, survival of the feature).
4. :func:`verdicts` and :func:`monte_carlo_check` — the words of the table and the exact
   Poisson check at each reported dose.
5. :func:`information_rows` (:mod:`temsim.detector_limits`) — the limits of any detector: the
   4D bound, joint acquisitions, optimal detectors and the quantum limit.

:func:`plan` runs them in order and returns a :class:`PlanResult`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

import temsim
from temsim import compute
from temsim.checkpoints import study_fingerprint
from temsim.detector_limits import (
    FOUR_D_ROW,
    OPTIMAL_ANNULUS_ROW,
    OPTIMAL_SEGMENTED_ROW,
    PLANE_WAVE_QUANTUM_ROW,
    QUANTUM_ROW,
    QUANTUM_ROWS,
    exit_wave_data,
    information_rows,
    plane_wave_data,
)
from temsim.plan_checks import monte_carlo_check, monte_carlo_notes
from temsim.plan_file import table_from_file, table_rows
from temsim.plan_limits import (
    KNOCK_ON_BUDGET_PROBABILITY,
    LIMIT_FIELDS,
    MONTE_CARLO_FIELDS,
    DamageBudget,
    _decided,
    damage_budget,
    evaluate,
    study_limits,
    verdicts,
)
from temsim.plan_simulation import (
    HYPOTHESES,
    RATE_UNITS,
    check_study,
    grid_description,
    mode_camera,
    optics_description,
    simulate,
    simulate_rates,
    simulation_grid,
)
from temsim.settings import ExecutionSettings
from temsim.study import Study

__all__ = [
    "plan",
    "PlanResult",
    "simulate",
    "evaluate",
    "verdicts",
    "monte_carlo_check",
    "damage_budget",
    "DamageBudget",
    "check_study",
    "study_fingerprint",
    "table_from_file",
    "simulation_grid",
    "grid_description",
    "monte_carlo_notes",
    "simulate_rates",
    "HYPOTHESES",
    "KNOCK_ON_BUDGET_PROBABILITY",
    "LIMIT_FIELDS",
    "MONTE_CARLO_FIELDS",
    "RATE_UNITS",
    "study_limits",
    "mode_camera",
    "optics_description",
    "exit_wave_data",
    "plane_wave_data",
    "information_rows",
    "FOUR_D_ROW",
    "OPTIMAL_ANNULUS_ROW",
    "OPTIMAL_SEGMENTED_ROW",
    "PLANE_WAVE_QUANTUM_ROW",
    "QUANTUM_ROW",
    "QUANTUM_ROWS",
]


# ----------------------------------------------------------------------------- plan
#: Columns of :attr:`PlanResult.table` taken from the plan dataset.
TABLE_FIELDS = tuple(f for f in LIMIT_FIELDS if f != "best_dose") + MONTE_CARLO_FIELDS


@dataclass
class PlanResult:
    """Everything a plan computed: ``table`` rows, the xarray ``dataset``, mean ``signals`` and ``rates``."""

    study: Study
    table: list = field(default_factory=list)
    dataset: xr.Dataset | None = None
    signals: dict = field(default_factory=dict)
    rates: xr.Dataset | None = None

    def row(self, mode_label: str, energy: float) -> dict:
        for r in self.table:
            if r["mode"] == mode_label and r["energy"] == energy:
                return r
        raise KeyError((mode_label, energy))


#: Columns of :attr:`PlanResult.table` besides ``mode``, ``energy`` (and ``detector``, the old
#: name of ``camera``): each a variable of the plan dataset over ``mode`` and/or ``energy``.
#: ``plan.nc`` records them (``attrs["table_columns"]``), so :func:`table_from_file` rebuilds the
#: table from the file alone.
TABLE_COLUMNS = ("verdict", "mc_note", "budget_basis", "camera", "channels") + TABLE_FIELDS
TABLE_COLUMNS += ("quantum_multiple", "detector_geometry")


def _table(study: Study, ds: xr.Dataset) -> list:
    """The table's rows (energy outer, mode inner) from the plan dataset alone."""
    return table_rows(ds, TABLE_COLUMNS)


def _signals(study: Study, rates: xr.Dataset) -> dict:
    """Mean rates per mode × energy (channel shape kept) for the report's noisy displays."""
    out = {}
    for mode in study.modes:
        da = rates[mode.label]
        for energy in study.energies:
            recorded = da.sel(energy=energy)
            for dim in recorded.dims[2:]:  # crop channels not recorded at this energy (NaN), keep the shape
                recorded = recorded.dropna(dim, how="all")
            values = recorded.transpose("hypothesis", "configuration", ...).values
            r0s, r1s = values[0], values[1]
            scan_x, scan_y = (da[c].values if c in da.coords else None for c in ("scan_x", "scan_y"))
            out[(mode.label, energy)] = {
                "rate_h0": np.mean(r0s, axis=0),
                "rate_h1": np.mean(r1s, axis=0),
                "kind": mode.kind,
                "name": mode.name,
                "display": mode.spec.display,
                "rotation": float(np.deg2rad(mode.rotation)),
                "scan_x": scan_x,
                "scan_y": scan_y,
            }
    return out


def _structures(h0, h1) -> dict:
    """H0 and H1 as variables of ``plan.nc`` (atomic numbers, positions Å, cell Å)."""
    out = {}
    for label, atoms in (("H0", h0), ("H1", h1)):
        atom = f"atom_{label}"
        out[f"structure_{label}_numbers"] = ((atom,), atoms.numbers.astype(np.int64))
        out[f"structure_{label}_positions"] = ((atom, "xyz"), atoms.positions, {"units": "Å"})
        out[f"structure_{label}_cell"] = (("xyz", "cell_vector"), np.asarray(atoms.cell).T, {"units": "Å"})
    return out


def _grid_attrs(study: Study, grid) -> dict:
    """The grid used (points, Å/pixel) and the one requested, for ``plan.nc`` and the report."""
    return {
        "gpts": list(grid.gpts),
        "grid_sampling": list(grid.sampling),
        "requested_sampling": json.dumps(study.sampling),
        "requested_gpts": json.dumps(study.gpts),
        "grid": grid_description(study, grid),
    }


def _attrs(study: Study, monte_carlo_trials: int, site: dict, grid) -> dict:
    return {
        "feature_site": json.dumps(site),
        "feature_site_description": study.feature.describe_site(site),
        "study": study.name,
        "description": study.description,
        "feature": study.feature.describe(),
        "target": study.target.describe(),
        "required_j": study.target.required_j,
        "semiangle_cutoff": study.semiangle_cutoff,
        "aberrations": json.dumps(study.aberrations.nonzero()),
        **_grid_attrs(study, grid),
        "optics": optics_description(study),
        "aperture_edge": json.dumps(study.aperture_edge),
        "focal_spread": [study.focal_spread_at(e) for e in study.energies],
        "energy_spread": study.energy_spread,
        "chromatic_aberration": study.chromatic_aberration,
        "source_size": study.source_size,
        "microscope": study.microscope or "",
        "scan_step": study.scan_step,
        "window": study.window,
        "phonons": json.dumps(study.phonons),
        "critical_dose": json.dumps(study.critical_dose),
        "knock_on": json.dumps(study.knock_on),
        "seed": study.seed,
        "monte_carlo_trials": monte_carlo_trials,
        "temsim_version": temsim.__version__,
        "method": "likelihood-ratio test on raw Poisson counts, Gaussian approximation J = (z_{1-a}+z_{power})^2",
    }


def plan(
    study: Study,
    *,
    settings: ExecutionSettings | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | None = None,
    monte_carlo_trials: int = 2000,
    limits_of_any_detector: bool = True,
) -> PlanResult:
    """Minimum detectable dose of ``study.feature`` for every mode and energy.

    Runs :func:`simulate`, :func:`damage_budget`, :func:`evaluate`, :func:`verdicts` and
    :func:`monte_carlo_check`.

    Parameters
    ----------
    study : Study
        The study (``temsim.study.example_study("graphene-si")`` or :func:`temsim.study.load_study`).
    settings : ExecutionSettings, optional
        Threads, device, precision and progress bars.
    progress : bool, optional
        Progress bar over the simulations (default: ``settings.progress``; shown if unset).
    checkpoint_dir : str, optional
        Directory where each simulation is saved as it completes; a rerun reuses them (a
        killed plan resumes where it stopped).
    monte_carlo_trials : int
        Trials per hypothesis of the exact Poisson Monte-Carlo check at each reported dose.
    limits_of_any_detector : bool
        Add the rows of :func:`information_rows` for STEM studies (one more pass over the probe
        positions): the 4D bound, the joint dose of simultaneous detectors, the optimal annulus
        and segmented ring, and the quantum limit, with each row's ``quantum_multiple``.

    Returns
    -------
    PlanResult
        ``table`` (one dict per mode × energy), ``dataset`` (xarray: the table's columns, the
        power curves, the structures; ``plan.nc``'s root), ``signals``, ``rates`` (one
        variable per mode; ``plan.nc``'s ``/signals`` groups, see :mod:`temsim.plan_file`).
    """
    with compute.session(settings) as shared:  # one local cluster for every simulation of the plan
        rates = simulate(study, settings=shared, progress=progress, checkpoint_dir=checkpoint_dir)
        waves = exit_wave_data(study, shared) if limits_of_any_detector else {}
        plane = plane_wave_data(study, shared) if limits_of_any_detector else {}
    ds = _decided(study, rates, monte_carlo_trials, study.seed)
    cameras = [rates[label].attrs.get("camera", "") if label in rates else "" for label in ds.mode.values]
    ds = ds.assign(camera=("mode", np.array(cameras, dtype=str)))
    if waves or plane:  # the 4D bound, joint acquisitions, optimal detectors and the quantum limits
        ds = information_rows(study, waves, ds, monte_carlo_trials, plane)
    else:
        ds = ds.assign(quantum_multiple=ds.j_per_dose * np.nan, detector_geometry=xr.full_like(ds.verdict, ""))
    h0, h1, _ = study.hypotheses()
    ds = ds.assign(_structures(h0, h1))
    ds.attrs.update(_attrs(study, monte_carlo_trials, study.feature_site(), simulation_grid(study, h0)))
    ds.attrs["table_columns"] = json.dumps(TABLE_COLUMNS)
    result = PlanResult(study=study, dataset=ds, rates=rates, signals=_signals(study, rates))
    result.table = _table(study, ds)
    return result
