"""Experiment vs simulation: fit defocus, thickness, blur, shift and dose to an HRTEM image.

Run: python examples/compare_experiment.py [--output DIR] [--small]   (default DIR: temsim-output/)

A synthetic "experimental" image stands in for a real one: SrTiO₃ [001] at 200 keV, simulated
at a known defocus and thickness, blurred, shifted by a fraction of a pixel, recorded with
Poisson noise at a known dose and saved as a calibrated TIFF (``experiment.tif``; a temsim
NetCDF file if tifffile is not installed). ``temsim.compare`` then loads it, simulates one
thickness series, registers and fits it, and ``result.report`` writes ``compare.png``
(experiment | best simulation | residual | line profile), ``compare.nc`` and ``compare.md``
into the output directory. The script prints the fitted values next to the truth.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import temsim
from temsim.structure import srtio3

ENERGY = 200e3  # eV
A = 3.905  # Å, SrTiO3 lattice parameter
LENS = temsim.Aberrations.from_defocus(0.0, Cs=-15e4)  # C30 = −15 µm (Cs-corrected)
APERTURE = 25.0  # mrad
TRUTH = {"defocus": -80.0, "slices": 12, "blur": 0.3, "shift_px": (2.3, -1.6), "dose": 2000.0}


def thickness_series(small: bool):
    """One multislice run over 2 × 2 × n cells, saving the exit wave after every slice (a/2)."""
    cells = 4 if small else 10
    potential = temsim.Potential(srtio3() * (2, 2, cells), sampling=0.15 if small else 0.1, slice_thickness=A / 2)
    return temsim.multislice(temsim.PlaneWave(energy=ENERGY), potential, save_every=1)


def synthetic_experiment(series, small: bool, seed: int = 0):
    """The "experiment": image at the true defocus and thickness, blurred, shifted, noisy (counts)."""
    index = min(TRUTH["slices"], series.sizes["thickness"]) - 3 if small else TRUTH["slices"] - 1
    image = temsim.hrtem_image(
        series.isel(thickness=index), LENS.with_defocus(TRUTH["defocus"]), semiangle_cutoff=APERTURE
    )
    pixel = float(image.x[1] - image.x[0])
    spectrum = ndimage.fourier_gaussian(np.fft.fft2(image.values.astype(float)), TRUTH["blur"] / pixel)
    values = np.real(np.fft.ifft2(ndimage.fourier_shift(spectrum, TRUTH["shift_px"])))
    counts = temsim.apply_noise(image.copy(data=values), TRUTH["dose"], camera="ideal", seed=seed)
    return counts, float(series.thickness[index])


def save(counts, out: Path) -> Path:
    """As a microscope would: a TIFF with its calibration (ImageJ, nm), rows along y."""
    try:
        import tifffile
    except ImportError:
        path = out / "experiment.nc"
        counts.to_netcdf(path, engine="h5netcdf")
        return path
    path = out / "experiment.tif"
    per_nm = 10.0 / float(counts.x[1] - counts.x[0])
    tifffile.imwrite(path, counts.values.T, imagej=True, resolution=(per_nm, per_nm), metadata={"unit": "nm"})
    return path


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
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    series = thickness_series(args.small)
    counts, thickness = synthetic_experiment(series, args.small)
    path = save(counts, out)

    experiment = temsim.load_image(path)
    result = temsim.compare(
        experiment,
        series,
        fit=["defocus", "thickness", "blur", "shift", "scale", "dose"],
        aberrations=LENS.with_defocus(-50.0),  # the nominal setting: 3 nm off
        semiangle_cutoff=APERTURE,
    )
    paths = result.report(out, overwrite=True)

    pixel = float(experiment.x[1] - experiment.x[0])
    truth = {
        "defocus": TRUTH["defocus"],
        "thickness": thickness,
        "blur": TRUTH["blur"],
        "dose": TRUTH["dose"],
    }
    print(f"fit: {result.message} ({time.perf_counter() - start:.1f} s); pixel {pixel:.4f} Å")
    for name, value in truth.items():
        fitted, sigma = result.parameters[name], result.uncertainties[name]
        print(f"  {name:9s} {fitted:10.3f} ± {sigma:7.3f}   (truth {value:g})")
    print(f"  NCC {result.metrics['ncc']:.3f}, χ²/dof {result.metrics['chi2_per_dof']:.3f}")
    print(f"wrote {path} and {', '.join(sorted(paths.values()))}")
    return out


if __name__ == "__main__":
    main()
