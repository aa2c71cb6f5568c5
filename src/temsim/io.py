"""Where scan results go: an in-memory sink and a crash-safe on-disk store.

The scan driver (:func:`temsim.solvers.driver.run_scan`) cuts a scan into *work units*
(a batch of probe positions, under one frozen-phonon configuration or averaged over all)
and hands each finished unit to a sink. A sink adds the units of a batch in a fixed order
and, when every unit is in, builds the result Dataset.

* :class:`MemorySink` keeps everything in memory.
* :class:`StoreSink` writes each finished unit atomically as its own file into
  ``<output>.part/`` (temporary name, ``fsync``, rename), next to a manifest holding the
  run's fingerprint. A kill at any moment — SIGKILL included — leaves only complete unit
  files, so a rerun with the same inputs computes exactly the units that are missing; a
  rerun with different inputs is refused. When all units are in, the NetCDF4/HDF5 file is
  assembled batch by batch under a temporary name (4D-STEM larger than memory is never held
  whole) and renamed to ``output``; the store is then removed.

Variables have the scan dims (``scan_x``, ``scan_y`` or ``scan_position``) preceded by
``thickness`` for a thickness series (otherwise ``thickness`` is a scalar coordinate) and
followed by the detector's own dims (``kx``, ``ky``, ``ring``, ``segment``, ``radial_bin``,
``component``). A dim name that two detectors use with different coordinates becomes
``<detector>_<dim>``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from temsim.errors import InputError

__all__ = ["ScanLayout", "WorkUnit", "MemorySink", "StoreSink", "atomic_save_npz"]

#: Format of the on-disk store; a store of another version is refused, not misread.
STORE_VERSION = 1


@dataclass(frozen=True)
class WorkUnit:
    """One piece of a scan: positions ``start:stop`` under configuration ``config``.

    ``config`` is ``None`` when the unit averages over every configuration itself (multislice,
    Bloch); an integer for engines that hold one configuration at a time (PRISM's S-matrix).
    ``component`` is ``"all"`` (every component the scan records), ``"total"`` or
    ``"elastic"``.
    """

    index: int
    start: int
    stop: int
    config: int | None = None
    component: str = "all"


@dataclass
class ScanLayout:
    """What a scan produces: detector channels, their shapes, the positions and exit planes.

    Parameters
    ----------
    detectors : dict of str to CompiledDetector
        Compiled detectors (see :class:`temsim.detectors.CompiledDetector`).
    scan : ResolvedScan
        The probe positions.
    thicknesses : array of float
        Exit planes (Å).
    series : bool
        ``thickness`` is a dimension (True) or a scalar coordinate (False, one exit plane).
    components : tuple of str
        ``("total",)`` or ``("total", "elastic")``.
    """

    detectors: dict
    scan: object
    thicknesses: np.ndarray
    series: bool
    components: tuple = ("total",)
    dim_names: dict = field(init=False)

    def __post_init__(self):
        self.thicknesses = np.asarray(self.thicknesses, dtype=float).reshape(-1)
        self.dim_names = _dim_names(self.detectors)

    @property
    def channels(self) -> list[tuple[str, str]]:
        """``(detector name, component)`` of every recorded channel, in a fixed order."""
        return [(name, component) for component in self.components for name in self.detectors]

    def value_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.detectors[name].value_shape)

    def unit_shape(self, name: str, n: int) -> tuple[int, ...]:
        """Shape of one channel's values for ``n`` positions: ``(thickness, n, *value_shape)``."""
        return (len(self.thicknesses), n) + self.value_shape(name)

    def result_bytes(self) -> int:
        """Bytes of every channel's float32 values over the whole scan."""
        n = len(self.scan)
        return sum(4 * int(np.prod(self.unit_shape(name, n))) for name, _ in self.channels)

    @staticmethod
    def variable(name: str, component: str) -> str:
        return name if component == "total" else f"{name}_{component}"

    def thickness_coord(self) -> dict:
        attrs = {"units": "Å", "long_name": "specimen thickness"}
        if self.series:
            return {"thickness": ("thickness", self.thicknesses, attrs)}
        return {"thickness": ((), float(self.thicknesses[-1]), attrs)}

    def data_array(self, name: str, component: str, values: np.ndarray, attrs: dict) -> xr.DataArray:
        """Finalized DataArray of one channel from its values ``(thickness, positions, *value_shape)``."""
        det = self.detectors[name]
        shape = self.scan.shape + self.value_shape(name)
        parts = [det.finalize(np.asarray(v).reshape(shape), self.scan, attrs) for v in values]
        if self.series:
            da = xr.concat(parts, dim="thickness", coords="minimal", compat="override", combine_attrs="override")
            da = da.transpose("thickness", ...)
        else:
            da = parts[-1]
        da = da.assign_coords(self.thickness_coord())
        if component != "total":
            da.attrs["component"] = component
        return _rename(da, self.dim_names[name]).rename(self.variable(name, component))


def _dim_names(detectors: dict) -> dict[str, dict[str, str]]:
    """Final names of each detector's own dims: plain unless two detectors use the same name
    with different coordinates, then ``<detector>_<dim>``."""
    seen: dict[str, list] = {}
    for det in detectors.values():
        if det.derived:
            continue
        coords = det.extra_coords()
        for dim in det.dims:
            values = np.asarray(coords[dim][1]) if dim in coords else None
            seen.setdefault(dim, []).append(values)
    clash = set()
    for dim, values in seen.items():
        first = values[0]
        for other in values[1:]:
            same = (
                first is not None
                and other is not None
                and first.shape == other.shape
                and (first.dtype.kind not in "iuf" or np.allclose(first, other))
            )
            if not same:
                clash.add(dim)
    return {
        name: {dim: (f"{name}_{dim}" if dim in clash else dim) for dim in det.dims} for name, det in detectors.items()
    }


def _rename(da: xr.DataArray, mapping: dict[str, str]) -> xr.DataArray:
    renames = {d: n for d, n in mapping.items() if d != n and d in da.dims}
    if not renames:
        return da
    prefix = next(iter(renames.values())).split("_")[0]
    coord_renames = {
        c: f"{prefix}_{c}"
        for c in da.coords
        if c not in da.dims and c not in ("thickness",) and any(d in renames for d in da[c].dims)
    }
    return da.rename({**renames, **coord_renames})


def _plain_attrs(attrs: dict) -> dict:
    return {k: (json.dumps(v) if isinstance(v, (list, dict, tuple)) else v) for k, v in attrs.items()}


class MemorySink:
    """Keeps every channel in memory and adds each unit into it (results are float32)."""

    def __init__(self, layout: ScanLayout, accumulate=np.float32):
        self.layout = layout
        n = len(layout.scan)
        # several units add into a batch (configurations of PRISM): float64 keeps the sum independent
        # of the order in which they arrive
        self.arrays = {
            channel: np.zeros(layout.unit_shape(channel[0], n), dtype=accumulate) for channel in layout.channels
        }

    def completed(self) -> set[int]:
        """Indices of units already stored (none: memory does not survive a run)."""
        return set()

    def write(self, unit: WorkUnit, values: dict) -> None:
        """Add one unit's values ``{(name, component): array (thickness, n, *shape)}``."""
        for channel, value in values.items():
            self.arrays[channel][:, unit.start : unit.stop] += value

    def dataset(self, attrs: dict) -> xr.Dataset:
        layout = self.layout
        variables = {}
        for name, component in layout.channels:
            values = self.arrays[(name, component)].astype(np.float32, copy=False)
            da = layout.data_array(name, component, values, attrs)
            variables[da.name] = da
        return xr.Dataset(variables, attrs=attrs)


def atomic_write(path, write) -> str:
    """Create ``path`` all at once: ``write(tmp)`` fills a temporary file in the same folder, which
    is flushed to disk and renamed over ``path``; a failure or a kill leaves ``path`` untouched (a
    failed attempt's temporary file is removed). Returns ``path``.

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = atomic_write(os.path.join(folder, "a.txt"), lambda tmp: open(tmp, "w").write("x"))
    >>> open(path).read(), sorted(os.listdir(folder))
    ('x', ['a.txt'])
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.part")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_save_npz(path: str, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` so that a kill leaves either the whole file or none.

    The data go to a temporary name in the same folder, are flushed to disk (``fsync``) and
    renamed over ``path`` (atomic on POSIX and Windows).
    """
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class StoreSink:
    """Crash-safe store of finished units in ``<output>.part/``, assembled into ``output`` at the end.

    Parameters
    ----------
    output : path
        The NetCDF file to produce; never replaced unless ``overwrite``.
    layout : ScanLayout
    fingerprint : str
        Hash of everything that determines the result (parameters, detectors, positions).
    units : list of WorkUnit
        The run's units (their boundaries are part of the store).
    resume : bool
        Continue from a store left by a killed run with the same fingerprint (default). With
        ``False`` an existing store is discarded.
    overwrite : bool
        Allow replacing an existing ``output`` file.
    """

    def __init__(
        self, output, layout: ScanLayout, fingerprint: str, units: list, *, resume: bool = True, overwrite: bool = False
    ):
        self.output = os.fspath(output)
        self.part = self.output + ".part"
        self.layout = layout
        self.units = units
        if os.path.exists(self.output) and not overwrite:
            raise FileExistsError(f"{self.output} exists; pass overwrite=True to replace it or choose another name")
        folder = os.path.dirname(os.path.abspath(self.output))
        if not os.path.isdir(folder):
            raise InputError(f"cannot write {self.output}: the folder {folder} does not exist")
        manifest = {
            "version": STORE_VERSION,
            "fingerprint": fingerprint,
            "units": [[u.index, u.start, u.stop, u.config, u.component] for u in units],
        }
        if os.path.lexists(self.part) and not os.path.isdir(self.part):
            raise InputError(f"{self.part} exists and is not a temsim scan store (a folder); move it away or delete it")
        if os.path.isdir(self.part):
            if not resume:
                shutil.rmtree(self.part)
            else:
                self._check_manifest(manifest)
        os.makedirs(self.part, exist_ok=True)
        manifest_path = os.path.join(self.part, "manifest.json")
        if not os.path.exists(manifest_path):
            _atomic_write_json(manifest_path, manifest)

    def _check_manifest(self, manifest: dict) -> None:
        path = os.path.join(self.part, "manifest.json")
        try:
            with open(path, encoding="utf-8") as f:
                stored = json.load(f)
        except FileNotFoundError:
            return  # killed before the manifest was written: nothing stored yet
        except (OSError, ValueError) as err:
            raise InputError(f"{path} is unreadable ({err}); delete {self.part} or pass resume=False") from None
        if stored.get("fingerprint") != manifest["fingerprint"] or stored.get("version") != STORE_VERSION:
            raise InputError(
                f"{self.part} is left from a run with different parameters; delete it or pass resume=False"
            )
        if stored.get("units") != manifest["units"]:
            raise InputError(
                f"{self.part} was made with another batch size; rerun with the batch size of that run, "
                "or delete it (or pass resume=False) to start over"
            )

    def _unit_path(self, index: int) -> str:
        return os.path.join(self.part, f"unit-{index:06d}.npz")

    def completed(self) -> set[int]:
        """Indices of units already in the store (temporary leftovers of a killed write are removed)."""
        done = set()
        for entry in os.listdir(self.part):
            if ".tmp-" in entry:
                os.remove(os.path.join(self.part, entry))
            elif entry.startswith("unit-") and entry.endswith(".npz"):
                done.add(int(entry[5:11]))
        return done

    def write(self, unit: WorkUnit, values: dict) -> None:
        arrays = {f"{name}|{component}": np.asarray(v, dtype=np.float32) for (name, component), v in values.items()}
        atomic_save_npz(self._unit_path(unit.index), arrays)

    def _batch_values(self, units: list) -> dict:
        total: dict = {}
        for unit in units:
            with np.load(self._unit_path(unit.index), allow_pickle=False) as data:
                for key in data.files:
                    name, component = key.split("|")
                    value = data[key]
                    channel = (name, component)
                    total[channel] = value.copy() if channel not in total else total[channel] + value
        return total

    def dataset(self, attrs: dict) -> xr.Dataset:
        """Assemble the NetCDF file from the stored units, rename it to ``output``, open it lazily."""
        import h5netcdf

        layout = self.layout
        tmp = self.output + ".tmp"
        batches: dict = {}
        for unit in self.units:
            batches.setdefault((unit.start, unit.stop), []).append(unit)
        derived = {
            channel: np.zeros(layout.unit_shape(channel[0], len(layout.scan)), dtype=np.float32)
            for channel in layout.channels
            if layout.detectors[channel[0]].derived
        }
        with h5netcdf.File(tmp, "w") as f:
            variables = _create_variables(f, layout, attrs)
            for (start, stop), units in batches.items():
                for channel, value in self._batch_values(units).items():
                    if channel in derived:
                        derived[channel][:, start:stop] = value
                    else:
                        _write_positions(variables[channel], layout, start, value)
            for (name, component), values in derived.items():
                da = layout.data_array(name, component, values, attrs)
                var = f.create_variable(da.name, da.dims, data=np.asarray(da.values, dtype=np.float32))
                var.attrs.update(_plain_attrs({k: v for k, v in da.attrs.items() if k not in attrs}))
                if not layout.series:
                    var.attrs["coordinates"] = "thickness"
            for key, value in _plain_attrs(attrs).items():
                f.attrs[key] = value
        os.replace(tmp, self.output)
        shutil.rmtree(self.part)
        return xr.open_dataset(self.output, engine="h5netcdf")


def _create_variables(f, layout: ScanLayout, attrs: dict) -> dict:
    """Dimensions, coordinates and empty (chunked, compressed) variables of the non-derived channels."""
    scan = layout.scan
    coords = scan.coords()
    leading = ()
    if layout.series:
        f.dimensions["thickness"] = len(layout.thicknesses)
        var = f.create_variable("thickness", ("thickness",), data=layout.thicknesses)
        var.attrs.update({"units": "Å", "long_name": "specimen thickness"})
        leading = ("thickness",)
    else:
        var = f.create_variable("thickness", (), data=float(layout.thicknesses[-1]))
        var.attrs.update({"units": "Å", "long_name": "specimen thickness"})
    for dim, n in zip(scan.dims, scan.shape):
        f.dimensions[dim] = n
    for name, (dims, values, *rest) in coords.items():
        if name not in f.variables:
            var = f.create_variable(name, (dims,) if isinstance(dims, str) else tuple(dims), data=np.asarray(values))
            if rest:
                var.attrs.update(rest[0])
    variables = {}
    for name, component in layout.channels:
        det = layout.detectors[name]
        if det.derived:
            continue
        own = []
        extra = det.extra_coords()
        for dim, n in zip(det.dims, layout.value_shape(name)):
            full = layout.dim_names[name][dim]
            if full not in f.dimensions:
                f.dimensions[full] = n
            if dim in extra and np.asarray(extra[dim][1]).dtype.kind in "iuf" and full not in f.variables:
                var = f.create_variable(full, (full,), data=np.asarray(extra[dim][1]))
                if len(extra[dim]) > 2:
                    var.attrs.update(extra[dim][2])
            own.append(full)
        dims = leading + tuple(scan.dims) + tuple(own)
        chunks = (1,) * len(leading) + (1,) * (len(scan.shape) - 1) + (min(scan.shape[-1], 32),)
        chunks += layout.value_shape(name)
        var = f.create_variable(
            layout.variable(name, component), dims, dtype="f4", chunks=chunks, compression="gzip", compression_opts=1
        )
        var.attrs.update(_plain_attrs(det.attrs))
        if component != "total":
            var.attrs["component"] = component
        if not layout.series:
            var.attrs["coordinates"] = "thickness"
        variables[(name, component)] = var
    return variables


def _write_positions(var, layout: ScanLayout, start: int, values: np.ndarray) -> None:
    """Write ``values`` ``(thickness, n, *shape)`` of positions ``start …`` into a file variable."""
    lead = (slice(None),) if layout.series else ()
    values = values if layout.series else values[-1]
    shape = layout.scan.shape
    n = values.shape[len(lead)]
    if len(shape) == 1:
        var[lead + (slice(start, start + n),)] = values
        return
    ny = shape[1]
    offset = 0
    while offset < n:
        row, col = divmod(start + offset, ny)
        m = min(ny - col, n - offset)
        part = values[:, offset : offset + m] if lead else values[offset : offset + m]
        var[lead + (row, slice(col, col + m))] = part
        offset += m
