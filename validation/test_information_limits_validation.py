"""Validation of the limits of any detector: classical (4D) vs quantum information, Dwyer & Paganin.

Dwyer & Paganin (Phys. Rev. B 110, 024110 (2024), doi:10.1103/PhysRevB.110.024110; abstract and
conclusions) find that for a weak phase object 4D-STEM, detecting intensity in the diffraction
plane, reaches "about half of the quantum limit": classical / quantum Fisher information ≈ 1/2
(near-optimal with a delocalised speckled probe). For a weak feature the planner's ratio
``j₁(4D) / j_Q`` is exactly that Fisher-information ratio (docs/planning.md, "Quantum limit"),
so the number is checked here on a weak phase object scanned with a speckled probe, computed
independently of the multislice engine (one FFT per probe position).
"""

from __future__ import annotations

import numpy as np
import pytest
from _record import record

from temsim import detection, quantum_limit
from temsim.study import EXAMPLES

#: Dwyer & Paganin (2024): 4D-STEM reaches about half the quantum Fisher information (weak phase object).
PUBLISHED_RATIO = 0.5


def _probe(n: int, radius: float, speckle: bool, rng) -> np.ndarray:
    k = np.fft.fftfreq(n) * n
    aperture = (k[:, None] ** 2 + k[None, :] ** 2) <= radius**2
    phase = rng.uniform(0, 2 * np.pi, size=(n, n)) if speckle else 0.0
    wave = np.fft.ifft2(aperture * np.exp(1j * phase))
    return wave / np.linalg.norm(wave)


def _ratio(speckle: bool, seed: int = 0, n: int = 48, eps: float = 1e-4) -> float:
    rng = np.random.default_rng(seed)
    probe = _probe(n, 8.0, speckle, rng)
    # a weak, band-limited random phase object t = exp(iεV)
    k = np.fft.fftfreq(n) * n
    v = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * ((k[:, None] ** 2 + k[None, :] ** 2) <= 36)))
    v /= v.std()
    j4d = jq = 0.0
    for sx in range(0, n, 6):
        for sy in range(0, n, 6):
            p = np.roll(probe, (sx, sy), axis=(0, 1))
            psi0, psi1 = np.fft.fft2(p) / n, np.fft.fft2(p * np.exp(1j * eps * v)) / n
            j4d += detection.detection_statistics(np.abs(psi0) ** 2, np.abs(psi1) ** 2).j_per_dose
            h = quantum_limit.state_distance(psi0, psi1)
            jq += quantum_limit.quantum_statistics([h], 1.0).j_per_dose
    return j4d / jq


def test_four_d_reaches_half_the_quantum_limit_for_a_weak_phase_object():
    speckled = [_ratio(True, seed) for seed in range(3)]
    focused = _ratio(False)
    record(
        "information_limits",
        "dwyer_paganin_weak_phase_object",
        {"published": PUBLISHED_RATIO, "speckled_probe": speckled, "focused_probe": focused},
    )
    assert np.mean(speckled) == pytest.approx(PUBLISHED_RATIO, abs=0.05)
    assert 0 < focused <= 1  # never above the quantum limit


@pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")
@pytest.mark.parametrize("name", sorted(EXAMPLES))  # every built-in example
def test_data_processing_inequality_on_the_built_in_examples(name):
    """quantum limit ≤ 4D bound ≤ joint dose of the STEM detectors ≤ best single detector (small variants)."""
    import dataclasses

    from temsim.planning import FOUR_D_ROW, QUANTUM_ROW, plan
    from temsim.study import example_study

    study = example_study(name)
    study = dataclasses.replace(
        study,
        energies=study.energies[:1],
        modes=tuple(m for m in study.modes if m.kind in ("annular", "segmented")),
        scan_step=0.4,
        window=1.6,
        phonons=None,
    )
    result = plan(study, monte_carlo_trials=20, progress=False)
    dose = {r["mode"]: r["required_dose"] for r in result.table}
    undamaged = {r["mode"]: r["undamaged_dose"] for r in result.table}
    joint = [m for m in dose if m.startswith("joint: ")][0]
    singles = [m.label for m in study.modes]
    record(
        "information_limits",
        f"data_processing_{name}",
        {"undamaged_dose": {m: undamaged[m] for m in [QUANTUM_ROW, FOUR_D_ROW, joint, *singles]}},
    )
    # without damage (the doses are J*/j₁, so the chain is one of information)
    chain = [undamaged[QUANTUM_ROW], undamaged[FOUR_D_ROW], undamaged[joint], min(undamaged[m] for m in singles)]
    assert all(a <= b for a, b in zip(chain, chain[1:])), chain
