"""The planner's simulations: expected counts per unit dose of every mode's channels, for both hypotheses.

:func:`simulate` runs the specimen without (H0) and with (H1) the feature once per energy and
frozen-phonon configuration (each simulation checkpointed by its inputs) and turns every mode's
raw channels into expected counts per unit dose ``r = a · η · I`` (channel area × camera
efficiency × fraction of the beam). :func:`check_study` refuses a study the grid cannot hold
before anything is simulated. Part of :mod:`temsim.planning`, which re-exports the public names.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict

import numpy as np
import xarray as xr

import temsim
from temsim.cameras import camera_model, dqe_whitening, whiten_contrast
from temsim.checkpoints import input_key, load_checkpoint, save_checkpoint
from temsim.imaging import hrtem_image
from temsim.memory import available_memory, require
from temsim.microscopes import source_blur
from temsim.modes import KINDS
from temsim.positions import GridScan
from temsim.potentials import Potential
from temsim.progress import progress_bar
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.solvers.multislice import multislice
from temsim.solvers.stem import scan
from temsim.study import Study
from temsim.waves import PlaneWave, Probe

#: Labels of the two hypotheses: feature absent, feature present.
HYPOTHESES = ("H0", "H1")
RATE_UNITS = "counts per e/Å²"


# ----------------------------------------------------------------------------- simulation
def _configurations(study: Study, atoms):
    if not study.phonons:
        return [atoms]
    from temsim.phonons import FrozenPhonons

    p = study.phonons
    phonons = FrozenPhonons(
        sigmas=p.get("sigma", 0.0), num_configs=int(p.get("num_configs", 4)), seed=int(p.get("seed", study.seed))
    )
    return list(phonons.configurations(atoms))


def _scan_window(study: Study, position, extent) -> GridScan:
    half = study.window / 2
    start = [max(0.0, position[i] - half) for i in range(2)]
    end = [min(extent[i], position[i] + half) for i in range(2)]
    return GridScan(start=tuple(start), end=tuple(end), sampling=study.scan_step)


def _stem_modes(study: Study):
    return [m for m in study.modes if KINDS[m.kind].stem]


def _image_modes(study: Study):
    return [m for m in study.modes if not KINDS[m.kind].stem]


def _stem_detectors(study: Study, grid, energy):
    alpha = study.semiangle_cutoff
    band_limit = grid.max_angle(energy)
    return {m.label: KINDS[m.kind].detector(m, *m.angles(alpha), band_limit) for m in _stem_modes(study)}


def _probe(study: Study, energy: float) -> Probe:
    """The study's STEM probe at ``energy``: aperture, edge, aberrations and focal spread."""
    return Probe(
        energy=energy,
        semiangle_cutoff=study.semiangle_cutoff,
        aberrations=study.aberrations,
        aperture_edge=study.aperture_edge,
        focal_spread=study.focal_spread_at(energy),
    )


def simulation_grid(study: Study, atoms=None):
    """The grid (:class:`temsim.grid.Grid`) the study's simulations use: ``sampling`` rounded to
    FFT-friendly point counts (never coarser), or ``gpts`` as given."""
    atoms = study.hypotheses()[0] if atoms is None else atoms
    return Potential(atoms, **study.grid_keys(), slice_thickness=study.slice_thickness).grid


def grid_description(study: Study, grid) -> str:
    """The grid used, in words: points, Å per pixel, and how far a requested sampling was rounded."""
    (nx, ny), (dx, dy) = grid.gpts, grid.sampling
    text = f"{nx}×{ny} points, {dx:.4g}×{dy:.4g} Å/pixel"
    if study.gpts is not None:
        return text + " (gpts as given)"
    rounded = [100 * (d / study.sampling - 1) for d in (dx, dy)]
    if max(abs(r) for r in rounded) < 0.05:
        return text + f" (the requested {study.sampling:g} Å)"
    by = f"{rounded[0]:+.1f}%/{rounded[1]:+.1f}%"
    return text + f" (requested {study.sampling:g} Å, rounded to FFT-friendly point counts by {by})"


