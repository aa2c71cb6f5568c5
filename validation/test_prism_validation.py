"""PRISM against multislice on SrTiO3 [001]: exactness at f = 1, error versus f.

Numbers go to ``validation/output/prism_validation.{json,md}``. The error of an image is
``mean_pixels |I_prism − I_multislice| / mean_pixels I_multislice`` (relative, per-pixel
mean), both computed on the same potential and grid.

Why PRISM errs at f > 1: the f-lattice of plane waves builds a periodic array of probe
replicas, ``Lx/fx × Ly/fy`` apart. For a crystal whose window is a whole number of unit cells
the replicas see identical surroundings, so the window holds one period of the periodized
exit wave, and its FFT is the exact diffraction pattern sampled on every f-th pixel (Poisson
summation). The detector integrals then become coarse quadratures of the pattern; the
error falls as the window grows and the pattern's fine structure is resolved.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _record import record

import temsim
from temsim.detectors import AnnularDetector, PixelatedDetector, annular_preset
from temsim.positions import GridScan
from temsim.structure import srtio3, tile

A = 3.905
ENERGY = 200e3
PROBE = temsim.Probe(energy=ENERGY, semiangle_cutoff=20.0)


def srtio3_potential(reps: int, points_per_cell: int, cells_thick: int) -> temsim.Potential:
    atoms = tile(srtio3(A), (reps, reps, cells_thick))
    n = reps * points_per_cell
    return temsim.Potential(atoms, gpts=(n, n), slice_thickness=A / 2)


def unit_cell_scan(reps: int, gpts=(4, 4)) -> GridScan:
    c = (reps // 2) * A
    return GridScan(start=(c, c), end=(c + A, c + A), gpts=gpts)


def relative_error(test: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(np.abs(test - reference)) / np.mean(reference))


def test_prism_at_f1_equals_multislice_for_haadf_abf_bf_and_4d():
    potential = srtio3_potential(4, 32, 2)  # 15.6 Å cell, 0.122 Å sampling, 7.8 Å thick
    limit = 0.98 * potential.grid.max_angle(ENERGY)
    detectors = {
        "HAADF": AnnularDetector(45, limit),
        "ABF": annular_preset("ABF", 20.0),
        "BF": annular_preset("BF", 20.0),
        "4D": PixelatedDetector(max_angle=50.0),
    }
    positions = unit_cell_scan(4, (3, 3))
    ms = temsim.scan(PROBE, potential, detectors, positions)
    pr = temsim.scan(PROBE, potential, detectors, positions, method="prism", interpolation=1)
    errors = {}
    for name in ("HAADF", "ABF", "BF"):
        errors[name] = float(np.max(np.abs(pr[name].values / ms[name].values - 1)))
    errors["4D"] = float(np.max(np.abs(pr["4D"].values - ms["4D"].values)) / np.max(ms["4D"].values))
    record(
        "prism_validation",
        "f1_equals_multislice",
        {
            "structure": "SrTiO3 [001] 4x4x2 cells, 128x128 points",
            "max_relative_error": errors,
            "threshold": 1e-4,
            "plane_waves": pr.attrs["prism_plane_waves"],
        },
    )
    assert max(errors.values()) < 1e-4


def test_error_falls_as_the_window_grows():
    """f = 1, 2, 4, 8 on an 8×8-cell SrTiO3 crystal (31.2 Å): windows of 8, 4, 2 and 1 unit cells.

    (The cell is tiled a multiple of 8 times so that every window is a whole number of unit
    cells; windows smaller than the probe are included on purpose, with their warning.)
    """
    potential = srtio3_potential(8, 48, 1)  # 384 points, 0.0814 Å, band limit 103 mrad
    detectors = {"HAADF": AnnularDetector(55, 100)}
    positions = unit_cell_scan(8, (3, 3))
    start = time.perf_counter()
    ms = temsim.scan(PROBE, potential, detectors, positions).HAADF.values
    times = {"multislice": time.perf_counter() - start}
    rows = {}
    for f in (8, 4, 2, 1):
        start = time.perf_counter()
        if f >= 4:  # windows of 7.8 and 3.9 Å are deliberately too small here
            with pytest.warns(temsim.AccuracyWarning, match="expect errors"):
                ds = temsim.scan(PROBE, potential, detectors, positions, method="prism", interpolation=f)
        else:
            ds = temsim.scan(PROBE, potential, detectors, positions, method="prism", interpolation=f)
        times[f"prism_f{f}"] = time.perf_counter() - start
        rows[f] = {
            "window_A": ds.attrs["prism_window"][0],
            "plane_waves": ds.attrs["prism_plane_waves"],
            "relative_error": relative_error(ds.HAADF.values, ms),
        }
    record(
        "prism_validation",
        "error_vs_interpolation",
        {
            "structure": "SrTiO3 [001] 8x8 cells (31.24 Å), 1 cell (3.905 Å) thick, 384x384 points (0.0814 Å)",
            "probe": "200 keV, 20 mrad, aberration-free",
            "detector": "HAADF 55-100 mrad",
            "scan": "3x3 positions over one unit cell",
            "error_definition": "mean|I_prism - I_multislice| / mean I_multislice",
            "table": {f"f={f}": row for f, row in sorted(rows.items())},
            "seconds": times,
        },
    )
    errors = [rows[f]["relative_error"] for f in (1, 2, 4, 8)]
    assert errors[0] < 1e-4
    assert errors[0] < errors[1] < errors[2] < errors[3]


def test_f4_within_two_percent_on_a_sufficiently_tiled_cell():
    """At f = 4 a 12×12-cell SrTiO3 crystal (46.9 Å) gives 11.7 Å windows."""
    potential = srtio3_potential(12, 48, 1)  # 576 points, 0.0814 Å
    detectors = {"HAADF": AnnularDetector(55, 100)}
    positions = unit_cell_scan(12)
    ms = temsim.scan(PROBE, potential, detectors, positions).HAADF.values
    ds = temsim.scan(PROBE, potential, detectors, positions, method="prism", interpolation=4)
    error = relative_error(ds.HAADF.values, ms)
    record(
        "prism_validation",
        "f4_sufficiently_tiled",
        {
            "structure": "SrTiO3 [001] 12x12 cells (46.86 Å), 1 cell (3.905 Å) thick, 576x576 points",
            "detector": "HAADF 55-100 mrad",
            "window_A": ds.attrs["prism_window"][0],
            "plane_waves": ds.attrs["prism_plane_waves"],
            "relative_error": error,
            "threshold": 0.02,
            "contrast_multislice": float(ms.max() / ms.min()),
            "contrast_prism": float(ds.HAADF.values.max() / ds.HAADF.values.min()),
        },
    )
    assert error < 0.02
