"""STEM: scan a probe over a specimen and record every detector in one pass.

Probe positions are processed in memory-bounded batches. For each batch the probes (for
every focal-spread defocus sample and frozen-phonon configuration) are propagated through
the specimen by the multislice kernel (or PRISM, :mod:`temsim.solvers.prism`), their
diffraction intensities ``|F[ψ_exit]|²/N`` (fractions of the incident beam) are formed once
and handed to every detector. Results average intensities over defoci (Gauss–Hermite
weights) and phonon configurations.

With ``output=`` every detector's values are written into a NetCDF4/HDF5 file as each
batch completes (chunked, compressed), so 4D-STEM data larger than memory streams to disk;
the file is written as ``<output>.part`` and renamed when complete, and a killed run resumes
from the last completed batch when called again with the same arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from typing import Mapping

import numpy as np
import xarray as xr

from temsim.backend import FFTPlan, array_namespace, get_namespace, to_numpy
from temsim.errors import AccuracyWarning, InputError, MemoryLimitError
from temsim.positions import GridScan, nyquist_sampling
from temsim.solvers.multislice import SliceStack, _progress, propagate

__all__ = ["scan", "estimate_batch_size", "available_memory"]

#: Bytes of working memory per probe and grid point (complex64 wave, float32 intensity,
#: temporaries of the detector reductions).
BYTES_PER_PROBE_PIXEL = 32


def available_memory() -> int:
    """Bytes of memory this process may still use (MemAvailable on Linux; 8 GiB otherwise)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return 8 * 1024**3


