"""STEM: scan a probe over a specimen and record every detector in one pass.

:func:`scan` builds the solver engine — multislice (each probe propagated slice by slice)
or PRISM (probes assembled from a plane-wave S-matrix, :mod:`temsim.solvers.prism`) — and
runs the common driver (:func:`temsim.solvers.driver.run_scan`): probe positions in
memory-bounded batches, intensities averaged over focal-spread defoci (Gauss–Hermite
weights) and frozen-phonon configurations, every detector filled at every exit plane.

With ``output=`` finished batches are stored as they complete in a crash-safe store
(``<output>.part/``) and assembled into a NetCDF4/HDF5 file at the end, so 4D-STEM data
larger than memory streams to disk and a killed run — even by SIGKILL — resumes with the
same call (see :mod:`temsim.io`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import xarray as xr

from temsim.errors import InputError
from temsim.memory import available_memory, estimate_batch_size
from temsim.positions import GridScan, nyquist_sampling
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.solvers.driver import diffraction_intensity, run_scan
from temsim.solvers.multislice import MultisliceEngine, _save_indices

__all__ = ["scan", "estimate_batch_size", "available_memory", "diffraction_intensity", "build_engine"]

METHODS = ("multislice", "prism")


def build_engine(
    method: str,
    probe,
    potential,
    grid,
    settings: ExecutionSettings,
    *,
    interpolation=1,
    save_every: int | None = None,
    elastic: bool = False,
):
    """The multislice or PRISM engine for ``potential`` (its frozen-phonon configurations) on ``grid``."""
    if method not in METHODS:
        raise InputError(f"method must be 'multislice' or 'prism', got {method!r}")
    configurations = list(potential.configurations()) if getattr(potential, "phonons", None) else [potential]
    save_slices = None if save_every is None else _save_indices(potential.num_slices, save_every)
    if method == "multislice":
        return MultisliceEngine(probe, configurations, grid, settings.xp, settings.dtype, save_slices=save_slices)
    from temsim.solvers.prism import prism_engine

    limit = settings.memory_limit if settings.memory_limit is not None else available_memory() // 2
    return prism_engine(
        probe,
        configurations,
        grid,
        interpolation,
        settings.xp,
        settings.dtype,
        save_slices=save_slices,
        keep_mean=elastic and len(configurations) > 1,
        memory_limit=limit,
        check_window=False,
        series=save_every is not None,
    )


def _potential_attrs(potential, grid) -> dict:
    return {
        "sampling": list(grid.sampling),
        "extent": list(grid.extent),
        "gpts": list(grid.gpts),
        "thickness_total": float(potential.thickness),
        "num_slices": int(potential.num_slices),
        "parametrization": potential.parametrization,
        "projection": potential.projection,
        "phonons": repr(potential.phonons) if getattr(potential, "phonons", None) is not None else "none",
    }


def scan(
    probe,
    potential,
    detectors: Mapping[str, object],
    scan=None,
    *,
    method: str = "multislice",
    interpolation: int | tuple[int, int] = 1,
    save_every: int | None = None,
    elastic: bool = False,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = True,
    settings: ExecutionSettings | None = None,
    batch_size: int | None = None,
    memory_limit: int | None = None,
    dtype: str | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Scan ``probe`` over ``potential`` and record ``detectors`` in one pass.

    Parameters
    ----------
    probe : Probe
        The STEM probe (energy eV, semiangle mrad, aberrations Å).
    potential : Potential
        Sliced potential; with ``phonons`` set, intensities are averaged over its
        frozen-phonon configurations.
    detectors : mapping of str to detector
        E.g. ``{"HAADF": AnnularDetector(70, 200), "4D": PixelatedDetector()}``.
    scan : GridScan, LineScan or CustomScan, optional
        Probe positions; default the whole cell at the probe's Nyquist step λ/(4α).
    method : {"multislice", "prism"}
        Solver. ``"prism"`` uses the S-matrix with the given ``interpolation`` factor
        (:mod:`temsim.solvers.prism`); its diffraction patterns (and 4D-STEM output) are
        sampled at the PRISM window's ``fx/Lx × fy/Ly`` instead of the cell's ``1/Lx × 1/Ly``.
    interpolation : int or (int, int)
        PRISM interpolation factor f (or (fx, fy)); must divide the cell's grid points.
    save_every : int, optional
        A thickness series: every detector after every ``save_every`` slices (and the last),
        from one propagation (multislice) or the intermediate S-matrices (PRISM); results
        gain a leading ``thickness`` dim (Å). Without it ``thickness`` is a scalar coordinate.
    elastic : bool
        Also record the elastic part of every detector, measured on ``|⟨Ψ(k)⟩|²`` (the
        configuration-averaged amplitude), as ``<name>_elastic``, and the thermal diffuse
        part ``⟨|Ψ|²⟩ − |⟨Ψ⟩|²`` as ``<name>_diffuse`` (zero without phonons).
    output : path, optional
        Stream every detector to this NetCDF file while computing (for 4D-STEM larger than
        memory); the returned Dataset then reads lazily from it. A killed run resumes when
        called again with the same arguments.
    overwrite : bool
        Allow replacing an existing ``output`` file.
    resume : bool
        Continue a killed run from ``<output>.part`` if its parameters match (default).
    settings : ExecutionSettings, optional
        Device, precision, batch size, memory limit, FFT threads, progress bar.
    batch_size, memory_limit, dtype, device, progress
        The same as single keywords (kept for existing scripts).

    Returns
    -------
    xarray.Dataset
        One variable per detector, dims (``scan_x``, ``scan_y``) plus the detector's own
        (``kx``, ``ky`` / ``radial_bin`` / ``ring``, ``segment`` / ``component``), preceded by
        ``thickness`` for a series; attrs hold every parameter (``solver`` names the method).
    """
    from temsim.waves import Probe

    if not isinstance(probe, Probe):
        raise InputError(f"scan takes a temsim.Probe, got {type(probe).__name__}")
    settings = resolve_settings(
        settings, batch_size=batch_size, memory_limit=memory_limit, dtype=dtype, device=device, progress=progress
    )
    grid = probe.resolve_grid(potential.grid)
    positions = GridScan() if scan is None else scan
    resolved = positions.resolve(grid.extent, nyquist_sampling(probe.semiangle_cutoff, probe.energy))
    engine = build_engine(
        method, probe, potential, grid, settings, interpolation=interpolation, save_every=save_every, elastic=elastic
    )
    attrs = _potential_attrs(potential, grid)
    attrs["interpolation"] = json.dumps(interpolation)
    if resolved.kind == "grid":
        attrs["scan_step"] = list(resolved.step)
    ds = run_scan(
        engine,
        probe,
        detectors,
        resolved,
        settings=settings,
        elastic=elastic,
        output=output,
        overwrite=overwrite,
        resume=resume,
        attrs=attrs,
    )
    return ds