def optics_description(study: Study) -> str:
    """The optics the simulations used, in words (preset, Cs, focal spread, source, aperture edge)."""
    parts = [f"preset {study.microscope} (representative values)"] if study.microscope else []
    parts.append(f"Cs = {study.aberrations.C30 * 1e-7:.4g} mm")
    spreads = [study.focal_spread_at(e) for e in study.energies]
    if any(spreads):
        at = ", ".join(f"{f:.3g} Å at {e / 1e3:g} kV" for f, e in zip(spreads, study.energies))
        origin = (
            f" (ΔE = {study.energy_spread:g} eV FWHM, Cc = {study.chromatic_aberration * 1e-7:.3g} mm)"
            if study.energy_spread > 0
            else ""
        )
        parts.append(f"focal spread σ = {at}{origin}")
    else:
        parts.append("no focal spread")
    parts.append(
        f"source size {study.source_size:g} Å FWHM (STEM signals blurred over probe positions)"
        if study.source_size > 0
        else "point source"
    )
    parts.append(
        f"aperture edge {study.aperture_edge:g} mrad"
        if study.aperture_edge is not None
        else "aperture edge one reciprocal pixel (probe), hard (objective)"
    )
    return "; ".join(parts)


def check_study(study: Study, atoms, position=None) -> None:
    """Validate every energy's detectors and apertures against the grid before simulating.

    Raises the same errors the simulations would (e.g. a detector angle beyond the band
    limit, with the sampling needed; a camera preset outside its characterised energies)
    before any time is spent, and refuses
    (:class:`~temsim.errors.MemoryLimitError`) a plan whose simulated channels would not fit
    in memory, with the estimate and the setting that would fit.
    """
    potential = Potential(atoms, **study.grid_keys(), slice_thickness=study.slice_thickness)
    grid = potential.grid
    channels = 0
    for energy in study.energies:
        for detector in _stem_detectors(study, grid, energy).values():
            compiled = detector.compile(grid, energy, np)
            channels = max(channels, int(np.prod(getattr(compiled, "value_shape", ()) or (1,))))
        if _stem_modes(study):
            _probe(study, energy).resolve_grid(grid)
        if _image_modes(study):
            grid.check_angle(study.semiangle_cutoff, energy, "the objective aperture")
        for mode in study.modes:
            mode_camera(mode, energy)  # a camera preset not characterised at this energy is refused here
    _check_memory(study, grid, position, channels)


def _check_memory(study: Study, grid, position, stem_channels: int) -> None:
    """Refuse a plan whose rates (every simulation, mode and channel, float64) would not fit."""
    position = tuple(np.asarray(grid.extent) / 2) if position is None else position
    per_position = 0
    n_positions = 0
    if _stem_modes(study):
        window = _scan_window(study, position, grid.extent)  # counted here: resolving it would allocate
        n_positions = math.prod(
            max(1, math.ceil((window.end[i] - window.start[i]) / study.scan_step - 1e-9)) for i in range(2)
        )
        per_position = len(_stem_modes(study)) * max(1, stem_channels)
    image = len(_image_modes(study)) * int(np.prod(grid.gpts))
    n_configs = int((study.phonons or {}).get("num_configs", 4)) if study.phonons else 1
    simulations = 2 * n_configs * len(study.energies)
    # the simulations, their concatenation into rates and the plan dataset hold three copies
    nbytes = 3 * 8 * simulations * (n_positions * per_position + image)
    limit = available_memory() // 2
    if nbytes > limit and n_positions * per_position > image:
        factor = math.sqrt(nbytes / limit) * 1.1
        fix = (
            f"use a larger simulation.scan_step (≥ {study.scan_step * factor:.3g} Å instead of {study.scan_step:g}), "
            f"a smaller simulation.window (≤ {study.window / factor:.3g} Å instead of {study.window:g}) or fewer "
            "pixelated modes"
        )
    else:
        fix = (
            f"use a coarser simulation.sampling (≥ {max(grid.sampling) * math.sqrt(max(nbytes / limit, 1)) * 1.1:.3g} "
            f"Å instead of {max(grid.sampling):.3g}), a smaller specimen or fewer modes"
        )
    what = (
        f"the plan's rates ({simulations} simulations × ({n_positions} probe positions × {per_position} "
        f"channels + {image} image pixels), float64)"
    )
    require(nbytes, limit, what, fix)


