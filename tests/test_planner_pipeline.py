"""The planner pipeline: simulate → damage_budget → evaluate → verdicts / monte_carlo_check → plan."""

import copy
import math
import os

import numpy as np
import pytest
import xarray as xr

from temsim import structure
from temsim.detection import DecisionTarget, detection_statistics, required_dose
from temsim.planning import (
    DamageBudget,
    damage_budget,
    evaluate,
    monte_carlo_check,
    plan,
    simulate,
    verdicts,
)
from temsim.study import Feature, Mode, Study


def _small_study(modes=(Mode("HAADF", 50.0, 140.0), Mode("iDPC"), Mode("HRTEM", defocus=-50.0)), phonons=True):
    atoms = structure.tile(structure.graphene(vacuum=2.0), (5, 3, 1))
    return Study(
        name="small",
        atoms=atoms,
        feature=Feature("substitution", element="Si", host_element="C"),
        energies=(60e3, 80e3),
        modes=modes,
        semiangle_cutoff=30.0,
        sampling=0.08,
        scan_step=0.5,
        window=2.0,
        slice_thickness=4.0,
        critical_dose=5e4,
        phonons={"num_configs": 2, "sigma": 0.07, "seed": 1} if phonons else None,
    )


@pytest.fixture(scope="module")
def small_plan():
    return plan(_small_study(), progress=False, monte_carlo_trials=200)


def test_rates_dataset_has_real_dims_and_coordinates(small_plan):
    study, rates = small_plan.study, small_plan.rates
    assert list(rates.data_vars) == ["HAADF", "iDPC", "HRTEM Δf=-50Å"]
    assert list(rates.energy.values) == [60e3, 80e3] and rates.energy.attrs["units"] == "eV"
    assert list(rates.hypothesis.values) == ["H0", "H1"] and list(rates.configuration.values) == [0, 1]
    lead = ("energy", "hypothesis", "configuration")
    assert rates["HAADF"].dims == lead + ("scan_x", "scan_y")
    assert rates["iDPC"].dims == lead + ("scan_x", "scan_y", "segment") and rates.sizes["segment"] == 4
    assert rates["HRTEM Δf=-50Å"].dims == lead + ("x", "y")
    # scan coordinates in Å: the study's step, inside the window around the feature
    _, _, position = study.hypotheses()
    assert np.allclose(np.diff(rates.scan_x.values), study.scan_step)
    assert abs(rates.scan_x.values.mean() - position[0]) < study.scan_step
    # image coordinates in Å at the simulation sampling; counts per e/Å² = area × efficiency × fraction
    assert np.diff(rates.x.values)[0] == pytest.approx(study.sampling, rel=0.1)
    hrtem = rates["HRTEM Δf=-50Å"]
    assert hrtem.attrs["channel_area"] == pytest.approx(np.diff(rates.x.values)[0] * np.diff(rates.y.values)[0])
    assert hrtem.attrs["camera"] == "counting-ded" and rates["HAADF"].attrs["channel_area"] == pytest.approx(0.25)
    # the HRTEM image of vacuum-like graphene averages about one beam per pixel
    mean_fraction = float(hrtem.mean()) / (hrtem.attrs["channel_area"] * hrtem.attrs["efficiency"])
    assert mean_fraction == pytest.approx(1.0, abs=0.1)
    assert not [name for name in rates.variables if str(name).startswith("_")]


def test_evaluate_is_pure_and_equals_what_plan_reports(small_plan):
    study, rates = small_plan.study, small_plan.rates
    before = copy.deepcopy(rates)
    budgets = {e: damage_budget(e, study.critical_dose) for e in study.energies}
    doses = small_plan.dataset.dose.values
    first = evaluate(rates, study.target, budgets, doses=doses)
    second = evaluate(rates, study.target, budgets, doses=doses)
    xr.testing.assert_identical(rates, before)
    xr.testing.assert_identical(first, second)
    own = small_plan.dataset.sel(mode=first.mode)  # the study's modes (the plan adds rows of its own)
    for row in (r for r in small_plan.table if r["mode"] in rates):
        for key in (
            "required_dose",
            "undamaged_dose",
            "dose_low",
            "dose_high",
            "rose_dose",
            "budget",
            "margin",
            "j_per_dose",
        ):
            assert float(first[key].sel(mode=row["mode"], energy=row["energy"])) == row[key], key
    assert (verdicts(first).values == own.verdict.values).all()
    # the Monte-Carlo check is seeded: the same seed gives the table's numbers
    mc = monte_carlo_check(rates, first, study.target, seed=study.seed, trials=200)
    assert np.array_equal(mc.mc_power.values, own.mc_power.values)


