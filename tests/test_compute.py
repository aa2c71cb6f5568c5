"""Scans on a dask.distributed cluster equal serial runs; worker errors name their unit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import temsim
from temsim import structure
from temsim.compute import UnitError, local_cluster_layout


def _specimen():
    phonons = temsim.FrozenPhonons(sigmas=0.08, num_configs=3, seed=4)
    return temsim.Potential(
        structure.tile(structure.srtio3(), (4, 4, 2)), gpts=(192, 192), slice_thickness=3.905 / 2, phonons=phonons
    )


PROBE = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
DETECTORS = {
    "HAADF": temsim.AnnularDetector(50, 80),
    "BF": temsim.AnnularDetector(0, 20),
    "4D": temsim.PixelatedDetector(max_angle=40),
}
SCAN = temsim.GridScan(gpts=(4, 4))


@pytest.fixture(scope="module")
def potential():
    return _specimen()


@pytest.mark.parametrize("method", ["multislice", "prism"])
def test_two_worker_local_cluster_equals_the_serial_run(potential, method, tmp_path):
    serial = temsim.ExecutionSettings(batch_size=4, progress=False)
    kw = {"method": method, "interpolation": (2, 1)} if method == "prism" else {}
    reference = temsim.scan(PROBE, potential, DETECTORS, SCAN, settings=serial, elastic=True, **kw)
    cluster = serial.replace(scheduler="local", workers=2)
    distributed = temsim.scan(PROBE, potential, DETECTORS, SCAN, settings=cluster, elastic=True, **kw)
    streamed = temsim.scan(
        PROBE, potential, DETECTORS, SCAN, settings=cluster, elastic=True, output=tmp_path / "scan.nc", **kw
    )
    for result in (distributed, streamed):
        assert set(result.data_vars) == set(reference.data_vars)
        for name in reference.data_vars:
            # diffuse = total − elastic: compare at the scale of the total (float32 rounding of each)
            base = name.removesuffix("_diffuse").removesuffix("_elastic")
            scale = float(np.abs(reference[base].values).max())
            np.testing.assert_allclose(
                result[name].values, reference[name].values, rtol=1e-6, atol=1e-6 * scale, err_msg=f"{method} {name}"
            )
    assert reference.attrs["frozen_phonon_configurations"] == 3


def test_one_stream_per_thread_equals_the_serial_run(potential, tmp_path):
    """scheduler="threads": the engine shared by two threads (locked caches, FFT buffers per
    thread) gives the serial numbers, in memory and streamed to a store; PRISM is refused."""
    serial = temsim.ExecutionSettings(batch_size=2, progress=False)
    reference = temsim.scan(PROBE, potential, DETECTORS, SCAN, settings=serial, elastic=True)
    threads = serial.replace(scheduler="threads", workers=2)
    for output in (None, tmp_path / "scan.nc"):
        result = temsim.scan(PROBE, potential, DETECTORS, SCAN, settings=threads, elastic=True, output=output)
        for name in reference.data_vars:
            scale = float(np.abs(reference[name.removesuffix("_diffuse").removesuffix("_elastic")].values).max())
            np.testing.assert_allclose(result[name].values, reference[name].values, rtol=1e-6, atol=1e-6 * scale)
    with pytest.raises(temsim.InputError, match="scheduler='threads'.*prism"):
        temsim.scan(PROBE, potential, DETECTORS, SCAN, settings=threads, method="prism", interpolation=(2, 1))


class _Failing(temsim.solvers.multislice.MultisliceEngine):
    """An engine that fails on the probes of the second batch (to test error reporting)."""

    def intensities(self, config_index, positions, defocus):
        if positions[0, 0] > 3.0:
            raise ValueError("simulated failure in a worker")
        yield from super().intensities(config_index, positions, defocus)


def test_worker_errors_name_the_unit_and_keep_the_worker_traceback():
    from temsim.positions import GridScan
    from temsim.solvers.driver import run_scan

    potential = temsim.Potential(
        structure.tile(structure.srtio3(), (4, 4, 1)), gpts=(160, 160), slice_thickness=3.905 / 2
    )
    engine = _Failing(PROBE, [potential], potential.grid, np)
    resolved = GridScan(gpts=(2, 4)).resolve(potential.grid.extent, 0.3)
    settings = temsim.ExecutionSettings(batch_size=4, progress=False, scheduler="local", workers=2)
    with pytest.raises(UnitError, match=r"(?s)WorkUnit\(index=1, start=4, stop=8.*simulated failure.*intensities"):
        run_scan(engine, PROBE, {"BF": temsim.AnnularDetector(0, 20)}, resolved, settings=settings)


def test_cluster_settings_are_checked():
    with pytest.raises(
        temsim.InputError, match="scheduler must be None, 'threads', 'local' or a dask scheduler address"
    ):
        temsim.ExecutionSettings(scheduler="slurm")
    with pytest.raises(temsim.InputError, match="workers applies to scheduler='local'"):
        temsim.ExecutionSettings(workers=2)
    with pytest.raises(temsim.InputError, match="workers must be ≥ 1"):
        temsim.ExecutionSettings(scheduler="local", workers=0)
    assert local_cluster_layout(2, None)[0] == 2 and local_cluster_layout(2, 3) == (2, 3)


def test_a_plan_on_a_shared_local_cluster_equals_the_serial_plan(tmp_path):
    from temsim.planning import plan
    from temsim.study import load_study

    sys.path.insert(0, str(Path(__file__).parent))
    from test_plan_kill_resume import STUDY

    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    study = load_study(path)
    serial = plan(study, settings=temsim.ExecutionSettings(progress=False), monte_carlo_trials=200)
    shared = plan(
        study, settings=temsim.ExecutionSettings(progress=False, scheduler="local", workers=2), monte_carlo_trials=200
    )
    for name in serial.rates.data_vars:
        np.testing.assert_allclose(shared.rates[name].values, serial.rates[name].values, rtol=1e-6, err_msg=name)
    # a weak-contrast mode's dose amplifies the rates' float32 rounding (workers run 1-thread FFTs)
    np.testing.assert_allclose(shared.dataset.required_dose.values, serial.dataset.required_dose.values, rtol=1e-5)