def _channels(mode, da: xr.DataArray, area: float) -> xr.DataArray:
    """The mode's raw channels (float64, fractions of the beam) with their coordinates only."""
    da = KINDS[mode.kind].channels(da, mode.label)
    coords = {name: da[name].variable for name in da.dims if name in da.coords}
    return xr.DataArray(da.values.astype(np.float64), dims=da.dims, coords=coords, attrs={"channel_area": area})


def _simulate_one(
    study: Study, atoms, energy: float, position, settings: ExecutionSettings, save_every: int | None = None
) -> dict:
    """Noise-free fractions of the beam per channel of every mode, for one structure.

    Returns ``{mode label: DataArray}`` with real coordinates (``scan_x``/``scan_y`` Å,
    ``segment``, ``x``/``y`` Å) and ``attrs["channel_area"]`` (Å² per channel: the probe
    step area for STEM, the pixel area for images). With ``save_every`` every array gains a
    leading ``thickness`` dim (Å): the exit planes after every ``save_every`` slices.
    """
    quiet = settings.replace(progress=False)
    potential = Potential(atoms, **study.grid_keys(), slice_thickness=study.slice_thickness)
    out = {}
    if _stem_modes(study):
        probe = _probe(study, energy)
        window = _scan_window(study, position, potential.grid.extent)
        detectors = _stem_detectors(study, potential.grid, energy)
        ds = scan(probe, potential, detectors, window, settings=quiet, save_every=save_every)
        area = float(np.prod(ds.attrs["scan_step"]))
        for mode in _stem_modes(study):
            # a finite source blurs the noise-free signal over probe positions (partial spatial coherence)
            out[mode.label] = _channels(mode, source_blur(ds[mode.label], study.source_size), area)
    if _image_modes(study):
        exit_wave = multislice(PlaneWave(energy=energy), potential, save_every, settings=quiet)
        area = float(np.prod(potential.grid.sampling))
        for mode in _image_modes(study):
            lens = study.aberrations.with_defocus(study.aberrations.defocus + mode.defocus)
            options = {
                "semiangle_cutoff": study.semiangle_cutoff,
                "focal_spread": study.focal_spread_at(energy),
                "aperture_edge": study.aperture_edge or 0.0,
            }
            if save_every is None:
                image = hrtem_image(exit_wave, lens, **options)
            else:
                planes = [
                    hrtem_image(exit_wave.isel(thickness=i), lens, **options)
                    for i in range(exit_wave.sizes["thickness"])
                ]
                image = xr.concat(planes, dim=exit_wave.thickness)
            out[mode.label] = _channels(mode, image, area)
    return out


def simulate_rates(study: Study, atoms, energy: float, position, progress=None) -> dict:
    """Noise-free fractions of the beam of every mode for one structure, as plain arrays.

    Kept for existing code; :func:`simulate` returns the same data as a Dataset of rates.
    Returns ``{mode_label: numpy array}`` plus ``"_pixel_area"`` and, with STEM modes,
    ``"_scan_step"``, ``"_scan_x"``, ``"_scan_y"``.
    """
    signals = _simulate_one(study, atoms, energy, position, ExecutionSettings(progress=False))
    out: dict = {"_pixel_area": float(np.prod(Potential(atoms, **study.grid_keys()).grid.sampling))}
    for label, da in signals.items():
        out[label] = da.values
        if "scan_x" in da.coords:
            out.update(_scan_step=da.attrs["channel_area"], _scan_x=da.scan_x.values, _scan_y=da.scan_y.values)
    return out


def _checkpoint_key(study: Study, energy, hypothesis, config, position, save_every: int | None = None) -> str:
    """Hash of every input of one simulation (structure, energy, optics, modes, window, version)."""
    payload = {
        "positions": np.round(config.positions, 8).tolist(),
        "numbers": config.numbers.tolist(),
        "cell": np.round(np.asarray(config.cell), 8).tolist(),
        "energy": energy,
        "hyp": hypothesis,
        "modes": [asdict(m) for m in study.modes],
        "alpha": study.semiangle_cutoff,
        "ab": study.aberrations.nonzero(),
        "fs": study.focal_spread_at(energy),
        "sampling": study.sampling,
        "gpts": study.gpts,
        "edge": study.aperture_edge,
        "source": study.source_size,
        "step": study.scan_step,
        "window": study.window,
        "centre": [round(float(p), 8) for p in position],
        "dz": study.slice_thickness,
        "version": temsim.__version__,
    }
    if save_every is not None:  # a thickness series (a single exit plane keeps its old key)
        payload["save_every"] = int(save_every)
    return input_key(payload)


