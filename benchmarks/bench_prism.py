"""PRISM versus multislice (and abTEM's PRISM) for a SrTiO3 [001] HAADF scan, in one run.

SrTiO3 [001], 12×12 cells laterally (46.86 Å: f = 1, 2, 4, 8 give windows of 12, 6, 3 and
1.5 unit cells; 576 points divide by all four), 2 cells (7.81 Å) thick, 200 keV, 20 mrad,
HAADF 55–100 mrad, 576×576 points (0.0814 Å), a 64×64 scan over 2×2 unit cells.

Multislice cost is exactly linear in the number of probe positions, so multislice (and
PRISM at f = 1, whose probe sums are as costly) run on every 4th position of the scan
(16×16) and their times are scaled by 16 (stated in the output); PRISM at f = 2, 4, 8 and
abTEM's ``SMatrix`` run on all 64×64 positions. Errors are computed on the 16×16 common
positions: ``mean|I − I_multislice| / mean I_multislice``.

Run: ``python benchmarks/bench_prism.py`` (writes ``benchmarks/results/prism.json`` and
``prism.md``).
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

import temsim
from temsim.detectors import AnnularDetector
from temsim.scan import GridScan
from temsim.structure import srtio3, tile

A = 3.905
REPS = 12
CELLS_THICK = 2
GPTS = (576, 576)  # 48 points per cell: divisible by 1, 2, 4, 8 along each axis
SCAN_N = 64
SUB = 4  # multislice on every SUB-th position
INNER, OUTER = 55.0, 100.0
RESULTS = Path(__file__).parent / "results"


def main() -> dict:
    warnings.simplefilter("ignore", temsim.AccuracyWarning)  # f = 8: the window is knowingly small
    atoms = tile(srtio3(A), (REPS, REPS, CELLS_THICK))
    potential = temsim.Potential(atoms, gpts=GPTS, slice_thickness=A / 2)
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
    detectors = {"HAADF": AnnularDetector(INNER, OUTER)}
    c = (REPS // 2) * A
    start, end = (c, c), (c + 2 * A, c + 2 * A)
    full = GridScan(start=start, end=end, gpts=(SCAN_N, SCAN_N))
    sub = GridScan(start=start, end=end, gpts=(SCAN_N // SUB, SCAN_N // SUB))  # every SUB-th position
    scale = SUB * SUB
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
           "temsim_version": temsim.__version__,
           "setup": f"SrTiO3 [001] {REPS}x{REPS}x{CELLS_THICK} cells, {GPTS[0]}x{GPTS[1]} points "
                    f"({potential.grid.sampling[0]:.4f} Å), 200 keV, 20 mrad, HAADF {INNER}-{OUTER} mrad, "
                    f"{SCAN_N}x{SCAN_N} scan over 2x2 cells",
           "note": f"multislice timed on {SCAN_N // SUB}x{SCAN_N // SUB} positions and scaled x{scale} (its cost is "
                   f"linear in positions); PRISM f=1 run on those {SCAN_N // SUB}x{SCAN_N // SUB} positions only, its "
                   "time and speed-up are for them (its S-matrix build alone costs about a multislice scan of as many "
                   "probes as it has plane waves); errors on the common positions; FFTW planning included",
           "rows": {}}

    t0 = time.perf_counter()
    reference = temsim.scan(probe, potential, detectors, sub, progress=False).HAADF.values
    ms_sub_time = time.perf_counter() - t0
    ms_time = ms_sub_time * scale
    out["rows"]["multislice"] = {"seconds": ms_time, "speedup": 1.0, "relative_error": 0.0}
    print(f"multislice: {ms_time:.1f} s (scaled)", flush=True)

    def error(image):
        return float(np.mean(np.abs(image - reference)) / np.mean(reference))

    for f in (1, 2, 4, 8):
        t0 = time.perf_counter()
        if f == 1:
            ds = temsim.scan(probe, potential, detectors, sub, method="prism", interpolation=f, progress=False)
            seconds = time.perf_counter() - t0
            image = ds.HAADF.values
            out["rows"]["prism f=1 (256 positions)"] = {
                "seconds": seconds, "speedup": ms_sub_time / seconds, "relative_error": error(image),
                "plane_waves": ds.attrs["prism_plane_waves"], "window_A": ds.attrs["prism_window"][0]}
            print(f"prism f=1: {out['rows']['prism f=1 (256 positions)']}", flush=True)
            continue
        else:
            ds = temsim.scan(probe, potential, detectors, full, method="prism", interpolation=f, progress=False)
            seconds = time.perf_counter() - t0
            image = ds.HAADF.values[::SUB, ::SUB]
        out["rows"][f"prism f={f}"] = {"seconds": seconds, "speedup": ms_time / seconds,
                                        "relative_error": error(image), "plane_waves": ds.attrs["prism_plane_waves"],
                                        "window_A": ds.attrs["prism_window"][0]}
        print(f"prism f={f}: {out['rows'][f'prism f={f}']}", flush=True)

    try:
        import abtem
    except ImportError:
        abtem = None
    if abtem is not None:
        out["abtem_version"] = abtem.__version__
        reference_potential = abtem.Potential(atoms, gpts=GPTS, slice_thickness=A / 2, parametrization="lobato",
                                              projection="infinite")
        for f in (2, 4, 8):
            t0 = time.perf_counter()
            s_matrix = abtem.SMatrix(potential=reference_potential, energy=200e3, semiangle_cutoff=20.0,
                                     interpolation=f)
            measurement = s_matrix.scan(scan=abtem.GridScan(start=start, end=end, gpts=(SCAN_N, SCAN_N)),
                                        detectors=[abtem.AnnularDetector(INNER, OUTER)]).compute(progress_bar=False)
            seconds = time.perf_counter() - t0
            image = np.asarray(measurement.array)[::SUB, ::SUB]
            out["rows"][f"abtem SMatrix f={f}"] = {"seconds": seconds, "speedup": ms_time / seconds,
                                                    "relative_error": error(image)}
            print(f"abtem f={f}: {out['rows'][f'abtem SMatrix f={f}']}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prism.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["# PRISM benchmark", "", out["setup"], "", out["note"], "",
             "| solver | time (s) | speed-up vs multislice | HAADF error | plane waves | window (Å) |",
             "|---|---|---|---|---|---|"]
    for name, row in out["rows"].items():
        lines.append(f"| {name} | {row['seconds']:.1f} | {row['speedup']:.1f}× | {row['relative_error']:.2%} | "
                     f"{row.get('plane_waves', '')} | {row.get('window_A', '')} |")
    (RESULTS / "prism.md").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    main()
