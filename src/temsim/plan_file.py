"""The plan file ``plan.nc``: a plan's limits and signals as one netCDF-4 file of groups.

Layout (an :class:`xarray.DataTree`; read it with ``xarray.open_datatree(path)`` or
:func:`open_plan`):

``/``
    Every data variable of the plan's limits dataset — the table's columns over ``mode`` ×
    ``energy`` (eV), the detection-power curves over ``dose`` (e/Å²), the damage figures
    per ``energy``, both structures — and the study's parameters, the grid used and
    ``table_columns`` (the table's columns, JSON) in its attrs. Fields that other steps add to
    the limits dataset land here without changes to this module.
``/signals/<mode>``
    One group per mode (its label; ``/`` replaced by ``_``; ``attrs["mode"]`` holds the
    label): ``rate`` (energy, hypothesis, configuration, <channels>), the expected counts per
    e/Å² of every channel, with coordinates ``energy`` (eV), ``hypothesis`` (``H0``, ``H1``),
    ``configuration``, then ``scan_x``/``scan_y`` (Å) for STEM, plus ``segment`` (and
    ``segment_azimuth``, deg) for segmented detectors or ``kx``/``ky`` (1/Å) for pixelated
    ones, and ``x``/``y`` (Å) for images. Its attrs give the mode's kind, camera,
    efficiency, channel area (Å²) and detector angles.

:func:`table_from_file` rebuilds the report's table from the file alone.
"""

from __future__ import annotations

import json
import os

import numpy as np
import xarray as xr

from temsim.errors import InputError
from temsim.io import atomic_write
from temsim.modes import _strip

__all__ = ["plan_tree", "write_plan", "open_plan", "table_rows", "table_from_file", "SIGNALS"]

#: Name of the group holding one subgroup of signals per mode.
SIGNALS = "signals"


#: Units of the root's coordinates (kept even where a merge dropped coordinate attrs).
_COORD_UNITS = {"energy": "eV", "dose": "e/Å²"}


def _group_name(label: str) -> str:
    return str(label).replace("/", "_")


def _signal(label: str, da: xr.DataArray) -> xr.Dataset:
    """One mode's rates with its own channel dims (``segment``, not ``<label>_segment``)."""
    da = _strip(da, label)
    if "segment" in da.dims:
        n = da.sizes["segment"]
        rotation = float(da.attrs.get("rotation", 0.0))
        azimuth = (rotation + 360.0 * (np.arange(n) + 0.5) / n) % 360.0
        da = da.assign_coords(segment_azimuth=("segment", azimuth, {"units": "deg", "long_name": "segment centre"}))
    ds = da.to_dataset(name="rate")
    ds.attrs = {**{k: v for k, v in da.attrs.items() if v is not None}, "mode": str(label)}
    return ds


def plan_tree(dataset: xr.Dataset, rates: xr.Dataset) -> xr.DataTree:
    """The plan file's tree: ``dataset`` at the root, each mode's ``rates`` under ``/signals``."""
    units = {name: unit for name, unit in _COORD_UNITS.items() if name in dataset.coords}
    groups = {"/": dataset.assign_coords({k: dataset[k].assign_attrs(units=v) for k, v in units.items()})}
    for label in rates.data_vars:
        groups[f"/{SIGNALS}/{_group_name(label)}"] = _signal(str(label), rates[label])
    return xr.DataTree.from_dict(groups)


def write_plan(path, dataset: xr.Dataset, rates: xr.Dataset) -> str:
    """Write ``plan.nc`` atomically (temporary name, then rename); returns the path."""
    tree = plan_tree(dataset, rates)
    return atomic_write(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=True))


def open_plan(path) -> xr.DataTree:
    """The plan file at ``path`` as an in-memory :class:`xarray.DataTree` (the file is closed)."""
    with xr.open_datatree(os.fspath(path), engine="h5netcdf") as tree:
        return tree.load().copy()


def _value(da: xr.DataArray):
    value = da.values.item() if da.ndim == 0 else da.values
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode()
    if da.dtype.kind in "US" or da.dtype == object:
        return str(value)
    if da.dtype.kind in "iu":
        return int(value)
    return float(value)


def table_rows(ds: xr.Dataset, columns) -> list[dict]:
    """The report's table from a limits dataset: one dict per energy × mode (energy outer).

    Each row has ``mode`` and ``energy`` (eV) and every column of ``columns``, taken from the
    variable of that name at the row's mode and energy (a variable over ``energy`` only or
    ``mode`` only gives the same value to every row it covers). ``detector`` repeats
    ``camera`` (its deprecated name).
    """
    rows = []
    for energy in ds.energy.values:
        for mode in ds.mode.values:
            row = {"mode": str(mode), "energy": float(energy)}
            for name in columns:
                where = {d: v for d, v in (("mode", mode), ("energy", energy)) if d in ds[name].dims}
                row[name] = _value(ds[name].sel(where))
            if "camera" in row:
                row["detector"] = row["camera"]
            rows.append(row)
    return rows


def table_from_file(path) -> list[dict]:
    """The report's table rebuilt from ``plan.nc`` alone (equal to :attr:`PlanResult.table`)."""
    root = open_plan(path).to_dataset()
    if "table_columns" not in root.attrs:
        raise InputError(f"{os.fspath(path)} is not a temsim plan file (its root has no 'table_columns' attribute)")
    return table_rows(root, json.loads(root.attrs["table_columns"]))