def estimate_batch_size(gpts, memory_limit: int, cap: int = 256) -> int:
    """Largest number of probes whose working arrays fit in ``memory_limit`` bytes (≥ 1, ≤ ``cap``).

    PRISM uses ``cap=1024``: its probes are cut from one S-matrix in groups whose windows
    overlap, and a batch of several scan rows lets the groups be compact (less of each
    group's matrix product is wasted on pixels outside the members' windows).
    """
    per_probe = BYTES_PER_PROBE_PIXEL * gpts[0] * gpts[1]
    return int(max(1, min(int(cap), memory_limit // per_probe)))


def _configurations(potential):
    if getattr(potential, "phonons", None) is not None:
        return list(potential.configurations())
    return [potential]


#: Fraction of the probe's intensity beyond half the cell that triggers the wrap-around warning.
PROBE_TAIL_TOLERANCE = 0.02


def _probe_tail_warning(probe, grid) -> None:
    """Warn when more than 2% of the probe's intensity lies beyond half the cell from its centre.

    The cell is periodic, so that part of the probe overlaps its own periodic images.
    """
    from temsim.grid import Grid

    radius = 0.5 * min(grid.extent)
    # the probe on a 4x larger cell (same sampling) is free of wrap-around for small cells
    # and a sampling just fine enough to hold the aperture (Nyquist 1.5 α/λ) keeps it cheap
    factor = 4 if min(grid.extent) < 40.0 else 1
    coarse = probe.wavelength / (3 * probe.semiangle_cutoff * 1e-3)
    reference = Grid.from_sampling(tuple(e * factor for e in grid.extent), max(coarse, max(grid.sampling)))
    intensity = probe.intensity(reference, (0.0, 0.0))
    x = np.minimum(reference.x(), reference.extent[0] - reference.x())
    y = np.minimum(reference.y(), reference.extent[1] - reference.y())
    outside = intensity[(x[:, None] ** 2 + y[None, :] ** 2) > radius**2].sum() / intensity.sum()
    if outside > PROBE_TAIL_TOLERANCE:
        warnings.warn(
            f"{outside:.1%} of the probe's intensity lies farther than {radius:.1f} Å (half the "
            f"{grid.extent[0]:.1f}×{grid.extent[1]:.1f} Å cell) from its centre: the probe's tails wrap around and "
            "overlap its periodic images; tile the structure (temsim.structure.tile) for an isolated probe, "
            "or ignore this for an intentionally periodic calculation",
            AccuracyWarning,
            stacklevel=3,
        )


def _run_hash(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dim_names(compiled: dict) -> dict[str, dict[str, str]]:
    """Final names of each detector's own dims: plain (``kx``, ``radial_bin``…) unless two
    detectors use the same name with different coordinates, then ``<detector>_<dim>``."""
    seen: dict[str, list] = {}
    for name, det in compiled.items():
        if getattr(det, "derived", False):
            continue
        coords = det.extra_coords()
        for dim in getattr(det, "dims", ()):
            values = np.asarray(coords[dim][1]) if dim in coords else None
            seen.setdefault(dim, []).append((name, values))
    clash = set()
    for dim, users in seen.items():
        first = users[0][1]
        for _, values in users[1:]:
            if first is None or values is None or first.shape != values.shape or not np.allclose(first, values):
                clash.add(dim)
    return {name: {dim: (f"{name}_{dim}" if dim in clash else dim) for dim in getattr(det, "dims", ())}
            for name, det in compiled.items()}


def _rename(da: xr.DataArray, mapping: dict[str, str]) -> xr.DataArray:
    renames = {d: n for d, n in mapping.items() if d != n}
    if not renames:
        return da
    prefix = next(iter(renames.values())).split("_")[0]
    coord_renames = {c: f"{prefix}_{c}" for c in da.coords if c not in da.dims and
                     any(d in renames for d in da[c].dims)}
    return da.rename({**renames, **coord_renames})


class _MemorySink:
    def __init__(self, shapes: dict[str, tuple], n_positions: int):
        self.arrays = {name: np.zeros((n_positions,) + shape, dtype=np.float32 if len(shape) < 2 else np.float32)
                       for name, shape in shapes.items()}
        self.completed = 0

    def write(self, name, start, values):
        self.arrays[name][start:start + len(values)] = values

    def commit(self, completed):
        self.completed = completed

    def raw(self, name):
        return self.arrays[name]


class _FileSink:
    """Detector values in a NetCDF4 (HDF5) file in their final layout, flushed after every batch.

    Variables have the scan dims followed by the detector's own dims (named ``<detector>_<dim>``);
    derived detectors (iDPC, iCoM) store their raw vectors as ``raw_<detector>`` and are
    integrated when the scan completes.
    """

    def __init__(self, path: str, compiled: dict, shapes: dict[str, tuple], resolved, run_hash: str,
                 resume: bool, dim_names: dict):
        import h5netcdf

        self.part = path + ".part"
        self.resolved = resolved
        self.completed = 0
        self.names = {name: (f"raw_{name}" if getattr(det, "derived", False) else name)
                      for name, det in compiled.items()}
        if os.path.exists(self.part) and resume:
            self.file = h5netcdf.File(self.part, "a")
            if self.file.attrs.get("run_hash") != run_hash:
                self.file.close()
                raise InputError(
                    f"{self.part} is left from a run with different parameters; delete it or pass resume=False"
                )
            self.completed = int(self.file.attrs.get("completed_positions", 0))
            return
        self.file = h5netcdf.File(self.part, "w")
        self.file.attrs["run_hash"] = run_hash
        self.file.attrs["completed_positions"] = 0
        coords = resolved.coords()
        for dim, n in zip(resolved.dims, resolved.shape):
            self.file.dimensions[dim] = n
            if dim in coords:
                var = self.file.create_variable(dim, (dim,), data=np.asarray(coords[dim][1]))
                if len(coords[dim]) > 2:
                    var.attrs.update(coords[dim][2])
        for name, det in compiled.items():
            shape = shapes[name]
            own = list(getattr(det, "dims", ())) if not getattr(det, "derived", False) else []
            own = own if len(own) == len(shape) else [f"dim{i}" for i in range(len(shape))]
            dims = tuple(resolved.dims)
            extra = det.extra_coords() if not getattr(det, "derived", False) else {}
            for dim, n in zip(own, shape):
                full = dim_names[name].get(dim, f"{name}_{dim}")
                if full not in self.file.dimensions:
                    self.file.dimensions[full] = n
                dims += (full,)
                if dim in extra and np.asarray(extra[dim][1]).dtype.kind in "iuf" and full not in self.file.variables:
                    var = self.file.create_variable(full, (full,), data=np.asarray(extra[dim][1]))
                    if len(extra[dim]) > 2:
                        var.attrs.update(extra[dim][2])
            chunks = (1,) * (len(resolved.shape) - 1) + (min(resolved.shape[-1], 32),) + tuple(shape)
            var = self.file.create_variable(self.names[name], dims, dtype="f4", chunks=chunks,
                                            compression="gzip", compression_opts=1)
            if not getattr(det, "derived", False):
                var.attrs.update({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                                  for k, v in det.attrs.items()})

    def write(self, name, start, values):
        var = self.file.variables[self.names[name]]
        if len(self.resolved.shape) == 1:
            var[start:start + len(values)] = values
            return
        ny = self.resolved.shape[1]
        index = start
        offset = 0
        while offset < len(values):
            row, col = divmod(index, ny)
            n = min(ny - col, len(values) - offset)
            var[row, col:col + n] = values[offset:offset + n]
            index += n
            offset += n

    def commit(self, completed):
        self.completed = completed
        self.file.attrs["completed_positions"] = completed
        self.file.flush()

    def raw(self, name):
        return np.asarray(self.file.variables[self.names[name]][...]).reshape(
            (len(self.resolved),) + self.file.variables[self.names[name]].shape[len(self.resolved.shape):])


def scan(
    probe,
    potential,
    detectors: Mapping[str, object],
    scan=None,
    *,
    method: str = "multislice",
    interpolation: int | tuple[int, int] = 1,
    batch_size: int | None = None,
    memory_limit: int | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = True,
    dtype: str = "complex64",
    device: str = "cpu",
    progress: bool | None = None,
    elastic: bool = False,
    save_every: int | None = None,
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
    batch_size : int, optional
        Probes propagated together; default from ``memory_limit``.
    memory_limit : int, optional
        Bytes of working memory for a batch (default a quarter of the available memory,
        at most 2 GiB).
    output : path, optional
        Stream every detector to this NetCDF file while computing (for 4D-STEM larger than
        memory); the returned Dataset then reads lazily from it.
    overwrite : bool
        Allow replacing an existing ``output`` file.
    resume : bool
        Continue a killed run from ``<output>.part`` if its parameters match.
    dtype, device, progress
        Precision, ``"cpu"``/``"gpu"``, progress bar (default: on for runs with > 1 batch).
    elastic : bool
        Also record the elastic part of every detector, measured on ``|⟨Ψ(k)⟩|²`` (the
        configuration-averaged amplitude), as ``<name>_elastic``, and the thermal diffuse
        part ``⟨|Ψ|²⟩ − |⟨Ψ⟩|²`` as ``<name>_diffuse`` (zero without phonons).
    save_every : int, optional
        PRISM only: a thickness series — every detector after every ``save_every`` slices
        (and the last), from the intermediate S-matrices of one run; results gain a leading
        ``thickness`` dim (Å).

    Returns
    -------
    xarray.Dataset
        One variable per detector, dims (``scan_x``, ``scan_y``) plus the detector's own
        (``kx``, ``ky`` / ``radial_bin`` / ``ring``, ``segment`` / ``component``); attrs hold
        every parameter.
    """
    from temsim.waves import Probe

    if not isinstance(probe, Probe):
        raise InputError(f"scan takes a temsim.Probe, got {type(probe).__name__}")
    if not detectors:
        raise InputError("give at least one detector, e.g. detectors={'HAADF': temsim.AnnularDetector(70, 200)}")
    if method not in ("multislice", "prism"):
        raise InputError(f"method must be 'multislice' or 'prism', got {method!r}")
    if not isinstance(elastic, (bool, np.bool_)):
        raise InputError(f"elastic must be True or False, got {elastic!r}")
    if save_every is not None and method != "prism":
        raise InputError(
            "save_every (a thickness series from one run) needs method='prism', whose intermediate S-matrices "
            "give every thickness at once; with multislice, scan potentials of each thickness"
        )
    if save_every is not None and output is not None:
        raise InputError("save_every cannot be combined with output=; stream one thickness per file instead")
    xp = get_namespace(device)
    grid = probe.resolve_grid(potential.grid)
    scan = GridScan() if scan is None else scan
    resolved = scan.resolve(grid.extent, nyquist_sampling(probe.semiangle_cutoff, probe.energy))
    configurations = _configurations(potential)
    available = available_memory()
    user_memory_limit = memory_limit
    if memory_limit is None:
        memory_limit = int(min(2 * 1024**3, available // 4))

    thickness_indices: list = [None]
    thicknesses = None
    if method == "prism":
        from temsim.solvers.multislice import _save_indices
        from temsim.solvers.prism import prism_engine

        save_slices = None if save_every is None else _save_indices(potential.num_slices, save_every)
        engine = prism_engine(probe, configurations, grid, interpolation, xp, dtype, save_slices=save_slices,
                              keep_mean=elastic and len(configurations) > 1,
                              memory_limit=user_memory_limit if user_memory_limit is not None else available // 2,
                              check_window=False)
        detector_grid = engine.detector_grid
        if save_every is not None:
            thicknesses = engine.thicknesses
            thickness_indices = list(range(len(thicknesses)))
    else:
        detector_grid = grid
        engine = None
    base = {name: det.compile(detector_grid, probe.energy, xp) for name, det in detectors.items()}
    if engine is None:
        _probe_tail_warning(probe, grid)
    else:
        engine.check_window()
    # output channels: (detector, kind, thickness index) → name in the sink
    channels = {}
    for name in base:
        for t in thickness_indices:
            suffix = "" if t is None else f"@{t}"
            channels[name + suffix] = (name, "total", t)
            if elastic:
                channels[f"{name}_elastic{suffix}"] = (name, "elastic", t)
    compiled = {channel: base[name] for channel, (name, _, _) in channels.items()}

    n_positions = len(resolved)
    # memory check for in-memory results (4D-STEM in particular)
    probe_values = {}
    for name, det in base.items():
        dummy = det.measure(xp.zeros((1,) + detector_grid.gpts, dtype=xp.float32))
        probe_values[name] = tuple(dummy.shape[1:])
    probe_values = {channel: probe_values[name] for channel, (name, _, _) in channels.items()}
    result_bytes = sum(4 * n_positions * int(np.prod(s)) for s in probe_values.values())
    if output is None and result_bytes > max(memory_limit, available // 2):
        raise MemoryLimitError(
            f"the detector results need {result_bytes / 1024**3:.2f} GiB in memory (limit "
            f"{max(memory_limit, available // 2) / 1024**3:.2f} GiB); stream them to disk with output='scan.nc', "
            "crop/bin the pixelated detector (max_angle=, binning=) or scan fewer positions"
        )
    if batch_size is None:
        batch_size = estimate_batch_size(detector_grid.gpts, memory_limit, cap=1024 if method == "prism" else 256)
    elif int(batch_size) < 1:
        raise InputError(f"batch_size must be ≥ 1, got {batch_size!r}")
    batch_size = int(min(batch_size, n_positions))
    needed = BYTES_PER_PROBE_PIXEL * batch_size * detector_grid.gpts[0] * detector_grid.gpts[1]
    if needed > available:
        fit = estimate_batch_size(detector_grid.gpts, available // 2)
        raise MemoryLimitError(
            f"a batch of {batch_size} probes needs {needed / 1024**3:.2f} GiB but only {available / 1024**3:.2f} GiB "
            f"is available; use batch_size={fit}"
        )

    dim_names = _dim_names(compiled)
    defoci, weights = probe.defocus_samples()
    attrs = _scan_attrs(probe, potential, grid, resolved, method, interpolation, dtype, len(configurations))
    attrs["elastic"] = int(bool(elastic))
    if method == "prism":
        attrs["prism_window"] = list(detector_grid.extent)
        attrs["prism_window_gpts"] = list(detector_grid.gpts)
        attrs["prism_plane_waves"] = int(engine.num_beams)
    run_hash = _run_hash({"attrs": attrs, "detectors": {k: repr(v) for k, v in detectors.items()},
                          "positions": resolved.positions.round(9).tolist()})

    if output is not None:
        output = os.fspath(output)
        if os.path.exists(output) and not overwrite:
            raise FileExistsError(f"{output} exists; pass overwrite=True to replace it or choose another name")
        sink = _FileSink(output, compiled, probe_values, resolved, run_hash, resume, dim_names)
    else:
        sink = _MemorySink(probe_values, n_positions)

    if engine is None:
        engine = _MultisliceEngine(probe, configurations, grid, xp, dtype, batch_size)

    # PRISM builds one S-matrix per configuration: loop over configurations outermost
    config_outer = getattr(engine, "config_outer", False) and (len(configurations) > 1 or elastic)
    n_batches = math.ceil((n_positions - sink.completed) / batch_size)
    passes = (len(configurations) + (1 if elastic else 0)) if config_outer else 1
    show = progress if progress is not None else n_batches * passes > 1
    bar = _progress(n_positions * passes, show, f"STEM ({method})", unit="probe")
    bar.update(sink.completed * passes) if show else None
    norm = 1.0 / (len(configurations))
    try:
        if config_outer:
            _run_config_outer(engine, sink, compiled, channels, base, resolved, batch_size, configurations,
                              defoci, weights, elastic, xp, bar)
        else:
            for start in range(sink.completed, n_positions, batch_size):
                positions = resolved.positions[start:start + batch_size]
                totals = {channel: None for channel in channels}

                def add(channel, value):
                    totals[channel] = value if totals[channel] is None else totals[channel] + value

                for t in thickness_indices:
                    suffix = "" if t is None else f"@{t}"
                    extra = {} if t is None else {"thickness_index": t}
                    for defocus, weight in zip(defoci, weights):
                        mean = None
                        for config_index in range(len(configurations)):
                            if elastic:
                                amplitude = engine.amplitudes(config_index, positions, float(defocus), **extra)
                                mean = amplitude if mean is None else mean + amplitude
                                intensity = diffraction_intensity(amplitude, 1)
                            else:
                                intensity = engine.intensities(config_index, positions, float(defocus), **extra)
                            for name, det in base.items():
                                add(name + suffix, det.measure(intensity) * (float(weight) * norm))
                        if elastic:
                            intensity = diffraction_intensity(mean * norm, 1)
                            for name, det in base.items():
                                add(f"{name}_elastic{suffix}", det.measure(intensity) * float(weight))
                for channel, value in totals.items():
                    sink.write(channel, start, to_numpy(value).astype(np.float32))
                sink.commit(start + len(positions))
                bar.update(len(positions))
    finally:
        bar.close()
        if output is not None and sink.completed < n_positions:
            sink.file.close()
    ds = _finalize(compiled, sink, resolved, attrs, output, dim_names)
    if elastic:
        for name in base:
            for t in thickness_indices:
                suffix = "" if t is None else f"@{t}"
                diffuse = ds[name + suffix] - ds[f"{name}_elastic{suffix}"]
                diffuse.attrs = dict(ds[name + suffix].attrs, component="diffuse")
                ds[f"{name}_diffuse{suffix}"] = diffuse
                ds[f"{name}_elastic{suffix}"].attrs["component"] = "elastic"
    if thicknesses is not None:
        ds = _stack_thickness(ds, thicknesses, len(thickness_indices))
    return ds


def _stack_thickness(ds: xr.Dataset, thicknesses, n: int) -> xr.Dataset:
    """Join the per-thickness variables ``<name>@<t>`` along a ``thickness`` dim (Å)."""
    names = sorted({key.rsplit("@", 1)[0] for key in ds.data_vars if "@" in key})
    coord = xr.DataArray(np.asarray(thicknesses, dtype=float), dims="thickness", attrs={"units": "Å"})
    variables = {}
    for name in names:
        parts = [ds[f"{name}@{t}"] for t in range(n)]
        joined = xr.concat(parts, dim=coord)
        joined.attrs = dict(parts[-1].attrs)
        variables[name] = joined.transpose("thickness", ...)
    return xr.Dataset(variables, attrs=ds.attrs)


def _run_config_outer(engine, sink, compiled, channels, base, resolved, batch_size, configurations,
                      defoci, weights, elastic, xp, bar) -> None:
    """Configurations outermost (PRISM: one S-matrix at a time), accumulating in memory.

    With ``elastic`` a last pass assembles the probes from the mean S-matrix (⟨ψ⟩ is linear
    in it). A file sink receives the results once all passes are done.
    """
    from temsim.solvers.prism import MEAN_CONFIGURATION

    n_positions = len(resolved)
    if sink.completed >= n_positions:
        return
    accumulated = {channel: None for channel in channels}
    norm = 1.0 / len(configurations)
    passes = [(c, norm, "total") for c in range(len(configurations))]
    if elastic:
        passes.append((MEAN_CONFIGURATION if len(configurations) > 1 else 0, 1.0, "elastic"))
    for config_index, scale, kind in passes:
        for start in range(0, n_positions, batch_size):
            positions = resolved.positions[start:start + batch_size]
            for channel, (name, channel_kind, t) in channels.items():
                if channel_kind != kind:
                    continue
                extra = {} if t is None else {"thickness_index": t}
                total = None
                for defocus, weight in zip(defoci, weights):
                    intensity = engine.intensities(config_index, positions, float(defocus), **extra)
                    value = base[name].measure(intensity) * (float(weight) * scale)
                    total = value if total is None else total + value
                total = to_numpy(total).astype(np.float64)
                if accumulated[channel] is None:
                    accumulated[channel] = np.zeros((n_positions,) + total.shape[1:], dtype=np.float64)
                accumulated[channel][start:start + len(positions)] += total
            bar.update(len(positions))
    for start in range(0, n_positions, batch_size):
        stop = min(n_positions, start + batch_size)
        for channel in channels:
            sink.write(channel, start, accumulated[channel][start:stop].astype(np.float32))
    sink.commit(n_positions)


def diffraction_intensity(spectrum, n_pixels: int):
    """``|Ψ(k)|² / N`` of unnormalized FFT spectra: fractions of the beam per pixel (float32/64)."""
    xp = array_namespace(spectrum)
    real = xp.real(spectrum)
    imag = xp.imag(spectrum)
    return (real * real + imag * imag) * (1.0 / n_pixels)


class _MultisliceEngine:
    """Probe batches propagated by the multislice kernel; one SliceStack per configuration."""

    def __init__(self, probe, configurations, grid, xp, dtype, batch_size):
        self.probe = probe
        self.grid = grid
        self.xp = xp
        self.dtype = dtype
        budget = max(256 * 1024**2, (2 * 1024**3) // max(1, len(configurations)))
        self.stacks = [SliceStack(p, probe.energy, xp, probe.tilt, dtype, cache_bytes=budget) for p in configurations]
        self.plans: dict[int, FFTPlan] = {}
        self.n_pixels = grid.gpts[0] * grid.gpts[1]

    def _plan(self, n: int) -> FFTPlan:
        if n not in self.plans:
            self.plans[n] = FFTPlan((n,) + self.grid.gpts, self.xp, self.dtype)
        return self.plans[n]

    def _exit_spectrum(self, config_index: int, positions, defocus: float) -> FFTPlan:
        xp = self.xp
        plan = self._plan(len(positions))
        if isinstance(plan.buffer, np.ndarray):
            self.probe.spectrum(self.grid, positions, xp, self.dtype, defocus, out=plan.buffer)
        else:
            plan.load(self.probe.spectrum(self.grid, positions, xp, self.dtype, defocus))
        plan.backward()
        # the last slice's backward FFT and the forward FFT to the detector plane cancel:
        # stop in Fourier space (buffer = F[ψ_exit]/N) and rescale, one FFT pair fewer
        propagate(plan, self.stacks[config_index], end_in_fourier=True)
        plan.buffer *= float(self.n_pixels)
        return plan

    def intensities(self, config_index: int, positions, defocus: float):
        plan = self._exit_spectrum(config_index, positions, defocus)
        return diffraction_intensity(plan.buffer, self.n_pixels)

    def amplitudes(self, config_index: int, positions, defocus: float):
        """Diffraction amplitudes ``F[ψ_exit]/√N`` (a new array; ``|·|²`` = :meth:`intensities`)."""
        plan = self._exit_spectrum(config_index, positions, defocus)
        return plan.buffer * (1.0 / math.sqrt(self.n_pixels))


def _finalize(compiled, sink, resolved, attrs, output, dim_names) -> xr.Dataset:
    if output is None:
        variables = {}
        for name, det in compiled.items():
            raw = sink.raw(name)
            da = det.finalize(raw.reshape(resolved.shape + raw.shape[1:]), resolved, attrs)
            variables[name] = _rename(da, dim_names[name])
        return xr.Dataset(variables, attrs=attrs)
    # derived detectors are integrated from their (small) raw vectors; the rest is already in place
    for name, det in compiled.items():
        if getattr(det, "derived", False):
            raw = sink.raw(name)
            da = det.finalize(raw.reshape(resolved.shape + raw.shape[1:]), resolved, attrs)
            var = sink.file.create_variable(name, resolved.dims, data=np.asarray(da.values, dtype=np.float32))
            var.attrs.update({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                              for k, v in da.attrs.items() if k not in attrs})
    for key, value in attrs.items():
        sink.file.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    sink.file.attrs["complete"] = 1
    sink.file.close()
    os.replace(sink.part, output)
    return xr.open_dataset(output, engine="h5netcdf")


def _scan_attrs(probe, potential, grid, resolved, method, interpolation, dtype, n_configs) -> dict:
    import temsim

    attrs = {
        "energy": probe.energy,
        "semiangle_cutoff": probe.semiangle_cutoff,
        "aberrations": json.dumps(probe.aberrations.nonzero()),
        "focal_spread": probe.focal_spread,
        "focal_samples": int(probe.focal_samples) if probe.focal_spread else 1,
        "tilt": list(probe.tilt),
        "sampling": list(grid.sampling),
        "extent": list(grid.extent),
        "gpts": list(grid.gpts),
        "thickness": float(potential.thickness),
        "num_slices": int(potential.num_slices),
        "parametrization": potential.parametrization,
        "projection": potential.projection,
        "method": method,
        "interpolation": json.dumps(interpolation),
        "frozen_phonon_configurations": n_configs,
        "dtype": dtype,
        "temsim_version": temsim.__version__,
    }
    if resolved.kind == "grid":
        attrs["scan_step"] = list(resolved.step)
    phonons = getattr(potential, "phonons", None)
    if phonons is not None:
        attrs["phonons"] = repr(phonons)
    return attrs
