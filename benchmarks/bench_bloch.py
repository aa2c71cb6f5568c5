"""SrTiO3 [001] thickness series 1–100 nm in ~1 Å steps: Bloch waves vs multislice (one run).

Both solvers describe the same crystal (the projected potential of one period from
``temsim.Potential``, band limit of the multislice grid). Multislice saves the wave after every
slice (period/4 ≈ 0.98 Å); Bloch evaluates the same thicknesses from one eigen-decomposition.
Multislice is timed at 4 slices per period (≈ 0.98 Å, saving every slice) and at 32 slices per
period (≈ 0.12 Å, saving every 8th: the same output thicknesses), the slicing it needs to come
near 1% agreement with Bloch over 1–100 nm; Bloch uses all beams inside the band limit.

Run: ``python benchmarks/bench_bloch.py`` → ``benchmarks/results/bloch_thickness_series.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from temsim.potentials import ArrayPotential, Potential
from temsim.solvers.bloch import solve_bloch
from temsim.solvers.multislice import multislice
from temsim.structure import srtio3
from temsim.waves import PlaneWave

E = 200e3
SAMPLING = float(os.environ.get("BENCH_SAMPLING", 0.08))


def beams(exit_waves, indices):
    nx, ny = exit_waves.shape[-2:]
    f = np.fft.fft2(exit_waves) / (nx * ny)
    return np.abs(f[:, indices[:, 0] % nx, indices[:, 1] % ny]) ** 2


def main():
    crystal = solve_bloch(srtio3(), E, (0, 0, 1), g_max=0.5).crystal
    c = crystal.period
    one = Potential(crystal.atoms, sampling=SAMPLING, slice_thickness=c)
    kc = one.grid.antialias_cutoff
    projected = next(one.iter_slices())
    n_periods = int(np.ceil(1000 / c))

    def run_multislice(sub, save_every=1):
        pot = ArrayPotential(np.repeat(projected[None] / sub, sub * n_periods, 0), one.grid.extent, c / sub)
        t0 = time.perf_counter()
        ew = multislice(PlaneWave(E), pot, save_every=save_every, dtype="complex64")
        return time.perf_counter() - t0, ew

    t_ms, ew = run_multislice(4)
    thickness = ew.thickness.values
    t0 = time.perf_counter()
    sol = solve_bloch(None, E, (0, 0, 1), g_max=kc, excitation_error_max=10.0, potential_cutoff=kc, crystal=crystal)
    t_solve = time.perf_counter() - t0
    t0 = time.perf_counter()
    bloch_i = np.abs(sol.amplitudes(thickness)) ** 2
    t_prop = time.perf_counter() - t0
    ms_i = beams(ew.values.astype(np.complex128), sol.beams.indices)
    t_fine, ref = run_multislice(32, save_every=8)  # same ≈ 0.98 Å output steps, 0.12 Å slices
    ref_i = beams(ref.values.astype(np.complex128), sol.beams.indices)
    result = {
        "case": "SrTiO3 [001], 200 keV, 1-100 nm, wave saved every slice",
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "sampling_A": SAMPLING, "gpts": list(one.grid.gpts), "num_thicknesses": int(len(thickness)),
        "bloch_beams": sol.num_beams,
        "bloch_seconds": {"eigensolve": t_solve, "all_thicknesses": t_prop, "total": t_solve + t_prop},
        "multislice_seconds": t_ms, "multislice_slice_A": c / 4,
        "speedup_bloch_over_multislice": t_ms / (t_solve + t_prop),
        "max_abs_difference_bloch_vs_multislice": float(np.abs(bloch_i - ms_i).max()),
        "multislice_32_slices_per_period_seconds": t_fine,
        "speedup_at_equal_agreement": t_fine / (t_solve + t_prop),
        "max_abs_difference_bloch_vs_multislice_32_slices_per_period": float(np.abs(bloch_i - ref_i).max()),
        "max_abs_difference_32_slices_up_to_50nm": float(np.abs(bloch_i - ref_i)[thickness <= 500].max()),
    }
    out = Path(__file__).parent / "results" / "bloch_thickness_series.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
