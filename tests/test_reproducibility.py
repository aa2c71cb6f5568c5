"""The same inputs and seeds give bit-identical numbers from run to run (default FFT planning)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import temsim
from temsim.backend import FFTPlan, fft_planning

RUN = textwrap.dedent(
    """
    import hashlib
    import numpy as np
    import temsim
    from temsim import structure

    potential = temsim.Potential(structure.tile(structure.srtio3(), (3, 3, 2)), gpts=(240, 240),
                                 slice_thickness=3.905 / 2,
                                 phonons=temsim.FrozenPhonons(sigmas=0.08, num_configs=2, seed=5))
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
    detectors = {"HAADF": temsim.AnnularDetector(60, 150), "4D": temsim.PixelatedDetector(max_angle=40)}
    ds = temsim.scan(probe, potential, detectors, temsim.GridScan(gpts=(4, 4)), progress=False)
    wave = temsim.multislice(temsim.PlaneWave(energy=200e3), potential)
    digest = hashlib.sha256()
    for array in (ds.HAADF.values, ds["4D"].values, wave.values):
        digest.update(np.ascontiguousarray(array).tobytes())
    print(digest.hexdigest())
    """
)


def test_runs_give_bit_identical_results_from_a_fresh_wisdom_cache_on(tmp_path):
    """The first run measures and stores its plan choices; later runs load them: same bits."""
    env = dict(os.environ, TEMSIM_CACHE_DIR=str(tmp_path / "cache"))
    digests = []
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    wisdom = list((tmp_path / "cache").glob("fftw-wisdom-*.txt"))
    assert len(wisdom) == 1 and wisdom[0].stat().st_size > 0
    assert digests[0] == digests[1] == digests[2] and len(digests[0]) == 64


def test_estimate_planning_is_reproducible_without_a_cache(tmp_path):
    env = dict(os.environ, TEMSIM_CACHE_DIR=str(tmp_path / "unused"))
    code = RUN.replace("progress=False)", "settings=temsim.ExecutionSettings(fft_planning='estimate', progress=False))")
    code = code.replace(
        "wave = temsim.multislice(temsim.PlaneWave(energy=200e3), potential)",
        "wave = temsim.multislice(temsim.PlaneWave(energy=200e3), potential, "
        "settings=temsim.ExecutionSettings(fft_planning='estimate'))",
    )
    digests = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1]


def test_fft_planning_setting_is_validated_and_scoped():
    with pytest.raises(temsim.InputError, match="fft_planning must be one of"):
        temsim.ExecutionSettings(fft_planning="patient")
    settings = temsim.ExecutionSettings(fft_planning="estimate", threads=1)
    from temsim.backend import _PLANNING, default_threads

    assert _PLANNING.get() == "measure"
    with settings.activate():
        assert _PLANNING.get() == "estimate" and default_threads() == 1
    assert _PLANNING.get() == "measure"
    with fft_planning("estimate"):
        plan = FFTPlan((1, 8, 8), __import__("numpy"))
        plan.buffer[...] = 1.0
        plan.forward()
        assert abs(plan.buffer[0, 0, 0] - 64.0) < 1e-4
