"""Beam intensities of SrTiO3 [001] vs thickness by Bloch waves, multislice overlaid.

Which thickness gives usable contrast? One eigen-decomposition gives every thickness; the
multislice run (same projected potential, 0.12 Å slices) is overlaid as a check. Dashed: the
3-D crystal (``holz=True``: the structure along the beam, all Laue zones), which differs from
the projected model by several % of the incident beam at 50 nm.

Run: ``python examples/thickness_series_bloch.py [--output DIR] [--small]``
→ ``DIR/thickness_series_bloch.png`` (default DIR: temsim-output/).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from temsim import ArrayPotential, PlaneWave, Potential, multislice, solve_bloch
from temsim.structure import srtio3

ENERGY = 200e3  # eV


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="temsim-output", help="directory for the figure (default: %(default)s)")
    parser.add_argument(
        "--small",
        action="store_true",
        default=os.environ.get("TEMSIM_EXAMPLE_SMALL") == "1",
        help="a seconds-long run at reduced size (also: TEMSIM_EXAMPLE_SMALL=1)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    # --small: coarser grid (fewer beams), 10 nm instead of 50 nm
    sampling, max_thickness = (0.25, 100.0) if args.small else (0.08, 500.0)

    crystal = solve_bloch(srtio3(), ENERGY, (0, 0, 1), g_max=0.5).crystal
    period = crystal.period
    one_period = Potential(crystal.atoms, sampling=sampling, slice_thickness=period)
    band = one_period.grid.antialias_cutoff

    # Bloch waves: every reflection the multislice grid holds, the same band-limited potential
    solution = solve_bloch(
        None, ENERGY, (0, 0, 1), g_max=band, excitation_error_max=10.0, potential_cutoff=band, crystal=crystal
    )
    thickness = np.arange(0.0, max_thickness + 1.0, 2.0)
    beams = solution.to_dataset(thickness)
    # the 3-D crystal: Bloch waves of the period propagator (≈ 15 s at full size)
    beams_3d = solve_bloch(
        None,
        ENERGY,
        (0, 0, 1),
        g_max=band,
        excitation_error_max=10.0,
        potential_cutoff=band,
        crystal=crystal,
        holz=True,
    ).to_dataset(thickness)

    # multislice through the same projected potential, 32 slices per period
    n_periods, sub = int(round(max_thickness / period)), 32
    slices = np.repeat(next(one_period.iter_slices())[None] / sub, sub * n_periods, axis=0)
    exit_waves = multislice(
        PlaneWave(ENERGY), ArrayPotential(slices, one_period.grid.extent, period / sub), save_every=sub
    )
    nx, ny = exit_waves.shape[-2:]
    spectrum = np.abs(np.fft.fft2(exit_waves.values) / (nx * ny)) ** 2

    fig, ax = plt.subplots(figsize=(7, 4))
    for (h, k), colour in zip([(0, 0), (1, 0), (1, 1), (2, 0)], ["k", "C0", "C1", "C2"]):
        b = int(np.flatnonzero(((beams.h == h) & (beams.k == k)).values)[0])
        ax.plot(thickness / 10, beams.intensity[:, b], colour, label=f"({h}{k}0) Bloch")
        ax.plot(exit_waves.thickness / 10, spectrum[:, h % nx, k % ny], colour + "o", ms=3, mfc="none")
        b3 = int(np.flatnonzero(((beams_3d.h == h) & (beams_3d.k == k)).values)[0])
        ax.plot(thickness / 10, beams_3d.intensity[:, b3], colour + "--", lw=1)
    ax.set_xlabel("thickness (nm)")
    ax.set_ylabel("intensity (fraction of incident beam)")
    ax.set_title("SrTiO$_3$ [001], 200 keV: Bloch (lines), multislice (circles), 3-D crystal (dashed)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "thickness_series_bloch.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print("wrote", path)
    return out


if __name__ == "__main__":
    main()
