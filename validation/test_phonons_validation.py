"""Debye-model Debye–Waller factors of silicon against measured values.

The Debye model with one Debye–Waller temperature Θ_D = 543 K is compared with measured
isotropic B factors of Si at 100 K, room temperature and 300 K. The numbers are written to
``validation/output/phonons_debye.json``.

Measurements
------------
* "Synchrotron total-scattering data applicable to dual-space structural analysis",
  IUCrJ 8, 387–394 (2021), Table 2 (reciprocal-space refinement): U_Si = 29.7(3)×10⁻⁴ Å² at 100 K,
  57.7(3)×10⁻⁴ Å² at 300 K; B = 8π²U.
* M. Deutsch and M. Hart, Phys. Rev. B 31, 3846 (1985): B = 0.4632(41) Å² at room
  temperature (taken as 295 K) from high-order X-ray structure factors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers

from temsim.phonons import FrozenPhonons, debye_b_factor, sigma_to_b_factor
from temsim.structure import tile

RESULTS = Path(__file__).parent / "output"  # untracked; validation/summarize.py -> SUMMARY.md
THETA_SI = 543.0  # K, X-ray Debye–Waller temperature of Si
TOLERANCE = 0.05  # relative; the Debye model with one Θ is good to a few per cent for Si

MEASURED = [
    # (temperature K, B Å², uncertainty Å², source)
    (100.0, 8 * math.pi**2 * 29.7e-4, 8 * math.pi**2 * 0.3e-4, "IUCrJ 8 (2021) 387, Table 2 (reciprocal space)"),
    (295.0, 0.4632, 0.0041, "Deutsch & Hart, Phys. Rev. B 31 (1985) 3846"),
    (300.0, 8 * math.pi**2 * 57.7e-4, 8 * math.pi**2 * 0.3e-4, "IUCrJ 8 (2021) 387, Table 2 (reciprocal space)"),
]


def write_result(name: str, payload: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(payload, indent=2) + "\n")


def test_silicon_debye_waller_factor_matches_measurements():
    mass = atomic_masses[atomic_numbers["Si"]]
    rows = []
    for temperature, measured, uncertainty, source in MEASURED:
        model = debye_b_factor(THETA_SI, temperature, mass)
        rows.append(
            {
                "temperature_K": temperature,
                "B_measured_A2": round(measured, 5),
                "B_uncertainty_A2": round(uncertainty, 5),
                "B_debye_A2": round(model, 5),
                "relative_difference": round(model / measured - 1, 5),
                "source": source,
            }
        )
    # the temperature dependence: ratio B(300 K)/B(100 K), same experiment, same refinement
    ratio_measured = MEASURED[2][1] / MEASURED[0][1]
    ratio_model = debye_b_factor(THETA_SI, 300.0, mass) / debye_b_factor(THETA_SI, 100.0, mass)
    write_result(
        "phonons_debye.json",
        {
            "element": "Si",
            "debye_temperature_K": THETA_SI,
            "mass_u": mass,
            "comparisons": rows,
            "ratio_B300_over_B100": {"measured": round(ratio_measured, 4), "debye": round(ratio_model, 4)},
            "tolerance": TOLERANCE,
        },
    )
    for row in rows:
        assert abs(row["relative_difference"]) <= TOLERANCE, row
    assert ratio_model == pytest.approx(ratio_measured, rel=0.03)


def test_frozen_phonon_silicon_reproduces_its_b_factor():
    """The sampled displacements of a Debye-model Si crystal carry the model's B (to 1 %)."""
    crystal = tile(bulk("Si", cubic=True, a=5.431), (6, 6, 6))  # 1728 atoms
    phonons = FrozenPhonons(debye_temperature={"Si": THETA_SI}, temperature=300.0, num_configs=8, seed=1)
    shifts = [c.positions - crystal.positions for c in phonons.configurations(crystal)]
    sample_b = sigma_to_b_factor(math.sqrt(sum((s**2).mean() for s in shifts) / len(shifts)))
    expected = debye_b_factor(THETA_SI, 300.0, atomic_masses[atomic_numbers["Si"]])
    # 8 × 1728 × 3 = 41472 squares: relative std of the variance estimate √(2/n) = 0.7 %
    assert sample_b == pytest.approx(expected, rel=5 * math.sqrt(2 / 41472))
