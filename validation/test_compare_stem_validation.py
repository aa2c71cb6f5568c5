"""temsim.compare on STEM: the probe defocus from a defocus series, iDPC from noisy segments,
and the planner's decision closed on HAADF acquisitions.

The synthetic acquisitions are made by the ordinary simulation pipeline (``temsim.scan`` at the
true probe defocus; segment counts turned into iDPC by the planner's own display function;
the planner's expected counts), noised with Poisson statistics, and fitted with models that
were simulated separately (a defocus series of scans; the ``IntegratedDPC`` detector; the
study's mode through :func:`temsim.comparison.simulate_for_comparison`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from _record import record  # noqa: E402

import temsim
from temsim.comparison import ImageModel, compare
from temsim.detectors import AnnularDetector, IntegratedDPC, SegmentedDetector
from temsim.errors import AccuracyWarning
from temsim.positions import GridScan
from temsim.solvers.stem import scan
from temsim.structure import srtio3

ENERGY = 200e3
A = 3.905  # SrTiO3 lattice parameter, Å
ALPHA = 20.0  # mrad
CS = 1e5  # C30 = 10 µm (Å): over- and underfocus differ
TRIALS = 20
Z95 = 1.96


@pytest.fixture(scope="module")
def potential():
    """SrTiO3 [001], one 3.905 Å cell, 4 cells thick: the probe wraps around the periodic cell on purpose."""
    return temsim.Potential(srtio3() * (1, 1, 4), sampling=0.05, slice_thickness=A / 2)


def _scan(potential, detectors, defocus: float):
    probe = temsim.Probe(
        energy=ENERGY, semiangle_cutoff=ALPHA, aberrations=temsim.Aberrations.from_defocus(defocus, Cs=CS)
    )
    cell = tuple(float(e) for e in potential.grid.extent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AccuracyWarning)
        return scan(probe, potential, detectors, GridScan(start=(0.0, 0.0), end=cell, gpts=(10, 10)), progress=False)


def _frame(cell: np.ndarray, roll, tiles: int = 3) -> np.ndarray:
    """The periodic cell image tiled over a frame and displaced by whole probe steps (scan dims first)."""
    reps = (tiles, tiles) + (1,) * (cell.ndim - 2)
    return np.roll(np.tile(cell, reps), roll, axis=(0, 1))


def _wrapped(error: float, period: float) -> float:
    return (error + period / 2) % period - period / 2


def _worst_and_coverage(rows: list) -> tuple[dict, dict]:
    """Largest error of each parameter over the trials, and how often ±1.96 σ covered the truth."""
    names = rows[0]["errors"]
    worst = {k: max(abs(r["errors"][k]) for r in rows) for k in names}
    covered = {k: sum(abs(r["errors"][k]) <= Z95 * r["sigmas"][k] for r in rows) / len(rows) for k in names}
    return worst, covered


def test_stem_probe_defocus_recovery_and_coverage(potential):
    """Probe defocus from a series of 7 scans (−60 … +60 Å, 20 Å apart: a third of the depth of
    field λ/α² ≈ 63 Å), truth at −13 Å (between members, scanned on its own); HAADF 50–120 mrad,
    10⁵ e/Å², a 3 × 3-cell frame displaced by a random whole number of probe steps. (With members
    30 Å apart the spline's error, −0.26 Å, is as large as the statistical one and the coverage
    drops to 85 %: the docs ask for a step of at most a third of the depth of field.)"""
    detector = {"HAADF": AnnularDetector(50, 120)}
    defoci = np.arange(-60.0, 61.0, 20.0)
    members = [_scan(potential, detector, d)["HAADF"] for d in defoci]
    series = xr.concat(members, dim="defocus").assign_coords(defocus=("defocus", defoci, {"units": "Å"}))
    model = ImageModel(series)  # one model for every trial (its splines are built once)
    truth_defocus, dose = -13.0, 1e5
    truth = _scan(potential, detector, truth_defocus)["HAADF"]
    step = float(truth.scan_x[1] - truth.scan_x[0])
    rng = np.random.default_rng(2026)
    rows = []
    for _ in range(TRIALS):
        roll = tuple(int(r) for r in rng.integers(0, 10, size=2))
        counts = rng.poisson(_frame(truth.values, roll) * dose * step**2).astype(float)
        image = temsim.load_image(counts.T, pixel_size=step)
        result = compare(image, model, fit=("defocus", "shift", "scale", "dose"))
        p, s = result.parameters, result.uncertainties
        errors = {
            "defocus": p["defocus"] - truth_defocus,
            "shift_x": _wrapped(p["shift_x"] - roll[0] * step, A),
            "shift_y": _wrapped(p["shift_y"] - roll[1] * step, A),
            "dose": p["dose"] - dose,
        }
        rows.append({"converged": result.converged, "errors": errors, "sigmas": {k: s[k] for k in errors}})
    worst, covered = _worst_and_coverage(rows)
    record(
        "compare_validation",
        "stem_defocus_recovery",
        {
            "trials": TRIALS,
            "series_A": defoci.tolist(),
            "truth_defocus_A": truth_defocus,
            "dose_e_per_A2": dose,
            "worst_defocus_error_A": worst["defocus"],
            "median_defocus_sigma_A": float(np.median([r["sigmas"]["defocus"] for r in rows])),
            "mean_defocus_error_A": float(np.mean([r["errors"]["defocus"] for r in rows])),
            "worst_shift_error_px": max(worst["shift_x"], worst["shift_y"]) / step,
            "worst_dose_error_fraction": worst["dose"] / dose,
            "coverage_95": covered,
            "converged": sum(r["converged"] for r in rows),
        },
    )
    assert all(r["converged"] for r in rows)
    assert worst["defocus"] <= 20.0  # 2 nm
    assert max(worst["shift_x"], worst["shift_y"]) <= 0.1 * step
    assert worst["dose"] <= 0.1 * dose
    for name, fraction in covered.items():
        assert fraction >= 0.9, f"{name}: the 95 % intervals cover the truth in only {fraction:.0%} of {TRIALS} trials"


def test_idpc_from_noisy_segments_recovery_and_coverage(potential):
    """iDPC (four quadrants 4–20 mrad, in-focus probe), 10⁴ e/Å²: Poisson counts on each segment of
    a 3 × 3-cell frame, turned into iDPC by the planner's display (ε = 0.05 Å⁻²), fitted with the
    IntegratedDPC detector's signal of one cell (integrated without regularization, re-integrated
    by the fit for the experiment's ε). The whitened noise is the DPC vector's shot noise."""
    from temsim.modes import display_idpc

    out = _scan(potential, {"seg": SegmentedDetector(4, 20), "iDPC": IntegratedDPC(4, 20)}, 0.0)
    segments = out["seg"].isel(ring=0).transpose("scan_x", "scan_y", "segment").values
    model = ImageModel(out["iDPC"])
    step = model.sampling[0]
    dose = 1e4
    expected = _frame(segments, (0, 0)) * dose * step**2  # counts per segment and probe position
    azimuth = (np.arange(4) + 0.5) * np.pi / 2
    shot = float(np.mean((expected * np.cos(azimuth) ** 2).sum(-1)))  # variance of one DPC component, counts²
    rng = np.random.default_rng(77)
    rows = []
    for _ in range(TRIALS):
        roll = tuple(int(r) for r in rng.integers(0, 10, size=2))
        counts = rng.poisson(np.roll(expected, roll, axis=(0, 1))).astype(float)
        coords = np.arange(counts.shape[0]) * step
        idpc = display_idpc(counts, {"scan_x": coords, "scan_y": coords, "rotation": 0.0})
        image = temsim.load_image(idpc.T, pixel_size=step)
        result = compare(image, model, fit=("shift", "scale"), regularization=0.05)
        p, s = result.parameters, result.uncertainties
        errors = {
            "shift_x": _wrapped(p["shift_x"] - roll[0] * step, A),
            "shift_y": _wrapped(p["shift_y"] - roll[1] * step, A),
            "scale": p["scale"] - dose * step**2,
        }
        rows.append(
            {
                "converged": result.converged,
                "errors": errors,
                "sigmas": {k: s[k] for k in errors},
                "noise_ratio": p["noise_sigma"] ** 2 / shot,  # whitened iDPC: counts of one DPC component
                "chi2_per_dof": result.metrics["chi2_per_dof"],
            }
        )
    worst, covered = _worst_and_coverage(rows)
    ratios = [r["noise_ratio"] for r in rows]
    record(
        "compare_validation",
        "idpc_from_segments",
        {
            "trials": TRIALS,
            "dose_e_per_A2": dose,
            "worst_shift_error_px": max(worst["shift_x"], worst["shift_y"]) / step,
            "median_shift_sigma_px": float(np.median([r["sigmas"]["shift_x"] for r in rows])) / step,
            "worst_scale_error_fraction": worst["scale"] / (dose * step**2),
            "coverage_95": covered,
            "whitened_noise_variance_over_shot_noise": [min(ratios), max(ratios)],
            "chi2_per_dof": [min(r["chi2_per_dof"] for r in rows), max(r["chi2_per_dof"] for r in rows)],
            "converged": sum(r["converged"] for r in rows),
        },
    )
    assert all(r["converged"] for r in rows)
    assert max(worst["shift_x"], worst["shift_y"]) <= 0.1 * step
    assert worst["scale"] <= 0.05 * dose * step**2
    assert 0.9 < min(ratios) and max(ratios) < 1.1  # the fitted noise is the segments' shot noise
    for name, fraction in covered.items():
        assert fraction >= 0.9, f"{name}: the 95 % intervals cover the truth in only {fraction:.0%} of {TRIALS} trials"


def test_haadf_posterior_at_the_planned_dose_reaches_the_planned_error_rates():
    """graphene-si's HAADF mode (80 kV, 60–200 mrad, ideal detector, no phonons) on a 4 × 2 cell
    scanned whole: at the planner's required dose, deciding "Si present" when P(H1 | image) > 0.5 —
    scale and dose fitted under each hypothesis, the Poisson likelihood — errs as often as the plan
    says (false alarm ≈ 5 %, power ≈ 95 %) in 200 seeded acquisitions per hypothesis. The models are
    scanned by simulate_for_comparison, the acquisitions drawn from the planner's expected counts."""
    import dataclasses

    from temsim.comparison import feature_posterior, simulate_for_comparison
    from temsim.planning import evaluate, monte_carlo_check, simulate
    from temsim.structure import graphene, tile
    from temsim.study import Mode, example_study

    study = dataclasses.replace(
        example_study("graphene-si"),
        atoms=tile(graphene(vacuum=2.0), (4, 2, 1)),
        modes=(Mode("HAADF", 60, 200, camera="ideal"),),
        energies=(80e3,),
        phonons=None,
        sampling=0.06,
        scan_step=0.5,
        window=40.0,  # wider than the cell: the planner scans the whole (periodic) cell too
        source_size=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AccuracyWarning)  # a 9.8 × 8.5 Å cell: the probe wraps on purpose
        rates = simulate(study)
        models = tuple(simulate_for_comparison(study, hypothesis=h)[0] for h in ("H0", "H1"))
    label = study.modes[0].label
    limits = evaluate(rates, study.target)
    dose = float(limits["required_dose"].sel(mode=label, energy=80e3))
    planner = monte_carlo_check(rates, limits, study.target, seed=0)
    expected = rates[label].sel(energy=80e3).isel(configuration=0)
    np.testing.assert_allclose(  # the same signal by both routes: counts per unit dose = fraction × step area
        expected.sel(hypothesis="H1").values, models[1].values[-1] * float(expected.attrs["channel_area"]), rtol=1e-6
    )
    trials = 200
    rng = np.random.default_rng(141)
    present, doses = {}, []  # doses: relative errors of the dose fitted under H1 to H1 acquisitions
    coords = {"scan_x": expected.scan_x.values, "scan_y": expected.scan_y.values}
    for hypothesis in ("H0", "H1"):
        decisions = []
        for _ in range(trials):
            counts = rng.poisson(expected.sel(hypothesis=hypothesis).values * dose).astype(float)
            image = xr.DataArray(counts, dims=("scan_x", "scan_y"), coords=coords)
            test = feature_posterior(image, study, models=models, likelihood="poisson", gain=1.0, planned_dose=dose)
            decisions.append(test.present)
            if hypothesis == "H1":
                doses.append(test.dose / dose - 1)
        present[hypothesis] = float(np.mean(decisions))
    # the dose is read from the total count: its relative error is 1/√N (N ≈ 100 counts here)
    poisson_limit = 1 / np.sqrt(float(expected.sel(hypothesis="H1").sum()) * dose)
    false_alarm, power = present["H0"], present["H1"]
    se = {name: np.sqrt(p * (1 - p) / trials) for name, p in (("false_alarm", 0.05), ("power", 0.95))}
    record(
        "compare_validation",
        "planner_loop_graphene_si_haadf",
        {
            "planned_dose_e_per_A2": dose,
            "trials_per_hypothesis": trials,
            "probe_positions": int(expected.scan_x.size * expected.scan_y.size),
            "false_alarm": false_alarm,
            "power": power,
            "planner_mc_false_alarm": float(planner["mc_false_alarm"].sel(mode=label, energy=80e3)),
            "planner_mc_power": float(planner["mc_power"].sel(mode=label, energy=80e3)),
            "fitted_dose_relative_error_rms": float(np.sqrt(np.mean(np.square(doses)))),
            "fitted_dose_relative_error_mean": float(np.mean(doses)),
            "dose_poisson_limit_relative": poisson_limit,
        },
    )
    assert false_alarm <= 0.05 + 3 * se["false_alarm"]
    assert power >= 0.95 - 3 * se["power"]
    # the acquired dose is read back from the counts, as precisely as they allow, without bias
    assert float(np.sqrt(np.mean(np.square(doses)))) < 1.2 * poisson_limit
    assert abs(float(np.mean(doses))) < 3 * poisson_limit / np.sqrt(trials)
