"""Planner validation: end-to-end report, physics sanity on the built-in examples, monotonicity."""

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from _record import record

from temsim import structure
from temsim.planning import plan
from temsim.study import Feature, Mode, Study, example_study


def _record(name, data):
    record("planning_validation", name.removesuffix(".json"), data)


def test_cli_graphene_si_end_to_end(tmp_path):
    """`temsim plan --example graphene-si` writes table, figures and NetCDF; NetCDF matches the table."""
    out = tmp_path / "plan"
    proc = subprocess.run(
        [sys.executable, "-m", "temsim.cli", "plan", "--example", "graphene-si", "-o", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("report.md", "plan.nc", "detection_power.png", "noisy_signals.png"):
        assert (out / name).stat().st_size > 0
    ds = xr.open_dataset(out / "plan.nc", engine="h5netcdf")
    report = (out / "report.md").read_text()
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| mode | energy (kV) |"))
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    rows = {}
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|"))))
        rows[(cells["mode"], float(cells["energy (kV)"]) * 1e3)] = cells
    # the study's 4 modes and the limits of any detector (4D bound, joint, optimal, quantum), × 2 energies
    assert len(rows) == ds.sizes["mode"] * ds.sizes["energy"] and ds.sizes["energy"] == 2 and ds.sizes["mode"] > 4
    # the expected counts per channel travel with the table, one group per mode, with real coordinates
    tree = xr.open_datatree(out / "plan.nc", engine="h5netcdf")
    idpc = tree["signals/iDPC"].rate
    assert idpc.dims == ("energy", "hypothesis", "configuration", "scan_x", "scan_y", "segment")
    assert tree["signals/HRTEM Δf=-60Å"].rate.dims[-2:] == ("x", "y") and idpc.scan_x.attrs.get("units") == "Å"
    for (mode, energy), cells in rows.items():
        dose = float(ds.required_dose.sel(mode=mode, energy=energy))
        assert float(cells["minimum dose (e/Å²)"]) == pytest.approx(dose, rel=5e-3)  # 3 significant digits
        assert cells["verdict"] == str(ds.verdict.sel(mode=mode, energy=energy).values)
    # physics sanity (literature expectation): a heavy dopant in graphene needs less dose in HAADF than ABF
    haadf = ds.required_dose.sel(mode="HAADF").values
    abf = ds.required_dose.sel(mode="ABF").values
    assert np.all(haadf < abf)
    # the exact Monte-Carlo at the reported dose meets the target within sampling error
    checked = np.isfinite(ds.mc_power.values)  # every row with a detector (not the quantum limits)
    assert checked.sum() >= 8 * 2
    assert np.all(np.abs(ds.mc_false_alarm.values[checked] - 0.05) < 0.02)
    assert np.all(ds.mc_power.values[checked] > 0.95 - 0.03)
    _record(
        "planning_graphene_si.json",
        {
            f"{m}@{e / 1e3:g}kV": float(ds.required_dose.sel(mode=m, energy=e))
            for m in ds.mode.values
            for e in ds.energy.values
        },
    )
    # nothing is overwritten without asking
    again = subprocess.run(
        [sys.executable, "-m", "temsim.cli", "plan", "--example", "graphene-si", "-o", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_srtio3_oxygen_vacancy_light_atom_modes_beat_haadf():
    """Literature expectation: ABF or iDPC detect an O vacancy at lower dose than HAADF."""
    study = example_study("srtio3-oxygen-vacancy")
    study = replace(study, energies=(200e3,))
    result = plan(study, progress=False, monte_carlo_trials=500)
    doses = {row["mode"]: row["required_dose"] for row in result.table}
    _record("planning_srtio3_oxygen_vacancy.json", {"energy_kV": 200, "required_dose": doses})
    assert min(doses["ABF"], doses["iDPC"]) < doses["HAADF"]


def _dopant_study(element):
    atoms = structure.tile(structure.graphene(vacuum=2.0), (5, 3, 1))
    return Study(
        name=f"graphene-{element}",
        atoms=atoms,
        feature=Feature("substitution", element=element, host_element="C"),
        energies=(80e3,),
        modes=(Mode("HAADF", 50.0, 150.0), Mode("BF", 0.0, 10.0)),
        semiangle_cutoff=25.0,
        sampling=0.08,
        scan_step=0.4,
        window=4.0,
        slice_thickness=4.0,
    )


def test_heavier_dopant_is_never_harder_to_detect():
    doses = {}
    for element in ("N", "Si", "Ge"):
        result = plan(_dopant_study(element), progress=False, monte_carlo_trials=200)
        doses[element] = result.row("HAADF", 80e3)["required_dose"]
    _record("planning_dopant_monotonicity.json", doses)
    assert doses["Ge"] <= doses["Si"] <= doses["N"]


def test_rose_agrees_with_the_likelihood_ratio_for_single_signed_contrast_and_never_undercuts_it():
    """HAADF of a heavier dopant (single-signed, compact contrast): Rose within 20 % of the
    likelihood-ratio dose. Every mode, mixed-sign HRTEM included, follows the documented rule:
    (Σ_R |Δλ|)² / Σ_R λ̄ = J* over the footprint R (|Δλ| ≥ 10 % of its maximum), recomputed
    here from the plan's own rates, and never below the likelihood-ratio dose."""
    study = replace(_dopant_study("Ge"), modes=(Mode("HAADF", 50.0, 150.0), Mode("HRTEM", defocus=-60.0)))
    result = plan(study, progress=False, monte_carlo_trials=200)
    haadf = result.row("HAADF", 80e3)
    ratio = haadf["rose_dose"] / haadf["undamaged_dose"]
    _record("planning_rose_vs_likelihood.json", {"haadf_ge_rose_over_lr": ratio})
    assert 0.8 <= ratio <= 1.2
    for row in result.table:
        if row["mode"] not in {m.label for m in study.modes}:
            continue  # the limits of any detector have no channels of their own, hence no Rose dose
        signal = result.signals[(row["mode"], row["energy"])]
        r0 = np.asarray(signal["rate_h0"], dtype=float).reshape(-1)
        r1 = np.asarray(signal["rate_h1"], dtype=float).reshape(-1)
        diff, mean = r1 - r0, 0.5 * (r0 + r1)
        footprint = np.abs(diff) > 0.1 * np.abs(diff).max()
        expected = study.target.required_j * mean[footprint].sum() / np.abs(diff[footprint]).sum() ** 2
        assert row["rose_dose"] == pytest.approx(expected, rel=1e-6), row["mode"]
        assert row["rose_dose"] >= row["undamaged_dose"] * (1 - 1e-9), row["mode"]


def test_feature_that_changes_nothing_is_reported_undetectable(tmp_path):
    from ase.io import write

    from temsim.errors import StudyError

    atoms = structure.tile(structure.graphene(vacuum=2.0), (5, 3, 1))
    # a substitution by the same element is refused outright (a key that would change nothing) …
    with pytest.raises(StudyError, match="replaces an atom of the same element"):
        Feature("substitution", element="C", host_element="C")
    # … but an alternative structure identical to the specimen is a legitimate H1 that nothing detects
    same = tmp_path / "same.traj"
    write(same, atoms)
    study = Study(
        name="nothing",
        atoms=atoms,
        feature=Feature("structure", file=str(same)),
        energies=(80e3,),
        modes=(Mode("HAADF", 50.0, 150.0),),
        semiangle_cutoff=25.0,
        sampling=0.08,
        scan_step=0.4,
        window=4.0,
        slice_thickness=4.0,
    )
    row = plan(study, progress=False).row("HAADF", 80e3)
    assert math.isinf(row["required_dose"]) and row["verdict"].startswith("undetectable")


def test_critical_dose_turns_detectable_into_not_detectable():
    base = _dopant_study("Si")
    free = plan(base, progress=False, monte_carlo_trials=200).row("HAADF", 80e3)["required_dose"]
    damaged = plan(replace(base, critical_dose=free / 20), progress=False).row("HAADF", 80e3)
    assert math.isinf(damaged["required_dose"]) and damaged["verdict"].startswith("not detectable before damage")
    assert 0.05 < damaged["best_power_within_budget"] < 0.95
