"""Sweep benchmark (issue #15): a thickness sweep from one simulation's exit planes vs separate plans.

Case: an O vacancy in the entrance unit cell of SrTiO3 [001], 2×2 unit cells laterally,
1 … 20 unit cells (0.4–7.8 nm) thick (quick: 1 … 10), 200 keV, 20 mrad, HRTEM + ADF 40–80 mrad + iDPC,
0.06 Å sampling, a 1.5 Å window scanned at 0.3 Å. The sweep simulates the thickest specimen
once and takes every thinner one from its exit planes (multislice is causal); the separate
plans simulate each thickness on its own. Both are timed in this process, each after a warm-up
plan that fills the FFTW wisdom, and their minimum doses are compared.
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np

NAME = "sweep"


def _document(cells: list[int]) -> dict:
    return {
        "name": "thickness-sweep-bench",
        "specimen": {"example": "srtio3", "supercell": [2, 2, max(cells)]},
        "feature": {"kind": "vacancy", "host_element": "O", "site": 2},
        "microscope": {"energies": [200e3], "semiangle_cutoff": 20.0},
        "modes": [
            {"name": "HRTEM", "defocus": -50.0},
            {"name": "ADF", "inner": 40.0, "outer": 80.0},
            {"name": "iDPC"},
        ],
        "dose": {"range": [1.0, 1e8]},
        "simulation": {"sampling": 0.06, "slice_thickness": 1.9525, "scan_step": 0.3, "window": 1.5},
        "sweep": {"specimen.supercell[2]": cells},
    }


def run(quick: bool = False) -> dict:
    from temsim.planning import plan
    from temsim.study import study_from_dict
    from temsim.sweeps import sweep

    warnings.simplefilter("ignore")  # a 7.8 Å cell: the probe's tails wrap (intended here)
    cells = list(range(1, 11 if quick else 21))
    document = _document(cells)
    base = copy.deepcopy(document)
    base.pop("sweep")

    def separate(n: int) -> np.ndarray:
        data = copy.deepcopy(base)
        data["specimen"]["supercell"] = [2, 2, n]
        result = plan(study_from_dict(data), progress=False, monte_carlo_trials=20, limits_of_any_detector=False)
        return result.dataset.required_dose.values[:, 0]

    separate(1)  # warm-up: FFTW wisdom for the grid, imports
    t0 = time.perf_counter()
    result = sweep(document, progress=False)
    t_sweep = time.perf_counter() - t0
    t0 = time.perf_counter()
    doses = np.array([separate(n) for n in cells]).T
    t_separate = time.perf_counter() - t0
    swept = result.required_dose.values[:, 0, :]
    difference = float(np.nanmax(np.abs(swept / doses - 1)))
    ratio = t_separate / t_sweep
    labels = [str(v) for v in result.mode_label.values]
    rows = "\n".join(
        f"| {label} | " + " | ".join(f"{d:.3g}" for d in swept[i]) + " |" for i, label in enumerate(labels)
    )
    markdown = (
        f"Thickness sweep {cells[0]}–{cells[-1]} unit cells: one thick simulation with its exit planes "
        f"{t_sweep:.1f} s, separate plans {t_separate:.1f} s (×{ratio:.1f}); largest relative difference of "
        f"the minimum doses {difference:.1e}.\n\n"
        "| mode | " + " | ".join(f"{n} u.c." for n in cells) + " |\n|---|" + "---|" * len(cells) + "\n" + rows
    )
    return {
        "title": f"thickness sweep, SrTiO3 [001] O vacancy, 1–{cells[-1]} u.c., HRTEM + ADF + iDPC"
        + (" (quick)" if quick else ""),
        "quick": quick,
        "cases": {
            "sweep_s": t_sweep,
            "separate_s": t_separate,
            "speedup": ratio,
            "max_relative_difference": difference,
            "cells": cells,
            "used_thickness_series": bool(result.attrs.get("thickness_series")),
        },
        "targets": [
            {
                "description": "thickness sweep from one simulation's exit planes vs separate plans (speed-up)",
                "measured": round(ratio, 2),
                "threshold": "≥ 5",
                "met": ratio >= 5,
            },
            {
                "description": "largest relative difference of the minimum doses, sweep vs separate plans",
                "measured": difference,
                "threshold": "≤ 1e-4",
                "met": difference <= 1e-4,
            },
        ],
        "markdown": markdown,
    }
