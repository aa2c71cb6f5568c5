"""Cluster benchmark (issue #15): a frozen-phonon STEM scan on 1 and 2 dask workers.

Case: SrTiO3 [001], 4×4 unit cells laterally, 6 unit cells thick (quick: 2), 0.05 Å sampling
(320² grid), 200 keV, 20 mrad, HAADF + ABF + BF, four frozen-phonon configurations, one unit
cell scanned at 13×13 positions. Each layout gets a LocalCluster of single-threaded worker
processes started beforehand (its start-up is reported, not timed with the scan); the scan runs
on it through the scheduler address with one FFT thread per worker, twice, and the best time
counts. The in-process run (one thread) is the reference for the numbers and the time.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

NAME = "cluster"


def run(quick: bool = False) -> dict:
    from distributed import LocalCluster

    import temsim
    from temsim.structure import srtio3, tile

    warnings.simplefilter("ignore")
    thick = 2 if quick else 6
    phonons = temsim.FrozenPhonons(sigmas=0.08, num_configs=4, seed=1)
    potential = temsim.Potential(
        tile(srtio3(), (4, 4, thick)), sampling=0.05, slice_thickness=3.905 / 2, phonons=phonons
    )
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
    detectors = {
        "HAADF": temsim.AnnularDetector(70, 160),
        "ABF": temsim.AnnularDetector(10, 20),
        "BF": temsim.AnnularDetector(0, 20),
    }
    positions = temsim.GridScan(start=(0, 0), end=(3.905, 3.905), gpts=(13, 13))

    def timed(settings, repeat=2):
        best, result = np.inf, None
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = temsim.scan(probe, potential, detectors, positions, settings=settings)
            best = min(best, time.perf_counter() - t0)
        return best, result

    serial_s, reference = timed(temsim.ExecutionSettings(threads=1, progress=False, batch_size=3))
    cases = {"in process, 1 thread": {"seconds": serial_s, "startup_s": 0.0, "max_relative_difference": 0.0}}
    for workers in (1, 2):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
        startup = time.perf_counter() - t0
        try:
            settings = temsim.ExecutionSettings(threads=1, progress=False, scheduler=cluster.scheduler_address)
            seconds, result = timed(settings)
        finally:
            cluster.close()
        difference = max(
            float(np.max(np.abs(result[k].values - reference[k].values)) / np.max(np.abs(reference[k].values)))
            for k in detectors
        )
        cases[f"{workers} dask worker{'s' if workers > 1 else ''}"] = {
            "seconds": seconds,
            "startup_s": startup,
            "max_relative_difference": difference,
        }
    speedup = cases["1 dask worker"]["seconds"] / cases["2 dask workers"]["seconds"]
    rows = "\n".join(
        f"| {label} | {c['seconds']:.2f} | {c['startup_s']:.1f} | {c['max_relative_difference']:.1e} |"
        for label, c in cases.items()
    )
    markdown = (
        "| layout | scan s (best of 2) | cluster start-up s | max relative difference to in-process |\n"
        "|---|---|---|---|\n" + rows + f"\n\n1 → 2 workers: **{speedup:.2f}×**."
    )
    return {
        "title": f"frozen-phonon STEM scan on dask workers, SrTiO3 4×4×{thick} u.c., 320², 4 configurations, 13×13"
        + (" (quick)" if quick else ""),
        "quick": quick,
        "cases": cases,
        "targets": [
            {
                "description": "1 vs 2 dask workers (LocalCluster, one thread each) on a frozen-phonon scan",
                "measured": round(speedup, 2),
                "threshold": "≥ 1.7",
                "met": speedup >= 1.7,
            }
        ],
        "markdown": markdown,
    }
