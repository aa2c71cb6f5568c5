"""Crash safety of streamed scans: SIGKILL at random moments, then resume (multislice and Bloch).

A child process runs a streamed scan and logs every unit it has stored; the parent kills it
with SIGKILL after a random number of units (plus a random delay, so kills land inside the
computation and inside the atomic write alike). After several kills a last run completes
the scan. It must equal an uninterrupted in-memory run, and no unit may be stored twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

import temsim
from temsim.io import StoreSink

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import temsim
    from temsim import io

    case, log, output = sys.argv[1], sys.argv[2], sys.argv[3]
    original = io.StoreSink.write

    def write(self, unit, values):
        time.sleep(0.02)  # stretch the run so that kills can land at many points
        original(self, unit, values)
        with open(log, "a") as f:
            f.write(f"{unit.index}\\n")

    io.StoreSink.write = write
    sys.path.insert(0, sys.argv[4])
    import test_scan_store as cases

    cases.run(case, output)
    """
)


def _multislice_case():
    rng = np.random.default_rng(7)
    v = rng.normal(size=(3, 64, 64)).astype(np.float32)
    potential = temsim.ArrayPotential(np.abs(np.fft.ifft2(np.fft.fft2(v) * 0.05)).real * 400, (10.0, 10.0), 2.0)
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
    detectors = {
        "ADF": temsim.AnnularDetector(30, 50),
        "4D": temsim.PixelatedDetector(max_angle=40),
        "iCoM": temsim.IntegratedCenterOfMass(),
    }
    return probe, potential, detectors, temsim.GridScan(gpts=(8, 8))


def _bloch_case():
    from temsim import structure

    probe = temsim.Probe(energy=200e3, semiangle_cutoff=10.0)
    detectors = {"HAADF": temsim.AnnularDetector(50.0, 100.0), "BF": temsim.AnnularDetector(0.0, 10.0)}
    return probe, structure.srtio3(), detectors


def run(case: str, output=None, **kwargs):
    """Run one case (streamed when ``output`` is given); the child process calls this."""
    quiet = temsim.ExecutionSettings(batch_size=4, progress=False)
    if case == "multislice":
        probe, potential, detectors, positions = _multislice_case()
        return temsim.scan(probe, potential, detectors, positions, output=output, settings=quiet, **kwargs)
    probe, atoms, detectors = _bloch_case()
    return temsim.bloch_scan(
        probe,
        atoms,
        detectors,
        thickness=(40.0, 80.0),
        repetitions=(2, 2),
        scan=temsim.GridScan(gpts=(4, 4)),
        g_max=3.0,
        sampling=0.08,
        output=output,
        settings=quiet.replace(batch_size=2),
        **kwargs,
    )


def _units(case: str) -> int:
    return 16 if case == "multislice" else 8


def _child(case, log, output):
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, case, str(log), str(output), here],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _logged(log) -> list[int]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [int(line) for line in f.read().split()]


