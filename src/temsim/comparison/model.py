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

__all__ = ["ExitWaveModel", "ImageModel", "model_from_simulation", "signal_of", "SIGNALS"]


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
    signal = "counts"
    defoci = None
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


#: Kinds of simulated signal and how their noise is modelled (see :func:`signal_of`).
SIGNALS = ("counts", "signed", "integrated")

_SIGNED_DETECTORS = ("dpc", "center_of_mass", "com")
_INTEGRATED_DETECTORS = ("idpc", "icom")


def signal_of(da: xr.DataArray) -> str:
    """The kind of a simulated signal, from its attrs.

    ``"integrated"``: iDPC or iCoM (a gradient field integrated over the scan: signed, mean
    lost, noise coloured); ``"signed"``: one component of a DPC or centre-of-mass image
    (signed, white noise of constant variance); ``"counts"``: everything else (HRTEM, annular
    and virtual detector images: electron counts, Poisson noise with a gain).
    """
    detector = str(da.attrs.get("detector", "")).lower()
    if detector in _INTEGRATED_DETECTORS:
        return "integrated"
    if detector in _SIGNED_DETECTORS or da.attrs.get("signal") == "derived":
        return "signed"
    return "counts"


class ImageModel:
    """Simulated intensity images (HRTEM at fixed optics, or STEM) over thickness and probe defocus.

    Parameters
    ----------
    images : xarray.DataArray
        Real image(s) with dims (``x``, ``y``) or (``scan_x``, ``scan_y``), optionally
        ``thickness`` (a multislice thickness series) and ``defocus`` (Å, a STEM probe defocus
        series: one scan per member, at least 3, evenly spaced or not). One period of the
        specimen: STEM scans must cover the whole cell (``GridScan`` over the cell, endpoint
        excluded). The signal kind (:func:`signal_of`) and, for iDPC/iCoM, the integration's
        ``regularization`` (1/Å²) come from the attrs.

    Notes
    -----
    Between the members of a defocus series the image is a cubic spline in defocus, pixel by
    pixel (no re-simulation inside the fit): the series step should be well below the probe's
    depth of field ``λ/α²`` (≈ 60 Å at 200 kV and 20 mrad) for the spline to follow the image.
    """

    def __init__(self, images: xr.DataArray):
        dims = ("x", "y") if "x" in images.dims else ("scan_x", "scan_y")
        if not set(dims) <= set(images.dims):
            raise InputError(f"a simulated image needs dims (x, y) or (scan_x, scan_y), got {images.dims}")
        self.kind = "stem" if dims[0] == "scan_x" else "image"
        extra = [d for d in images.dims if d not in (*dims, "thickness", "defocus")]
        if extra:
            raise InputError(f"the simulated image has extra dims {extra}; select one detector/image first")
        if np.iscomplexobj(images.values):
            raise InputError("complex values: pass exit waves to ExitWaveModel (HRTEM), intensities here")
        self.signal = signal_of(images)
        self.regularization = float(images.attrs.get("regularization", 0.0))
        self.defoci = None
        if "defocus" in images.dims:
            images = images.sortby("defocus")
            self.defoci = np.asarray(images["defocus"].values, dtype=float)
            if self.defoci.size < 3 or np.any(np.diff(self.defoci) <= 0):
                raise InputError(
                    f"a defocus series needs at least 3 distinct defoci (Å), got {self.defoci.tolist()}; "
                    "simulate one scan per defocus"
                )
        order = [d for d in ("defocus", "thickness", *dims) if d in images.dims]
        images = images.transpose(*order)
        if self.defoci is None:
            values, self.thicknesses = _series(images)
            self.values = values.astype(float)
        else:
            series = [_series(images.isel(defocus=i)) for i in range(self.defoci.size)]
            self.values = np.stack([v for v, _ in series]).astype(float)  # (defocus, thickness, x, y)
            self.thicknesses = series[0][1]
        self.extent = _extent(images, dims)
        self.sampling = (self.extent[0] / self.values.shape[-2], self.extent[1] / self.values.shape[-1])
        self.energy = float(images.attrs.get("energy", np.nan))
        self._splines: dict = {}

    @property
    def fittable(self) -> tuple[str, ...]:
        names = ["thickness", "blur", "shift", "rotation_deg", "magnification", "scale", "offset"]
        if self.signal == "counts":
            names.append("dose")
        if self.kind == "stem":
            names.append("drift")
        if self.defoci is not None:
            names.insert(0, "defocus")
        return tuple(names)

    def image(self, index: int, defocus: float | None = None) -> PeriodicImage:
        if self.defoci is None:
            if defocus is not None:
                raise InputError(
                    "defocus cannot be fitted to a fixed simulated image; pass exit waves (HRTEM) or a STEM "
                    "defocus series (a 'defocus' dim)"
                )
            return PeriodicImage(self.values[index], self.extent)
        if defocus is None:
            raise InputError("a defocus series needs a defocus: fit it, or give initial={'defocus': ...} (Å)")
        lo, hi = self.defoci[0], self.defoci[-1]
        if not lo - 1e-9 <= float(defocus) <= hi + 1e-9:
            raise InputError(f"defocus {float(defocus):g} Å is outside the simulated series {lo:g}–{hi:g} Å")
        spline = self._splines.get(index)
        if spline is None:
            from scipy.interpolate import CubicSpline

            spline = self._splines[index] = CubicSpline(self.defoci, self.values[:, index], axis=0)
        return PeriodicImage(spline(float(defocus)), self.extent)

    def integrated_with(self, regularization: float) -> None:
        """Re-integrate an iDPC/iCoM model with another regularization ε (1/Å²), in place.

        The integration's filter is ``1/(q² + ε)``; the model made with ε₀ becomes the one made
        with ε by the factor ``(q² + ε₀)/(q² + ε)`` on every Fourier coefficient (the mean is
        lost either way).
        """
        eps = float(regularization)
        if self.signal != "integrated" or eps == self.regularization:
            return
        n1, n2 = self.values.shape[-2:]
        q2 = np.fft.fftfreq(n1, self.sampling[0])[:, None] ** 2 + np.fft.fftfreq(n2, self.sampling[1])[None, :] ** 2
        factor = np.where(q2 == 0, 1.0, (q2 + self.regularization) / np.maximum(q2 + eps, 1e-300))
        self.values = np.real(np.fft.ifft2(np.fft.fft2(self.values) * factor))
        self.regularization = eps
        self._splines.clear()

    def max_frequency(self) -> float:
        return min(0.5 / s for s in self.sampling)

    def attrs(self) -> dict:
        out = {"model": f"simulated {self.kind} image(s) over thickness", "energy": self.energy, "signal": self.signal}
        if self.defoci is not None:
            out["model"] += " and probe defocus"
            out["defocus_series"] = str([float(d) for d in self.defoci])
        if self.signal == "integrated":
            out["regularization"] = self.regularization
        return out


def model_from_simulation(simulation: xr.DataArray, **lens):
    """:class:`ExitWaveModel` for complex exit waves, :class:`ImageModel` for real images."""
    if not isinstance(simulation, xr.DataArray):
        raise InputError(f"expected a simulated DataArray, got {type(simulation).__name__}")
    if np.iscomplexobj(simulation.values):
        return ExitWaveModel(simulation, **lens)
    return ImageModel(simulation)
