"""Sweeps (``[sweep]`` in a study, :func:`temsim.sweeps.sweep`): every point equals a separate plan,
simulations are shared where the inputs are equal, bands cover separate plans at the sampled
unknowns, and bad sweep tables are refused before any simulation."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from temsim.errors import StudyError
from temsim.planning import plan
from temsim.study import load_study, study_from_dict
from temsim.sweeps import Sweep, Unknown, sweep, sweep_from_document

GRAPHENE = {
    "name": "sweep-test",
    "specimen": {"example": "graphene", "arguments": {"vacuum": 2.0}, "supercell": [5, 3, 1]},
    "feature": {"kind": "substitution", "element": "Si", "host_element": "C"},
    "microscope": {"energies": [80e3], "semiangle_cutoff": 30.0},
    "modes": [{"name": "HAADF", "inner": 60.0, "outer": 120.0}, {"name": "HRTEM", "defocus": -60.0}],
    "damage": {"critical_dose": 100.0},
    "dose": {"range": [1.0, 1e7]},
    "simulation": {"sampling": 0.1, "scan_step": 0.6, "window": 2.4, "slice_thickness": 4.0},
}

SRTIO3 = {
    "name": "thickness-band",
    "specimen": {"example": "srtio3", "supercell": [2, 2, 3]},
    "feature": {"kind": "vacancy", "host_element": "O", "site": 2},  # an O of the entrance unit cell
    "microscope": {"energies": [200e3], "semiangle_cutoff": 20.0},
    "modes": [{"name": "HRTEM", "defocus": -50.0}],
    "dose": {"range": [1.0, 1e8]},
    "simulation": {"sampling": 0.1, "slice_thickness": 1.9525},
}


def _at(document: dict, **values) -> dict:
    data = copy.deepcopy(document)
    for dotted, value in values.items():
        table, key = dotted.split("__")
        data.setdefault(table, {})[key] = value
    return data


def _separate(data: dict):
    """The minimum doses of an ordinary plan of ``data`` (the study's modes × energy; a sweep plans
    the study's own modes, not the limits of any detector)."""
    study = study_from_dict(data)
    doses = plan(study, progress=False, monte_carlo_trials=20, limits_of_any_detector=False).dataset.required_dose
    assert list(doses.mode.values) == [m.label for m in study.modes]
    return doses


def test_every_point_equals_a_separate_plan_and_damage_keys_share_simulations(tmp_path):
    data = dict(GRAPHENE, sweep={"damage.critical_dose": [30.0, 1e5], "microscope.semiangle_cutoff": [25.0, 30.0]})
    result = sweep(data, checkpoint_dir=str(tmp_path), progress=False)
    assert result.required_dose.dims == ("mode", "energy", "damage.critical_dose", "microscope.semiangle_cutoff")
    assert list(result.mode_label.values) == ["HAADF", "HRTEM Δf=-60Å"]
    for dc in (30.0, 1e5):
        for alpha in (25.0, 30.0):
            expected = _separate(_at(GRAPHENE, damage__critical_dose=dc, microscope__semiangle_cutoff=alpha))
            got = result.required_dose.sel({"damage.critical_dose": dc, "microscope.semiangle_cutoff": alpha})
            np.testing.assert_allclose(got.values, expected.values, rtol=1e-12)
            budget = result.budget.sel({"damage.critical_dose": dc, "microscope.semiangle_cutoff": alpha})
            assert np.all(budget.values <= dc)  # the critical dose reached the budget at this point
    # a low critical dose makes the feature undetectable, a high one does not: the key was applied
    assert not np.isfinite(result.required_dose.sel({"damage.critical_dose": 30.0})).any()
    assert np.isfinite(result.required_dose.sel({"damage.critical_dose": 1e5})).all()
    # two convergence angles × two hypotheses: the critical-dose axis re-used the simulations
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".nc")]) == 4


def test_thickness_band_covers_separate_plans_at_the_sampled_thicknesses(tmp_path):
    data = dict(SRTIO3, sweep={"uncertain": {"specimen.supercell[2]": {"sd": 1.0, "samples": 3}}})
    spec = sweep_from_document(data)
    assert spec.unknowns[0].samples == (2, 3, 4)  # quantile midpoints of N(3, 1), rounded to unit cells
    result = sweep(spec, checkpoint_dir=str(tmp_path), progress=False)
    assert result.attrs["thickness_series"] == 1  # the three thicknesses came from one simulation
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".nc")]) == 2  # 4 u.c., H0 and H1
    separate = [float(_separate(_at(SRTIO3, specimen__supercell=[2, 2, n])).squeeze()) for n in (2, 3, 4)]
    assert len(set(np.round(separate, 6))) == 3  # the thickness matters, so the band is a real test
    low, high = float(result.required_dose_low.squeeze()), float(result.required_dose_high.squeeze())
    assert low == pytest.approx(min(separate), rel=1e-12) and high == pytest.approx(max(separate), rel=1e-12)
    assert low <= float(result.required_dose.squeeze()) <= high
    np.testing.assert_allclose(result.required_dose_samples.squeeze().values, separate, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")  # a periodic 2×2 crystal: wrapping intended
def test_a_thickness_axis_uses_the_exit_planes_of_the_thickest_simulation_and_equals_separate_plans(tmp_path):
    modes = [{"name": "HRTEM", "defocus": -50.0}, {"name": "ADF", "inner": 40.0, "outer": 80.0}, {"name": "iDPC"}]
    base = dict(SRTIO3, modes=modes, simulation=dict(SRTIO3["simulation"], scan_step=0.5, window=1.5))
    result = sweep(dict(base, sweep={"specimen.supercell[2]": [1, 3, 5]}), checkpoint_dir=str(tmp_path), progress=False)
    assert result.attrs["thickness_series"] == 1
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".nc")]) == 2  # one simulation per hypothesis
    for n in (1, 3, 5):
        expected = _separate(_at(base, specimen__supercell=[2, 2, n]))
        got = result.required_dose.sel({"specimen.supercell[2]": n})
        # multislice is causal: the exit plane at n cells is the n-cell specimen (float32 rounding)
        np.testing.assert_allclose(got.values, expected.values, rtol=1e-4)
    # a study whose thinner points are not cuts of the thicker one (vacuum below the crystal) is
    # simulated point by point, never taken from a series
    apart = dict(base, specimen=dict(base["specimen"], vacuum=3.0), sweep={"specimen.supercell[2]": [1, 2]})
    assert sweep(apart, progress=False).attrs["thickness_series"] == 0


