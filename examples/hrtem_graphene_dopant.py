"""HRTEM of graphene with one substitutional Si dopant at 80 keV (Cs-corrected microscope).

Run: python examples/hrtem_graphene_dopant.py [--output DIR] [--small]   (default DIR: temsim-output/)

Writes ``hrtem_graphene_dopant.png`` (exit-wave phase, HRTEM image, contrast transfer) and
``hrtem_graphene_dopant.nc`` (the image plus the exit wave's phase and amplitude, with every
parameter in the attrs) into the output directory.

The lens is a negative-Cs setting (C30 = −10 µm) at a small overfocus (defocus = −C10 =
−75 Å, the Scherzer condition √(4/3·|Cs|·λ) with the signs of negative Cs). Then χ > 0
across the pass band, and since the lens multiplies the wave's spectrum by exp(−iχ) the image
of a weak phase object is ``1 + 2σ v_z ⊗ F⁻¹[sin χ]``: atoms appear *bright*, the Si (Z = 14)
brighter than C.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import temsim
from temsim.structure import graphene, substitute

ENERGY = 80e3  # eV: below graphene's knock-on threshold
CS = -10e-6 * 1e10  # Å: C30 = −10 µm
DEFOCUS = -75.0  # Å (negative = overfocus; C10 = +75 Å)
FOCAL_SPREAD = 20.0  # Å, standard deviation of the defocus distribution


def simulate(small: bool = False):
    """Exit wave and HRTEM image of a 7×4-cell graphene sheet (17.2 × 17.0 Å) with one Si.

    ``small``: a 4×2-cell sheet at 0.1 Å sampling (a seconds-long check that the script runs).
    """
    sheet = graphene(vacuum=2.0) * ((4, 2, 1) if small else (7, 4, 1))
    centre = np.diag(np.asarray(sheet.cell))[:2] / 2
    site = int(np.argmin(np.linalg.norm(sheet.positions[:, :2] - centre, axis=1)))  # C nearest the centre
    doped = substitute(sheet, site, "Si")
    potential = temsim.Potential(doped, sampling=0.1 if small else 0.05, slice_thickness=2.0)
    exit_wave = temsim.multislice(temsim.PlaneWave(energy=ENERGY), potential)
    lens = temsim.Aberrations.from_defocus(defocus=DEFOCUS, Cs=CS)
    image = temsim.hrtem_image(exit_wave, lens, semiangle_cutoff=40.0, focal_spread=FOCAL_SPREAD)
    return doped, exit_wave, image, lens


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
    import xarray as xr

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    atoms, exit_wave, image, lens = simulate(args.small)
    seconds = time.perf_counter() - start

    # NetCDF: complex numbers are not NetCDF, so the exit wave is stored as phase and amplitude
    attrs = {k: (str(v) if isinstance(v, (dict, tuple)) else v) for k, v in image.attrs.items()}
    dataset = xr.Dataset(
        {
            "image": image.assign_attrs(attrs),
            "exit_wave_phase": xr.DataArray(
                np.angle(exit_wave.values), dims=("x", "y"), coords=image.coords, attrs={"units": "rad"}
            ),
            "exit_wave_amplitude": xr.DataArray(
                np.abs(exit_wave.values), dims=("x", "y"), coords=image.coords, attrs={"units": "1 (vacuum = 1)"}
            ),
        },
        attrs={"description": "graphene with one Si dopant, HRTEM at 80 keV", "temsim_version": temsim.__version__},
    )
    netcdf = out / "hrtem_graphene_dopant.nc"
    dataset.to_netcdf(netcdf, engine="h5netcdf")

    # figure: exit-wave phase, image, and the phase-contrast transfer sin χ with envelopes
    extent = [0, float(image.x[-1]), 0, float(image.y[-1])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    phase = axes[0].imshow(np.angle(exit_wave.values).T, origin="lower", extent=extent, cmap="gray")
    axes[0].set_title("exit-wave phase (rad)")
    fig.colorbar(phase, ax=axes[0], shrink=0.8)
    shown = axes[1].imshow(image.values.T, origin="lower", extent=extent, cmap="gray")
    si = atoms.positions[atoms.numbers == 14][0]
    axes[1].annotate(
        "Si",
        xy=(si[0], si[1]),
        xytext=(si[0] + 2.5, si[1] + 2.5),
        color="tab:red",
        arrowprops={"arrowstyle": "->", "color": "tab:red"},
    )
    axes[1].set_title(f"HRTEM, C30 = {CS * 1e-4:g} µm, defocus = {DEFOCUS:g} Å")
    fig.colorbar(shown, ax=axes[1], shrink=0.8)
    for ax in axes[:2]:
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
    k = np.linspace(0, 1.2, 600)
    ctf = temsim.contrast_transfer_function(k, np.zeros_like(k), ENERGY, lens, focal_spread=FOCAL_SPREAD)
    axes[2].plot(k, -np.imag(ctf), label="−Im CTF = sin χ · E_t")
    axes[2].axhline(0, color="k", lw=0.5)
    for d in (2.13, 1.23):  # graphene {100} and {110} spacings
        axes[2].axvline(1 / d, color="gray", ls=":")
    axes[2].set_xlabel("spatial frequency k (1/Å)")
    axes[2].set_title("phase-contrast transfer (> 0: atoms bright)")
    axes[2].legend(loc="lower left")
    fig.tight_layout()
    png = out / "hrtem_graphene_dopant.png"
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)

    values = image.values
    si_index = np.unravel_index(
        np.argmin((image.x.values[:, None] - si[0]) ** 2 + (image.y.values[None, :] - si[1]) ** 2), values.shape
    )
    print(
        f"simulated in {seconds:.1f} s; image mean {values.mean():.4f}, range {values.min():.3f}–{values.max():.3f}, "
        f"at Si {values[si_index]:.3f}"
    )
    print(f"wrote {png} and {netcdf}")
    return out


if __name__ == "__main__":
    main()