def _load_or_simulate(study, atoms, energy, position, checkpoint_dir, hypothesis, settings, save_every=None) -> dict:
    if checkpoint_dir is None:
        return _simulate_one(study, atoms, energy, position, settings, save_every)
    key = _checkpoint_key(study, energy, hypothesis, atoms, position, save_every)
    path = os.path.join(checkpoint_dir, key[:20] + ".nc")
    labels = [m.label for m in study.modes]
    ds = load_checkpoint(path, key)
    if ds is None:
        result = _simulate_one(study, atoms, energy, position, settings, save_every)
        # one variable per mode, its dims prefixed by its index so that modes never clash
        ds = xr.Dataset(
            {
                f"m{i}": result[label].rename({d: f"m{i}:{d}" for d in result[label].dims})
                for i, label in enumerate(labels)
            }
        )
        save_checkpoint(path, ds, key)
    return {
        label: ds[f"m{i}"].rename({d: d.split(":", 1)[1] for d in ds[f"m{i}"].dims}) for i, label in enumerate(labels)
    }


def _mode_attrs(study: Study, mode) -> dict:
    """The mode's name, kind and detector layout (angles mrad, segments, rotation deg) for ``plan.nc``."""
    attrs: dict = {"mode_name": mode.name, "mode_kind": mode.kind, "label": mode.label}
    if KINDS[mode.kind].stem:
        inner, outer = mode.angles(study.semiangle_cutoff)
        attrs.update(inner=float(inner), outer=float(outer), angle_units="mrad")
    if mode.kind == "segmented":
        attrs.update(segments=mode.nsegments, rotation=float(mode.rotation), rotation_units="deg")
    if mode.kind == "pixelated":
        attrs.update(binning=int(mode.binning))
    if mode.kind == "image":
        attrs.update(defocus=float(mode.defocus), defocus_units="Å")
    return attrs


def _merge_modes(arrays: dict) -> xr.Dataset:
    """One Dataset from per-mode arrays; a channel dim two modes use with different
    coordinates is renamed ``<label>_<dim>`` in the later mode."""
    ds = xr.Dataset()
    for label, da in arrays.items():
        renames = {}
        for dim in da.dims:
            if dim in ds.dims and (
                ds.sizes[dim] != da.sizes[dim]
                or (dim in ds.coords and not np.array_equal(ds[dim].values, da[dim].values))
            ):
                renames[dim] = f"{label}_{dim}"
        ds[label] = da.rename(renames) if renames else da
    return ds


def mode_camera(mode, energy: float):
    """The camera model of ``mode`` at beam ``energy`` (eV): its preset resolved at that energy.

    The mode's ``camera_parameters`` (measured values of your camera, ``allow_extrapolation``)
    are passed to :func:`temsim.camera_model`; outside a preset's characterised energies it is
    refused with the range (docs/dose-detectors-damage.md).
    """
    options = dict(getattr(mode, "camera_parameters", None) or {})
    return camera_model(mode.camera_name, energy=energy, **options)


def _recorded_rates(mode, camera, fractions: xr.DataArray, area: float) -> xr.DataArray:
    """Expected counts per unit dose ``a·η·I`` of one energy; an image's H1 contrast filtered by
    ``√(DQE(f)/DQE(0))`` of the camera (:func:`temsim.cameras.dqe_whitening`)."""
    rates = area * camera.poisson_efficiency * fractions  # the camera's DQE(0) at this energy
    if KINDS[mode.kind].stem:
        return rates
    xdim, ydim = rates.dims[-2:]
    sampling = tuple(float(abs(rates[d].values[1] - rates[d].values[0])) for d in (xdim, ydim))
    whitening = dqe_whitening(camera, rates.shape[-2:], sampling, getattr(mode, "pixel_size", None))
    h0, h1 = rates.isel(hypothesis=0), rates.isel(hypothesis=1)
    h1 = h1.copy(data=whiten_contrast(h0.values, h1.values, whitening))
    return xr.concat([h0, h1], dim="hypothesis")