def test_checkpoints_reproduce_the_rates(small_plan, tmp_path):
    study = _small_study(phonons=False, modes=(Mode("HAADF", 50.0, 140.0), Mode("HRTEM", defocus=-50.0)))
    first = simulate(study, progress=False, checkpoint_dir=tmp_path)
    assert len(list(tmp_path.glob("*.nc"))) == 4  # 2 energies × 2 hypotheses
    again = simulate(study, progress=False, checkpoint_dir=tmp_path)
    xr.testing.assert_identical(first, again)


def _synthetic_rates(r0, r1, configurations=1):
    values = np.array([[r0] * configurations, [r1] * configurations], dtype=float)[None]
    return xr.Dataset(
        {"BF": (("energy", "hypothesis", "configuration", "channel"), values)},
        coords={"energy": [80e3], "hypothesis": ["H0", "H1"]},
    )


def test_evaluate_reproduces_a_hand_computed_dose():
    """One channel, 100 → 110 counts per e/Å²: J per dose = 10² / 105, dose = J* / that."""
    target = DecisionTarget(false_alarm=0.05, power=0.95)
    limits = evaluate(_synthetic_rates([100.0], [110.0]), target, DamageBudget(dose=50.0, knock_on_cross_section=2.0))
    j = 10.0**2 / 105.0
    dose = target.required_j / j
    row = limits.sel(mode="BF", energy=80e3)
    assert float(row.j_per_dose) == pytest.approx(j, rel=1e-12)
    assert float(row.required_dose) == pytest.approx(dose, rel=1e-12) == pytest.approx(11.363, rel=1e-4)
    assert float(row.margin) == pytest.approx(50.0 / dose)
    assert float(row.knock_on_probability) == pytest.approx(1 - math.exp(-2e-8 * dose))
    assert math.isnan(float(row.dose_low))  # one configuration: no phonon interval
    assert str(verdicts(limits).sel(mode="BF", energy=80e3).values) == "detectable within budget"
    # power curve: the target power at the required dose
    power = evaluate(_synthetic_rates([100.0], [110.0]), target, doses=[dose]).detection_power
    assert float(power.squeeze()) == pytest.approx(0.95, abs=1e-9)


def test_evaluate_fading_and_jackknife_on_synthetic_rates():
    target = DecisionTarget()
    rates = _synthetic_rates([100.0, 100.0], [110.0, 100.0])
    free = float(evaluate(rates, target).required_dose.squeeze())
    # a critical dose far below the free dose: fading makes the target unreachable
    limits = evaluate(rates, target, DamageBudget(dose=free / 50, critical_dose=free / 50))
    assert math.isinf(float(limits.required_dose.squeeze()))
    assert str(verdicts(limits).squeeze().values).startswith("not detectable before damage")
    assert 0 < float(limits.best_power_within_budget.squeeze()) < 0.95
    # two configurations that differ: an interval around the dose of the mean rates
    values = np.array([[[100.0], [100.0]], [[108.0], [112.0]]])[None]
    rates = xr.Dataset(
        {"BF": (("energy", "hypothesis", "configuration", "channel"), values)},
        coords={"energy": [80e3], "hypothesis": ["H0", "H1"]},
    )
    row = evaluate(rates, target).squeeze()
    expected = required_dose(detection_statistics(np.array([100.0]), np.array([110.0])), target)
    assert float(row.required_dose) == pytest.approx(expected)
    assert float(row.dose_low) < float(row.required_dose) < float(row.dose_high)


