"""Preparing an experiment and a simulation for comparison: crop, normalize, resample, tile, register.

The simulated image is periodic (the simulation cell), so it is held as its Fourier series
(:class:`PeriodicImage`) and *evaluated* at the experiment's pixel positions: that one step
resamples it to the experiment's pixel size (Fourier interpolation, exact for a band-limited
image), tiles the cell over the field of view and applies a sub-pixel shift. Registration is by
phase correlation refined by an upsampled DFT around the peak (sub-pixel).
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

from temsim.checks import as_number
from temsim.errors import InputError
from temsim.readers import pixel_size_of

__all__ = [
    "crop",
    "normalize",
    "fourier_resample",
    "PeriodicImage",
    "phase_correlation",
    "correlation_peaks",
    "cross_correlation_peak",
    "whiten_integrated",
    "integrated_modes_lost",
]


def crop(image: xr.DataArray, x=None, y=None) -> xr.DataArray:
    """The part of ``image`` with ``x0 ≤ x < x1`` and ``y0 ≤ y < y1`` (Å; ``None`` keeps an axis).

    Raises
    ------
    InputError
        When fewer than 8 pixels remain along an axis (empty overlap).
    """
    selection = {}
    for dim, window in (("x", x), ("y", y)):
        if window is None:
            continue
        lo, hi = (as_number(f"crop {dim}[{i}]", v, "Å") for i, v in enumerate(window))
        coords = image[dim].values
        keep = (coords >= lo) & (coords < hi)
        if keep.sum() < 8:
            raise InputError(
                f"crop {dim} = [{lo:g}, {hi:g}) Å keeps {int(keep.sum())} pixels of the image "
                f"({coords[0]:g}–{coords[-1]:g} Å); at least 8 are needed"
            )
        selection[dim] = np.flatnonzero(keep)
    out = image.isel(selection) if selection else image
    if selection:
        out = out.assign_attrs(crop=str({k: [float(v) for v in w] for k, w in (("x", x), ("y", y)) if w is not None}))
    return out


def normalize(image: xr.DataArray, kind: str = "image", black_level=None, vacuum_level=None) -> xr.DataArray:
    """HRTEM (``kind="image"``): divided by its mean. STEM (``"stem"``): fraction of the beam.

    For STEM, ``(image − black_level) / (vacuum_level − black_level)`` with the detector's
    reading without beam (black) and with the full beam on it (vacuum), in the image's units.
    """
    values = np.asarray(image.values, dtype=float)
    if kind == "stem":
        if black_level is None or vacuum_level is None:
            raise InputError(
                "normalizing a STEM image to fractions of the beam needs black_level and vacuum_level "
                "(the detector's reading without beam and with the whole beam on it)"
            )
        black = as_number("black_level", black_level)
        vacuum = as_number("vacuum_level", vacuum_level)
        if vacuum == black:
            raise InputError(f"vacuum_level must differ from black_level, both are {black:g}")
        out = (values - black) / (vacuum - black)
        units = "fraction of incident beam"
    elif kind == "image":
        mean = values.mean()
        if mean == 0:
            raise InputError("the image's mean is 0: it cannot be normalized by its mean")
        out = values / mean
        units = "fraction of the image mean"
    else:
        raise InputError(f"kind must be 'image' (HRTEM) or 'stem', got {kind!r}")
    return image.copy(data=out).assign_attrs(units=units, normalization=kind)


def fourier_resample(image: xr.DataArray, pixel_size) -> xr.DataArray:
    """A periodic image on a new pixel size by Fourier cropping/padding (extent kept, Å).

    The number of pixels becomes ``round(extent / pixel_size)``, so the pixel size realized
    (in ``attrs["pixel_size"]``) is the nearest that fits the extent exactly.
    """
    p = np.broadcast_to(np.asarray(pixel_size, dtype=float), 2)
    old = pixel_size_of(image)
    n_old = image.shape
    extent = (n_old[0] * old[0], n_old[1] * old[1])
    n_new = tuple(max(2, int(round(e / q))) for e, q in zip(extent, p))
    periodic = PeriodicImage(np.asarray(image.values, dtype=float), extent)
    u = np.arange(n_new[0]) * extent[0] / n_new[0]
    v = np.arange(n_new[1]) * extent[1] / n_new[1]
    values = periodic.evaluate(u, v)
    coords = {"x": ("x", float(image.x[0]) + u, {"units": "Å"}), "y": ("y", float(image.y[0]) + v, {"units": "Å"})}
    attrs = {**image.attrs, "pixel_size": [extent[0] / n_new[0], extent[1] / n_new[1]], "resampled": "Fourier"}
    return xr.DataArray(values, dims=("x", "y"), coords=coords, attrs=attrs, name=image.name)


class PeriodicImage:
    """A real periodic image as its Fourier series, evaluated anywhere (Å).

    Parameters
    ----------
    values : (n1, n2) array
        One period of the image on a regular grid starting at 0.
    extent : (float, float)
        The period (Å), i.e. the simulation cell.
    coefficients : (n1, n2) complex array, optional
        The Fourier coefficients (FFT order) instead of ``values``: ``I(x) = Σ c_k e^{2πik·x}``.
    """

    def __init__(self, values=None, extent=(1.0, 1.0), coefficients=None):
        if coefficients is None:
            values = np.asarray(values, dtype=float)
            coefficients = np.fft.fft2(values) / values.size
        self.coefficients = np.array(coefficients, dtype=complex)
        self.extent = (float(extent[0]), float(extent[1]))
        n1, n2 = self.coefficients.shape
        self.fx = np.fft.fftfreq(n1, self.extent[0] / n1)
        self.fy = np.fft.fftfreq(n2, self.extent[1] / n2)
        # An even grid's Nyquist bins are kept: evaluation takes the real part, which is exact on
        # the grid and a smooth real interpolant between (STEM images are rarely band-limited).

    def blurred(self, sigma: float) -> PeriodicImage:
        """Convolved with a Gaussian of standard deviation ``sigma`` Å."""
        if sigma <= 0:
            return self
        envelope = np.exp(-2 * np.pi**2 * sigma**2 * (self.fx[:, None] ** 2 + self.fy[None, :] ** 2))
        return PeriodicImage(extent=self.extent, coefficients=self.coefficients * envelope)

    def evaluate(self, u, v, shift=(0.0, 0.0), row_shifts=None) -> np.ndarray:
        """Values at ``x = u − shift_x``, ``y = v − shift_y`` on the grid ``u × v`` (Å).

        ``row_shifts`` (one per ``v``, Å) shift each scan line along *x* as well (STEM line
        jitter). Rows and columns of negligible coefficients are skipped.
        """
        u = np.asarray(u, dtype=float) - float(shift[0])
        v = np.asarray(v, dtype=float) - float(shift[1])
        magnitude = np.abs(self.coefficients)
        negligible = 1e-12 * magnitude.max()  # below float64 rounding of the sum
        keep_x = np.flatnonzero(magnitude.max(axis=1) > negligible)
        keep_y = np.flatnonzero(magnitude.max(axis=0) > negligible)
        c = self.coefficients[np.ix_(keep_x, keep_y)]
        ex = np.exp(2j * np.pi * u[:, None] * self.fx[keep_x][None, :])
        ey = np.exp(2j * np.pi * v[:, None] * self.fy[keep_y][None, :])
        if row_shifts is None:
            return np.real(ex @ c @ ey.T)
        lines = (c @ ey.T) * np.exp(-2j * np.pi * self.fx[keep_x][:, None] * np.asarray(row_shifts)[None, :])
        return np.real(ex @ lines)

    def evaluate_affine(
        self,
        u,
        v,
        shift=(0.0, 0.0),
        rotation_deg: float = 0.0,
        magnification: float = 1.0,
        drift=(0.0, 0.0),
        row_shifts=None,
    ):
        """Values on the grid ``u × v`` (Å) of an image rotated by ``rotation_deg`` (degrees, about
        the grid's centre c), magnified and drifting: pixel ``p`` shows
        ``q = m R(θ)(p − c) + c − shift − drift · (p_y − c_y)/(v_last − v_first)``.

        ``drift`` (Å, x and y) is how far the specimen moved between the first and the last
        scan line (along *y*, the slow axis): a linear drift shears (x) and stretches (y) the
        frame, with no displacement at its centre line. ``row_shifts`` (one per ``v``, Å) shift
        each scan line along *x* as well. The phase of each Fourier term is affine in the pixel
        indices, so the sum is still one matrix product, over the coefficients above 10⁻⁹ of the
        largest (exact to that level).
        """
        u = np.asarray(u, dtype=float)
        v = np.asarray(v, dtype=float)
        cu, cv = u.mean(), v.mean()
        theta = np.deg2rad(rotation_deg)
        cos, sin = np.cos(theta) * magnification, np.sin(theta) * magnification
        height = float(v[-1] - v[0]) if v.size > 1 else 1.0
        m01, m11 = -sin - float(drift[0]) / height, cos - float(drift[1]) / height
        magnitude = np.abs(self.coefficients)
        ix, iy = np.nonzero(magnitude > 1e-9 * magnitude.max())
        fx, fy = self.fx[ix], self.fy[iy]
        c = self.coefficients[ix, iy] * np.exp(2j * np.pi * (fx * (cu - shift[0]) + fy * (cv - shift[1])))
        a = np.exp(2j * np.pi * np.outer(u - cu, fx * cos + fy * sin))
        b = np.exp(2j * np.pi * np.outer(v - cv, fx * m01 + fy * m11))
        if row_shifts is not None:
            b = b * np.exp(-2j * np.pi * np.outer(np.asarray(row_shifts, dtype=float), fx))
        return np.real((a * c[None, :]) @ b.T)


def whiten_integrated(image: np.ndarray, pixel_size, regularization: float = 0.0) -> np.ndarray:
    """Undo the colouring of an integrated gradient signal's noise (iDPC, iCoM), Å⁻¹ × data units.

    An iDPC/iCoM image is the gradient field (the DPC or centre-of-mass vector) integrated by
    Fourier division, ``φ̂ = q·ĝ / (2πi (q² + ε))`` (:func:`temsim.detectors.integrate_gradient`).
    Noise that is white in the gradient (independent probe positions) is therefore coloured in
    φ. Multiplying by ``W(q) = 2π (q² + ε)/|q|`` (``W(0) = 0``: the mean is lost) turns a noise
    realization back into ``q̂·ĝ``, white with the variance of one gradient component, so a
    least-squares fit on the whitened residual is the Gaussian likelihood of the gradient data.
    On an even grid the Nyquist lines are left out as well: taking the real part of the
    integration keeps only part of them (:func:`integrated_modes_lost` counts what is left out).
    """
    values = np.asarray(image, dtype=float)
    weight = _whitening(values.shape[-2:], (float(pixel_size[0]), float(pixel_size[1])), float(regularization))
    return np.real(np.fft.ifft2(np.fft.fft2(values) * weight))


@functools.lru_cache(maxsize=16)
def _whitening(shape: tuple, pixel_size: tuple, regularization: float) -> np.ndarray:
    """``W(q)`` of :func:`whiten_integrated` (built once per grid: a fit whitens every residual)."""
    n1, n2 = shape
    qx = np.fft.fftfreq(n1, pixel_size[0])[:, None]
    qy = np.fft.fftfreq(n2, pixel_size[1])[None, :]
    q2 = qx**2 + qy**2
    weight = np.where(q2 == 0, 0.0, 2 * np.pi * (q2 + regularization) / np.sqrt(np.maximum(q2, 1e-300)))
    if n1 % 2 == 0:  # the integration keeps only part of the Nyquist lines: leave them out
        weight[n1 // 2, :] = 0.0
    if n2 % 2 == 0:
        weight[:, n2 // 2] = 0.0
    weight.flags.writeable = False  # shared by every caller of the cache
    return weight


def integrated_modes_lost(shape) -> int:
    """Fourier modes :func:`whiten_integrated` leaves out: the mean and, on even sizes, the Nyquist lines."""
    n1, n2 = shape[-2:]
    lost_x, lost_y = n2 if n1 % 2 == 0 else 0, n1 if n2 % 2 == 0 else 0
    return 1 + lost_x + lost_y - (1 if lost_x and lost_y else 0)


def _upsampled_dft(spectrum: np.ndarray, size: int, factor: int, offsets) -> np.ndarray:
    """Cross-correlation ``ifft(spectrum)`` on a ``size``² patch at ``1/factor`` px around ``offsets``."""
    n1, n2 = spectrum.shape
    rows = (np.arange(size) - size // 2) / factor + offsets[0]
    cols = (np.arange(size) - size // 2) / factor + offsets[1]
    k1 = np.fft.fftfreq(n1)
    k2 = np.fft.fftfreq(n2)
    e1 = np.exp(2j * np.pi * rows[:, None] * k1[None, :])
    e2 = np.exp(2j * np.pi * k2[:, None] * cols[None, :])
    return e1 @ spectrum @ e2


def phase_correlation(
    reference: np.ndarray, moving: np.ndarray, upsample: int = 20, *, whiten: bool = True, near=None
) -> tuple[float, float]:
    """Sub-pixel shift (pixels) with ``moving(i) ≈ reference(i − shift)``, by phase correlation.

    The whitened cross-power spectrum's peak (``whiten=False``: the plain cross-correlation's,
    more robust at low counts) is found on the pixel grid — or taken as ``near`` (integer
    pixels) — then refined on a ``1/upsample`` px grid by a matrix DFT around it
    (Guizar-Sicairos, Thurman & Fienup, Opt. Lett. 33 (2008) 156).
    """
    a = np.fft.fft2(np.asarray(reference, dtype=float) - np.mean(reference))
    b = np.fft.fft2(np.asarray(moving, dtype=float) - np.mean(moving))
    cross = b * np.conj(a)
    if whiten:
        cross /= np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max())
    if near is None:
        corr = np.real(np.fft.ifft2(cross))
        peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), dtype=float)
        n = np.array(corr.shape)
        peak[peak > n // 2] -= n[peak > n // 2]
    else:
        peak = np.asarray(near, dtype=float)
    size = int(3 * upsample)
    patch = np.real(_upsampled_dft(cross, size, upsample, peak))
    fine = np.array(np.unravel_index(np.argmax(patch), patch.shape), dtype=float)
    shift = peak + (fine - size // 2) / upsample
    return float(shift[0]), float(shift[1])


def correlation_peaks(reference: np.ndarray, moving: np.ndarray, count: int = 4) -> list[tuple[int, int]]:
    """The ``count`` highest local maxima (integer shifts, px) of the circular cross-correlation."""
    from scipy.ndimage import maximum_filter

    a = np.asarray(reference, dtype=float) - np.mean(reference)
    b = np.asarray(moving, dtype=float) - np.mean(moving)
    corr = np.real(np.fft.ifft2(np.fft.fft2(b) * np.conj(np.fft.fft2(a))))
    maxima = (corr == maximum_filter(corr, size=5, mode="wrap")) & (corr > 0)
    order = np.argsort(corr[maxima])[::-1][:count]
    peaks = np.argwhere(maxima)[order]
    return [tuple(int(i) if i <= s // 2 else int(i - s) for i, s in zip(p, corr.shape)) for p in peaks]


def cross_correlation_peak(reference: np.ndarray, moving: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Largest normalized cross-correlation over integer circular shifts, and that shift (px)."""
    a = np.asarray(reference, dtype=float) - np.mean(reference)
    b = np.asarray(moving, dtype=float) - np.mean(moving)
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    if norm == 0:
        return 0.0, (0, 0)
    corr = np.real(np.fft.ifft2(np.fft.fft2(b) * np.conj(np.fft.fft2(a)))) / norm
    index = np.unravel_index(np.argmax(corr), corr.shape)
    shift = tuple(int(i) if i <= s // 2 else int(i - s) for i, s in zip(index, corr.shape))
    return float(corr[index]), shift
