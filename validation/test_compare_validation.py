"""temsim.compare recovers known truth from synthetic experiments, and tells structures apart.

The synthetic experiments are made by the ordinary simulation pipeline, not by the fit's own
forward model: ``temsim.hrtem_image`` at the true defocus and thickness (one multislice
thickness series), ``scipy.ndimage.fourier_gaussian`` for the blur, ``scipy.ndimage.fourier_shift``
for a sub-pixel shift, ``temsim.apply_noise`` (ideal counting camera) for the dose, and then
written to TIFF (tifffile, ImageJ calibration in nm), MRC (mrcfile, voxel size in Å) or EMD
(rosettasciio's writer, axes in nm) and loaded back with ``temsim.load_image``.

Thresholds (issue #14): defocus within 2 nm, thickness within one slice, shift within 0.1 px,
dose within 10 %; the 95 % intervals (±1.96 σ) cover the truth in ≥ 90 % of 20 seeded trials.
"""

from __future__ import annotations

import numpy as np
import pytest
from _record import record  # noqa: E402
from scipy import ndimage

import temsim
from temsim.comparison import chi2_difference, compare
from temsim.structure import graphene, srtio3, substitute
from temsim.structure import vacancy as vacancy_of

tifffile = pytest.importorskip("tifffile")
mrcfile = pytest.importorskip("mrcfile")
emd = pytest.importorskip("rsciio.emd")

ENERGY = 200e3
A = 3.905  # SrTiO3 lattice parameter, Å: the image's period
LENS = temsim.Aberrations.from_defocus(0.0, Cs=-15e4)  # C30 = −15 µm
APERTURE = 25.0  # mrad
FOCAL_SPREAD = 20.0  # Å
TRUTH = {"defocus": -80.0, "index": 11, "blur": 0.3, "dose": 2000.0}
TRIALS = 20
Z95 = 1.96


@pytest.fixture(scope="module")
def series():
    """SrTiO3 [001], 2 × 2 cells, 20 slices of a/2: one multislice thickness series."""
    potential = temsim.Potential(srtio3() * (2, 2, 10), sampling=0.1, slice_thickness=A / 2)
    return temsim.multislice(temsim.PlaneWave(energy=ENERGY), potential, save_every=1)


def _synthetic(series, shift_px, seed):
    image = temsim.hrtem_image(
        series.isel(thickness=TRUTH["index"]),
        LENS.with_defocus(TRUTH["defocus"]),
        semiangle_cutoff=APERTURE,
        focal_spread=FOCAL_SPREAD,
    )
    pixel = float(image.x[1] - image.x[0])
    spectrum = ndimage.fourier_gaussian(np.fft.fft2(image.values.astype(float)), TRUTH["blur"] / pixel)
    values = np.real(np.fft.ifft2(ndimage.fourier_shift(spectrum, shift_px)))
    noisy = temsim.apply_noise(image.copy(data=values), TRUTH["dose"], camera="ideal", seed=seed)
    return np.asarray(noisy.values, dtype=np.float32), pixel


def _write(path, values, pixel):
    rows_y = values.T  # files store rows along y
    if path.suffix == ".emd":  # rosettasciio's EMD (NCEM) writer, calibration in nm
        axes = [
            {"name": name, "size": n, "scale": pixel / 10, "offset": 0.0, "units": "nm", "navigate": False}
            for name, n in zip(("y", "x"), rows_y.shape)
        ]
        metadata = {"General": {"title": "synthetic"}, "Signal": {"signal_type": ""}}
        emd.file_writer(str(path), {"data": rows_y, "axes": axes, "metadata": metadata, "original_metadata": {}})
    elif path.suffix == ".tif":
        per_nm = 10.0 / pixel
        tifffile.imwrite(path, rows_y, imagej=True, resolution=(per_nm, per_nm), metadata={"unit": "nm"})
    else:
        with mrcfile.new(path) as mrc:
            mrc.set_data(rows_y)
            mrc.voxel_size = (pixel, pixel, pixel)


def _wrapped(error: float, period: float) -> float:
    return (error + period / 2) % period - period / 2


