"""Checkpoints of the planner's simulations: one NetCDF file each, verified before reuse.

Every simulation of a plan (one energy, hypothesis and frozen-phonon configuration) is saved
as it finishes, so a killed plan resumes where it stopped. A checkpoint carries the hash of
its inputs (``input_key``: structure, energy, modes, optics, sampling, scan window, temsim
version) and of its contents (``content_sha256``). It is written atomically (temporary
name, ``fsync``, rename), so a kill leaves either the whole file or none.

A checkpoint that cannot be read (truncated), whose contents no longer match their hash
(edited) or that was made for other inputs (foreign) is never trusted: it is moved aside to
``<name>.corrupt`` (never deleted) with a :class:`CheckpointWarning`, and the simulation is
recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict

import numpy as np
import xarray as xr

import temsim
from temsim.errors import TemsimWarning
from temsim.study import Study

__all__ = [
    "CheckpointWarning",
    "input_key",
    "content_hash",
    "save_checkpoint",
    "load_checkpoint",
    "study_fingerprint",
    "FORMAT",
]

#: Format of a checkpoint file; another format is recomputed, not misread.
FORMAT = 2


class CheckpointWarning(TemsimWarning):
    """A checkpoint was unreadable, edited or made for other inputs: it was set aside and recomputed."""


def input_key(payload: dict) -> str:
    """SHA-256 (hex) of the inputs of one simulation (a JSON-able dict)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def content_hash(ds: xr.Dataset) -> str:
    """SHA-256 (hex) of a checkpoint's variables, coordinates and channel areas.

    Numbers are hashed as float64 bytes and text as JSON, so the hash survives a round trip
    through NetCDF.
    """
    h = hashlib.sha256()
    for name in sorted(str(n) for n in ds.variables):
        var = ds.variables[name]
        values = np.asarray(var.values)
        h.update(json.dumps([name, list(var.dims), list(values.shape)]).encode())
        if values.dtype.kind in "fiub":
            h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        else:
            h.update(json.dumps(values.astype(str).tolist()).encode())
        if "channel_area" in var.attrs:
            h.update(repr(float(var.attrs["channel_area"])).encode())
    return h.hexdigest()


def save_checkpoint(path: str, ds: xr.Dataset, key: str) -> None:
    """Write ``ds`` to ``path`` atomically, with its input key and content hash in attrs."""
    ds = ds.copy()
    ds.attrs.update(temsim_checkpoint=FORMAT, input_key=key, content_sha256=content_hash(ds))
    tmp = f"{path}.tmp-{os.getpid()}"
    ds.to_netcdf(tmp, engine="h5netcdf")
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _set_aside(path: str, reason: str) -> None:
    target = path + ".corrupt"
    n = 1
    while os.path.exists(target):
        target = f"{path}.corrupt-{n}"
        n += 1
    os.replace(path, target)
    warnings.warn(
        f"checkpoint {path} {reason}: it was moved to {target} and the simulation is recomputed",
        CheckpointWarning,
        stacklevel=3,
    )


def load_checkpoint(path: str, key: str) -> xr.Dataset | None:
    """The checkpoint at ``path`` if it is intact and was made for ``key``; otherwise ``None``.

    A file that exists but cannot be trusted is moved aside with a :class:`CheckpointWarning`.
    """
    if not os.path.exists(path):
        return None
    try:
        ds = xr.load_dataset(path, engine="h5netcdf")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        _set_aside(path, f"cannot be read ({type(err).__name__}: {err})")
        return None
    if ds.attrs.get("temsim_checkpoint") != FORMAT or ds.attrs.get("input_key") != key:
        _set_aside(path, "was made for other inputs (or by another temsim version)")
        return None
    if ds.attrs.get("content_sha256") != content_hash(ds):
        _set_aside(path, "does not match its content hash (edited or damaged)")
        return None
    return ds


def study_fingerprint(study: Study) -> str:
    """SHA-256 (hex) of everything that determines a plan's numbers (structure, feature, settings)."""
    atoms = study.atoms
    payload = {
        "numbers": atoms.numbers.tolist(),
        "positions": np.round(atoms.positions, 8).tolist(),
        "cell": np.round(np.asarray(atoms.cell), 8).tolist(),
        "feature": asdict(study.feature),
        "modes": [asdict(m) for m in study.modes],
        "target": asdict(study.target),
        "aberrations": study.aberrations.nonzero(),
        "version": temsim.__version__,
        **{
            name: getattr(study, name)
            for name in (
                "name",
                "energies",
                "semiangle_cutoff",
                "focal_spread",
                "sampling",
                "scan_step",
                "window",
                "slice_thickness",
                "phonons",
                "critical_dose",
                "knock_on",
                "dose_range",
                "seed",
                "gpts",
                "aperture_edge",
                "source_size",
                "energy_spread",
                "chromatic_aberration",
                "microscope",
            )
        },
        # the joint rows of the report (simulations do not depend on them)
        "acquisitions": [[a.name, *a.modes] for a in getattr(study, "acquisitions", ())],
    }
    return input_key(payload)