def test_normal_unknown_samples_are_quantile_midpoints():
    u = Unknown.normal("microscope.focal_spread", 30.0, 10.0, samples=5)
    from statistics import NormalDist

    assert u.samples[2] == pytest.approx(30.0)
    assert u.samples[0] == pytest.approx(30.0 + 10.0 * NormalDist().inv_cdf(0.1))
    assert np.allclose(np.add(u.samples, u.samples[::-1]), 60.0)  # symmetric about the mean


@pytest.mark.parametrize(
    "table, message",
    [
        ({"microscope.semiangle_cutoff": []}, "empty list"),
        ({"microscope.semiangle_cutoff": {"start": 10, "stop": 20}}, "one of num or step"),
        ({"microscope.semiangle_cutoff": {"start": 10, "stop": 20, "num": 2, "by": 1}}, "unknown range keys"),
        ({"microscope.semiangle_cutoff": {"start": -1, "stop": 20, "num": 3, "spacing": "log"}}, "positive"),
        ({"microscope..cutoff": [1.0]}, "is not a key name"),
        ({"microscope.semiangle_cutoff": [20.0, -5.0]}, "microscope.semiangle_cutoff = -5.0"),
        ({"microscope.not_a_key": [1.0]}, "not_a_key"),
        ({"modes[7].defocus": [1.0]}, "index 7"),
        ({"uncertain": {"microscope.focal_spread": {"sd": 1.0}}}, "give the nominal value"),
        ({"uncertain": {"microscope.semiangle_cutoff": {"sd": 1.0, "shape": 2}}}, "unknown keys"),
        ({"uncertain": {"microscope.semiangle_cutoff": {"samples": 3}}}, "give sd"),
        (
            {"microscope.semiangle_cutoff": [20.0], "uncertain": {"microscope.semiangle_cutoff": {"sd": 1.0}}},
            "both swept and uncertain",
        ),
        ({"simulation.scan_step": {"start": 0.1, "stop": 1.0, "num": 5000}}, "more than"),
        ({}, "at least one"),
    ],
)
def test_bad_sweep_tables_are_refused_before_any_simulation(table, message):
    with pytest.raises(StudyError, match=message):
        sweep_from_document(dict(GRAPHENE, sweep=table))


def test_a_study_with_a_sweep_is_not_silently_planned_as_one_point(tmp_path):
    with pytest.raises(StudyError, match=r"\[sweep\] table"):
        study_from_dict(dict(GRAPHENE, sweep={"microscope.semiangle_cutoff": [20.0]}))
    with pytest.raises(StudyError, match="at least one"):
        Sweep(document=GRAPHENE)


SWEEP_TOML = """
name = "cli-sweep"
[specimen]
example = "graphene"
arguments = {vacuum = 2.0}
supercell = [3, 2, 1]
[feature]
kind = "substitution"
element = "Si"
host_element = "C"
[microscope]
energies = [80e3]
semiangle_cutoff = 25.0
[[modes]]
name = "HRTEM"
defocus = -60.0
[damage]
critical_dose = 100.0
[simulation]
sampling = 0.1
[sweep]
"damage.critical_dose" = {start = 1e3, stop = 1e5, num = 3, spacing = "log"}
"""


def test_temsim_plan_runs_a_sweep_file_and_refuses_to_overwrite_it(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP_TOML, encoding="utf-8")
    with pytest.raises(StudyError, match=r"\[sweep\] table"):
        load_study(path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "temsim.cli", "plan", str(path), "-o", str(out), "--quiet"]
    env = dict(os.environ, TEMSIM_CACHE_DIR=str(tmp_path / "cache"), MPLCONFIGDIR=str(tmp_path / "mpl"))
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "sweep.md", "sweep.nc", "sweep.png"]
    with xr.open_dataset(out / "sweep.nc", engine="h5netcdf") as ds:
        np.testing.assert_allclose(ds["damage.critical_dose"].values, [1e3, 1e4, 1e5])
        doses = ds.required_dose.values.ravel()
    table = (out / "sweep.md").read_text()
    best = np.nanmin(doses)
    assert f"{best:.3g}" in table and "damage.critical_dose = 100000" in table
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_a_sweep_on_a_two_worker_local_cluster_equals_the_serial_sweep(tmp_path):
    pytest.importorskip("distributed")
    from temsim.settings import ExecutionSettings

    data = dict(GRAPHENE, modes=GRAPHENE["modes"][:1], sweep={"microscope.semiangle_cutoff": [25.0, 30.0]})
    data.pop("damage")  # no budget: every point detectable, so the comparison is of finite numbers
    serial = sweep(data, progress=False)
    cluster = sweep(data, settings=ExecutionSettings(scheduler="local", workers=2, progress=False))
    assert np.isfinite(serial.required_dose).all()
    np.testing.assert_allclose(cluster.required_dose.values, serial.required_dose.values, rtol=1e-6)
    np.testing.assert_allclose(cluster.j_per_dose.values, serial.j_per_dose.values, rtol=1e-6)
