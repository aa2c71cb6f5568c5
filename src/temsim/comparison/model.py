"""Forward models of the comparison: a simulated image as a function of the fitted parameters.

:class:`ExitWaveModel` holds a multislice thickness series of exit waves (one simulation) and
makes the HRTEM image at any defocus through the objective lens (the same transfer function as
:func:`temsim.hrtem_image`, envelope method); :class:`ImageModel` holds simulated intensity
images (HRTEM at fixed optics, or STEM) over thickness. Both return a
:class:`~temsim.comparison.prepare.PeriodicImage` of one period (the simulation cell), which the
fit blurs, shifts and evaluates on the experiment's pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from temsim.comparison.prepare import PeriodicImage
from temsim.errors import InputError
from temsim.optics import Aberrations, contrast_transfer_function

__all__ = ["ExitWaveModel", "ImageModel", "model_from_simulation"]


def _series(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Values (thickness, x, y) and thicknesses (Å) of a DataArray with or without a thickness dim."""
    if "thickness" in da.dims:
        da = da.transpose("thickness", ...)
        return np.asarray(da.values), np.asarray(da["thickness"].values, dtype=float)
    thickness = float(da["thickness"]) if "thickness" in da.coords else float(da.attrs.get("thickness_total", np.nan))
    return np.asarray(da.values)[None], np.array([thickness])


def _extent(da: xr.DataArray, dims) -> tuple[float, float]:
    if "extent" in da.attrs and dims == ("x", "y"):
        return tuple(float(e) for e in da.attrs["extent"])
    return tuple(float(da[d].values[1] - da[d].values[0]) * da.sizes[d] for d in dims)


class ExitWaveModel:
    """HRTEM images of a thickness series of exit waves at any defocus (Å) — one simulation.

    Parameters
    ----------
    exit_waves : xarray.DataArray
        Complex exit wave(s) from :func:`temsim.multislice` (dims ``x``, ``y``, optionally
        ``thickness`` from ``save_every``); attrs give the energy (eV).
    aberrations : Aberrations
        Objective lens; its defocus is replaced by the fitted one.
    semiangle_cutoff : float, optional
        Objective aperture (mrad).
    focal_spread, angular_spread : float
        Partial coherence (Å; mrad), as in :func:`temsim.hrtem_image`.
    """

    kind = "image"
    fittable = (
        "defocus",
        "Cs",
        "thickness",
        "blur",
        "shift",
        "rotation_deg",
        "magnification",
        "scale",
        "offset",
        "dose",
    )

    def __init__(self, exit_waves, aberrations=None, semiangle_cutoff=None, focal_spread=0.0, angular_spread=0.0):
        if "energy" not in exit_waves.attrs:
            raise InputError("the exit waves have no 'energy' attr (eV); they should come from temsim.multislice")
        self.energy = float(exit_waves.attrs["energy"])
        waves, self.thicknesses = _series(exit_waves)
        self.extent = _extent(exit_waves, ("x", "y"))
        self.spectra = np.fft.fft2(waves)
        n1, n2 = waves.shape[-2:]
        self.kx = np.fft.fftfreq(n1, self.extent[0] / n1)[:, None]
        self.ky = np.fft.fftfreq(n2, self.extent[1] / n2)[None, :]
        self.aberrations = aberrations or Aberrations()
        self.semiangle_cutoff = semiangle_cutoff
        self.focal_spread = float(focal_spread)
        self.angular_spread = float(angular_spread)
        self.sampling = (self.extent[0] / n1, self.extent[1] / n2)

    def image(self, index: int, defocus: float | None = None, Cs: float | None = None) -> PeriodicImage:
        """The HRTEM image at thickness ``index``, ``defocus`` (Å, positive = underfocus) and ``Cs`` (C30, Å)."""
        lens = self.aberrations if defocus is None else self.aberrations.with_defocus(float(defocus))
        if Cs is not None:
            lens = dataclasses.replace(lens, C30=float(Cs))
        ctf = contrast_transfer_function(
            self.kx, self.ky, self.energy, lens, self.semiangle_cutoff, self.focal_spread, self.angular_spread
        )
        intensity = np.abs(np.fft.ifft2(self.spectra[index] * ctf)) ** 2
        return PeriodicImage(intensity, self.extent)

    def max_frequency(self) -> float:
        """Highest spatial frequency (1/Å) of the linear image (the aperture's, or the band limit)."""
        limit = (2 / 3) * min(0.5 / s for s in self.sampling)
        if self.semiangle_cutoff is None:
            return limit
        return min(limit, self.semiangle_cutoff * 1e-3 / _wavelength(self.energy))

    def attrs(self) -> dict:
        return {
            "model": "HRTEM from a multislice exit-wave thickness series",
            "energy": self.energy,
            "aberrations": str(self.aberrations.nonzero()),
            "semiangle_cutoff": -1.0 if self.semiangle_cutoff is None else float(self.semiangle_cutoff),
            "focal_spread": self.focal_spread,
            "angular_spread": self.angular_spread,
        }


def _wavelength(energy: float) -> float:
    from temsim.constants import wavelength

    return wavelength(energy)


class ImageModel:
    """Simulated intensity images (HRTEM at fixed optics, or STEM) over thickness.

    Parameters
    ----------
    images : xarray.DataArray
        Real image(s) with dims (``x``, ``y``) or (``scan_x``, ``scan_y``), optionally
        ``thickness`` first (a multislice thickness series). One period of the specimen: STEM
        scans must cover the whole cell (``GridScan`` over the cell, endpoint excluded).
    """

    fittable = ("thickness", "blur", "shift", "rotation_deg", "magnification", "scale", "offset", "dose")

    def __init__(self, images: xr.DataArray):
        dims = ("x", "y") if "x" in images.dims else ("scan_x", "scan_y")
        if not set(dims) <= set(images.dims):
            raise InputError(f"a simulated image needs dims (x, y) or (scan_x, scan_y), got {images.dims}")
        self.kind = "stem" if dims[0] == "scan_x" else "image"
        extra = [d for d in images.dims if d not in (*dims, "thickness")]
        if extra:
            raise InputError(f"the simulated image has extra dims {extra}; select one detector/image first")
        values, self.thicknesses = _series(images.transpose(*[d for d in ("thickness", *dims) if d in images.dims]))
        if np.iscomplexobj(values):
            raise InputError("complex values: pass exit waves to ExitWaveModel (HRTEM), intensities here")
        self.values = values.astype(float)
        self.extent = _extent(images, dims)
        self.sampling = (self.extent[0] / values.shape[-2], self.extent[1] / values.shape[-1])
        self.energy = float(images.attrs.get("energy", np.nan))

    def image(self, index: int, defocus: float | None = None) -> PeriodicImage:
        if defocus is not None:
            raise InputError("defocus cannot be fitted to a fixed simulated image; pass exit waves (HRTEM)")
        return PeriodicImage(self.values[index], self.extent)

    def max_frequency(self) -> float:
        return min(0.5 / s for s in self.sampling)

    def attrs(self) -> dict:
        return {"model": f"simulated {self.kind} image(s) over thickness", "energy": self.energy}


def model_from_simulation(simulation: xr.DataArray, **lens):
    """:class:`ExitWaveModel` for complex exit waves, :class:`ImageModel` for real images."""
    if not isinstance(simulation, xr.DataArray):
        raise InputError(f"expected a simulated DataArray, got {type(simulation).__name__}")
    if np.iscomplexobj(simulation.values):
        return ExitWaveModel(simulation, **lens)
    return ImageModel(simulation)