def test_damage_budget_picks_the_smaller_limit():
    assert damage_budget(80e3) == DamageBudget()
    radiolysis = damage_budget(80e3, critical_dose=20.0)
    assert radiolysis.dose == radiolysis.critical_dose == 20.0 and "radiolysis" in radiolysis.basis
    knock = damage_budget(200e3, knock_on={"element": "C", "displacement_energy": 21.14})
    assert knock.knock_on_cross_section > 0 and "knock-on" in knock.basis
    assert knock.dose == pytest.approx(-math.log(0.9) / (knock.knock_on_cross_section * 1e-8))
    below = damage_budget(60e3, knock_on={"element": "C", "displacement_energy": 21.14})
    assert below.knock_on_cross_section == 0 and math.isinf(below.dose)
    assert "no knock-on of C (E_max < E_d" in below.basis


def test_plan_accepts_execution_settings():
    from temsim.settings import ExecutionSettings

    study = _small_study(phonons=False, modes=(Mode("HAADF", 50.0, 140.0),))
    one = plan(study, settings=ExecutionSettings(threads=1, progress=False), monte_carlo_trials=100)
    two = plan(study, settings=ExecutionSettings(threads=2, progress=False), monte_carlo_trials=100)
    assert one.row("HAADF", 80e3)["required_dose"] == pytest.approx(two.row("HAADF", 80e3)["required_dose"], rel=1e-5)


@pytest.fixture
def maadf():
    from temsim.modes import ModeSpec, register_mode, unregister_mode

    spec = register_mode(ModeSpec("MAADF", kind="annular", default_angles=lambda alpha: (2 * alpha, 4 * alpha)))
    yield spec
    unregister_mode("MAADF")


def test_a_new_mode_is_one_registry_entry(maadf):
    """Registering MAADF is enough to plan with it: same detector as ADF with the same angles."""
    from temsim.study import MODE_KINDS

    assert MODE_KINDS["MAADF"] == "annular" and Mode("MAADF").angles(30.0) == (60.0, 120.0)
    study = _small_study(phonons=False, modes=(Mode("MAADF"), Mode("ADF", 60.0, 120.0)))
    result = plan(study, progress=False, monte_carlo_trials=100)
    maadf_row, adf_row = result.row("MAADF", 80e3), result.row("ADF", 80e3)
    assert np.isfinite(maadf_row["required_dose"])
    assert maadf_row["required_dose"] == adf_row["required_dose"] and maadf_row["camera"] == "annular-pmt"
    assert np.array_equal(result.rates["MAADF"].values, result.rates["ADF"].values)


def test_registry_refuses_duplicates_and_unknown_kinds(maadf):
    from temsim.errors import StudyError
    from temsim.modes import ModeSpec, register_mode

    with pytest.raises(StudyError, match="already registered"):
        register_mode(ModeSpec("MAADF", kind="annular"))
    with pytest.raises(StudyError, match="kind"):
        ModeSpec("X", kind="holography")


def test_cli_version_and_jobs(capsys):
    from temsim import __version__
    from temsim.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out
    for jobs in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit_:
            main(["plan", "--example", "graphene-si", "--jobs", jobs])
        assert exit_.value.code == 2 and "--jobs" in capsys.readouterr().err


def test_pixelated_mode_across_energies_and_its_report(tmp_path):
    """A diffraction detector of fixed angular reach records different k ranges at two energies:
    the rates share one k axis (1/Å), with NaN where a energy records nothing, and the
    limits use the recorded channels only; the report displays it as iCoM."""
    from temsim.report import write_report

    study = _small_study(phonons=False, modes=(Mode("4D-STEM", max_angle=40.0, binning=2),))
    result = plan(study, progress=False, monte_carlo_trials=100)
    rates = result.rates["4D-STEM"]
    assert rates.dims[-2:] == ("kx", "ky")
    recorded = {e: int(np.isfinite(rates.sel(energy=e, hypothesis="H0", configuration=0)).sum()) for e in (60e3, 80e3)}
    assert 0 < recorded[60e3] < recorded[80e3] < rates.sizes["kx"] * rates.sizes["ky"] * 16
    for energy in (60e3, 80e3):
        row = result.row("4D-STEM", energy)
        assert row["channels"] == recorded[energy] and np.isfinite(row["required_dose"])
        assert np.all(np.isfinite(result.signals[("4D-STEM", energy)]["rate_h0"]))
    paths = write_report(result, tmp_path)
    assert all(os.path.getsize(p) > 0 for p in paths.values())
