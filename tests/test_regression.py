"""Outputs recorded before the seams redesign must not change (tests/regression/cases.py).

The reference was recorded from commit fef3cd7 (before the solver-engine/scan-driver
redesign) with ``python tests/regression/cases.py tests/regression/reference.npz``. Arrays
computed in complex64 must agree to 1e-5 of their largest magnitude; two runs of that
same commit already differed by up to 1.2e-6 (FFTW_MEASURE may pick different plans).

The plan tables were re-recorded on purpose once since: the planner now uses each camera's
DQE(0) as its Poisson efficiency, so every STEM mode's J fell by exactly 1/(1 + 0.6²) = 0.7353
with the annular-PMT preset (doses ×1.36) while HRTEM rows stayed within 1e-6 — checked row by
row before the new reference was written.
A second re-recording changed the Rose column alone (now on the contrast magnitude at the
target's SNR); every other plan field moved by < 1e-7.
A third (damage and camera data tables) was checked row by row: every STEM row's rates and
doses are bit-identical; HRTEM rows moved by +0.12 … +0.33 % (the counting camera's DQE(f)
now enters the image statistics; H1 rates change by < 1e-4 of their maximum); the graphene
budget became unlimited at 60 kV (no knock-on, E_max < E_d) and 1.03e12 e/Å² at 80 kV
(Debye temperature 1287 K instead of 2000 K), SrTiO3 gained its O knock-on budget (3.4e4 /
3.2e4 e/Å² at 200 / 300 kV), and the verdicts name the feature's survival. The plan tables
hold the study's own modes (``limits_of_any_detector=False``; those rows have their own tests).

Plan tables: doses derived from the rates agree to 1e-4 relative — two runs of the old code
differed by up to 3.1e-5 in the COF example, for the same reason. The Rose dose thresholds the
contrast at 10% of its maximum, so it jumps with such tiny rate changes (1.6e-3 between two
runs), and the Monte-Carlo power is a 2,000-trial estimate (0.007 between runs): those are
compared at 2e-2 relative and 0.02 absolute.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "regression"))
import cases  # noqa: E402

REFERENCE = os.path.join(os.path.dirname(__file__), "regression", "reference.npz")


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _compare(key: str, expected: np.ndarray, actual: np.ndarray) -> None:
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"{key}: shape {actual.shape} != recorded {expected.shape}"
    if expected.dtype.kind in "US":
        assert actual.tolist() == expected.tolist(), key
        return
    if key.startswith("plan_"):
        field = key.split("_", 2)[-1] if "|" not in key else "rate"
        if field.endswith("rose_dose"):
            np.testing.assert_allclose(actual, expected, rtol=2e-2, err_msg=key)
        elif field.endswith(("mc_false_alarm", "mc_power")):
            np.testing.assert_allclose(actual, expected, atol=0.02, err_msg=key)
        elif field != "rate":
            np.testing.assert_allclose(actual, expected, rtol=1e-4, err_msg=key)
            return
        else:
            scale = np.max(np.abs(expected))
            assert np.max(np.abs(actual - expected)) <= 1e-5 * scale, key
        return
    scale = float(np.max(np.abs(expected)))
    error = float(np.max(np.abs(actual.astype(np.complex128) - expected.astype(np.complex128))))
    assert error <= 1e-5 * scale, f"{key}: max deviation {error / scale:.2e} of the largest value (limit 1e-5)"


@pytest.mark.parametrize("name", list(cases.CASES))
def test_outputs_unchanged(name, reference):
    outputs = cases.CASES[name]()
    assert outputs, name
    for key, value in outputs.items():
        assert key in reference, f"{key} is not in the recorded regression set"
        _compare(key, reference[key], value)
    prefix = {k.split("|")[0] for k in outputs}
    recorded = [k for k in reference if k.split("|")[0] in prefix]
    missing = set(recorded) - set(outputs)
    assert not missing, f"outputs no longer produced: {sorted(missing)}"
