"""The planner: minimum detectable dose per imaging mode and energy, against the damage budget.

A plan is a pipeline of small steps, each usable on its own:

1. :func:`simulate` — for each energy, the specimen without (H0) and with (H1) the feature
   is simulated once per frozen-phonon configuration; every mode's raw channels (annular
   detector per probe position, four DPC segments per position, diffraction pixels per
   position, or camera pixels) become expected counts per unit dose ``r = a · η · I``
   (channel area × camera efficiency × fraction of the beam), returned as one
   :class:`xarray.Dataset` with one variable per mode.
2. :func:`damage_budget` — the dose budget at one energy (:class:`DamageBudget`).
3. :func:`evaluate` — pure: the detection limits of every mode × energy from the rates. The
   detection statistics (:mod:`temsim.detection`) are linear in dose, so the whole dose axis
   follows without re-simulation. Damage enters as first-order fading of the feature's
   contrast (radiolysis, critical dose Dc) and as a knock-on displacement probability.
4. :func:`verdicts` and :func:`monte_carlo_check` — the words of the table and the exact
   Poisson check at each reported dose.

:func:`plan` runs them in order and returns a :class:`PlanResult`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

import temsim
from temsim import acquisitions, compute, damage_channels, detection, exit_waves, optimal_detector, quantum_limit
from temsim.cameras import camera_model, dqe_whitening, whiten_contrast
from temsim.checkpoints import input_key, load_checkpoint, save_checkpoint, study_fingerprint
from temsim.constants import wavelength
from temsim.imaging import hrtem_image
from temsim.memory import available_memory, require
from temsim.microscopes import source_blur
from temsim.modes import KINDS
from temsim.plan_checks import _channel_rates, monte_carlo_check, monte_carlo_notes
from temsim.plan_file import table_from_file, table_rows
from temsim.positions import GridScan
from temsim.potentials import Potential
from temsim.progress import progress_bar
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.solvers.multislice import multislice
from temsim.solvers.stem import scan
from temsim.study import Study
from temsim.waves import PlaneWave, Probe

__all__ = [
    "plan",
    "PlanResult",
    "simulate",
    "evaluate",
    "verdicts",
    "monte_carlo_check",
    "damage_budget",
    "DamageBudget",
    "check_study",
    "study_fingerprint",
    "table_from_file",
    "simulation_grid",
    "grid_description",
    "monte_carlo_notes",
    "simulate_rates",
    "HYPOTHESES",
    "KNOCK_ON_BUDGET_PROBABILITY",
]

#: Knock-on budget: dose at which the displacement probability per atom reaches this value.
KNOCK_ON_BUDGET_PROBABILITY = 0.1
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


def _simulate_one(study: Study, atoms, energy: float, position, settings: ExecutionSettings) -> dict:
    """Noise-free fractions of the beam per channel of every mode, for one structure.

    Returns ``{mode label: DataArray}`` with real coordinates (``scan_x``/``scan_y`` Å,
    ``segment``, ``x``/``y`` Å) and ``attrs["channel_area"]`` (Å² per channel: the probe
    step area for STEM, the pixel area for images).
    """
    quiet = settings.replace(progress=False)
    potential = Potential(atoms, **study.grid_keys(), slice_thickness=study.slice_thickness)
    out = {}
    if _stem_modes(study):
        probe = _probe(study, energy)
        window = _scan_window(study, position, potential.grid.extent)
        ds = scan(probe, potential, _stem_detectors(study, potential.grid, energy), window, settings=quiet)
        area = float(np.prod(ds.attrs["scan_step"]))
        for mode in _stem_modes(study):
            # a finite source blurs the noise-free signal over probe positions (partial spatial coherence)
            out[mode.label] = _channels(mode, source_blur(ds[mode.label], study.source_size), area)
    if _image_modes(study):
        exit_wave = multislice(PlaneWave(energy=energy), potential, settings=quiet)
        area = float(np.prod(potential.grid.sampling))
        for mode in _image_modes(study):
            lens = study.aberrations.with_defocus(study.aberrations.defocus + mode.defocus)
            image = hrtem_image(
                exit_wave,
                lens,
                semiangle_cutoff=study.semiangle_cutoff,
                focal_spread=study.focal_spread_at(energy),
                aperture_edge=study.aperture_edge or 0.0,
            )
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


def _checkpoint_key(study: Study, energy, hypothesis, config, position) -> str:
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
    return input_key(payload)


def _load_or_simulate(study, atoms, energy, position, checkpoint_dir, hypothesis, settings) -> dict:
    if checkpoint_dir is None:
        return _simulate_one(study, atoms, energy, position, settings)
    key = _checkpoint_key(study, energy, hypothesis, atoms, position)
    path = os.path.join(checkpoint_dir, key[:20] + ".nc")
    labels = [m.label for m in study.modes]
    ds = load_checkpoint(path, key)
    if ds is None:
        result = _simulate_one(study, atoms, energy, position, settings)
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
                study, configs[hyp][i], energy, position, checkpoint_dir, hyp, settings
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


# ----------------------------------------------------------------------------- damage budget
@dataclass(frozen=True)
class DamageBudget:
    """The dose a specimen tolerates at one energy: the minimum over its damage channels.

    Attributes
    ----------
    dose : float
        Budget (e/Å²): the smallest dose over the channels; ``inf`` without a damage limit.
    critical_dose : float or None
        Radiolysis critical dose Dc (e/Å²): the feature's contrast fades as ``exp(−D/Dc)``.
    knock_on_cross_section : float or None
        Largest displacement cross-section (barn) of the host's knock-on elements at this energy.
    basis : str
        In words, which channel sets the budget (or why there is none).
    feature_cross_section : float or None
        Cross-section (barn) of the events that destroy the feature (its neighbours'
        displacements, the dopant's own events); the feature survives a dose D with
        probability ``exp(−σ_f·D)``. None when not computed.
    channels : tuple of DamageChannel
        Every channel (radiolysis, knock-on per element, feature), with its dose and sources.
    survival_caveat : str
        Published feature-damage channels not in ``feature_cross_section`` (the survival is
        then an upper bound), or ``""``.
    """

    dose: float = math.inf
    critical_dose: float | None = None
    knock_on_cross_section: float | None = None
    basis: str = "no damage limit given"
    feature_cross_section: float | None = None
    channels: tuple = ()
    survival_caveat: str = ""


def damage_budget(
    energy: float, critical_dose=None, knock_on: Mapping | None = None, feature: Mapping | None = None
) -> DamageBudget:
    """:class:`DamageBudget` at ``energy`` (eV): the minimum over the damage channels.

    Parameters
    ----------
    energy : float
        Beam energy (eV).
    critical_dose : float, str or CriticalDose, optional
        Radiolysis critical dose (e/Å²) or a preset name.
    knock_on : mapping, optional
        ``{"element": "C" or ["C", "N"], "material", "displacement_energy", "temperature",
        "debye_temperature", "mean_square_displacement"}``; E_d and the Debye temperature
        default to the damage table's values for ``material``.
    feature : mapping, optional
        ``{"sites": {element: count}, "dopant": element or None}``: the atoms whose events
        destroy the feature (:func:`temsim.damage_channels.feature_sites`).

    The knock-on and feature budgets are the doses at which the displacement (damage)
    probability reaches :data:`KNOCK_ON_BUDGET_PROBABILITY`; negligible channels are reported
    as none (:mod:`temsim.damage_channels`). ``basis`` names the channel that sets the budget.
    """
    channels = []
    if critical_dose is not None:
        channels.append(damage_channels.radiolysis_channel(critical_dose))
    sigmas = []
    if knock_on:
        for element in damage_channels.knock_on_elements(knock_on):
            channel = damage_channels.knock_on_channel(element, energy, knock_on, KNOCK_ON_BUDGET_PROBABILITY)
            channels.append(channel)
            sigmas.append(channel.cross_section)
    feature_sigma, caveat = None, ""
    if knock_on and feature is not None:
        channel = damage_channels.feature_channel(
            energy, feature["sites"], knock_on, KNOCK_ON_BUDGET_PROBABILITY, feature.get("dopant")
        )
        channels.append(channel)
        feature_sigma, caveat = channel.cross_section, channel.caveat
    dc = float(temsim.critical_dose(critical_dose).value) if critical_dose is not None else None
    budget = min((c.dose for c in channels), default=math.inf)
    if math.isfinite(budget):
        basis = next(c.description for c in channels if c.dose == budget)
    else:
        basis = "; ".join(c.description for c in channels) or "no damage limit given"
    return DamageBudget(
        dose=budget,
        critical_dose=dc,
        knock_on_cross_section=max(sigmas) if sigmas else None,
        basis=basis,
        feature_cross_section=feature_sigma,
        channels=tuple(channels),
        survival_caveat=caveat,
    )


# ----------------------------------------------------------------------------- evaluation
#: Per mode × energy fields of :func:`evaluate` (all floats).
LIMIT_FIELDS = (
    "required_dose",
    "undamaged_dose",
    "dose_low",
    "dose_high",
    "rose_dose",
    "bhattacharyya_dose",
    "budget",
    "margin",
    "j_per_dose",
    "knock_on_probability",
    "survival_probability",
    "best_power_within_budget",
    "best_dose",
)
_UNITS = {
    "required_dose": "e/Å²",
    "undamaged_dose": "e/Å²",
    "dose_low": "e/Å²",
    "dose_high": "e/Å²",
    "rose_dose": "e/Å²",
    "bhattacharyya_dose": "e/Å²",
    "budget": "e/Å²",
    "best_dose": "e/Å²",
    "j_per_dose": "per e/Å²",
}


def _jackknife(r0s: np.ndarray, r1s: np.ndarray, stat, dose: float) -> tuple[float, float]:
    """Dose interval from ±2 jackknife standard errors of j₁ over phonon configurations."""
    n = len(r0s)
    if n < 2 or not np.isfinite(dose):
        return np.nan, np.nan
    js = []
    for leave in range(n):
        keep = [i for i in range(n) if i != leave]
        js.append(
            detection.detection_statistics(
                np.mean([r0s[i] for i in keep], 0), np.mean([r1s[i] for i in keep], 0)
            ).j_per_dose
        )
    return _interval(np.asarray(js), stat.j_per_dose, dose)


def _interval(js: np.ndarray, j: float, dose: float) -> tuple[float, float]:
    """Dose interval from ±2 jackknife standard errors of the leave-one-out values ``js`` of j₁ = ``j``."""
    n = len(js)
    if n < 2 or not np.isfinite(dose):
        return np.nan, np.nan
    se = math.sqrt((n - 1) / n * np.sum((js - js.mean()) ** 2))
    rel = se / j if j > 0 else np.nan
    return dose / (1 + 2 * rel), (dose / max(1e-12, 1 - 2 * rel) if rel < 0.5 else np.inf)


def _best_power(stat, target, dose: float, budget: DamageBudget, last_dose: float) -> tuple[float, float]:
    """(power, dose) reachable within the budget when the target is not: at the optimum under
    fading (capped by the budget) if no dose meets it, at the budget if the dose exceeds it."""
    dc = budget.critical_dose
    if stat.j_per_dose == 0 or (np.isfinite(dose) and dose <= budget.dose):
        return np.nan, np.nan
    if np.isfinite(dose):
        best_dose = budget.dose
    else:
        best_dose = min(detection.optimal_dose_under_fading(dc) if dc else last_dose, budget.dose)
    return float(detection.detection_power(stat, target, best_dose, dc)), float(best_dose)


def _limits(r0s: np.ndarray, r1s: np.ndarray, target, budget: DamageBudget, doses: np.ndarray) -> tuple:
    """Limits of one mode at one energy from its per-configuration rates."""
    stat = detection.detection_statistics(np.mean(r0s, axis=0), np.mean(r1s, axis=0))
    return _limits_of(stat, target, budget, doses, lambda dose: _jackknife(r0s, r1s, stat, dose))


def _limits_of(stat, target, budget: DamageBudget, doses: np.ndarray, interval) -> tuple:
    """Limits from per-unit-dose statistics; ``interval(dose)`` gives the phonon interval."""
    dc = budget.critical_dose
    dose = detection.required_dose(stat, target, dc)
    low, high = interval(dose)
    sigma = budget.knock_on_cross_section
    best, best_dose = _best_power(stat, target, dose, budget, doses[-1])
    values = dict(
        required_dose=dose,
        undamaged_dose=detection.required_dose(stat, target, None),
        dose_low=low,
        dose_high=high,
        rose_dose=detection.required_dose(stat, target, dc, criterion="rose"),
        bhattacharyya_dose=detection.required_dose(stat, target, None, criterion="bhattacharyya"),
        budget=budget.dose,
        margin=budget.dose / dose if np.isfinite(dose) and dose > 0 else np.nan,
        j_per_dose=stat.j_per_dose,
        knock_on_probability=1 - math.exp(-sigma * 1e-8 * dose) if sigma is not None and np.isfinite(dose) else np.nan,
        survival_probability=(
            damage_channels.survival_probability(budget.feature_cross_section, dose)
            if budget.feature_cross_section is not None and np.isfinite(dose)
            else np.nan
        ),
        best_power_within_budget=best,
        best_dose=best_dose,
        channels=stat.channels,
    )
    curve = detection.detection_power(stat, target, doses, dc) if stat.j_per_dose > 0 else np.zeros_like(doses)
    return values, curve


def _or_nan(value) -> float:
    return np.nan if value is None else float(value)


def _budgets(budget, energies) -> dict:
    if isinstance(budget, DamageBudget) or budget is None:
        return {float(e): budget or DamageBudget() for e in energies}
    return {float(e): budget[e] for e in energies}


def evaluate(rates: xr.Dataset, target: detection.DecisionTarget, budget=None, *, doses=None) -> xr.Dataset:
    """Detection limits of every mode × energy from the rates of :func:`simulate` (pure).

    Parameters
    ----------
    rates : xarray.Dataset
        Expected counts per unit dose, one variable per mode (see :func:`simulate`).
    target : DecisionTarget
        What "detected" means.
    budget : DamageBudget or mapping {energy: DamageBudget}, optional
        Damage budget (one for all energies, or one per energy); default: no damage.
    doses : array, optional
        Dose axis (e/Å²) of the detection-power curves; default 121 doses from 0.1 to 1e7.

    Returns
    -------
    xarray.Dataset
        Dims ``mode``, ``energy`` (and ``dose``): the fields of :data:`LIMIT_FIELDS`,
        ``channels``, ``detection_power`` (mode, energy, dose), and per energy
        ``critical_dose``, ``knock_on_cross_section``, ``feature_cross_section`` (barn; the
        feature survives dose D with probability ``exp(−σ_f·D)``, ``survival_probability``
        at each mode's minimum dose), ``budget_basis`` and ``damage_sources`` (the damage-table
        entries used, one per line). ``attrs["detection_probability"]`` is the target's
        probability of detecting a present feature.
    """
    labels = [str(name) for name in rates.data_vars]
    energies = [float(e) for e in rates.energy.values]
    doses = np.logspace(-1, 7, 121) if doses is None else np.asarray(doses, dtype=float)
    budgets = _budgets(budget, energies)
    shape = (len(labels), len(energies))
    arrays = {name: np.full(shape, np.nan) for name in LIMIT_FIELDS}
    channels = np.zeros(shape, dtype=np.int64)
    power = np.zeros(shape + (len(doses),))
    for mi, label in enumerate(labels):
        for ei, energy in enumerate(energies):
            values, power[mi, ei] = _limits(*_channel_rates(rates[label], energy), target, budgets[energy], doses)
            channels[mi, ei] = values.pop("channels")
            for name, value in values.items():
                arrays[name][mi, ei] = value
    data_vars = {
        name: (("mode", "energy"), value, {"units": _UNITS[name]} if name in _UNITS else {})
        for name, value in arrays.items()
    }
    data_vars.update(
        channels=(("mode", "energy"), channels),
        detection_power=(("mode", "energy", "dose"), power),
        critical_dose=("energy", [_or_nan(budgets[e].critical_dose) for e in energies], {"units": "e/Å²"}),
        knock_on_cross_section=(
            "energy",
            [_or_nan(budgets[e].knock_on_cross_section) for e in energies],
            {"units": "barn"},
        ),
        feature_cross_section=(
            "energy",
            [_or_nan(budgets[e].feature_cross_section) for e in energies],
            {"units": "barn"},
        ),
        budget_basis=("energy", [budgets[e].basis for e in energies]),
        damage_sources=("energy", [_damage_sources(budgets[e]) for e in energies]),
        survival_caveat=("energy", [budgets[e].survival_caveat for e in energies]),
        damage_channel_summary=("energy", [_channel_lines(budgets[e]) for e in energies]),
    )
    coords = {
        "mode": labels,
        "energy": ("energy", np.asarray(energies), {"units": "eV"}),
        "dose": ("dose", doses, {"units": "e/Å²"}),
    }
    attrs = {
        "target": target.describe(),
        "required_j": target.required_j,
        "detection_probability": _detection_probability(target),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _channel_lines(budget: DamageBudget) -> str:
    """Each damage channel as ``dose e/Å² — description``, one per line (dose with bounded digits)."""
    return "\n".join(f"{damage_channels.format_damage_dose(c.dose)} e/Å² — {c.description}" for c in budget.channels)


def _damage_sources(budget: DamageBudget) -> str:
    """The damage numbers a budget used (value, status, source), one per line, without repeats."""
    return "\n".join(dict.fromkeys(src for channel in budget.channels for src in channel.sources))


def _detection_probability(target: detection.DecisionTarget) -> float:
    """Probability that the test detects a present feature: the power, or 1 − Pe for an error target."""
    return 1 - target.probability_of_error if target.probability_of_error is not None else target.power


def _verdict(
    j_per_dose: float,
    dose: float,
    budget: float,
    best: float,
    best_dose: float,
    survival: float,
    limited: bool,
    detect: float,
) -> str:
    if j_per_dose == 0:
        return "undetectable: the feature changes nothing this mode records"
    if not np.isfinite(dose):
        return f"not detectable before damage (best power {best:.2f} at {best_dose:.3g} e/Å²)"
    if dose > budget:
        return f"exceeds budget (power {best:.2f} at the budget)"
    if np.isfinite(survival) and not np.isfinite(detect):
        return f"detectable; the feature survives with probability {math.floor(100 * survival) / 100:.2f}"
    if np.isfinite(survival):
        # P(detected and intact) ≥ P(detected) + P(intact) − 1 (no independence assumed), rounded down
        both = math.floor(100 * max(0.0, detect + survival - 1) + 1e-9) / 100
        return f"detected before the feature is damaged with probability ≥ {both:.2f}"
    if np.isfinite(budget):
        return "detectable within budget"
    if limited:
        return "detectable (no knock-on at this energy: E_max < E_d)"
    return "detectable (no damage limit given)"


def _with_caveat(verdict: str, limits: xr.Dataset, ei: int) -> str:
    """A survival verdict followed by `` (upper bound: …)`` when a published channel is not in the number."""
    note = str(limits.survival_caveat.values[ei]) if "survival_caveat" in limits else ""
    return f"{verdict} ({note})" if note and verdict.startswith("detected before") else verdict


def verdicts(limits: xr.Dataset) -> xr.DataArray:
    """The table's verdict per mode × energy, in words, from :func:`evaluate`'s limits."""
    fields = (
        "j_per_dose",
        "required_dose",
        "budget",
        "best_power_within_budget",
        "best_dose",
        "survival_probability",
    )
    detect = float(limits.attrs.get("detection_probability", np.nan))
    limited = [
        not (
            math.isnan(float(limits.critical_dose.values[ei]))
            and math.isnan(float(limits.knock_on_cross_section.values[ei]))
        )
        for ei in range(limits.sizes["energy"])
    ]
    words = [
        [
            _with_caveat(_verdict(*(float(limits[f].values[mi, ei]) for f in fields), limited[ei], detect), limits, ei)
            for ei in range(limits.sizes["energy"])
        ]
        for mi in range(limits.sizes["mode"])
    ]
    return xr.DataArray(
        np.array(words, dtype=str), dims=("mode", "energy"), coords={"mode": limits.mode, "energy": limits.energy}
    )


# ----------------------------------------------------------------------------- plan
#: Columns of :attr:`PlanResult.table` taken from the plan dataset.
MONTE_CARLO_FIELDS = (
    "mc_false_alarm",
    "mc_power",
    "mc_probability_of_error",
    "mc_false_alarm_se",
    "mc_power_se",
    "mc_probability_of_error_se",
)
TABLE_FIELDS = tuple(f for f in LIMIT_FIELDS if f != "best_dose") + MONTE_CARLO_FIELDS


@dataclass
class PlanResult:
    """Everything a plan computed: ``table`` rows, the xarray ``dataset``, mean ``signals`` and ``rates``."""

    study: Study
    table: list = field(default_factory=list)
    dataset: xr.Dataset | None = None
    signals: dict = field(default_factory=dict)
    rates: xr.Dataset | None = None

    def row(self, mode_label: str, energy: float) -> dict:
        for r in self.table:
            if r["mode"] == mode_label and r["energy"] == energy:
                return r
        raise KeyError((mode_label, energy))


#: Columns of :attr:`PlanResult.table` besides ``mode``, ``energy`` (and ``detector``, the old
#: name of ``camera``): each a variable of the plan dataset over ``mode`` and/or ``energy``.
#: ``plan.nc`` records them (``attrs["table_columns"]``), so :func:`table_from_file` rebuilds the
#: table from the file alone.
TABLE_COLUMNS = ("verdict", "mc_note", "budget_basis", "camera", "channels") + TABLE_FIELDS
TABLE_COLUMNS += ("quantum_multiple", "detector_geometry")


def _table(study: Study, ds: xr.Dataset) -> list:
    """The table's rows (energy outer, mode inner) from the plan dataset alone."""
    return table_rows(ds, TABLE_COLUMNS)


def _signals(study: Study, rates: xr.Dataset) -> dict:
    """Mean rates per mode × energy (channel shape kept) for the report's noisy displays."""
    out = {}
    for mode in study.modes:
        da = rates[mode.label]
        for energy in study.energies:
            recorded = da.sel(energy=energy)
            for dim in recorded.dims[2:]:  # crop channels not recorded at this energy (NaN), keep the shape
                recorded = recorded.dropna(dim, how="all")
            values = recorded.transpose("hypothesis", "configuration", ...).values
            r0s, r1s = values[0], values[1]
            scan_x, scan_y = (da[c].values if c in da.coords else None for c in ("scan_x", "scan_y"))
            out[(mode.label, energy)] = {
                "rate_h0": np.mean(r0s, axis=0),
                "rate_h1": np.mean(r1s, axis=0),
                "kind": mode.kind,
                "name": mode.name,
                "display": mode.spec.display,
                "rotation": float(np.deg2rad(mode.rotation)),
                "scan_x": scan_x,
                "scan_y": scan_y,
            }
    return out


def _structures(h0, h1) -> dict:
    """H0 and H1 as variables of ``plan.nc`` (atomic numbers, positions Å, cell Å)."""
    out = {}
    for label, atoms in (("H0", h0), ("H1", h1)):
        atom = f"atom_{label}"
        out[f"structure_{label}_numbers"] = ((atom,), atoms.numbers.astype(np.int64))
        out[f"structure_{label}_positions"] = ((atom, "xyz"), atoms.positions, {"units": "Å"})
        out[f"structure_{label}_cell"] = (("xyz", "cell_vector"), np.asarray(atoms.cell).T, {"units": "Å"})
    return out


def _grid_attrs(study: Study, grid) -> dict:
    """The grid used (points, Å/pixel) and the one requested, for ``plan.nc`` and the report."""
    return {
        "gpts": list(grid.gpts),
        "grid_sampling": list(grid.sampling),
        "requested_sampling": json.dumps(study.sampling),
        "requested_gpts": json.dumps(study.gpts),
        "grid": grid_description(study, grid),
    }


def _attrs(study: Study, monte_carlo_trials: int, site: dict, grid) -> dict:
    return {
        "feature_site": json.dumps(site),
        "feature_site_description": study.feature.describe_site(site),
        "study": study.name,
        "description": study.description,
        "feature": study.feature.describe(),
        "target": study.target.describe(),
        "required_j": study.target.required_j,
        "semiangle_cutoff": study.semiangle_cutoff,
        "aberrations": json.dumps(study.aberrations.nonzero()),
        **_grid_attrs(study, grid),
        "optics": optics_description(study),
        "aperture_edge": json.dumps(study.aperture_edge),
        "focal_spread": [study.focal_spread_at(e) for e in study.energies],
        "energy_spread": study.energy_spread,
        "chromatic_aberration": study.chromatic_aberration,
        "source_size": study.source_size,
        "microscope": study.microscope or "",
        "scan_step": study.scan_step,
        "window": study.window,
        "phonons": json.dumps(study.phonons),
        "critical_dose": json.dumps(study.critical_dose),
        "knock_on": json.dumps(study.knock_on),
        "seed": study.seed,
        "monte_carlo_trials": monte_carlo_trials,
        "temsim_version": temsim.__version__,
        "method": "likelihood-ratio test on raw Poisson counts, Gaussian approximation J = (z_{1-a}+z_{power})^2",
    }


# ----------------------------------------------------------------------------- limits of any detector
#: Rows a plan adds after the study's modes (docs/planning.md, "Limits of any detector").
FOUR_D_ROW = "4D bound"
OPTIMAL_ANNULUS_ROW = "optimal annulus"
OPTIMAL_SEGMENTED_ROW = "optimal segmented"
QUANTUM_ROW = "quantum limit"
PLANE_WAVE_QUANTUM_ROW = "quantum limit (plane wave)"
#: The rows that are bounds of any detector, not modes one can record.
QUANTUM_ROWS = (QUANTUM_ROW, PLANE_WAVE_QUANTUM_ROW)
#: Azimuthal bins and segment counts of the optimal segmented search.
AZIMUTH_BINS = 24
SEGMENT_COUNTS = (2, 4, 8)


def exit_wave_data(study: Study, settings: ExecutionSettings | None = None) -> dict:
    """``{energy: temsim.exit_waves.ExitWaveData}``: the 4D data and state distances of both
    hypotheses on the planner's scan window (``{}`` for a study without STEM modes)."""
    if not _stem_modes(study):
        return {}
    settings = resolve_settings(settings)
    h0, h1, position = study.hypotheses()
    configs = (_configurations(study, h0), _configurations(study, h1))
    window = _scan_window(study, position, simulation_grid(study, h0).extent)
    keys = dict(study.grid_keys(), slice_thickness=study.slice_thickness)
    with settings.activate():
        return {
            e: exit_waves.lockstep_pass(_probe(study, e), configs, window, potential_keys=keys, settings=settings)
            for e in study.energies
        }


def _scan_array(study: Study, data, values: np.ndarray, dims: tuple = (), coords=None) -> xr.DataArray:
    """(hypothesis, configuration, position, ...) values over scan_x, scan_y, blurred by the source size."""
    shape = values.shape[:2] + (data.scan_x.size, data.scan_y.size) + values.shape[3:]
    da = xr.DataArray(
        values.reshape(shape),
        dims=("hypothesis", "configuration", "scan_x", "scan_y") + dims,
        coords={"scan_x": data.scan_x, "scan_y": data.scan_y, **(coords or {})},
    )
    return source_blur(da, study.source_size)


def _four_d_rates(study: Study, data) -> tuple:
    """Every pixel of the study's first pixelated mode's camera (else a hybrid-pixel camera), binned
    as that mode, to the band limit."""
    pixelated = [m for m in study.modes if m.kind == "pixelated"]
    name = pixelated[0].camera_name if pixelated else KINDS["pixelated"].default_camera
    b = int(pixelated[0].binning) if pixelated else 1
    nkx, nky = (data.kx.size // b) * b, (data.ky.size // b) * b
    values = data.intensity[:, :, :, :nkx, :nky]
    values = values.reshape(values.shape[:3] + (nkx // b, b, nky // b, b)).sum(axis=(4, 6))
    kx, ky = (k[: (k.size // b) * b].reshape(-1, b).mean(axis=1) for k in (data.kx, data.ky))
    eta = camera_model(name, energy=data.energy).poisson_efficiency
    da = data.area * eta * _scan_array(study, data, values, ("kx", "ky"), {"kx": kx, "ky": ky})
    return da, name, f"every pixel to the band limit {_band_limit(data):.0f} mrad, binning {b}"


def _band_limit(data) -> float:
    """The largest scattering angle (mrad) of a pixel that any exit wave reaches (the band limit)."""
    reached = data.intensity.max(axis=(0, 1, 2)) > 0
    return float(data.alpha[reached].max()) if reached.any() else float(data.alpha.max())


def _masked(study: Study, data, masks, efficiency, dim: str = "segment") -> xr.DataArray:
    """Rates of channels that sum the pixels of ``masks`` (channels, pixels)."""
    pixels = data.intensity.reshape(data.intensity.shape[:3] + (-1,))
    return _scan_array(study, data, acquisitions.cell_rates(pixels, masks, efficiency, data.area), (dim,))


def _joint_rates(study: Study, data, acquisition, dim: str = "cell") -> tuple:
    """The acquisition's channels on the disjoint refinement of its detectors (one channel per cell)."""
    grid = simulation_grid(study)
    detectors = _stem_detectors(study, grid, data.energy)
    modes = {m.label: m for m in study.modes}
    masks, eff, labels = [], [], []
    for label in acquisition.modes:
        weights = np.asarray(detectors[label].compile(grid, data.energy, np)._weights)
        weights = weights.reshape(tuple(grid.gpts) + (-1,))[np.ix_(*data.fft_index)]
        for channel in weights.reshape(-1, weights.shape[-1]).T > 0.5:
            masks.append(channel)
            eff.append(mode_camera(modes[label], data.energy).poisson_efficiency)
            labels.append(label)
    cells, membership = acquisitions.refinement(np.asarray(masks))
    efficiency = acquisitions.cell_efficiencies(membership, eff, labels)
    cameras = "+".join(dict.fromkeys(modes[m].camera_name for m in acquisition.modes))
    return _masked(study, data, cells, efficiency, dim), cameras, f"{len(cells)} cells of {len(masks)} channels"


def _optimal_rates(study: Study, data) -> dict:
    """``{row: (rates, camera, geometry)}`` of the best annulus and segmented ring for this feature."""
    camera = KINDS["annular"].default_camera
    eta = camera_model(camera, energy=data.energy).poisson_efficiency
    alpha, phi = data.alpha.reshape(-1), data.phi.reshape(-1)
    pixels = data.intensity.reshape(data.intensity.shape[:3] + (-1,)).mean(axis=1, dtype=np.float64)
    r0, r1 = (data.area * eta * pixels[h] for h in (0, 1))
    # candidate edges up to the band limit: every pixel width, and the study's and the standard detectors' angles
    a, top = study.semiangle_cutoff, _band_limit(data)
    step = float(abs(data.kx[1] - data.kx[0])) * 1e3 * wavelength(data.energy)
    standard = [e for m in _stem_modes(study) for e in m.angles(a)] + [0.0, a / 2, a, 3 * a, max(3 * a, 50.0)]
    standard = [e for e in standard if e < top] + [top * (1 + 1e-9)]
    edges = np.union1d(np.arange(0.0, top, step), standard)
    annulus = optimal_detector.optimal_annulus(r0, r1, alpha, edges)
    rings = np.union1d(np.linspace(0.0, top, 25)[:-1], standard)
    ring = optimal_detector.optimal_segmented(
        r0, r1, alpha, phi, rings, n_azimuth=AZIMUTH_BINS, segment_counts=SEGMENT_COUNTS
    )
    one = _masked(study, data, optimal_detector.annulus_masks(alpha, annulus), [eta]).squeeze("segment", drop=True)
    masks = optimal_detector.segment_masks(alpha, phi, ring, AZIMUTH_BINS)
    return {
        OPTIMAL_ANNULUS_ROW: (one, camera, annulus.describe()),
        OPTIMAL_SEGMENTED_ROW: (_masked(study, data, masks, np.full(len(masks), eta)), camera, ring.describe()),
    }


def information_rates(study: Study, waves: dict) -> tuple:
    """Rates of the rows that :func:`exit_wave_data` adds — the 4D bound, each acquisition's joint
    channels, the optimal annulus and segmented ring — and ``{row: (camera, {energy: geometry})}``."""
    kinds = {m.label: m.kind for m in study.modes}
    rows: dict = {}
    for energy, data in waves.items():
        found = {FOUR_D_ROW: _four_d_rates(study, data)}
        for i, acquisition in enumerate(study.acquisitions or acquisitions.default_acquisitions(kinds)):
            acquisitions.check_acquisition(acquisition, kinds)
            found[acquisition.name] = _joint_rates(study, data, acquisition, f"cell_{i}")
        found.update(_optimal_rates(study, data))
        for row, (da, camera, geometry) in found.items():
            rows.setdefault(row, ([], camera, {}))
            rows[row][0].append(da.expand_dims(energy=[energy]))
            rows[row][2][energy] = geometry
    rates = xr.Dataset()
    for row, (arrays, _, _) in rows.items():
        da = xr.concat(arrays, dim="energy", join="outer", fill_value=np.nan)
        rates[row] = da.transpose("energy", "hypothesis", "configuration", ...).assign_attrs(units=RATE_UNITS)
    rates = rates.assign_coords(hypothesis=list(HYPOTHESES))
    return rates, {row: (camera, geometry) for row, (_, camera, geometry) in rows.items()}


def plane_wave_data(study: Study, settings: ExecutionSettings | None = None) -> dict:
    """``{energy: (h per configuration, pixel area Å²)}`` of the plane-wave exit waves (HRTEM
    illumination; ``{}`` for a study without image modes), see
    :func:`temsim.exit_waves.plane_wave_distance`."""
    if not _image_modes(study):
        return {}
    settings = resolve_settings(settings)
    h0, h1, _ = study.hypotheses()
    configs = (_configurations(study, h0), _configurations(study, h1))
    keys = dict(study.grid_keys(), slice_thickness=study.slice_thickness)
    with settings.activate():
        return {
            e: exit_waves.plane_wave_distance(e, configs, potential_keys=keys, settings=settings)
            for e in study.energies
        }


def _stem_quantum(study: Study, waves: dict) -> dict:
    """``{energy: (statistics, leave-one-configuration-out j)}`` of the STEM probe's quantum limit."""
    out = {}
    for energy, data in waves.items():
        h = _scan_array(study, data, data.distance[None]).isel(hypothesis=0).values  # (configuration, x, y)
        loo = [np.delete(h, i, axis=0).mean(axis=0) for i in range(len(h))] if len(h) > 1 else []
        out[energy] = (
            quantum_limit.quantum_statistics(h.mean(axis=0), data.area),
            [quantum_limit.quantum_statistics(x, data.area).j_per_dose for x in loo],
        )
    return out


def _plane_quantum(plane: dict) -> dict:
    """``{energy: (statistics, leave-one-configuration-out j)}`` of the plane wave's quantum limit."""
    out = {}
    for energy, (h, area) in plane.items():
        loo = [np.delete(h, i).mean() for i in range(len(h))] if len(h) > 1 else []
        out[energy] = (
            quantum_limit.quantum_statistics([h.mean()], area),
            [quantum_limit.quantum_statistics([x], area).j_per_dose for x in loo],
        )
    return out


def _quantum_row(study: Study, quantum: dict, label: str, template: xr.Dataset) -> xr.Dataset:
    """A quantum limit ``{energy: (statistics, jackknife j)}`` as one row shaped like ``template``."""
    row = template.copy(deep=True).assign_coords(mode=[label])
    budgets, doses = _study_budgets(study), _study_doses(study)
    for ei, energy in enumerate(row.energy.values):
        stat, js = quantum[float(energy)]
        interval = functools.partial(_interval, np.asarray(js), stat.j_per_dose)
        values, curve = _limits_of(stat, study.target, budgets[float(energy)], doses, interval)
        row["channels"].values[0, ei] = values.pop("channels")
        for name, value in values.items():
            row[name].values[0, ei] = value
        row["detection_power"].values[0, ei] = curve
    row["rose_dose"].values[:] = np.nan
    for name in MONTE_CARLO_FIELDS:
        row[name].values[:] = np.nan
    row["mc_note"].values[:] = ""
    row.attrs["detection_probability"] = _detection_probability(study.target)
    row["verdict"].values[:] = verdicts(row).values
    return row.assign(camera=("mode", ["any detector"]))


def _with_rows(ds: xr.Dataset, extra: xr.Dataset) -> xr.Dataset:
    """``ds`` with the rows of ``extra`` appended along ``mode`` (fields it lacks: NaN or "")."""
    moded = [name for name in ds.data_vars if "mode" in ds[name].dims]
    parts = []
    for name in moded:
        if name in extra:
            parts.append(xr.concat([ds[name], extra[name]], dim="mode"))
            continue
        filler = "" if ds[name].dtype.kind in "US" else np.nan
        blank = xr.full_like(ds[name].isel(mode=[0]), filler).reindex(mode=extra.mode.values, fill_value=filler)
        parts.append(xr.concat([ds[name], blank.astype(ds[name].dtype)], dim="mode"))
    return ds.drop_vars(moded + ["mode"]).assign({da.name: da for da in parts})


def information_rows(
    study: Study, waves: dict, ds: xr.Dataset, monte_carlo_trials: int = 2000, plane: dict | None = None
) -> xr.Dataset:
    """The plan dataset ``ds`` with the rows of the limits of any detector appended and two columns:
    ``quantum_multiple`` (each row's dose as a multiple of the quantum-limit dose of its illumination,
    without damage: ``j_Q / j₁``) and ``detector_geometry`` (the searched detectors, the 4D camera,
    an acquisition's cells).

    ``waves`` (:func:`exit_wave_data`) gives the STEM rows, ``plane`` (:func:`plane_wave_data`) the
    plane-wave quantum limit that the image modes are compared with.
    """
    parts, described, j_q, illumination = [], {}, {}, {}
    if waves:
        rates, described = information_rates(study, waves)
        extra = _decided(study, rates, monte_carlo_trials, seed=study.seed + 1)
        parts.append(extra.assign(camera=("mode", np.array([described[str(m)][0] for m in extra.mode.values]))))
        quantum = _stem_quantum(study, waves)
        parts.append(_quantum_row(study, quantum, QUANTUM_ROW, ds.isel(mode=[0])))
        j_q[QUANTUM_ROW] = {e: q[0].j_per_dose for e, q in quantum.items()}
        illumination.update({m: QUANTUM_ROW for m in [*(x.label for x in _stem_modes(study)), *described]})
    if plane:
        quantum = _plane_quantum(plane)
        parts.append(_quantum_row(study, quantum, PLANE_WAVE_QUANTUM_ROW, ds.isel(mode=[0])))
        j_q[PLANE_WAVE_QUANTUM_ROW] = {e: q[0].j_per_dose for e, q in quantum.items()}
        illumination.update({m.label: PLANE_WAVE_QUANTUM_ROW for m in _image_modes(study)})
    illumination.update({row: row for row in j_q})
    extra = xr.concat(parts, dim="mode", data_vars="minimal", coords="minimal", compat="override", join="outer")
    ds = _with_rows(ds, extra)
    geometry = [
        [described.get(str(m), ("", {}))[1].get(float(e), "") for e in ds.energy.values] for m in ds.mode.values
    ]
    multiple = [
        [
            j_q[illumination[str(m)]][float(e)] / j if str(m) in illumination and j > 0 else np.nan
            for e, j in zip(ds.energy.values, row)
        ]
        for m, row in zip(ds.mode.values, ds.j_per_dose.values)
    ]
    return ds.assign(
        quantum_multiple=(("mode", "energy"), np.array(multiple, dtype=float)),
        detector_geometry=(("mode", "energy"), np.array(geometry, dtype=str)),
    )


def study_limits(study: Study, rates: xr.Dataset) -> xr.Dataset:
    """:func:`evaluate` of ``rates`` under the study's damage budgets, target and dose axis.

    The evaluation step of :func:`plan`, shared with sweeps (:mod:`temsim.sweeps`), which
    re-evaluate the same rates under other budgets or targets without simulating again.
    """
    return evaluate(rates, study.target, _study_budgets(study), doses=_study_doses(study))


def _study_budgets(study: Study) -> dict:
    feature = _feature_damage(study)
    return {e: damage_budget(e, study.critical_dose, study.knock_on, feature) for e in study.energies}


def _study_doses(study: Study) -> np.ndarray:
    return np.logspace(math.log10(study.dose_range[0]), math.log10(study.dose_range[1]), 121)


def _decided(study: Study, rates: xr.Dataset, monte_carlo_trials: int, seed: int) -> xr.Dataset:
    """Limits, Monte-Carlo checks, notes and verdicts of every variable of ``rates``."""
    limits = study_limits(study, rates)
    checks = monte_carlo_check(rates, limits, study.target, seed=seed, trials=monte_carlo_trials)
    notes = monte_carlo_notes(checks, study.target).to_dataset(name="mc_note")
    return xr.merge([limits, checks, verdicts(limits).to_dataset(name="verdict"), notes], combine_attrs="drop")


def _feature_damage(study: Study) -> dict | None:
    """The atoms whose events destroy the feature: first-shell neighbours of the knock-on elements
    around a substituted or removed atom, and a substitution's dopant (None without knock-on data)."""
    if not study.knock_on or study.feature.kind not in ("substitution", "vacancy"):
        return None
    h0, _, _ = study.hypotheses()
    site = study.feature_site()
    sites = damage_channels.feature_sites(h0, site["index"], damage_channels.knock_on_elements(study.knock_on))
    return {"sites": sites, "dopant": site.get("new_element")}


def plan(
    study: Study,
    *,
    settings: ExecutionSettings | None = None,
    progress: bool | None = None,
    checkpoint_dir: str | None = None,
    monte_carlo_trials: int = 2000,
    limits_of_any_detector: bool = True,
) -> PlanResult:
    """Minimum detectable dose of ``study.feature`` for every mode and energy.

    Runs :func:`simulate`, :func:`damage_budget`, :func:`evaluate`, :func:`verdicts` and
    :func:`monte_carlo_check`.

    Parameters
    ----------
    study : Study
        The study (``temsim.study.example_study("graphene-si")`` or :func:`temsim.study.load_study`).
    settings : ExecutionSettings, optional
        Threads, device, precision and progress bars.
    progress : bool, optional
        Progress bar over the simulations (default: ``settings.progress``; shown if unset).
    checkpoint_dir : str, optional
        Directory where each simulation is saved as it completes; a rerun reuses them (a
        killed plan resumes where it stopped).
    monte_carlo_trials : int
        Trials per hypothesis of the exact Poisson Monte-Carlo check at each reported dose.
    limits_of_any_detector : bool
        Add the rows of :func:`information_rows` for STEM studies (one more pass over the probe
        positions): the 4D bound, the joint dose of simultaneous detectors, the optimal annulus
        and segmented ring, and the quantum limit, with each row's ``quantum_multiple``.

    Returns
    -------
    PlanResult
        ``table`` (one dict per mode × energy), ``dataset`` (xarray: the table's columns, the
        power curves, the structures; ``plan.nc``'s root), ``signals``, ``rates`` (one
        variable per mode; ``plan.nc``'s ``/signals`` groups, see :mod:`temsim.plan_file`).
    """
    with compute.session(settings) as shared:  # one local cluster for every simulation of the plan
        rates = simulate(study, settings=shared, progress=progress, checkpoint_dir=checkpoint_dir)
        waves = exit_wave_data(study, shared) if limits_of_any_detector else {}
        plane = plane_wave_data(study, shared) if limits_of_any_detector else {}
    ds = _decided(study, rates, monte_carlo_trials, study.seed)
    cameras = [rates[label].attrs.get("camera", "") if label in rates else "" for label in ds.mode.values]
    ds = ds.assign(camera=("mode", np.array(cameras, dtype=str)))
    if waves or plane:  # the 4D bound, joint acquisitions, optimal detectors and the quantum limits
        ds = information_rows(study, waves, ds, monte_carlo_trials, plane)
    else:
        ds = ds.assign(quantum_multiple=ds.j_per_dose * np.nan, detector_geometry=xr.full_like(ds.verdict, ""))
    h0, h1, _ = study.hypotheses()
    ds = ds.assign(_structures(h0, h1))
    ds.attrs.update(_attrs(study, monte_carlo_trials, study.feature_site(), simulation_grid(study, h0)))
    ds.attrs["table_columns"] = json.dumps(TABLE_COLUMNS)
    result = PlanResult(study=study, dataset=ds, rates=rates, signals=_signals(study, rates))
    result.table = _table(study, ds)
    return result
