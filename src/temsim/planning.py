"""The planner: minimum detectable dose per imaging mode and energy, against the damage budget.

For each energy, the specimen without (H0) and with (H1) the feature is simulated once per
frozen-phonon configuration; every mode's raw channels (annular detector per probe position,
four DPC segments per position, diffraction pixels per position, or camera pixels) give
expected counts per unit dose ``r = a · η · I``. The detection statistics
(:mod:`temsim.detection`) are linear in dose, so the whole dose axis follows without
re-simulation. Damage enters as first-order fading of the feature's contrast (radiolysis,
critical dose Dc) and as a knock-on displacement probability.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import xarray as xr

import temsim
from temsim import detection
from temsim.detectors import AnnularDetector, PixelatedDetector, SegmentedDetector
from temsim.imaging import hrtem_image
from temsim.potentials import Potential
from temsim.positions import GridScan
from temsim.solvers.multislice import _progress, multislice
from temsim.solvers.stem import scan
from temsim.study import Study
from temsim.waves import PlaneWave, Probe

__all__ = ["plan", "PlanResult", "simulate_rates"]

#: Knock-on budget: dose at which the displacement probability per atom reaches this value.
KNOCK_ON_BUDGET_PROBABILITY = 0.1


def _configurations(study: Study, atoms):
    if not study.phonons:
        return [atoms]
    from temsim.phonons import FrozenPhonons

    p = study.phonons
    phonons = FrozenPhonons(sigmas=p.get("sigma", 0.0), num_configs=int(p.get("num_configs", 4)),
                            seed=int(p.get("seed", study.seed)))
    return list(phonons.configurations(atoms))


def _scan_window(study: Study, position, extent) -> GridScan:
    half = study.window / 2
    start = [max(0.0, position[i] - half) for i in range(2)]
    end = [min(extent[i], position[i] + half) for i in range(2)]
    return GridScan(start=tuple(start), end=tuple(end), sampling=study.scan_step)


def _stem_detectors(study: Study, grid, energy):
    detectors = {}
    alpha = study.semiangle_cutoff
    for mode in study.modes:
        if mode.kind == "annular":
            inner, outer = mode.angles(alpha)
            detectors[mode.label] = AnnularDetector(inner, outer)
        elif mode.kind == "segmented":
            inner, outer = mode.angles(alpha)
            detectors[mode.label] = SegmentedDetector(inner, outer, nsegments=4)
        elif mode.kind == "pixelated":
            limit = mode.max_angle or min(2.5 * alpha, grid.max_angle(energy))
            detectors[mode.label] = PixelatedDetector(max_angle=limit, binning=mode.binning)
    return detectors


def check_study(study: Study, atoms) -> None:
    """Validate every energy's detectors and apertures against the grid before simulating.

    Raises the same errors the simulations would (e.g. a detector angle beyond the band
    limit, with the sampling needed) before any time is spent.
    """
    potential = Potential(atoms, sampling=study.sampling, slice_thickness=study.slice_thickness)
    grid = potential.grid
    for energy in study.energies:
        for detector in _stem_detectors(study, grid, energy).values():
            detector.compile(grid, energy, np)
        if any(m.kind != "image" for m in study.modes):
            Probe(energy=energy, semiangle_cutoff=study.semiangle_cutoff, aberrations=study.aberrations,
                  focal_spread=study.focal_spread).resolve_grid(grid)
        if any(m.kind == "image" for m in study.modes):
            grid.check_angle(study.semiangle_cutoff, energy, "the objective aperture")


def simulate_rates(study: Study, atoms, energy: float, position, progress=None) -> dict:
    """Noise-free simulated signals of every mode for one structure (one phonon configuration).

    Returns ``{mode_label: numpy array}`` of fractions of the beam per channel (STEM: per probe
    position; HRTEM: image intensity, vacuum = 1), plus ``"_scan_step"`` and ``"_pixel_area"``.
    """
    potential = Potential(atoms, sampling=study.sampling, slice_thickness=study.slice_thickness)
    out = {"_pixel_area": float(np.prod(potential.grid.sampling))}
    stem_modes = [m for m in study.modes if m.kind != "image"]
    if stem_modes:
        probe = Probe(energy=energy, semiangle_cutoff=study.semiangle_cutoff, aberrations=study.aberrations,
                      focal_spread=study.focal_spread)
        window = _scan_window(study, position, potential.grid.extent)
        ds = scan(probe, potential, _stem_detectors(study, potential.grid, energy), window, progress=False)
        out["_scan_step"] = float(np.prod(ds.attrs["scan_step"]))
        out["_scan_x"] = ds.scan_x.values
        out["_scan_y"] = ds.scan_y.values
        for mode in stem_modes:
            values = ds[mode.label].values
            if mode.kind == "segmented":
                values = values[:, :, 0, :]  # one ring
            out[mode.label] = values.astype(np.float64)
    image_modes = [m for m in study.modes if m.kind == "image"]
    if image_modes:
        exit_wave = multislice(PlaneWave(energy=energy), potential)
        for mode in image_modes:
            lens = study.aberrations.with_defocus(study.aberrations.defocus + mode.defocus)
            image = hrtem_image(exit_wave, lens, semiangle_cutoff=study.semiangle_cutoff,
                                focal_spread=study.focal_spread)
            out[mode.label] = image.values.astype(np.float64)
    return out


def _rates(study: Study, mode, signal: dict, energy: float) -> np.ndarray:
    """Expected counts per unit dose per channel: area × efficiency × fraction of the beam."""
    detector = temsim.detector_model(mode.detector_name)  # preset DQE(0); see docs/planning.md
    eta = float(detector.efficiency)
    area = signal["_pixel_area"] if mode.kind == "image" else signal["_scan_step"]
    return area * eta * signal[mode.label]


def _checkpoint_key(study: Study, energy, hypothesis, config) -> str:
    payload = {
        "positions": np.round(config.positions, 8).tolist(), "numbers": config.numbers.tolist(),
        "cell": np.round(np.asarray(config.cell), 8).tolist(), "energy": energy, "hyp": hypothesis,
        "modes": [asdict(m) for m in study.modes], "alpha": study.semiangle_cutoff,
        "ab": study.aberrations.nonzero(), "fs": study.focal_spread, "sampling": study.sampling,
        "step": study.scan_step, "window": study.window, "dz": study.slice_thickness, "version": temsim.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _load_or_simulate(study, atoms, energy, position, checkpoint_dir, hypothesis):
    if checkpoint_dir is None:
        return simulate_rates(study, atoms, energy, position)
    path = os.path.join(checkpoint_dir, _checkpoint_key(study, energy, hypothesis, atoms) + ".npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as data:
            return {k: (data[k] if data[k].ndim else float(data[k])) for k in data.files}
    result = simulate_rates(study, atoms, energy, position)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in result.items()})
    os.replace(tmp, path)
    return result


@dataclass
class PlanResult:
    """Everything a plan computed: ``table`` rows, the xarray ``dataset`` and noisy ``examples``."""

    study: Study
    table: list = field(default_factory=list)
    dataset: xr.Dataset | None = None
    signals: dict = field(default_factory=dict)

    def row(self, mode_label: str, energy: float) -> dict:
        for r in self.table:
            if r["mode"] == mode_label and r["energy"] == energy:
                return r
        raise KeyError((mode_label, energy))


def _budget(study: Study, energy: float):
    """(critical dose Dc or None, budget dose, knock-on cross-section in barn or None, description)."""
    dc = None
    description = "no damage limit given"
    if study.critical_dose is not None:
        cd = temsim.critical_dose(study.critical_dose)
        dc = float(cd.value)
        description = f"radiolysis Dc = {dc:g} e/Å² ({cd.material})"
    sigma = None
    budget = dc if dc is not None else math.inf
    if study.knock_on:
        k = study.knock_on
        extra = {key: k[key] for key in ("temperature", "debye_temperature") if key in k}
        result = temsim.knock_on(k["element"], energy, k["displacement_energy"], **extra)
        sigma = float(result.cross_section)
        if sigma > 0:
            knock_budget = -math.log(1 - KNOCK_ON_BUDGET_PROBABILITY) / (sigma * 1e-8)
            if knock_budget < budget:
                budget = knock_budget
                description = (f"knock-on of {k['element']} (σ = {sigma:.3g} b): "
                               f"{KNOCK_ON_BUDGET_PROBABILITY:.0%} displacement probability")
        elif dc is None:
            description = f"below the knock-on threshold of {k['element']} (σ = 0)"
    return dc, budget, sigma, description


def plan(study: Study, *, progress: bool = True, checkpoint_dir: str | None = None,
         monte_carlo_trials: int = 2000) -> PlanResult:
    """Minimum detectable dose of ``study.feature`` for every mode and energy.

    Parameters
    ----------
    study : Study
        The study (``temsim.study.example_study("graphene-si")`` or :func:`temsim.study.load_study`).
    progress : bool
        Progress bar over the simulations.
    checkpoint_dir : str, optional
        Directory where each simulation is saved as it completes; a rerun reuses them (a
        killed plan resumes where it stopped).
    monte_carlo_trials : int
        Trials per hypothesis of the exact Poisson Monte-Carlo check at each reported dose.

    Returns
    -------
    PlanResult
        ``table`` (one dict per mode × energy), ``dataset`` (xarray, everything), ``signals``.
    """
    h0, h1, position = study.hypotheses()
    check_study(study, h0)
    configs = {"H0": _configurations(study, h0), "H1": _configurations(study, h1)}
    n_configs = len(configs["H0"])
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
    tasks = [(e, h, i) for e in study.energies for h in ("H0", "H1") for i in range(n_configs)]
    bar = _progress(len(tasks), progress, "plan: simulations", unit="simulation")
    sims: dict = {}
    for energy, hyp, i in tasks:
        sims[(energy, hyp, i)] = _load_or_simulate(study, configs[hyp][i], energy, position, checkpoint_dir, hyp)
        bar.update(1)
    bar.close()

    target = study.target
    doses = np.logspace(math.log10(study.dose_range[0]), math.log10(study.dose_range[1]), 121)
    result = PlanResult(study=study)
    labels = [m.label for m in study.modes]
    shape = (len(labels), len(study.energies))
    fields = ["required_dose", "undamaged_dose", "dose_low", "dose_high", "rose_dose", "bhattacharyya_dose", "budget", "margin",
              "j_per_dose", "knock_on_probability", "mc_false_alarm", "mc_power", "mc_probability_of_error",
              "best_power_within_budget"]
    arrays = {f: np.full(shape, np.nan) for f in fields}
    verdicts = np.empty(shape, dtype=object)
    power_curves = np.zeros(shape + (len(doses),))
    rate_vars = {}
    rng_seed = np.random.SeedSequence(study.seed)
    mc_seeds = rng_seed.spawn(len(labels) * len(study.energies))
    for ei, energy in enumerate(study.energies):
        dc, budget, sigma, budget_text = _budget(study, energy)
        for mi, mode in enumerate(study.modes):
            r0s = [_rates(study, mode, sims[(energy, "H0", i)], energy) for i in range(n_configs)]
            r1s = [_rates(study, mode, sims[(energy, "H1", i)], energy) for i in range(n_configs)]
            r0, r1 = np.mean(r0s, axis=0), np.mean(r1s, axis=0)
            stat = detection.detection_statistics(r0, r1)
            dose = detection.required_dose(stat, target, dc)
            undamaged = detection.required_dose(stat, target, None)
            rose = detection.required_dose(stat, target, dc, criterion="rose")
            bhat = detection.required_dose(stat, target, None, criterion="bhattacharyya")
            # frozen-phonon uncertainty: jackknife over configurations
            low = high = np.nan
            if n_configs > 1 and np.isfinite(dose):
                js = []
                for leave in range(n_configs):
                    keep = [i for i in range(n_configs) if i != leave]
                    s = detection.detection_statistics(np.mean([r0s[i] for i in keep], 0),
                                                       np.mean([r1s[i] for i in keep], 0))
                    js.append(s.j_per_dose)
                js = np.asarray(js)
                se = math.sqrt((n_configs - 1) / n_configs * np.sum((js - js.mean()) ** 2))
                rel = se / stat.j_per_dose if stat.j_per_dose > 0 else np.nan
                low, high = dose / (1 + 2 * rel), dose / max(1e-12, 1 - 2 * rel) if rel < 0.5 else np.inf
            curve = detection.detection_power(stat, target, doses, dc) if stat.j_per_dose > 0 else np.zeros_like(doses)
            power_curves[mi, ei] = curve
            mc = {"false_alarm": np.nan, "power": np.nan, "probability_of_error": np.nan}
            if np.isfinite(dose):
                mc = detection.monte_carlo_error_rates(r0, r1, dose, target, trials=monte_carlo_trials,
                                                       seed=int(mc_seeds[mi * len(study.energies) + ei]
                                                                .generate_state(1)[0]), critical_dose=dc)
            knock_p = np.nan
            if sigma is not None and np.isfinite(dose):
                knock_p = 1 - math.exp(-sigma * 1e-8 * dose)
            best = np.nan
            if stat.j_per_dose == 0:
                verdict = "undetectable: the feature changes nothing this mode records"
            elif not np.isfinite(dose):
                d_best = detection.optimal_dose_under_fading(dc) if dc else study.dose_range[1]
                d_best = min(d_best, budget)
                best = float(detection.detection_power(stat, target, d_best, dc))
                verdict = f"not detectable before damage (best power {best:.2f} at {d_best:.3g} e/Å²)"
            elif dose <= budget:
                verdict = "detectable within budget" if np.isfinite(budget) else "detectable (no damage limit given)"
            else:
                best = float(detection.detection_power(stat, target, budget, dc))
                verdict = f"exceeds budget (power {best:.2f} at the budget)"
            values = dict(required_dose=dose, undamaged_dose=undamaged, dose_low=low, dose_high=high, rose_dose=rose, bhattacharyya_dose=bhat,
                          budget=budget, margin=budget / dose if np.isfinite(dose) and dose > 0 else np.nan,
                          j_per_dose=stat.j_per_dose, knock_on_probability=knock_p, mc_false_alarm=mc["false_alarm"],
                          mc_power=mc["power"], mc_probability_of_error=mc["probability_of_error"],
                          best_power_within_budget=best)
            for key, value in values.items():
                arrays[key][mi, ei] = value
            verdicts[mi, ei] = verdict
            result.table.append({"mode": mode.label, "energy": energy, "verdict": verdict, "budget_basis": budget_text,
                                 "detector": mode.detector_name, "channels": stat.channels, **values})
            result.signals[(mode.label, energy)] = {"rate_h0": r0, "rate_h1": r1, "kind": mode.kind,
                                                    "scan_x": sims[(energy, "H0", 0)].get("_scan_x"),
                                                    "scan_y": sims[(energy, "H0", 0)].get("_scan_y")}
            tag = f"{mode.label}@{energy / 1e3:g}kV".replace(" ", "_").replace("=", "").replace("Δ", "d")
            dims = tuple(f"{tag}_dim{i}" for i in range(r0.ndim))
            rate_vars[f"rate_h0[{tag}]"] = xr.DataArray(r0, dims=dims, attrs={"units": "counts per e/Å²"})
            rate_vars[f"rate_h1[{tag}]"] = xr.DataArray(r1, dims=dims, attrs={"units": "counts per e/Å²"})
    coords = {"mode": labels, "energy": ("energy", np.asarray(study.energies), {"units": "eV"}),
              "dose": ("dose", doses, {"units": "e/Å²"})}
    data_vars = {k: (("mode", "energy"), v) for k, v in arrays.items()}
    data_vars["verdict"] = (("mode", "energy"), verdicts.astype(str))
    data_vars["detection_power"] = (("mode", "energy", "dose"), power_curves)
    ds = xr.Dataset(data_vars, coords=coords)
    for name, da in rate_vars.items():
        ds[name] = da
    units = {"required_dose": "e/Å²", "undamaged_dose": "e/Å²", "dose_low": "e/Å²", "dose_high": "e/Å²", "rose_dose": "e/Å²",
             "bhattacharyya_dose": "e/Å²", "budget": "e/Å²", "j_per_dose": "per e/Å²"}
    for key, unit in units.items():
        ds[key].attrs["units"] = unit
    ds.attrs.update({
        "study": study.name,
        "description": study.description,
        "feature": study.feature.describe(),
        "target": target.describe(),
        "required_j": target.required_j,
        "semiangle_cutoff": study.semiangle_cutoff,
        "aberrations": json.dumps(study.aberrations.nonzero()),
        "sampling": study.sampling,
        "scan_step": study.scan_step,
        "window": study.window,
        "phonons": json.dumps(study.phonons),
        "critical_dose": json.dumps(study.critical_dose),
        "knock_on": json.dumps(study.knock_on),
        "seed": study.seed,
        "monte_carlo_trials": monte_carlo_trials,
        "temsim_version": temsim.__version__,
        "method": "likelihood-ratio test on raw Poisson counts, Gaussian approximation J = (z_{1-a}+z_{power})^2",
    })
    result.dataset = ds
    return result
