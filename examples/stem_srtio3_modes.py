"""SrTiO₃ [001] in five STEM modes from one scan: HAADF, ABF, BF, iDPC and iCoM side by side.

Run: python examples/stem_srtio3_modes.py [--output DIR] [--small]   (default DIR: temsim-output/)

Writes ``stem_srtio3_modes.png`` and ``stem_srtio3_modes.nc``. One multislice pass over the
probe positions feeds every detector. The crystal is periodic, so scanning one unit cell
(positions i·a/n, endpoint excluded) gives the whole image; it is tiled 3×3 for display,
and the periodic scan is exactly what the Fourier integration of iDPC/iCoM needs.

What to look for: HAADF (incoherent, ~Z²) shows bright Sr columns, weaker Ti–O columns and no
pure-O columns; ABF shows every column dark, O included; iDPC/iCoM show all columns bright
(≈ probe-convolved projected potential for thin specimens).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import temsim
from temsim.structure import srtio3

ENERGY = 200e3  # eV
ALPHA = 20.0  # mrad
A = 3.905  # Å
CELLS_THICK = 5  # 19.5 Å
SCAN_N = 16  # positions per unit cell and direction (0.24 Å step)
SMALL_CELLS_THICK, SMALL_SCAN_N = 2, 4  # --small: a seconds-long check that the script runs


def simulate(cells_thick: int = CELLS_THICK, scan_n: int = SCAN_N):
    atoms = srtio3(A) * (4, 4, cells_thick)  # 15.6 Å wide: the probe's tails do not wrap
    potential = temsim.Potential(atoms, sampling=0.05, slice_thickness=A / 2)
    probe = temsim.Probe(energy=ENERGY, semiangle_cutoff=ALPHA)
    detectors = {
        "HAADF": temsim.annular_preset("HAADF", ALPHA, max_angle=150.0),  # 60–150 mrad
        "ABF": temsim.annular_preset("ABF", ALPHA),  # 10–20 mrad
        "BF": temsim.annular_preset("BF", ALPHA),  # 0–20 mrad
        "iDPC": temsim.IntegratedDPC(ALPHA / 4, ALPHA),  # four quadrants
        "iCoM": temsim.IntegratedCenterOfMass(),
    }
    positions = temsim.GridScan(start=(0.0, 0.0), end=(A, A), gpts=(scan_n, scan_n))
    return temsim.scan(probe, potential, detectors, positions, settings=temsim.ExecutionSettings(progress=False))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="temsim-output", help="directory for the outputs (default: %(default)s)")
    parser.add_argument(
        "--small",
        action="store_true",
        default=os.environ.get("TEMSIM_EXAMPLE_SMALL") == "1",
        help="a seconds-long run at reduced size (also: TEMSIM_EXAMPLE_SMALL=1)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    cells_thick, scan_n = (SMALL_CELLS_THICK, SMALL_SCAN_N) if args.small else (CELLS_THICK, SCAN_N)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ds = simulate(cells_thick, scan_n)
    seconds = time.perf_counter() - start
    netcdf = out / "stem_srtio3_modes.nc"
    ds.to_netcdf(netcdf, engine="h5netcdf")

    names = ["HAADF", "ABF", "BF", "iDPC", "iCoM"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 4.0))
    step = A / scan_n
    for ax, name in zip(axes, names):
        tiled = np.tile(ds[name].values, (3, 3))
        # pixel (i, j) is the probe at (i·step, j·step): centre the pixels on the positions
        ax.imshow(
            tiled.T,
            origin="lower",
            extent=[-step / 2, 3 * A - step / 2, -step / 2, 3 * A - step / 2],
            cmap="gray",
            interpolation="bicubic",
        )
        inner, outer = ds[name].attrs.get("inner"), ds[name].attrs.get("outer")
        label = f"{name}\n{inner:g}–{outer:g} mrad" if inner is not None and name != "iDPC" else name
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("x (Å)")
        for i in range(3):  # Sr columns at the cell corners, Ti–O at the centres
            for j in range(3):
                ax.plot(i * A, j * A, "o", ms=3, mfc="none", mec="tab:orange")
    axes[0].set_ylabel("y (Å)")
    fig.suptitle(
        f"SrTiO₃ [001], {ENERGY / 1e3:g} keV, α = {ALPHA:g} mrad, {cells_thick * A:.1f} Å thick (orange: Sr columns)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    png = out / "stem_srtio3_modes.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)

    half = scan_n // 2
    for name in names:
        v = ds[name].values
        print(
            f"{name:6s} Sr column {v[0, 0]: .4g}  Ti-O column {v[half, half]: .4g}  O column {v[half, 0]: .4g}"
            f"  between {v[half // 2, half // 2]: .4g}"
        )
    print(f"simulated in {seconds:.1f} s; wrote {png} and {netcdf}")
    return out


if __name__ == "__main__":
    main()