def test_recovery_and_coverage(series, tmp_path):
    rng = np.random.default_rng(2024)
    thicknesses = series.thickness.values
    step = float(np.diff(thicknesses)[0])
    rows = []
    for trial in range(TRIALS):
        shift_px = tuple(rng.uniform(-3, 3, size=2))
        values, pixel = _synthetic(series, shift_px, seed=trial)
        path = tmp_path / f"trial{trial}.{('tif', 'mrc', 'emd')[trial % 3]}"
        _write(path, values, pixel)
        result = compare(
            path,
            series,
            aberrations=LENS.with_defocus(-50.0),  # start 3 nm off the truth
            semiangle_cutoff=APERTURE,
            focal_spread=FOCAL_SPREAD,
        )
        p, s = result.parameters, result.uncertainties
        errors = {
            "defocus": p["defocus"] - TRUTH["defocus"],
            "thickness": p["thickness"] - thicknesses[TRUTH["index"]],
            "shift_x": _wrapped(p["shift_x"] - shift_px[0] * pixel, A),
            "shift_y": _wrapped(p["shift_y"] - shift_px[1] * pixel, A),
            "dose": p["dose"] - TRUTH["dose"],
        }
        rows.append({"converged": result.converged, "errors": errors, "sigmas": {k: s[k] for k in errors}})
    worst = {k: max(abs(r["errors"][k]) for r in rows) for k in rows[0]["errors"]}
    covered = {k: sum(abs(r["errors"][k]) <= Z95 * r["sigmas"][k] for r in rows) / TRIALS for k in worst}
    record(
        "compare_validation",
        "hrtem_recovery",
        {
            "trials": TRIALS,
            "worst_defocus_error_A": worst["defocus"],
            "worst_thickness_error_A": worst["thickness"],
            "slice_thickness_A": step,
            "worst_shift_error_px": max(worst["shift_x"], worst["shift_y"]) / pixel,
            "worst_dose_error_fraction": worst["dose"] / TRUTH["dose"],
            "coverage_95": covered,
            "median_sigma": {k: float(np.median([r["sigmas"][k] for r in rows])) for k in worst},
            "converged": sum(r["converged"] for r in rows),
        },
    )
    assert all(r["converged"] for r in rows)
    assert worst["defocus"] <= 20.0  # 2 nm
    assert worst["thickness"] <= step + 1e-6  # one slice
    assert max(worst["shift_x"], worst["shift_y"]) <= 0.1 * pixel
    assert worst["dose"] <= 0.1 * TRUTH["dose"]
    for name, fraction in covered.items():
        assert fraction >= 0.9, f"{name}: the 95 % intervals cover the truth in only {fraction:.0%} of {TRIALS} trials"


def test_wrong_dopant_site_fits_worse():
    """Graphene with a vacancy and a Si next to it (80 kV, 10⁴ e/Å²): Si far from the vacancy fits worse.

    A lone dopant on another site is only a translation of the right structure (the fitted
    shift would absorb it); beside a vacancy the site is a real structural difference.
    """
    sheet = graphene(vacuum=2.0) * (4, 2, 1)
    centre = np.diag(np.asarray(sheet.cell))[:2] / 2
    vacancy = int(np.argmin(np.linalg.norm(sheet.positions[:, :2] - centre, axis=1)))
    distance = np.linalg.norm(sheet.positions[:, :2] - sheet.positions[vacancy, :2], axis=1)
    distance[vacancy] = np.inf
    sites = {"right": int(np.argmin(distance)), "wrong": int(np.argmax(np.where(np.isfinite(distance), distance, -1)))}
    lens = temsim.Aberrations.from_defocus(-60.0, Cs=-10e4)
    waves = {}
    for name, site in sites.items():
        atoms = vacancy_of(substitute(sheet, site, "Si"), vacancy)
        potential = temsim.Potential(atoms, sampling=0.08, slice_thickness=2.0)
        waves[name] = temsim.multislice(temsim.PlaneWave(energy=80e3), potential)
    image = temsim.hrtem_image(waves["right"], lens, semiangle_cutoff=30.0)
    dose = 10000.0
    counts = temsim.apply_noise(image, dose, camera="ideal", seed=7)
    options = {"aberrations": lens, "semiangle_cutoff": 30.0, "gain": 1.0, "fit": ("defocus", "shift", "scale", "dose")}
    fits = {name: compare(counts, waves[name], **options) for name in waves}
    delta, sigma = chi2_difference(counts.values, fits["right"], fits["wrong"])
    record(
        "compare_validation",
        "wrong_dopant_site",
        {
            "dose_e_per_A2": dose,
            "chi2_right": fits["right"].metrics["chi2"],
            "chi2_wrong": fits["wrong"].metrics["chi2"],
            "dof": fits["right"].metrics["dof"],
            "delta_chi2": delta,
            "delta_chi2_sigma": sigma,
        },
    )
    assert fits["right"].converged
    assert delta > 3 * sigma > 0, f"Δχ² = {delta:.1f} is not larger than 3 × its standard error {sigma:.1f}"


