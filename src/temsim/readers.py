"""Experimental images in: TIFF, MRC, Digital Micrograph, EMD/Velox, temsim NetCDF, NumPy.

:func:`load_image` returns an ``xarray.DataArray`` with dims (``x``, ``y``), coordinates in Å
and provenance in ``attrs`` (the file, its SHA-256, the reader, where the calibration came
from). Files are read through the field's own libraries — ``tifffile``, ``mrcfile`` and
``rosettasciio`` (the ``compare`` extra: ``pip install "temsim[compare]"``) — never by a
hand-written parser, and only ever opened for reading.

Array orientation: an image file stores rows along *y* and columns along *x* (the convention
of every microscope format and of ``matplotlib.pyplot.imshow``); the returned DataArray is
indexed ``[x, y]`` like every temsim image (``values[i, j]`` is the pixel at ``x[i]``,
``y[j]``). A plain NumPy array passed in is read like a file (rows along *y*); a DataArray with
``x``/``y`` (or ``scan_x``/``scan_y``) dims is taken as it is.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import numpy as np
import xarray as xr

from temsim._version import __version__
from temsim.checks import as_number
from temsim.errors import InputError, TemsimError

__all__ = [
    "load_image",
    "check_calibration",
    "pixel_size_of",
    "ReaderError",
    "MissingReaderError",
    "LENGTH_UNITS",
    "UNIT_ERROR_FACTOR",
]

#: Length units recognized in file metadata, in Å.
LENGTH_UNITS = {
    "å": 1.0,
    "a": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "ang": 1.0,
    "pm": 0.01,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "µm": 1e4,
    "μm": 1e4,
    "um": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "mm": 1e7,
    "m": 1e10,
}

#: A pixel size this many times off the expected one is taken for a unit error.
UNIT_ERROR_FACTOR = 10.0

_EXTRA = 'pip install "temsim[compare]"'


class ReaderError(TemsimError, OSError):
    """A file cannot be read: unreadable, truncated, or not an image (names the file and the reader)."""


class MissingReaderError(TemsimError, ImportError):
    """The library that reads this format is not installed (names the extra to install)."""


# ----------------------------------------------------------------------------- helpers
def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _import(module: str, fmt: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingReaderError(
            f"reading {fmt} files needs the package {module.split('.')[0]!r}, which is not installed: {_EXTRA}"
        ) from None


def _unit_factor(unit) -> float | None:
    """Å per ``unit`` for a length unit, else None."""
    if unit is None:
        return None
    text = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00c5", "Å")
    return LENGTH_UNITS.get(text.lower())


def _check_values(values: np.ndarray, where: str) -> np.ndarray:
    if values.ndim != 2:
        raise InputError(
            f"{where} holds an array of shape {values.shape}; an image is 2D (select one frame or sum a stack first)"
        )
    if min(values.shape) < 2:
        raise InputError(f"{where} holds an image of shape {values.shape}; at least 2 × 2 pixels are needed")
    if np.iscomplexobj(values):
        raise InputError(f"{where} holds complex values; load an intensity image (e.g. np.abs(wave)**2)")
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise InputError(
            f"{where} has {int(bad.sum())} NaN/inf pixel(s) (first at row {first[0]}, column {first[1]}); "
            "replace or crop them before comparing"
        )
    return values


def _missing_calibration(where: str) -> InputError:
    return InputError(
        f"{where} has no pixel-size calibration in its metadata; pass it: "
        "load_image(path, pixel_size=0.05) (Å per pixel, or (x, y)), or pixel_size = ... in the [experiment] "
        "table of a compare TOML file"
    )


def _pixel_pair(pixel_size) -> tuple[float, float]:
    if np.ndim(pixel_size) == 0:
        p = as_number("pixel_size", pixel_size, "Å", minimum=0, exclusive_minimum=True)
        return (p, p)
    if len(pixel_size) != 2:
        raise InputError(f"pixel_size must be one number or (x, y) in Å, got {pixel_size!r}")
    return tuple(
        as_number(f"pixel_size[{i}]", p, "Å", minimum=0, exclusive_minimum=True) for i, p in enumerate(pixel_size)
    )


def _image(values_rows_y: np.ndarray, pixel: tuple[float, float], attrs: dict, origin=(0.0, 0.0)) -> xr.DataArray:
    """DataArray (x, y) from a row-major file image (rows along y)."""
    values = values_rows_y.T
    nx, ny = values.shape
    x = origin[0] + pixel[0] * np.arange(nx)
    y = origin[1] + pixel[1] * np.arange(ny)
    attrs = dict(attrs)
    attrs.setdefault("signal", "image")
    attrs["pixel_size"] = [float(pixel[0]), float(pixel[1])]
    attrs["pixel_size_units"] = "Å"
    attrs["temsim_version"] = __version__
    coords = {"x": ("x", x, {"units": "Å"}), "y": ("y", y, {"units": "Å"})}
    return xr.DataArray(values, dims=("x", "y"), coords=coords, attrs=attrs, name="experiment")


# ----------------------------------------------------------------------------- formats
def _read_tiff(path: str) -> tuple[np.ndarray, tuple[float, float] | None, str]:
    tifffile = _import("tifffile", "TIFF")
    try:
        with tifffile.TiffFile(path) as tif:
            values = tif.asarray()
            page = tif.pages[0]
            calibration = _tiff_calibration(tif, page)
    except (ValueError, OSError, KeyError, IndexError, EOFError) as err:
        raise ReaderError(f"cannot read {path} with tifffile: {err}") from None
    return np.squeeze(values), *calibration


def _tiff_calibration(tif, page) -> tuple[tuple[float, float] | None, str]:
    fei = getattr(tif, "fei_metadata", None)
    if fei and "Scan" in fei and fei["Scan"].get("PixelWidth"):
        scan = fei["Scan"]
        return (float(scan["PixelWidth"]) * 1e10, float(scan.get("PixelHeight", scan["PixelWidth"])) * 1e10), (
            "TIFF FEI/Thermo Fisher metadata (Scan.PixelWidth, m)"
        )
    imagej = getattr(tif, "imagej_metadata", None) or {}
    factor = _unit_factor(imagej.get("unit"))
    tags = page.tags
    if factor is not None and "XResolution" in tags:
        per_unit = []
        for name in ("XResolution", "YResolution"):
            num, den = tags[name].value if name in tags else tags["XResolution"].value
            per_unit.append(num / den)
        if min(per_unit) > 0:
            return (factor / per_unit[0], factor / per_unit[1]), f"TIFF ImageJ metadata (unit {imagej['unit']!r})"
    return None, "none in the TIFF metadata"


def _read_mrc(path: str) -> tuple[np.ndarray, tuple[float, float] | None, str]:
    mrcfile = _import("mrcfile", "MRC")
    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            values = np.array(mrc.data)
            voxel = mrc.voxel_size
            pixel = (float(voxel.x), float(voxel.y))
    except (ValueError, OSError, EOFError) as err:
        raise ReaderError(f"cannot read {path} with mrcfile: {err}") from None
    values = np.squeeze(values)
    if min(pixel) <= 0:
        return values, None, "none (MRC voxel size is 0)"
    return values, pixel, "MRC header voxel size (Å)"


def _rsciio_plugin(extension: str):
    rsciio = _import("rsciio", f".{extension}")
    for plugin in rsciio.IO_PLUGINS:
        if extension in [e.lower() for e in plugin["file_extensions"]]:
            return plugin
    return None


def _read_rsciio(path: str, plugin) -> tuple[np.ndarray, tuple[float, float] | None, str]:
    module = _import(plugin["api"], plugin["name"])
    try:
        signals = module.file_reader(path, lazy=False)
    except Exception as err:  # noqa: BLE001 - any reader failure is reported with the file and the reader
        raise ReaderError(
            f"cannot read {path} with rosettasciio ({plugin['name']}): {type(err).__name__}: {err}"
        ) from None
    images = [s for s in signals if np.ndim(s["data"]) == 2 or np.squeeze(s["data"]).ndim == 2]
    if not images:
        shapes = [np.shape(s["data"]) for s in signals]
        raise InputError(f"{path} holds no 2D image (signals of shapes {shapes}); select a frame and pass an array")
    signal = images[0]
    values = np.squeeze(np.asarray(signal["data"]))
    axes = [a for a in signal["axes"] if a.get("size", 2) > 1]
    if len(axes) != 2:
        return values, None, f"none (rosettasciio {plugin['name']}: {len(axes)} axes)"
    # rosettasciio lists axes in array order: rows (y) first, then columns (x)
    factors = [_unit_factor(a.get("units")) for a in axes]
    if None in factors or not all(float(a.get("scale", 0)) > 0 for a in axes):
        units = [a.get("units") for a in axes]
        return values, None, f"none usable (rosettasciio {plugin['name']}: axis units {units})"
    pixel = (float(axes[1]["scale"]) * factors[1], float(axes[0]["scale"]) * factors[0])
    return values, pixel, f"{plugin['name']} metadata via rosettasciio (units {axes[1].get('units')!r})"


def _read_temsim(path: str) -> xr.DataArray:
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise ReaderError(f"cannot read {path} with xarray/h5netcdf: {err}") from None
    names = [n for n, v in ds.data_vars.items() if _xy_dims(v) is not None]
    if not names:
        raise InputError(
            f"{path} has no variable with dims (x, y) or (scan_x, scan_y); variables: {list(ds.data_vars)}"
        )
    return ds[names[0]]


def _xy_dims(da) -> tuple[str, str] | None:
    for pair in (("x", "y"), ("scan_x", "scan_y")):
        if set(pair) <= set(da.dims):
            return pair
    return None


def _from_dataarray(da: xr.DataArray, where: str, attrs: dict) -> xr.DataArray:
    pair = _xy_dims(da)
    if pair is None:
        raise InputError(f"{where} has dims {da.dims}; an image needs (x, y) or (scan_x, scan_y) in Å")
    extra = [d for d in da.dims if d not in pair and da.sizes[d] > 1]
    if extra:
        raise InputError(f"{where} has extra dims {extra}; select one image first (e.g. .isel({extra[0]}=0))")
    da = da.squeeze(drop=False).transpose(*pair)
    values = _check_values(np.asarray(da.values), where)
    coords = [np.asarray(da[d].values, dtype=float) for d in pair]
    pixel = tuple(float(c[1] - c[0]) for c in coords)
    if min(pixel) <= 0:
        raise InputError(f"{where}: coordinates {pair} must increase (got pixel size {pixel} Å)")
    merged = {**da.attrs, **attrs}
    if pair[0] != "x":
        merged["original_dims"] = list(pair)
    return _image(values.T, pixel, merged, origin=(coords[0][0], coords[1][0]))


# ----------------------------------------------------------------------------- public
_READERS = {".tif": _read_tiff, ".tiff": _read_tiff, ".mrc": _read_mrc, ".mrcs": _read_mrc, ".st": _read_mrc}


def _load_file(path: str, pixel_size) -> xr.DataArray:
    if not os.path.isfile(path):
        raise ReaderError(f"image file {path} does not exist")
    ext = Path(path).suffix.lower()
    attrs = {"source": os.path.abspath(path), "source_sha256": _sha256(path)}
    if ext in (".nc", ".h5", ".hdf5", ".nc4"):
        da = _from_dataarray(_read_temsim(path), path, {**attrs, "reader": "xarray (h5netcdf)"})
        da.attrs["calibration"] = "temsim coordinates (Å)"
        return _override(da, pixel_size)
    if ext == ".npy":
        try:
            values, pixel, origin = np.load(path, allow_pickle=False), None, "none (NumPy file)"
        except (ValueError, OSError, EOFError) as err:
            raise ReaderError(f"cannot read {path} with numpy.load: {err}") from None
        reader = "numpy"
    elif ext in _READERS:
        values, pixel, origin = _READERS[ext](path)
        reader = {".tif": "tifffile", ".tiff": "tifffile"}.get(ext, "mrcfile")
    else:
        plugin = _rsciio_plugin(ext.lstrip("."))
        if plugin is None:
            raise ReaderError(
                f"{path}: no reader for {ext!r} files; temsim reads .tif/.tiff, .mrc, .nc/.h5 (temsim), .npy and "
                f"every format rosettasciio reads (.dm3, .dm4, .emd, .ser, …)"
            )
        values, pixel, origin = _read_rsciio(path, plugin)
        reader = f"rosettasciio ({plugin['name']})"
    values = _check_values(np.asarray(values), path)
    if pixel_size is not None:
        pixel, origin = _pixel_pair(pixel_size), f"user pixel_size (file: {origin})"
    elif pixel is None:
        raise _missing_calibration(f"{path} (read with {reader}: calibration {origin})")
    return _image(values, pixel, {**attrs, "reader": reader, "calibration": origin})


def _override(da: xr.DataArray, pixel_size) -> xr.DataArray:
    if pixel_size is None:
        return da
    pixel = _pixel_pair(pixel_size)
    attrs = {**da.attrs, "calibration": f"user pixel_size (file: {da.attrs.get('calibration')})"}
    return _image(np.asarray(da.values).T, pixel, attrs)


def load_image(source, pixel_size=None) -> xr.DataArray:
    """An experimental image with its calibration, as a DataArray (``x``, ``y``) in Å.

    Parameters
    ----------
    source : str or path or numpy.ndarray or xarray.DataArray
        An image file — TIFF (``tifffile``; calibration from ImageJ or FEI/Thermo Fisher
        metadata), MRC (``mrcfile``; the header's voxel size), DM3/DM4, EMD/Velox and the other
        formats of ``rosettasciio``, a NetCDF/HDF5 file written by temsim (``.nc``, ``.h5``),
        a ``.npy`` file — or an array (rows along *y*) or a DataArray with ``x``/``y`` (or
        ``scan_x``/``scan_y``) coordinates in Å.
    pixel_size : float or (float, float), optional
        Pixel size in Å (x, y). Required where the source has no calibration; overrides the
        file's otherwise (the attrs record both).

    Returns
    -------
    xarray.DataArray
        float64 image, dims (``x``, ``y``), coords in Å starting at 0 (or at the DataArray's
        own origin); attrs ``source``, ``source_sha256``, ``reader``, ``calibration`` (where
        the pixel size came from), ``pixel_size`` (Å).

    Raises
    ------
    ReaderError
        The file does not exist, or its reader refuses it (the message names both).
    MissingReaderError
        The format's library is not installed (``pip install "temsim[compare]"``).
    InputError
        No calibration and no ``pixel_size``; NaN/inf pixels; not a 2D image.

    Examples
    --------
    >>> import numpy as np, temsim
    >>> image = temsim.load_image(np.ones((4, 6)), pixel_size=0.5)
    >>> image.dims, image.sizes["x"], float(image.x[-1])
    (('x', 'y'), 6, 2.5)
    """
    if isinstance(source, xr.DataArray):
        da = _from_dataarray(source, "the DataArray", {"source": "DataArray", "reader": "xarray"})
        da.attrs.setdefault("calibration", "DataArray coordinates (Å)")
        return _override(da, pixel_size)
    if isinstance(source, np.ndarray):
        values = _check_values(source, "the array")
        if pixel_size is None:
            raise _missing_calibration("a NumPy array")
        attrs = {"source": "numpy array", "reader": "numpy", "calibration": "user pixel_size"}
        return _image(values, _pixel_pair(pixel_size), attrs)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"load_image takes a file path, a NumPy array or a DataArray, got {type(source).__name__}")
    return _load_file(os.fspath(source), pixel_size)


def pixel_size_of(image: xr.DataArray) -> tuple[float, float]:
    """Pixel size (Å) of an image DataArray from its ``x``/``y`` (or scan) coordinates."""
    pair = _xy_dims(image)
    if pair is None:
        raise InputError(f"image has dims {image.dims}; expected (x, y) or (scan_x, scan_y)")
    return tuple(float(image[d].values[1] - image[d].values[0]) for d in pair)


def check_calibration(pixel_size, expected, what: str = "the simulation's sampling") -> None:
    """Refuse a pixel size more than :data:`UNIT_ERROR_FACTOR` times off ``expected`` (both Å).

    Raises
    ------
    InputError
        With the ratio and "likely a unit error" (nm read as Å, say).
    """
    for p, e in zip(np.broadcast_to(pixel_size, 2), np.broadcast_to(expected, 2)):
        ratio = float(p) / float(e)
        if not 1 / UNIT_ERROR_FACTOR <= ratio <= UNIT_ERROR_FACTOR:
            raise InputError(
                f"the image's pixel size {float(p):.4g} Å is {ratio:.3g}× {what} ({float(e):.4g} Å): likely a unit "
                "error (nm given as Å, or the reverse); check the calibration or pass pixel_size= in Å"
            )