def _rates_of(study: Study, mode, sims: dict, n_configs: int) -> xr.DataArray:
    per_energy, cameras = [], []
    for energy in study.energies:
        rows = [
            xr.concat([sims[(energy, h, i)][mode.label] for i in range(n_configs)], dim="configuration")
            for h in HYPOTHESES
        ]
        fractions = xr.concat(rows, dim="hypothesis")
        cameras.append(mode_camera(mode, energy))
        per_energy.append(_recorded_rates(mode, cameras[-1], fractions, float(fractions.attrs["channel_area"])))
    area = float(sims[(study.energies[0], HYPOTHESES[0], 0)][mode.label].attrs["channel_area"])
    rates = xr.concat(per_energy, dim="energy", join="outer", fill_value=np.nan)
    rates = rates.transpose("energy", "hypothesis", "configuration", ...)
    efficiencies = [float(c.poisson_efficiency) for c in cameras]  # each energy's DQE(0); docs/planning.md
    return rates.assign_attrs(
        units=RATE_UNITS,
        mode=mode.name,
        kind=mode.kind,
        camera=mode.camera_name,
        efficiency=efficiencies[0] if len(set(efficiencies)) == 1 else efficiencies,
        efficiency_by_energy=efficiencies,
        camera_provenance=json.dumps(
            {f"{e:g}": [list(r) for r in c.provenance] for e, c in zip(study.energies, cameras)}
        ),
        channel_area=area,
    )


def simulate(
    study: Study,
    *,
    settings: ExecutionSettings | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | None = None,
    save_every: int | None = None,
) -> xr.Dataset:
    """Expected counts per unit dose of every mode's channels, for both hypotheses.

    Parameters
    ----------
    study : Study
        What to simulate.
    settings : ExecutionSettings, optional
        Threads, device, precision, progress bars (``progress=`` is the old spelling).
    checkpoint_dir : str, optional
        Directory where each simulation is saved as it completes; a rerun reuses them.
    save_every : int, optional
        A thickness series: the rates at the exit planes after every ``save_every`` slices
        (and the last), along a ``thickness`` dim (Å) after ``configuration``. Multislice is
        causal, so each plane equals a simulation of the specimen cut there (used by
        :mod:`temsim.sweeps` for a thickness axis).

    Returns
    -------
    xarray.Dataset
        One variable per mode label (``rates["HAADF"]``), in counts per e/Å² (channel area ×
        camera efficiency × fraction of the beam), dims ``energy`` (eV), ``hypothesis``
        (``"H0"``, ``"H1"``), ``configuration`` (frozen phonons), then the mode's channels:
        ``scan_x``/``scan_y`` (Å) for STEM, plus ``segment`` (segmented) or ``kx``/``ky``
        (1/Å, pixelated), ``x``/``y`` (Å) for images. A channel a mode does not record at one
        energy (a pixelated detector's reach) is NaN. Each variable's attrs give its mode,
        kind, camera, efficiency and channel area (Å²).
    """
    settings = resolve_settings(settings, progress=progress)
    h0, h1, position = study.hypotheses()
    check_study(study, h0, position)
    configs = {"H0": _configurations(study, h0), "H1": _configurations(study, h1)}
    n_configs = len(configs["H0"])
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    tasks = [(e, h, i) for e in study.energies for h in HYPOTHESES for i in range(n_configs)]
    bar = progress_bar(len(tasks), settings.show_progress(len(tasks)), "plan: simulations", unit="simulation")
    sims: dict = {}
    with settings.activate():
        for energy, hyp, i in tasks:
            sims[(energy, hyp, i)] = _load_or_simulate(
                study, configs[hyp][i], energy, position, checkpoint_dir, hyp, settings, save_every
            )
            bar.update(1)
    bar.close()
    rates = _merge_modes({m.label: _rates_of(study, m, sims, n_configs) for m in study.modes})
    for m in study.modes:
        rates[m.label].attrs.update(_mode_attrs(study, m))
    rates = rates.assign_coords(
        energy=("energy", np.asarray(study.energies, float), {"units": "eV"}),
        hypothesis=list(HYPOTHESES),
        configuration=np.arange(n_configs),
    )
    rates.attrs.update(
        study=study.name,
        feature=study.feature.describe(),
        units=RATE_UNITS,
        feature_position=[float(p) for p in position],
    )
    return rates