def test_posterior_at_the_planned_dose_reaches_the_planned_error_rates():
    """graphene-si (HRTEM at 80 kV, ideal counting camera, no phonons): at the planner's required
    dose, deciding "Si present" when P(H1 | image) > 0.5 — the scale and dose fitted under each
    hypothesis, the Poisson likelihood — errs as often as the plan says (false alarm ≈ 5 %,
    power ≈ 95 %) in 200 seeded acquisitions per hypothesis."""
    import dataclasses

    import xarray as xr

    from temsim.comparison import feature_posterior, simulate_for_comparison
    from temsim.planning import evaluate, monte_carlo_check, simulate
    from temsim.study import Mode, example_study

    study = dataclasses.replace(
        example_study("graphene-si"),
        modes=(Mode("HRTEM", defocus=-60.0, camera="ideal"),),
        energies=(80e3,),
        phonons=None,
        sampling=0.1,
    )
    rates = simulate(study)
    label = study.modes[0].label
    limits = evaluate(rates, study.target)
    dose = float(limits["required_dose"].sel(mode=label, energy=80e3))
    planner = monte_carlo_check(rates, limits, study.target, seed=0)
    models = tuple(simulate_for_comparison(study, hypothesis=h)[0] for h in ("H0", "H1"))
    expected = rates[label].sel(energy=80e3).isel(configuration=0)
    trials = 200
    rng = np.random.default_rng(14)
    present = {}
    doses = []
    for hypothesis in ("H0", "H1"):
        decisions = []
        for _ in range(trials):
            counts = rng.poisson(expected.sel(hypothesis=hypothesis).values * dose).astype(float)
            image = xr.DataArray(counts, dims=("x", "y"), coords={"x": expected.x.values, "y": expected.y.values})
            test = feature_posterior(image, study, models=models, likelihood="poisson", gain=1.0, planned_dose=dose)
            decisions.append(test.present)
            doses.append(test.dose / dose - 1)
        present[hypothesis] = float(np.mean(decisions))
    false_alarm, power = present["H0"], present["H1"]
    se = {name: np.sqrt(p * (1 - p) / trials) for name, p in (("false_alarm", 0.05), ("power", 0.95))}
    record(
        "compare_validation",
        "planner_loop_graphene_si_hrtem",
        {
            "planned_dose_e_per_A2": dose,
            "trials_per_hypothesis": trials,
            "false_alarm": false_alarm,
            "power": power,
            "planner_mc_false_alarm": float(planner["mc_false_alarm"].sel(mode=label, energy=80e3)),
            "planner_mc_power": float(planner["mc_power"].sel(mode=label, energy=80e3)),
            "fitted_dose_relative_error_rms": float(np.sqrt(np.mean(np.square(doses)))),
        },
    )
    assert false_alarm <= 0.05 + 3 * se["false_alarm"]
    assert power >= 0.95 - 3 * se["power"]
    assert float(np.sqrt(np.mean(np.square(doses)))) < 0.05  # the acquired dose is read back from the noise
