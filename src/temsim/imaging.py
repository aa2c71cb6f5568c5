"""HRTEM imaging and diffraction of exit waves: objective lens → image, far field → pattern."""

from __future__ import annotations

import numpy as np
import xarray as xr

from temsim.backend import array_namespace, fft2, ifft2, to_numpy
from temsim.constants import wavelength
from temsim.errors import InputError
from temsim.grid import Grid
from temsim.optics import Aberrations, contrast_transfer_function, gauss_hermite_defoci

__all__ = ["hrtem_image", "diffraction_pattern", "grid_of"]


def grid_of(data: xr.DataArray) -> Grid:
    """The :class:`Grid` of a wave/image DataArray (from its ``extent``/``gpts`` attrs or coords)."""
    if "extent" in data.attrs and "gpts" in data.attrs:
        return Grid(tuple(data.attrs["extent"]), tuple(data.attrs["gpts"]))
    x = np.asarray(data["x"])
    y = np.asarray(data["y"])
    return Grid((len(x) * (x[1] - x[0]), len(y) * (y[1] - y[0])), (len(x), len(y)))


def _check_exit_wave(exit_wave) -> None:
    if not isinstance(exit_wave, xr.DataArray) or "x" not in exit_wave.dims or "y" not in exit_wave.dims:
        raise InputError("expected an exit wave DataArray with dims ('x', 'y') from temsim.multislice")
    if "energy" not in exit_wave.attrs:
        raise InputError("the exit wave has no 'energy' attr (eV); it should come from temsim.multislice")


def hrtem_image(
    exit_wave: xr.DataArray,
    aberrations: Aberrations | None = None,
    semiangle_cutoff: float | None = None,
    focal_spread: float = 0.0,
    angular_spread: float = 0.0,
    method: str = "envelope",
    focal_samples: int = 7,
    aperture_edge: float = 0.0,
) -> xr.DataArray:
    """HRTEM image of an exit wave through an objective lens.

    Parameters
    ----------
    exit_wave : DataArray
        Complex exit wave (``x``, ``y``), or a thickness series (``thickness``, ``x``, ``y``).
    aberrations : Aberrations, optional
        Objective-lens aberrations (Å, rad; ``defocus = −C10``).
    semiangle_cutoff : float, optional
        Objective aperture semiangle, mrad.
    focal_spread : float
        Focal-spread standard deviation σ_f, Å.
    angular_spread : float
        1/e half-width of the illumination angles, mrad (envelope only).
    method : {"envelope", "integrate"}
        ``"envelope"``: partial coherence by the quasi-coherent envelopes on the wave's
        transfer (fast, exact for weak objects). ``"integrate"``: incoherent average of
        images over ``focal_samples`` defoci (Gauss–Hermite), exact for any object.
    focal_samples : int
        Number of defoci for ``method="integrate"``.
    aperture_edge : float
        Soft-edge width of the objective aperture, mrad.

    Returns
    -------
    DataArray
        Image intensity (``x``, ``y``), vacuum = 1, float32; ``attrs["signal"] = "image"``.
    """
    _check_exit_wave(exit_wave)
    if method not in ("envelope", "integrate"):
        raise InputError(f"method must be 'envelope' or 'integrate', got {method!r}")
    aberrations = aberrations or Aberrations()
    energy = float(exit_wave.attrs["energy"])
    grid = grid_of(exit_wave)
    if semiangle_cutoff is not None:
        grid.check_angle(semiangle_cutoff, energy, "the objective aperture")
    wave = np.asarray(exit_wave.values)
    xp = array_namespace(wave)
    kx = xp.asarray(grid.kx())[:, None]
    ky = xp.asarray(grid.ky())[None, :]
    spectrum = fft2(wave)
    if method == "envelope" or focal_spread == 0:
        ctf = contrast_transfer_function(
            kx, ky, energy, aberrations, semiangle_cutoff, focal_spread, angular_spread, aperture_edge
        )
        image = xp.abs(ifft2(spectrum * ctf)) ** 2
    else:
        offsets, weights = gauss_hermite_defoci(focal_spread, focal_samples)
        image = 0.0
        for offset, weight in zip(offsets, weights):
            ab = aberrations.with_defocus(aberrations.defocus + offset)
            ctf = contrast_transfer_function(kx, ky, energy, ab, semiangle_cutoff, 0.0, angular_spread, aperture_edge)
            image = image + weight * xp.abs(ifft2(spectrum * ctf)) ** 2
    attrs = dict(exit_wave.attrs)
    attrs.update(
        signal="image",
        units="fraction of vacuum intensity",
        aberrations=str(aberrations.nonzero()),
        semiangle_cutoff=-1.0 if semiangle_cutoff is None else float(semiangle_cutoff),
        focal_spread=float(focal_spread),
        angular_spread=float(angular_spread),
        coherence_method=method,
        pixel_area=grid.sampling[0] * grid.sampling[1],
    )
    return xr.DataArray(
        to_numpy(image).astype(np.float32), dims=exit_wave.dims, coords=exit_wave.coords, attrs=attrs, name="image"
    )


def diffraction_pattern(exit_wave: xr.DataArray, max_angle: float | None = None) -> xr.DataArray:
    """Far-field diffraction pattern of an exit wave: fraction of the beam per pixel.

    Parameters
    ----------
    exit_wave : DataArray
        Complex exit wave (``x``, ``y``) (optionally with leading dims).
    max_angle : float, optional
        Crop to frequencies within this angle (mrad); default: the band limit.

    Returns
    -------
    DataArray
        Dims (``kx``, ``ky``) in 1/Å, centred (zero frequency in the middle), sums to the
        transmitted fraction (1 without absorption); ``attrs["signal"] = "diffraction"``.
    """
    _check_exit_wave(exit_wave)
    energy = float(exit_wave.attrs["energy"])
    grid = grid_of(exit_wave)
    wave = np.asarray(exit_wave.values)
    n = grid.gpts[0] * grid.gpts[1]
    intensity = np.abs(to_numpy(fft2(wave))) ** 2 / n**2 * (1.0)
    # |F ψ|²/N² summed over k equals the mean of |ψ|² over pixels (Parseval): vacuum → 1.
    intensity = np.fft.fftshift(intensity, axes=(-2, -1))
    kx = np.fft.fftshift(grid.kx())
    ky = np.fft.fftshift(grid.ky())
    limit = grid.antialias_cutoff if max_angle is None else max_angle * 1e-3 / wavelength(energy)
    sx = np.abs(kx) <= limit * (1 + 1e-9)
    sy = np.abs(ky) <= limit * (1 + 1e-9)
    intensity = intensity[..., sx, :][..., :, sy]
    dims = exit_wave.dims[:-2] + ("kx", "ky")
    coords = {d: exit_wave.coords[d] for d in exit_wave.dims[:-2] if d in exit_wave.coords}
    coords["kx"] = ("kx", kx[sx], {"units": "1/Å"})
    coords["ky"] = ("ky", ky[sy], {"units": "1/Å"})
    attrs = dict(exit_wave.attrs)
    attrs.update(
        signal="diffraction", units="fraction of incident beam", illuminated_area=grid.extent[0] * grid.extent[1]
    )
    return xr.DataArray(intensity.astype(np.float32), dims=dims, coords=coords, attrs=attrs, name="diffraction_pattern")
