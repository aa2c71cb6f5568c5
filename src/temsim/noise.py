"""Noise: from ideal simulated intensities to what a camera records, at one or several doses.

A simulated signal ``I`` (fraction of the incident beam per pixel / probe position) becomes
expected electrons ``λ = D · a · I`` (dose ``D`` in e/Å², area ``a`` in Å² per pixel or probe
position, :func:`expected_electrons`) and then recorded counts through a camera model
(:mod:`temsim.cameras`: DQE, MTF, noise and gain of the recording device).
:func:`apply_noise` does both for DataArrays, Datasets and plain arrays.

Randomness comes only from a :class:`numpy.random.Generator` built from ``seed``.

Renamed: the camera models moved to :mod:`temsim.cameras` (still importable from here);
``detector_model`` is now :func:`temsim.camera_model`, ``DETECTOR_PRESETS`` is
``CAMERA_PRESETS`` and ``apply_noise(detector=...)`` is ``apply_noise(camera=...)``; the old
names work with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import xarray as xr

from temsim.backend import array_namespace, to_numpy
from temsim.cameras import (
    CAMERA_PRESETS,
    SIGNAL_KINDS,
    AnnularPMT,
    CameraModel,
    CountingCamera,
    HybridPixel,
    IdealCounting,
    IntegratingCamera,
    _check_nonneg,
    camera_model,
    frequency_grid,
)
from temsim.checks import as_choice
from temsim.dose import Dose
from temsim.errors import InputError

__all__ = [
    "apply_noise",
    "expected_electrons",
    "frequency_grid",
    "SIGNAL_KINDS",
    "DERIVED_SIGNALS",
]

# Re-exported for code written before temsim.cameras existed.
_COMPAT = (IdealCounting, CountingCamera, IntegratingCamera, HybridPixel, AnnularPMT, CameraModel)

#: Derived STEM signals (not raw counts): noise must be added to their inputs instead.
DERIVED_SIGNALS = ("center_of_mass", "com", "icom", "idpc", "dpc", "com_x", "com_y", "phase", "ptychography")

#: Pixel dims of each raw signal kind (the last two axes the camera models see).
_PIXEL_DIMS = {"image": ("x", "y"), "diffraction": ("kx", "ky"), "4dstem": ("kx", "ky"), "stem": ("scan_x", "scan_y")}

#: Units of the recorded signal by camera model class (default: counts).
_UNITS = {"IntegratingCamera": "ADU", "AnnularPMT": "single-electron pulses"}


class _DefaultName(str):
    """The default camera name: a distinct object so that an explicit ``camera="ideal"`` is told apart."""


_DEFAULT_CAMERA = _DefaultName("ideal")
_UNSET = object()


def detector_model(name: str = "ideal", energy: float | None = None, **overrides):
    """Deprecated name of :func:`temsim.camera_model` (a detector is geometry; this is a camera model)."""
    warnings.warn(
        "temsim.detector_model is deprecated: use temsim.camera_model (same arguments); "
        "a detector is geometry (temsim.detectors), a camera model its response",
        DeprecationWarning,
        stacklevel=2,
    )
    return camera_model(name, energy, **overrides)


def __getattr__(name: str):
    if name == "DETECTOR_PRESETS":
        warnings.warn(
            "temsim.noise.DETECTOR_PRESETS is deprecated: use temsim.cameras.CAMERA_PRESETS",
            DeprecationWarning,
            stacklevel=2,
        )
        return CAMERA_PRESETS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- signals
def _rng(seed) -> tuple[np.random.Generator, Any]:
    """A Generator from ``seed`` (int, SeedSequence, Generator or None) and what to record."""
    if isinstance(seed, np.random.Generator):
        return seed, "generator"
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed), seed.entropy
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise InputError(f"seed must be an int, numpy SeedSequence/Generator or None, got {seed!r}")
    ss = np.random.SeedSequence(None if seed is None else int(seed))
    return np.random.default_rng(ss), ss.entropy


def _signal_kind(obj, signal_kind: str | None) -> str:
    attrs = getattr(obj, "attrs", {}) or {}
    kind = signal_kind if signal_kind is not None else attrs.get("signal")
    det = str(attrs.get("detector", "")).lower()
    if kind is not None and str(kind).lower() in DERIVED_SIGNALS or det in DERIVED_SIGNALS:
        raise InputError(
            f"this is a derived signal ({kind or det!r}), not raw counts: noise cannot be added to it "
            "directly. Apply noise to the raw detector data it is computed from (the DPC segments or "
            "the 4D-STEM data) and recompute the derived signal from the noisy counts"
        )
    if kind is None:
        raise InputError(
            "cannot tell what kind of signal this is: pass signal_kind= one of "
            f"{SIGNAL_KINDS} (DataArrays from temsim carry attrs['signal'])"
        )
    kind = str(kind).lower()
    if kind not in SIGNAL_KINDS:
        raise InputError(f"unknown signal kind {kind!r}; valid kinds: {SIGNAL_KINDS}")
    return kind


def _check_compatible(model: CameraModel, kind: str) -> None:
    if not model.accepts(kind):
        fits = [n for n, (cls, p) in CAMERA_PRESETS.items() if kind in cls.__dataclass_fields__["signals"].default]
        raise InputError(
            f"camera model {model.name!r} ({type(model).__name__}) does not apply to {kind!r} signals; "
            f"models that fit {kind!r}: {', '.join(fits)}"
        )


def _spacing(da, dim: str) -> float:
    c = np.asarray(da.coords[dim].values, dtype=float) if dim in da.coords else None
    if c is None or c.size < 2:
        raise InputError(f"cannot get the {dim} spacing: the DataArray needs a '{dim}' coordinate with ≥ 2 values")
    return float(abs(c[1] - c[0]))


def _area_from_dataarray(da, kind: str) -> float:
    """Å² per unit of signal value (pixel area, probe step², or illuminated area)."""
    attrs = da.attrs
    if kind == "image":
        return _spacing(da, "x") * _spacing(da, "y")
    if kind == "diffraction":
        if "illuminated_area" not in attrs:
            raise InputError("a diffraction pattern needs attrs['illuminated_area'] (Å²) to turn a dose into electrons")
        return _check_nonneg("illuminated_area", attrs["illuminated_area"], "Å²")
    step = attrs.get("scan_step")
    if step is not None:
        step = np.broadcast_to(np.asarray(step, dtype=float), (2,))
        return float(step[0] * step[1])
    return _spacing(da, "scan_x") * _spacing(da, "scan_y")


def _doses(dose) -> tuple[np.ndarray, bool]:
    """Dose values (float64, 1-D) and whether the output needs a ``dose`` dimension."""
    if isinstance(dose, Dose):
        return np.array([dose.value]), False
    arr = np.asarray(to_numpy(dose) if not isinstance(dose, (list, tuple)) else dose, dtype=float)
    if arr.ndim > 1:
        raise InputError(f"dose must be a number or a 1-D sequence of doses (e/Å²), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError(f"doses must be finite and ≥ 0 e/Å², got {arr.tolist()}")
    return arr.reshape(-1), arr.ndim == 1


def expected_electrons(signal, dose, area: float):
    """``λ = D·a·I`` with a leading dose axis when ``dose`` is 1-D (any array-API ``signal``)."""
    xp = array_namespace(signal)
    doses, has_axis = _doses(dose)
    sig = signal if signal.dtype in (xp.float32, xp.float64) else xp.astype(signal, xp.float32)
    if has_axis:
        scale = xp.asarray((doses * area).astype(np.float64 if sig.dtype == xp.float64 else np.float32))
        return xp.reshape(scale, (-1,) + (1,) * sig.ndim) * sig[None, ...]
    return sig * float(doses[0] * area)


def _check_signal_values(values) -> None:
    v = to_numpy(values)
    if v.size and np.nanmin(v) < -1e-3 * max(float(np.nanmax(np.abs(v))), 1e-30):
        raise InputError(
            f"the signal has negative values (min {float(np.nanmin(v)):.3g}): noise needs intensities "
            "(fractions of the beam), not phases, differences or centre-of-mass shifts"
        )
    if not np.all(np.isfinite(v)):
        raise InputError("the signal contains NaN or inf values")


def _camera_argument(camera, detector, energy) -> CameraModel:
    """The camera model from ``camera`` or the deprecated ``detector`` keyword."""
    if detector is not _UNSET:
        if camera is not _DEFAULT_CAMERA:
            raise InputError("give the camera model once: camera= (detector= is its deprecated old name), not both")
        warnings.warn(
            "apply_noise(detector=...) is deprecated: use camera=... (a detector is geometry, "
            "temsim.detectors; a camera model its response)",
            DeprecationWarning,
            stacklevel=3,
        )
        camera = detector
    if isinstance(camera, CameraModel):
        return camera
    return camera_model(camera, energy=energy)


def _readout_frames(model: CameraModel, exposure_time, n_frames) -> int | None:
    """Sensor readout frames the exposure spans (``None``: no coincidence loss, one readout)."""
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise InputError(f"n_frames must be an integer ≥ 1, got {n_frames!r}")
    if exposure_time is not None:
        t = _check_nonneg("exposure_time", exposure_time, "s")
        rate = getattr(model, "frame_rate", None)
        if rate is not None:
            return max(int(round(t * rate)), 1) * int(n_frames)
        return None
    return int(n_frames) if n_frames > 1 else None


def _noise_dataset(signal: xr.Dataset, dose, model: CameraModel, seed, **kwargs) -> xr.Dataset:
    """Each variable with its own child seed."""
    n = len(signal.data_vars)
    ss = np.random.SeedSequence(seed) if not isinstance(seed, (np.random.Generator, np.random.SeedSequence)) else seed
    children = ss.spawn(n) if isinstance(ss, np.random.SeedSequence) else [ss] * n
    out = {
        name: apply_noise(var, dose, model, child, **kwargs)
        for (name, var), child in zip(signal.data_vars.items(), children)
    }
    return xr.Dataset(out, attrs=dict(signal.attrs))


def _expected_from_dose_dim(da: xr.DataArray, area: float):
    """Expected electrons for a signal that carries its own ``dose`` dim (e.g. after damage)."""
    if "dose" not in da.dims:
        raise InputError("dose is required (e/Å²) unless the signal already has a 'dose' dimension")
    doses = np.asarray(da.coords["dose"].values, dtype=float)
    da = da.transpose("dose", ...)
    values = da.data
    xp = array_namespace(values)
    expected = values * xp.asarray((doses * area).reshape((-1,) + (1,) * (values.ndim - 1)).astype(np.float32))
    return expected, doses, True, da.isel(dose=0, drop=True)


def _expected_at_doses(da: xr.DataArray, dose, kind: str, area: float):
    """Expected electrons at the given dose(s), pixel dims last."""
    if "dose" in da.dims:
        raise InputError("the signal already has a 'dose' dimension: pass dose=None to use it")
    pix = _PIXEL_DIMS[kind]
    missing = [d for d in pix if d not in da.dims]
    if missing:
        raise InputError(f"a {kind!r} signal needs dims {pix}; missing {missing} (dims are {da.dims})")
    da = da.transpose(..., *pix)
    doses, has_axis = _doses(dose)
    return expected_electrons(da.data, dose, area), doses, has_axis, da


def _noise_attrs(signal, kind: str, model: CameraModel, recorded_seed, area: float, n_frames: int) -> dict:
    attrs = dict(signal.attrs)
    parameters = json.dumps(model.parameters())
    attrs.update(
        signal=kind,
        units=_UNITS.get(type(model).__name__, "counts"),
        camera_model=model.name,
        camera_parameters=parameters,
        # deprecated names of camera_model / camera_parameters, kept for one release
        detector_model=model.name,
        detector_parameters=parameters,
        seed=str(recorded_seed),
        area_per_unit_signal=area,
        n_frames=int(n_frames),
    )
    return attrs


#: Largest expected count numpy's Poisson sampler accepts (``lam value too large`` above it).
POISSON_MAX = 9.2e18


def _check_poisson_range(expected, doses) -> None:
    """Refuse a dose whose expected counts no random generator can sample, naming the largest that works."""
    largest = float(np.max(to_numpy(expected))) if int(np.prod(expected.shape)) else 0.0
    if largest > POISSON_MAX:
        dose = float(np.max(doses))
        raise InputError(
            f"dose {dose:g} e/Å² gives {largest:.3g} expected electrons in one pixel, more than a Poisson draw "
            f"can sample ({POISSON_MAX:.2g}); the largest dose that works for this signal is "
            f"{dose * POISSON_MAX / largest:.3g} e/Å²"
        )


def _noise_dataarray(
    signal: xr.DataArray,
    dose,
    model: CameraModel,
    rng,
    recorded_seed,
    *,
    signal_kind,
    area,
    readout_frames,
    fast: int,
    n_frames: int,
) -> xr.DataArray:
    kind = _signal_kind(signal, signal_kind)
    _check_compatible(model, kind)
    a = float(area) if area is not None else _area_from_dataarray(signal, kind)
    if dose is None:
        expected, doses, has_axis, core = _expected_from_dose_dim(signal, a)
    else:
        expected, doses, has_axis, core = _expected_at_doses(signal, dose, kind, a)
    _check_signal_values(core.data)
    _check_poisson_range(expected, doses)
    counts = model.sample(expected, rng, readout_frames=readout_frames, fast_axis=fast)
    dims = (("dose",) if has_axis else ()) + core.dims
    coords = {k: v for k, v in core.coords.items()}
    if has_axis:
        coords["dose"] = ("dose", doses, {"units": "e/Å²", "long_name": "electron dose"})
    attrs = _noise_attrs(signal, kind, model, recorded_seed, a, n_frames)
    if not has_axis:
        attrs["dose"] = float(doses[0])
    return xr.DataArray(counts, dims=dims, coords=coords, attrs=attrs, name=signal.name)


def _noise_array(signal, dose, model: CameraModel, rng, *, signal_kind, area, readout_frames, fast: int):
    if signal_kind is None or area is None:
        raise InputError(
            "plain arrays need signal_kind= (image/diffraction/stem/4dstem) and area= (Å² per unit of signal)"
        )
    kind = _signal_kind(signal, signal_kind)
    _check_compatible(model, kind)
    if dose is None:
        raise InputError("dose is required (e/Å²) for plain arrays")
    _check_signal_values(signal)
    expected = expected_electrons(signal, dose, _check_nonneg("area", area, "Å²"))
    _check_poisson_range(expected, _doses(dose)[0])
    return model.sample(expected, rng, readout_frames=readout_frames, fast_axis=fast)


def apply_noise(
    signal,
    dose=None,
    camera=_DEFAULT_CAMERA,
    seed=None,
    *,
    signal_kind: str | None = None,
    area: float | None = None,
    exposure_time: float | None = None,
    n_frames: int = 1,
    fast_axis: str = "scan_x",
    energy: float | None = None,
    detector=_UNSET,
):
    """Turn a noise-free simulated signal into recorded counts at one or several doses.

    Parameters
    ----------
    signal : DataArray, Dataset or array
        Simulated signal (fraction of the incident beam per pixel / probe position). A
        DataArray states its kind in ``attrs["signal"]`` (``"image"``, ``"diffraction"``,
        ``"stem"``, ``"4dstem"``); a Dataset is processed variable by variable. A plain
        array (numpy, ``array_api_strict``, cupy) needs ``signal_kind`` and ``area``.
    dose : float, Dose or 1-D sequence
        Dose(s) in e/Å². Several doses add a leading ``dose`` dimension (no re-simulation:
        the expected counts are linear in dose). ``None`` uses the signal's own ``dose``
        coordinate (e.g. after :func:`temsim.damage`).
    camera : str or CameraModel
        Camera model (the detector's response: DQE, MTF, noise, gain): a preset name (see
        :func:`temsim.camera_model`) or a model instance. Default ``"ideal"``.
    seed : int, SeedSequence, Generator or None
        Randomness; the entropy used is recorded in ``attrs["seed"]``.
    signal_kind : str, optional
        Overrides ``attrs["signal"]``; required for plain arrays.
    area : float, optional
        Å² per unit of signal for plain arrays: pixel area (image), probe step² (stem,
        4dstem) or illuminated area (diffraction).
    exposure_time : float, optional
        Exposure (s) per frame/probe position, used for coincidence loss (counting cameras).
    n_frames : int
        Number of readout frames the dose is recorded in (read noise per frame, saturation).
    fast_axis : str
        Fast scan dimension for detector afterglow (``"scan_x"`` or ``"scan_y"``).
    energy : float, optional
        Beam energy (eV) at which a preset is resolved (:func:`temsim.camera_model`: numbers
        interpolated between characterised energies, refused outside them); ``None``: the
        preset at its highest characterised energy.
    detector : str or CameraModel
        Deprecated name of ``camera`` (emits :class:`DeprecationWarning`; giving both is an error).

    Returns
    -------
    DataArray, Dataset or array
        Counts (float32): counting models in counts, integrating cameras in ADU, annular PMT in
        single-electron pulse units. Dims ``("dose", *signal.dims)`` when several doses.

    Raises
    ------
    InputError
        Negative doses, an unknown or derived signal kind (CoM, iDPC), or a camera model that
        does not apply to the signal kind (e.g. a pixelated camera on an annular STEM signal).
    """
    model = _camera_argument(camera, detector, energy)
    readout_frames = _readout_frames(model, exposure_time, n_frames)
    if isinstance(signal, xr.Dataset):
        return _noise_dataset(
            signal,
            dose,
            model,
            seed,
            signal_kind=signal_kind,
            area=area,
            exposure_time=exposure_time,
            n_frames=n_frames,
            fast_axis=fast_axis,
        )
    rng, recorded_seed = _rng(seed)
    fast = -2 if as_choice("fast_axis", fast_axis, ("scan_x", "scan_y")) == "scan_x" else -1
    if isinstance(signal, xr.DataArray):
        return _noise_dataarray(
            signal,
            dose,
            model,
            rng,
            recorded_seed,
            signal_kind=signal_kind,
            area=area,
            readout_frames=readout_frames,
            fast=fast,
            n_frames=n_frames,
        )
    return _noise_array(
        signal, dose, model, rng, signal_kind=signal_kind, area=area, readout_frames=readout_frames, fast=fast
    )
