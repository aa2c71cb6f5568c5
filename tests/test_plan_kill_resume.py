"""Crash safety of ``temsim plan`` (a plan and a sweep): SIGKILL at random moments, then rerun; and
checkpoint trust.

A child process runs ``temsim plan`` on a small study (one energy, two annular modes, two
frozen-phonon configurations: four simulations) and logs each simulation it saves and the
start of the report. The parent kills it with SIGKILL after a random number of logged events
plus a random delay, so kills land inside simulations, checkpoint writes, the Monte-Carlo
check and the report files. Reruns need no ``--overwrite``; the last one completes. Its
``plan.nc`` and ``report.md`` must equal those of an uninterrupted run, and no simulation may
be saved twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import xarray as xr

from temsim.checkpoints import CheckpointWarning
from temsim.planning import simulate
from temsim.study import load_study

STUDY = """
name = "kill-test"
[specimen]
example = "graphene"
arguments = {vacuum = 2.0}
supercell = [5, 3, 1]
[feature]
kind = "substitution"
element = "Si"
host_element = "C"
[microscope]
energies = [80e3]
semiangle_cutoff = 30.0
[[modes]]
name = "HAADF"
inner = 60.0
outer = 150.0
[[modes]]
name = "ABF"
[phonons]
num_configs = 2
sigma = {C = 0.07, Si = 0.08}
seed = 1
[damage]
knock_on_element = "C"
displacement_energy = 21.14
[simulation]
sampling = 0.08
scan_step = 0.5
window = 2.0
slice_thickness = 4.0
"""
SIMULATIONS = 4
# The same study swept over two convergence angles (new simulations) and two critical doses
# (the same simulations, re-evaluated): 2 angles × 2 hypotheses × 1 configuration.
SWEEP = STUDY.replace("num_configs = 2", "num_configs = 1") + (
    '[sweep]\n"microscope.semiangle_cutoff" = [25.0, 30.0]\n"damage.critical_dose" = [100.0, 1e5]\n'
)
RUNS = {
    "plan": (STUDY, SIMULATIONS, "plan.nc", "report.md"),
    "sweep": (SWEEP, 4, "sweep.nc", "sweep.md"),
}

CHILD = textwrap.dedent(
    """
    import sys, time
    import temsim.plan_simulation as planning
    import temsim.report as report
    from temsim.cli import main

    log, study, output = sys.argv[1], sys.argv[2], sys.argv[3]

    def note(text):
        with open(log, "a") as f:
            f.write(text + "\\n")

    original_save = planning.save_checkpoint

    def save(path, ds, key):
        time.sleep(0.1)  # stretch the run so that kills land inside simulations and writes
        original_save(path, ds, key)
        note("saved " + key)

    planning.save_checkpoint = save
    original_report = report.write_report

    def write_report(*args, **kwargs):
        note("report")
        return original_report(*args, **kwargs)

    report.write_report = write_report
    original_figure = report._figure_power

    def figure(*args):
        time.sleep(0.3)
        return original_figure(*args)

    report._figure_power = figure
    import temsim.sweep_report as sweep_report
    original_sweep_report = sweep_report.write_sweep_report

    def write_sweep_report(*args, **kwargs):
        note("report")
        return original_sweep_report(*args, **kwargs)

    sweep_report.write_sweep_report = write_sweep_report
    original_sweep_figure = sweep_report._figure

    def sweep_figure(*args):
        time.sleep(0.3)
        return original_sweep_figure(*args)

    sweep_report._figure = sweep_figure
    sys.exit(main(["plan", study, "-o", output, "--quiet"]))
    """
)


def _env(cache):
    env = dict(os.environ, TEMSIM_CACHE_DIR=str(cache), MPLCONFIGDIR=str(cache / "mpl"))
    env["PYTHONWARNINGS"] = "error::DeprecationWarning"
    return env


def _child(log, study, output, env):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(log), str(study), str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def _events(log) -> list[str]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return f.read().splitlines()


def _numbers(path) -> dict:
    """Every variable of every group (plan.nc keeps each mode's signals in its own group)."""
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return {f"{node.path}:{name}": node.ds[name].values for node in tree.subtree for name in node.ds.variables}


@pytest.mark.parametrize("run", list(RUNS))
def test_sigkill_at_random_points_then_rerun_gives_the_uninterrupted_plan(tmp_path, run):
    text, simulations, result_file, report_file = RUNS[run]
    cache = tmp_path / "cache"
    study = tmp_path / "study.toml"
    study.write_text(text, encoding="utf-8")
    env = _env(cache)
    # the uninterrupted reference (it also stores the FFTW wisdom both runs then share)
    start = time.monotonic()
    reference = subprocess.run(
        [sys.executable, "-m", "temsim.cli", "plan", str(study), "-o", str(tmp_path / "reference"), "--quiet"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr.decode()
    uninterrupted = time.monotonic() - start

    rng = np.random.default_rng(2024)
    output, log = tmp_path / "killed", tmp_path / "events.log"
    kills = []
    for _ in range(12):
        if len(kills) >= 6:
            break
        seen = len(_events(log))
        saved = sum(e.startswith("saved") for e in _events(log))
        # events still to come in this run: each missing simulation, then the report
        target = seen + int(rng.integers(1, simulations - saved + 2))
        delay = float(rng.uniform(0.0, 0.5))
        child = _child(log, study, output, env)
        deadline = time.monotonic() + 120
        while len(_events(log)) < target and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills.append((target - seen, round(delay, 3), _events(log)[-1] if _events(log) else "start"))
        child.wait()
        assert child.returncode in (0, -signal.SIGKILL), child.stderr.read().decode()
        if child.returncode == 0:
            break
    assert len(kills) >= 5, f"only {len(kills)} kills landed: {kills}"
    start = time.monotonic()
    final = _child(log, study, output, env)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    resumed = time.monotonic() - start
    print(f"kills (events into the run, delay s, last event): {kills}")
    print(f"uninterrupted {uninterrupted:.1f} s, final rerun {resumed:.1f} s")

    saved = [e.split()[1] for e in _events(log) if e.startswith("saved")]
    assert len(saved) == len(set(saved)), f"a simulation was saved twice: {saved}"
    files = sorted(os.listdir(output / "checkpoints"))
    assert len(files) == simulations and all(f.endswith(".nc") for f in files), files
    assert not (output / ".temsim-plan-in-progress").exists()
    expected, actual = _numbers(tmp_path / "reference" / result_file), _numbers(output / result_file)
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        if value.dtype.kind in "fc":
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
        else:
            assert actual[name].tolist() == value.tolist(), name
    assert (output / report_file).read_text() == (tmp_path / "reference" / report_file).read_text()


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "study.toml"
    path.write_text(STUDY.replace("num_configs = 2", "num_configs = 1"), encoding="utf-8")
    return load_study(path)


@pytest.mark.parametrize("damage", ["truncated", "edited", "foreign", "not a file format"])
def test_a_damaged_checkpoint_is_recomputed_with_a_warning_never_trusted(tmp_path, small_study, damage):
    checkpoints = tmp_path / "checkpoints"
    first = simulate(small_study, checkpoint_dir=str(checkpoints), progress=False)
    files = sorted(checkpoints.iterdir())
    victim, other = files[0], files[1]
    untouched = other.read_bytes()
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "edited":
        ds = xr.load_dataset(victim, engine="h5netcdf")
        ds["m0"] = ds["m0"] * 1e-9  # the edit of the issue: a plan of 5e-10 e/Å²
        victim.unlink()
        ds.to_netcdf(victim, engine="h5netcdf")
    elif damage == "foreign":
        victim.write_bytes(other.read_bytes())
    else:
        victim.write_text("PK\x03\x04 not a checkpoint")
    with pytest.warns(CheckpointWarning, match=str(victim)):
        again = simulate(small_study, checkpoint_dir=str(checkpoints), progress=False)
    for name in first.data_vars:
        np.testing.assert_array_equal(again[name].values, first[name].values, err_msg=name)
    assert other.read_bytes() == untouched, "other work must never be touched"
    assert any(p.name.startswith(victim.name + ".corrupt") for p in checkpoints.iterdir()), "set aside, not deleted"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(small_study, checkpoint_dir=str(checkpoints), progress=False)  # now trusted again


def test_two_runs_of_the_graphene_example_give_identical_plan_numbers(tmp_path):
    env = _env(tmp_path / "cache")
    runs = []
    for run in ("first", "second"):
        done = subprocess.run(
            [sys.executable, "-m", "temsim.cli", "plan", "--example", "graphene-si", "-o", str(tmp_path / run)]
            + ["--quiet"],
            env=env,
            capture_output=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr.decode()
        runs.append(_numbers(tmp_path / run / "plan.nc"))
    first, second = runs
    assert first.keys() == second.keys()
    for name, value in first.items():
        if value.dtype.kind in "fc":
            np.testing.assert_array_equal(second[name], value, err_msg=name)
        else:
            assert second[name].tolist() == value.tolist(), name
