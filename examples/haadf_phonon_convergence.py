"""HAADF contrast of SrTiO3 [001] versus the number of frozen-phonon configurations.

Scans a probe over one unit cell of a 4×4-cell, 8-cell-thick SrTiO3 crystal with PRISM
(f = 2), once per frozen-phonon configuration, and plots the running mean of the Sr-column
to O-column HAADF contrast and of the image mean with their standard errors
(:func:`temsim.convergence.phonon_convergence`), so you can see when to stop adding
configurations. Writes ``haadf_phonon_convergence.png``.

Run: ``python examples/haadf_phonon_convergence.py [--output DIR] [--small]`` (about a minute
on two cores; ``--small``: a few seconds at reduced size).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import temsim
from temsim.structure import srtio3, tile

A = 3.905


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    num_configs, thick, gpts, n = (3, 2, 192, 4) if args.small else (12, 8, 192, 8)
    atoms = tile(srtio3(A), (4, 4, thick))
    phonons = temsim.FrozenPhonons(sigmas={"Sr": 0.08, "Ti": 0.07, "O": 0.09}, num_configs=num_configs, seed=0)
    potential = temsim.Potential(atoms, gpts=(gpts, gpts), slice_thickness=A / 2, phonons=phonons)
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
    scan = temsim.GridScan(start=(2 * A, 2 * A), end=(3 * A, 3 * A), gpts=(n, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", temsim.AccuracyWarning)  # 7.8 Å windows: a demonstration
        study = temsim.phonon_convergence(
            probe, potential, {"HAADF": temsim.AnnularDetector(55, 100)}, scan, method="prism", interpolation=2
        )
    images = study.HAADF.values  # (num_configs, n, n): running means
    sr = images[:, 0, 0]  # the probe on the Sr column (scan origin at a Sr site)
    oxygen = images[:, n // 2, 0]  # half a cell along x: an O column
    contrast = sr / oxygen
    counts = study.num_configs.values
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(counts, contrast, "o-")
    left.set_xlabel("frozen-phonon configurations")
    left.set_ylabel("HAADF Sr / O column")
    mean = images.reshape(len(counts), -1).mean(axis=1)
    error = study.HAADF_relative_error.values * mean
    right.errorbar(counts, mean, yerr=error, fmt="o-", capsize=3)
    right.set_xlabel("frozen-phonon configurations")
    right.set_ylabel("HAADF image mean (fraction of beam)")
    fig.tight_layout()
    path = out / "haadf_phonon_convergence.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    for count, c, r in zip(counts, contrast, study.HAADF_relative_error.values):
        print(f"{count:3d} configurations: Sr/O contrast {c:6.3f}, standard error of the mean {r:.2%}")
    print("wrote", path)
    return out


if __name__ == "__main__":
    main()