@pytest.mark.parametrize("case, kills", [("multislice", 5), ("bloch", 3)])
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_result(tmp_path, case, kills):
    rng = np.random.default_rng(11 if case == "multislice" else 12)
    output = tmp_path / "scan.nc"
    log = tmp_path / "units.log"
    n_units = _units(case)
    killed = 0
    for _ in range(kills):
        stored = len(_logged(log))
        if stored >= n_units - 1:
            break
        target = stored + int(rng.integers(1, max(2, (n_units - stored) // 2)))
        child = _child(case, log, output)
        deadline = time.monotonic() + 120
        while len(_logged(log)) < target and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.03)))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        child.wait()
        assert not output.exists() or len(_logged(log)) == n_units
    assert killed >= 2, "the scan finished before it could be killed; the test no longer tests a kill"
    assert (tmp_path / "scan.nc.part").is_dir()
    child = _child(case, log, output)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 0, err.decode()
    logged = _logged(log)
    assert sorted(logged) == list(range(n_units)), f"units stored {logged}: each exactly once"
    assert not (tmp_path / "scan.nc.part").exists()
    resumed = xr.open_dataset(output, engine="h5netcdf")
    fresh = run(case)
    for name in fresh.data_vars:
        # to complex64 rounding: the child processes may pick other FFTW plans than this one
        scale = float(np.abs(fresh[name].values).max())
        np.testing.assert_allclose(resumed[name].values, fresh[name].values, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
        assert resumed[name].dims == fresh[name].dims


def test_resume_with_changed_inputs_is_refused_and_foreign_store_named(tmp_path):
    probe, potential, detectors, positions = _multislice_case()
    output = tmp_path / "scan.nc"
    settings = temsim.ExecutionSettings(batch_size=16, progress=False)
    original = StoreSink.write
    calls = {"n": 0}

    def crashing(self, unit, values):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        original(self, unit, values)

    StoreSink.write = crashing
    try:
        with pytest.raises(KeyboardInterrupt):
            temsim.scan(probe, potential, detectors, positions, output=output, settings=settings)
    finally:
        StoreSink.write = original
    changed = {"ADF": temsim.AnnularDetector(30, 45)}
    with pytest.raises(temsim.InputError, match="different parameters"):
        temsim.scan(probe, potential, changed, positions, output=output, settings=settings)
    with pytest.raises(temsim.InputError, match="another batch size"):
        temsim.scan(probe, potential, detectors, positions, output=output, settings=settings.replace(batch_size=8))
    # the same inputs resume; a fresh start is explicit
    done = temsim.scan(probe, potential, changed, positions, output=output, settings=settings, resume=False)
    assert done.ADF.shape == (8, 8)
    other = tmp_path / "other.nc"
    (tmp_path / "other.nc.part").write_text("not a store")
    with pytest.raises(temsim.InputError, match="not a temsim scan store"):
        temsim.scan(probe, potential, changed, positions, output=other, settings=settings)


def test_multislice_thickness_series_streams_and_equals_separate_runs(tmp_path):
    probe, potential, detectors, positions = _multislice_case()
    settings = temsim.ExecutionSettings(batch_size=16, progress=False)
    series = temsim.scan(
        probe, potential, detectors, positions, save_every=1, settings=settings, output=tmp_path / "series.nc"
    )
    assert series["4D"].dims == ("thickness", "scan_x", "scan_y", "kx", "ky")
    np.testing.assert_allclose(series.thickness.values, [2.0, 4.0, 6.0])
    slices = np.stack([np.asarray(s) for s in potential.iter_slices()])
    for index in range(3):
        thinner = temsim.ArrayPotential(slices[: index + 1], potential.grid.extent, 2.0)
        single = temsim.scan(probe, thinner, detectors, positions, settings=settings)
        assert float(single.thickness) == pytest.approx(2.0 * (index + 1))
        for name in detectors:  # intermediate planes take one more FFT: equal to complex64 rounding
            scale = float(np.abs(single[name].values).max())
            np.testing.assert_allclose(
                series[name].values[index], single[name].values, rtol=2e-5, atol=2e-5 * scale, err_msg=name
            )


def test_work_units_are_numbered_once_each_and_prism_phonons_stream_like_memory(tmp_path):
    from temsim import structure
    from temsim.solvers.driver import work_units
    from temsim.solvers.stem import build_engine

    phonons = temsim.FrozenPhonons(sigmas=0.08, num_configs=2, seed=1)
    potential = temsim.Potential(
        structure.tile(structure.srtio3(), (4, 4, 1)), gpts=(192, 192), slice_thickness=3.905 / 2, phonons=phonons
    )
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
    settings = temsim.ExecutionSettings(batch_size=4, progress=False)
    engine = build_engine("prism", probe, potential, potential.grid, settings, interpolation=(2, 1), elastic=True)
    units = work_units(engine, 10, 4, elastic=True)
    assert [u.index for u in units] == list(range(9))  # 2 configurations + the mean, 3 batches each
    assert [(u.config, u.start) for u in units[:4]] == [(0, 0), (0, 4), (0, 8), (1, 0)]
    detectors = {"BF": temsim.AnnularDetector(0, 20), "HAADF": temsim.AnnularDetector(50, 80)}
    positions = temsim.GridScan(gpts=(2, 5))
    kw = {"method": "prism", "interpolation": (2, 1), "elastic": True, "settings": settings}
    memory = temsim.scan(probe, potential, detectors, positions, **kw)
    streamed = temsim.scan(probe, potential, detectors, positions, output=tmp_path / "prism.nc", **kw)
    for name in memory.data_vars:
        np.testing.assert_allclose(streamed[name].values, memory[name].values, rtol=1e-6, atol=1e-9, err_msg=name)


def test_the_driver_runs_an_engine_on_array_api_strict_like_numpy():
    """The GPU path in miniature: engine and detectors on array_api_strict arrays (a stand-in for CuPy)."""
    import array_api_strict

    from temsim.solvers.driver import run_scan
    from temsim.solvers.multislice import MultisliceEngine

    probe, potential, detectors, positions = _multislice_case()
    resolved = temsim.GridScan(gpts=(3, 3)).resolve(potential.grid.extent, 0.3)
    settings = temsim.ExecutionSettings(batch_size=4, progress=False)
    results = []
    for xp in (np, array_api_strict):
        engine = MultisliceEngine(probe, [potential], potential.grid, xp)
        results.append(run_scan(engine, probe, detectors, resolved, settings=settings))
    for name in detectors:
        scale = float(np.abs(results[0][name].values).max())
        np.testing.assert_allclose(results[1][name].values, results[0][name].values, rtol=1e-4, atol=1e-5 * scale)
