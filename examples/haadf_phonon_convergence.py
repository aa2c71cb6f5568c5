"""HAADF contrast of SrTiO3 [001] versus the number of frozen-phonon configurations.

Scans a probe over one unit cell of a 4×4-cell, 8-cell-thick SrTiO3 crystal with PRISM
(f = 2), once per frozen-phonon configuration, and plots the running mean of the Sr-column
to O-column HAADF contrast and of the image mean with their standard errors
(:func:`temsim.convergence.phonon_convergence`), so you can see when to stop adding
configurations. Writes ``haadf_phonon_convergence.png``.

Run: ``python examples/haadf_phonon_convergence.py`` (about a minute on two cores).
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import temsim  # noqa: E402
from temsim.convergence import phonon_convergence  # noqa: E402
from temsim.structure import srtio3, tile  # noqa: E402

A = 3.905


def main(num_configs: int = 12, output: str = "haadf_phonon_convergence.png") -> None:
    atoms = tile(srtio3(A), (4, 4, 8))
    phonons = temsim.FrozenPhonons(sigmas={"Sr": 0.08, "Ti": 0.07, "O": 0.09}, num_configs=num_configs, seed=0)
    potential = temsim.Potential(atoms, gpts=(192, 192), slice_thickness=A / 2, phonons=phonons)
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0)
    scan = temsim.GridScan(start=(2 * A, 2 * A), end=(3 * A, 3 * A), gpts=(8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", temsim.AccuracyWarning)  # 7.8 Å windows: a demonstration
        study = phonon_convergence(probe, potential, {"HAADF": temsim.AnnularDetector(55, 100)}, scan,
                                   method="prism", interpolation=2)
    images = study.HAADF.values  # (num_configs, 8, 8): running means
    sr = images[:, 0, 0]  # the probe on the Sr column (scan origin at a Sr site)
    oxygen = images[:, 4, 0]  # half a cell along x: an O column
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
    fig.savefig(output, dpi=120)
    for n, c, r in zip(counts, contrast, study.HAADF_relative_error.values):
        print(f"{n:3d} configurations: Sr/O contrast {c:6.3f}, standard error of the mean {r:.2%}")


if __name__ == "__main__":
    main()
