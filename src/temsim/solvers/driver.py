"""The STEM scan driver: one loop for every solver engine.

:func:`run_scan` validates a scan against its engine, plans the work units, runs each one
and hands it to a sink (:mod:`temsim.io`): validate → plan → loop → sink. A unit is a batch
of probe positions, averaged over frozen-phonon configurations and focal-spread defoci
(Gauss–Hermite weights) inside the unit, or — for engines that hold one configuration at a
time (:attr:`Engine.config_outer`, PRISM) — under one configuration, the units of a batch
then being added by the sink in a fixed order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from temsim._version import __version__
from temsim.backend import default_threads, is_numpy_namespace, to_numpy
from temsim.compute import execute
from temsim.errors import InputError
from temsim.io import MemorySink, ScanLayout, StoreSink, WorkUnit
from temsim.memory import BYTES_PER_PROBE_PIXEL, available_memory, estimate_batch_size, require
from temsim.progress import progress_bar
from temsim.settings import ExecutionSettings
from temsim.solvers.engine import MEAN_CONFIGURATION, Engine, diffraction_intensity

__all__ = ["run_scan", "work_units", "diffraction_intensity", "probe_attrs"]


def work_units(engine: Engine, n_positions: int, batch_size: int, elastic: bool) -> list[WorkUnit]:
    """The units of a scan, in the order they are run and reduced.

    Engines that average configurations themselves get one unit per batch. Configuration-
    outer engines get one unit per configuration and batch (configurations outermost), then
    one elastic unit per batch.
    """
    batches = [(start, min(n_positions, start + batch_size)) for start in range(0, n_positions, batch_size)]
    if not engine.config_outer:
        return [WorkUnit(i, start, stop) for i, (start, stop) in enumerate(batches)]
    plan = [(config, "total") for config in range(engine.num_configurations)]
    if elastic:
        plan.append((MEAN_CONFIGURATION if engine.num_configurations > 1 else 0, "elastic"))
    pieces = [(config, component, start, stop) for config, component in plan for start, stop in batches]
    return [WorkUnit(i, start, stop, config, component) for i, (config, component, start, stop) in enumerate(pieces)]


class _Accumulator:
    """Detector values of one unit, summed per (detector, component, thickness)."""

    def __init__(self, detectors: dict, num_thicknesses: int):
        self.detectors = detectors
        self.num_thicknesses = num_thicknesses
        self.sums: dict = {}

    def add(self, component: str, thickness_index: int, intensity, scale: float) -> None:
        for name, det in self.detectors.items():
            key = (name, component, thickness_index)
            value = det.measure(intensity) * scale
            self.sums[key] = value if key not in self.sums else self.sums[key] + value

    def values(self) -> dict:
        """``{(name, component): float32 array (thickness, n, *value_shape)}`` on the host."""
        channels = {(name, component) for name, component, _ in self.sums}
        return {
            channel: np.stack(
                [to_numpy(self.sums[channel + (t,)]).astype(np.float32) for t in range(self.num_thicknesses)]
            )
            for channel in sorted(channels)
        }


def _run_unit(engine: Engine, detectors: dict, unit: WorkUnit, positions, defoci, weights, elastic: bool) -> dict:
    """Detector values of one unit (see :func:`work_units`)."""
    acc = _Accumulator(detectors, len(engine.thicknesses))
    n_configs = engine.num_configurations
    for defocus, weight in zip(defoci, weights):
        defocus, weight = float(defocus), float(weight)
        if unit.config is not None:  # one configuration (or the mean wave) of a config-outer engine
            scale = weight / n_configs if unit.component == "total" else weight
            for t, intensity in engine.intensities(unit.config, positions, defocus):
                acc.add(unit.component, t, intensity, scale)
        elif not elastic:
            for config in range(n_configs):
                for t, intensity in engine.intensities(config, positions, defocus):
                    acc.add("total", t, intensity, weight / n_configs)
        else:
            mean: dict = {}
            for config in range(n_configs):
                for t, amplitude in engine.amplitudes(config, positions, defocus):
                    acc.add("total", t, diffraction_intensity(amplitude), weight / n_configs)
                    mean[t] = amplitude if t not in mean else mean[t] + amplitude
            for t, amplitude in mean.items():
                acc.add("elastic", t, diffraction_intensity(amplitude * (1.0 / n_configs)), weight)
    return acc.values()


@dataclass
class ScanTask:
    """Everything a unit needs (picklable: sent once to each dask worker): ``task(unit) -> values``."""

    engine: Engine
    detectors: dict
    positions: np.ndarray
    defoci: np.ndarray
    weights: np.ndarray
    elastic: bool

    def __call__(self, unit: WorkUnit) -> dict:
        positions = self.positions[unit.start : unit.stop]
        return _run_unit(self.engine, self.detectors, unit, positions, self.defoci, self.weights, self.elastic)


def _batch_size(engine: Engine, layout: ScanLayout, settings: ExecutionSettings, streamed: bool) -> int:
    """Probes per batch from the settings, after checking the results and one batch fit in memory."""
    available = available_memory()
    limit = settings.batch_memory()
    if not streamed:
        require(
            layout.result_bytes(),
            max(limit, available // 2),
            "keeping the detector results in memory",
            "stream them to disk with output='scan.nc', crop/bin the pixelated detector (max_angle=, binning=) "
            "or scan fewer positions",
        )
    gpts = engine.detector_grid.gpts
    batch_size = settings.batch_size or estimate_batch_size(gpts, limit, cap=engine.batch_cap)
    batch_size = int(min(batch_size, len(layout.scan)))
    fit = estimate_batch_size(gpts, available // 2)
    require(
        BYTES_PER_PROBE_PIXEL * batch_size * gpts[0] * gpts[1],
        available,
        f"a batch of {batch_size} probes",
        f"use batch_size={fit} (ExecutionSettings(batch_size={fit}))",
    )
    return batch_size


def probe_attrs(probe) -> dict:
    """Provenance of the probe: energy (eV), semiangle (mrad), aberrations (Å), focal spread (Å), tilt (mrad)."""
    return {
        "energy": probe.energy,
        "semiangle_cutoff": probe.semiangle_cutoff,
        "aberrations": json.dumps(probe.aberrations.nonzero()),
        "focal_spread": probe.focal_spread,
        "focal_samples": int(probe.focal_samples) if probe.focal_spread else 1,
        "tilt": list(probe.tilt),
        "temsim_version": __version__,
    }


def _fingerprint(attrs: dict, detectors: Mapping, layout: ScanLayout) -> str:
    payload = {
        "attrs": attrs,
        "detectors": {k: repr(v) for k, v in detectors.items()},
        "positions": np.round(layout.scan.positions, 9).tolist(),
        "thickness": layout.thicknesses.tolist(),
        "components": list(layout.components),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _layout(settings: ExecutionSettings, engine, n_units: int) -> ExecutionSettings:
    """In this process on the CPU, one single-threaded probe stream per FFT thread for an engine
    that can be shared by threads (``scheduler="threads"``); otherwise ``settings`` unchanged.

    Measured on a 2-core machine (SrTiO3 scans, docs/running-big-studies.md): two streams ran
    1.16–1.44× faster per probe-slice than two-threaded FFTs on 312²–320² grids and 1.24× on
    1080². A batch size given by the user keeps the threaded layout (its memory is per stream).
    """
    if settings.scheduler is not None or settings.batch_size is not None or n_units < 2:
        return settings
    if not getattr(engine, "thread_safe", False) or not is_numpy_namespace(getattr(engine, "xp", None) or np):
        return settings
    with settings.activate():
        threads = default_threads()
    if threads < 2:
        return settings
    return settings.replace(scheduler="threads", workers=threads, threads=1)


def run_scan(
    engine: Engine,
    probe,
    detectors: Mapping[str, object],
    resolved,
    *,
    settings: ExecutionSettings,
    elastic: bool = False,
    output=None,
    overwrite: bool = False,
    resume: bool = True,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Scan ``probe`` over the positions ``resolved`` with ``engine`` and record ``detectors``.

    Parameters
    ----------
    engine : Engine
        The solver (see :mod:`temsim.solvers.engine`).
    probe : Probe
        Its energy compiles the detectors; its focal spread gives the defocus samples.
    detectors : mapping of str to detector
        Detector descriptions (``compile(grid, energy, xp)``).
    resolved : ResolvedScan
        Probe positions (Å).
    settings : ExecutionSettings
        Device, precision, batch size, memory limit, threads, progress.
    elastic : bool
        Also record ``<name>_elastic`` from ⟨ψ⟩ and ``<name>_diffuse`` = total − elastic.
    output : path, optional
        Stream units to a crash-safe store and assemble this NetCDF file (see :mod:`temsim.io`).
    overwrite, resume : bool
        Replace an existing ``output``; continue a killed run's store.
    attrs : dict, optional
        Provenance of the specimen and scan, added to the result's attrs.

    Returns
    -------
    xarray.Dataset
        One variable per detector (and component), see :mod:`temsim.io` for the dims.
    """
    if not detectors:
        raise InputError("give at least one detector, e.g. detectors={'HAADF': temsim.AnnularDetector(70, 200)}")
    if not isinstance(elastic, (bool, np.bool_)):
        raise InputError(f"elastic must be True or False, got {elastic!r}")
    if settings.scheduler == "threads" and not getattr(engine, "thread_safe", False):
        raise InputError(
            f"scheduler='threads' shares one engine between threads, which the {engine.name} engine does not "
            "support (it keeps per-configuration state); use scheduler=None or 'local'"
        )
    xp = getattr(engine, "xp", None) or settings.xp  # detectors live where the engine's intensities do
    compiled = {name: det.compile(engine.detector_grid, probe.energy, xp) for name, det in detectors.items()}
    engine.check()
    layout = ScanLayout(
        compiled, resolved, engine.thicknesses, engine.series, ("total", "elastic") if elastic else ("total",)
    )
    batch_size = _batch_size(engine, layout, settings, output is not None)
    units = work_units(engine, len(resolved), batch_size, bool(elastic))
    attrs = {
        **probe_attrs(probe),
        **(attrs or {}),
        **engine.attrs(),
        "dtype": engine.dtype,
        "elastic": int(bool(elastic)),
        "frozen_phonon_configurations": engine.num_configurations,
    }
    if output is None:
        sink = MemorySink(layout, accumulate=np.float64 if engine.config_outer else np.float32)
    else:
        sink = StoreSink(
            output, layout, _fingerprint(attrs, detectors, layout), units, resume=resume, overwrite=overwrite
        )
    done = sink.completed()
    defoci, weights = probe.defocus_samples()
    passes = len(units) / max(1, math.ceil(len(resolved) / batch_size))
    total = int(round(len(resolved) * passes))
    bar = progress_bar(total, settings.show_progress(len(units) - len(done)), f"STEM ({engine.name})", unit="probe")
    bar.update(sum(u.stop - u.start for u in units if u.index in done))
    task = ScanTask(engine, compiled, resolved.positions, defoci, weights, bool(elastic))
    # a configuration-outer engine's units of one configuration share its state: one task
    group = (lambda unit: (unit.config, unit.component)) if engine.config_outer else None
    try:
        execute(units, task, sink, _layout(settings, engine, len(units) - len(done)), bar, group=group)
    finally:
        bar.close()
    ds = sink.dataset(attrs)
    if elastic:
        for name in compiled:
            diffuse = ds[name] - ds[f"{name}_elastic"]
            diffuse.attrs = dict(ds[name].attrs, component="diffuse")
            ds[f"{name}_diffuse"] = diffuse
    return ds
