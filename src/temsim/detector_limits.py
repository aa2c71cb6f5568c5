"""The limits of any detector: the 4D bound, joint acquisitions, optimal detectors, the quantum limit.

One extra pass over the exit waves of both hypotheses (:mod:`temsim.exit_waves`) feeds every
row: the likelihood ratio on every camera pixel, the disjoint refinement of an acquisition's
detectors, the searched annulus and segmented layouts, and the state distance that bounds any
measurement (:mod:`temsim.quantum_limit`). Part of :mod:`temsim.planning`, which re-exports
the public names (docs/planning.md, "Limits of any detector").
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

from temsim import acquisitions, exit_waves, optimal_detector, quantum_limit
from temsim.cameras import camera_model
from temsim.constants import wavelength
from temsim.microscopes import source_blur
from temsim.modes import KINDS
from temsim.plan_limits import (
    MONTE_CARLO_FIELDS,
    _decided,
    _detection_probability,
    _interval,
    _limits_of,
    _study_budgets,
    _study_doses,
    verdicts,
)
from temsim.plan_simulation import (
    HYPOTHESES,
    RATE_UNITS,
    _configurations,
    _image_modes,
    _probe,
    _scan_window,
    _stem_detectors,
    _stem_modes,
    mode_camera,
    simulation_grid,
)
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.study import Study

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


def _quantum_row(study: Study, quantum: dict, label: str, template: xr.Dataset, budgets: dict) -> xr.Dataset:
    """A quantum limit ``{energy: (statistics, jackknife j)}`` as one row shaped like ``template``,
    under the study's damage ``budgets`` (``{energy: DamageBudget}``)."""
    row = template.copy(deep=True).assign_coords(mode=[label])
    doses = _study_doses(study)
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
    budgets = _study_budgets(study)  # once for both quantum rows (thermal knock-on integrals)
    if waves:
        rates, described = information_rates(study, waves)
        extra = _decided(study, rates, monte_carlo_trials, seed=study.seed + 1)
        parts.append(extra.assign(camera=("mode", np.array([described[str(m)][0] for m in extra.mode.values]))))
        quantum = _stem_quantum(study, waves)
        parts.append(_quantum_row(study, quantum, QUANTUM_ROW, ds.isel(mode=[0]), budgets))
        j_q[QUANTUM_ROW] = {e: q[0].j_per_dose for e, q in quantum.items()}
        illumination.update({m: QUANTUM_ROW for m in [*(x.label for x in _stem_modes(study)), *described]})
    if plane:
        quantum = _plane_quantum(plane)
        parts.append(_quantum_row(study, quantum, PLANE_WAVE_QUANTUM_ROW, ds.isel(mode=[0]), budgets))
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
