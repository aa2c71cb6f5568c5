"""temsim.compare and its pieces: resampling/tiling, registration, normalization, metrics, fit, report."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

import temsim
from temsim.comparison import ImageModel, chi2_difference, compare, feature_probability
from temsim.comparison.metrics import chi2_per_dof, ncc, r_factor, ssim
from temsim.comparison.prepare import PeriodicImage, crop, fourier_resample, normalize, phase_correlation
from temsim.errors import InputError
from temsim.structure import srtio3

ENERGY = 200e3
LENS = temsim.Aberrations.from_defocus(0.0, Cs=-15e4)
APERTURE = 25.0


def _cosines(x, y, extent):
    """A band-limited periodic test image (Å)."""
    return 1 + 0.3 * np.cos(2 * np.pi * 2 * x / extent[0]) * np.cos(2 * np.pi * 3 * y / extent[1] + 0.4)


# ----------------------------------------------------------------------------- preparation
def test_periodic_image_resamples_tiles_and_shifts():
    extent = (5.0, 4.0)
    grid = np.arange(50) * 0.1, np.arange(40) * 0.1
    periodic = PeriodicImage(_cosines(grid[0][:, None], grid[1][None, :], extent), extent)
    u = np.arange(73) * 0.17  # another pixel size, 2.5 cells wide
    v = np.arange(61) * 0.13
    shift = (0.37, -1.21)
    expected = _cosines(u[:, None] - shift[0], v[None, :] - shift[1], extent)
    np.testing.assert_allclose(periodic.evaluate(u, v, shift), expected, atol=1e-12)


def test_fourier_resample_keeps_a_band_limited_image():
    extent = (5.0, 4.0)
    x, y = np.arange(50) * 0.1, np.arange(40) * 0.1
    da = xr.DataArray(_cosines(x[:, None], y[None, :], extent), dims=("x", "y"), coords={"x": x, "y": y})
    out = fourier_resample(da, 0.25)
    assert out.shape == (20, 16)
    expected = _cosines(out.x.values[:, None], out.y.values[None, :], extent)
    np.testing.assert_allclose(out.values, expected, atol=1e-12)


@pytest.mark.parametrize("whiten", [True, False])
def test_phase_correlation_is_subpixel(rng, whiten):
    reference = ndimage.gaussian_filter(rng.random((64, 64)), 2.0, mode="wrap")
    truth = (2.37, -4.61)
    moving = np.real(np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(reference), truth)))
    found = phase_correlation(reference, moving, upsample=50, whiten=whiten)
    np.testing.assert_allclose(found, truth, atol=0.02)


def test_normalize_hrtem_and_stem():
    da = xr.DataArray(np.array([[1.0, 3.0], [5.0, 7.0]]), dims=("x", "y"))
    np.testing.assert_allclose(normalize(da).values.mean(), 1.0)
    stem = normalize(da, "stem", black_level=1.0, vacuum_level=9.0)
    np.testing.assert_allclose(stem.values, [[0.0, 0.25], [0.5, 0.75]])
    with pytest.raises(InputError, match="black_level and vacuum_level"):
        normalize(da, "stem")


def test_crop_and_empty_overlap():
    image = temsim.load_image(np.zeros((30, 40)), pixel_size=0.5)
    cropped = crop(image, x=(2.0, 10.0))
    assert cropped.sizes["x"] == 16 and float(cropped.x[0]) == 2.0
    with pytest.raises(InputError, match="keeps 0 pixels"):
        crop(image, y=(100.0, 200.0))


# ----------------------------------------------------------------------------- metrics
def test_metrics(rng, monkeypatch):
    a = rng.random((16, 16))
    assert ncc(a, 2 * a + 1) == pytest.approx(1.0)
    assert ncc(a, -a) == pytest.approx(-1.0)
    assert r_factor(a, a) == 0.0 and r_factor(a, 0 * a) == pytest.approx(1.0)
    chi2, dof = chi2_per_dof(a, a + 0.1, np.full_like(a, 0.01), 3)
    assert chi2 == pytest.approx(256.0) and dof == 253
    pytest.importorskip("skimage")
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.random((16, 16))) < 0.5
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)
    assert ssim(a, a) is None


# ----------------------------------------------------------------------------- fits
@pytest.fixture(scope="module")
def series():
    """SrTiO3 [001], 2 × 2 cells, 8 slices of a/2, coarse sampling: a fast thickness series."""
    potential = temsim.Potential(srtio3() * (2, 2, 4), sampling=0.15, slice_thickness=3.905 / 2)
    return temsim.multislice(temsim.PlaneWave(energy=ENERGY), potential, save_every=1)


def _experiment(series, index=5, defocus=-80.0, blur=0.3, shift=(1.4, -2.3), dose=5000.0, seed=0):
    image = temsim.hrtem_image(series.isel(thickness=index), LENS.with_defocus(defocus), semiangle_cutoff=APERTURE)
    pixel = float(image.x[1] - image.x[0])
    spectrum = ndimage.fourier_gaussian(np.fft.fft2(image.values.astype(float)), blur / pixel)
    values = np.real(np.fft.ifft2(ndimage.fourier_shift(spectrum, shift)))
    return temsim.apply_noise(image.copy(data=values), dose, camera="ideal", seed=seed)


def _options(**extra):
    return {"aberrations": LENS.with_defocus(-50.0), "semiangle_cutoff": APERTURE, **extra}


def test_compare_recovers_a_synthetic_experiment(series):
    counts = _experiment(series)
    result = compare(counts, series, **_options())
    p = result.parameters
    assert result.converged, result.message
    assert abs(p["defocus"] + 80.0) < 10.0
    assert p["thickness"] == pytest.approx(float(series.thickness[5]))
    assert abs(p["dose"] / 5000.0 - 1) < 0.1
    assert abs(p["blur"] - 0.3) < 0.05
    assert set(result.uncertainties) >= {"defocus", "thickness", "blur", "shift_x", "shift_y", "scale", "dose"}
    assert 0.8 < result.metrics["chi2_per_dof"] < 1.2 and result.metrics["ncc"] > 0.5


def test_poisson_likelihood_with_known_gain(series):
    counts = _experiment(series, seed=3)
    result = compare(counts, series, likelihood="poisson", **_options())
    assert result.converged
    assert result.parameters["gain"] == 1.0 and result.uncertainties["gain"] == 0.0
    assert abs(result.parameters["dose"] / 5000.0 - 1) < 0.05
    with pytest.raises(InputError, match="black level fixed"):
        compare(counts, series, fit=("defocus", "offset"), likelihood="poisson", **_options())


def test_a_fit_on_a_bound_is_not_converged(series):
    counts = _experiment(series)
    fit = ("defocus", "shift", "scale")
    result = compare(counts, series, fit=fit, bounds={"defocus": (-72.0, -60.0)}, initial={"blur": 0.3}, **_options())
    assert not result.converged
    assert "defocus" in result.at_bound
    assert result.message.startswith("NOT converged") and "defocus" in result.message
    assert "at bound" in result.summary()


def test_report_is_written_once_atomically(series, tmp_path):
    result = compare(_experiment(series), series, fit=("defocus", "shift", "scale", "dose"), **_options())
    paths = result.report(tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["compare.md", "compare.nc", "compare.png"]
    with xr.open_dataset(paths["netcdf"], engine="h5netcdf") as ds:
        assert ds.attrs["fit_defocus"] == pytest.approx(result.parameters["defocus"])
        assert ds.attrs["fit_dose_units"] == "e/Å²"
        np.testing.assert_allclose(ds["simulation"].values, result.simulation.values)
    before = {name: (tmp_path / "report" / name).read_bytes() for name in ("compare.md", "compare.nc")}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        result.report(tmp_path / "report")
    assert before == {name: (tmp_path / "report" / name).read_bytes() for name in before}
    result.report(tmp_path / "report", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["compare.md", "compare.nc", "compare.png"]


def test_unit_error_and_unfittable_parameters(series):
    counts = _experiment(series)
    wrong = temsim.load_image(counts.values.T, pixel_size=20 * float(counts.x[1] - counts.x[0]))
    with pytest.raises(InputError, match="likely a unit error"):
        compare(wrong, series, **_options())
    image = temsim.hrtem_image(series, LENS, semiangle_cutoff=APERTURE)  # fixed optics: no defocus
    with pytest.raises(InputError, match="cannot fit 'defocus'"):
        compare(counts, image, fit=("defocus", "thickness"))
    with pytest.raises(InputError, match="cannot fit 'tilt'"):
        compare(counts, series, fit=("tilt",), **_options())


def test_user_file_is_not_modified(series, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    counts = _experiment(series)
    path = tmp_path / "experiment.tif"
    pixel_nm = float(counts.x[1] - counts.x[0]) / 10
    tifffile.imwrite(path, counts.values.T, imagej=True, resolution=(1 / pixel_nm,) * 2, metadata={"unit": "nm"})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    result = compare(path, series, fit=("defocus", "shift", "scale"), **_options())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert result.attrs["experiment_sha256"] == digest


def _stem_series(extent=6.0, n=30):
    """A STEM-like thickness series: Gaussian columns whose height grows with thickness."""
    x = np.arange(n) * extent / n
    columns = [(1.5, 1.5, 1.0), (4.5, 4.5, 0.5), (1.5, 4.5, 0.3)]
    thickness = np.arange(1, 7) * 2.0
    values = np.zeros((len(thickness), n, n))
    for cx, cy, weight in columns:
        for dx in (-extent, 0, extent):
            for dy in (-extent, 0, extent):
                r2 = (x[:, None] - cx - dx) ** 2 + (x[None, :] - cy - dy) ** 2
                values += weight * (thickness[:, None, None] / 10) * np.exp(-r2 / (2 * 0.35**2))[None]
    values = 0.01 + 0.05 * values
    coords = {"thickness": thickness, "scan_x": x, "scan_y": x}
    return xr.DataArray(values, dims=("thickness", "scan_x", "scan_y"), coords=coords, attrs={"signal": "stem"})


def test_stem_image_with_black_and_vacuum_levels(rng):
    series = _stem_series()
    step = float(series.scan_x[1] - series.scan_x[0])
    truth = series.isel(thickness=3).values
    spectrum = ndimage.fourier_gaussian(np.fft.fft2(truth), 0.25 / step)
    truth = np.real(np.fft.ifft2(ndimage.fourier_shift(spectrum, (3.3, -2.6))))
    dose = 2e5  # e/Å²: electrons per probe position = dose · step²
    black = 100.0
    counts = black + rng.poisson(truth * dose * step**2)
    image = temsim.load_image(counts.T, pixel_size=step)
    vacuum = black + dose * step**2
    result = compare(image, series, fit=("thickness", "blur", "shift", "dose"), black_level=black, vacuum_level=vacuum)
    assert result.converged, result.message
    assert result.parameters["thickness"] == 8.0
    assert abs(result.parameters["blur"] - 0.25) < 0.05
    assert abs(result.parameters["dose"] / dose - 1) < 0.1
    cells = series.sizes["scan_x"]  # the shift is found modulo the cell (pixels)
    shift = [
        (result.parameters[f"shift_{a}"] / step - t + cells / 2) % cells - cells / 2
        for a, t in (("x", 3.3), ("y", -2.6))
    ]
    np.testing.assert_allclose(shift, 0.0, atol=0.1)
    assert isinstance(ImageModel(series).image(0), PeriodicImage)


def test_chi2_difference_and_posterior(series):
    counts = _experiment(series, index=5)
    fit = ("defocus", "blur", "shift", "scale")
    right = compare(counts, series, fit=fit, initial={"thickness": 11.7}, **_options())
    wrong = compare(counts, series, fit=fit, initial={"thickness": 3.9}, **_options())
    assert right.parameters["thickness"] == pytest.approx(float(series.thickness[5]))
    delta, sigma = chi2_difference(counts, right, wrong)
    assert delta > 3 * sigma > 0
    assert feature_probability(counts, wrong, right) > 0.999
    assert feature_probability(counts, right, wrong) < 0.001
    assert feature_probability(counts, right, right, prior=0.3) == pytest.approx(0.3)


def test_spherical_aberration_is_fitted(series):
    image = temsim.hrtem_image(
        series.isel(thickness=5), temsim.Aberrations.from_defocus(-80.0, Cs=-12e4), semiangle_cutoff=APERTURE
    )
    counts = temsim.apply_noise(image, 5000.0, camera="ideal", seed=1)
    fit = ("defocus", "Cs", "shift", "scale")
    result = compare(counts, series, fit=fit, initial={"thickness": 11.7}, **_options())  # starts at Cs = −15 µm
    assert result.converged
    assert abs(result.parameters["Cs"] + 12e4) < 3 * result.uncertainties["Cs"] < 3e4
    assert abs(result.parameters["defocus"] + 80.0) < 5.0


def test_affine_evaluation_matches_a_rotated_analytic_image():
    extent = (5.0, 4.0)
    grid = np.arange(50) * 0.1, np.arange(40) * 0.1
    periodic = PeriodicImage(_cosines(grid[0][:, None], grid[1][None, :], extent), extent)
    u, v = np.arange(31) * 0.21, np.arange(27) * 0.19
    np.testing.assert_allclose(
        periodic.evaluate_affine(u, v, (0.3, 0.1)), periodic.evaluate(u, v, (0.3, 0.1)), atol=1e-8
    )
    theta, m, shift = np.deg2rad(2.5), 1.02, (0.3, -0.2)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    cu, cv = uu.mean(), vv.mean()
    qx = m * (np.cos(theta) * (uu - cu) - np.sin(theta) * (vv - cv)) + cu - shift[0]
    qy = m * (np.sin(theta) * (uu - cu) + np.cos(theta) * (vv - cv)) + cv - shift[1]
    found = periodic.evaluate_affine(u, v, shift, rotation_deg=2.5, magnification=m)
    np.testing.assert_allclose(found, _cosines(qx, qy, extent), atol=1e-8)


def _columns(qx, qy, thickness_factor, extent=6.0):
    """The STEM-like image of _stem_series at arbitrary positions (Å), summed over periodic images."""
    out = np.zeros_like(qx)
    for cx, cy, weight in [(1.5, 1.5, 1.0), (4.5, 4.5, 0.5), (1.5, 4.5, 0.3)]:
        dx = (qx - cx + extent / 2) % extent - extent / 2
        dy = (qy - cy + extent / 2) % extent - extent / 2
        out += weight * thickness_factor * np.exp(-(dx**2 + dy**2) / (2 * 0.35**2))
    return 0.01 + 0.05 * out


def test_rotation_is_searched_and_fitted(rng):
    series = _stem_series()
    step = float(series.scan_x[1] - series.scan_x[0])
    u = np.arange(48) * step
    uu, vv = np.meshgrid(u, u, indexing="ij")
    theta, shift = np.deg2rad(2.2), (0.4, -0.7)
    c = uu.mean()
    qx = np.cos(theta) * (uu - c) - np.sin(theta) * (vv - c) + c - shift[0]
    qy = np.sin(theta) * (uu - c) + np.cos(theta) * (vv - c) + c - shift[1]
    dose = 2e5
    counts = rng.poisson(_columns(qx, qy, 8.0 / 10) * dose * step**2).astype(float)
    image = temsim.load_image(counts.T, pixel_size=step)
    fit = ("thickness", "shift", "rotation_deg", "scale", "dose")
    result = compare(image, series, fit=fit)
    assert result.converged, result.message
    assert result.parameters["thickness"] == 8.0
    assert abs(result.parameters["rotation_deg"] - 2.2) < 3 * result.uncertainties["rotation_deg"] < 0.3
    assert abs(result.parameters["dose"] / dose - 1) < 0.1


def test_stem_line_jitter_is_measured(rng, tmp_path):
    series = _stem_series()
    step = float(series.scan_x[1] - series.scan_x[0])
    u = np.arange(40) * step
    jitter = rng.normal(0.0, 0.15, size=u.size)  # Å, one per scan line (fixed y)
    jitter -= jitter.mean()
    shift = (0.4, -0.7)
    qx = u[:, None] - shift[0] - jitter[None, :]
    qy = np.broadcast_to(u[None, :] - shift[1], qx.shape)
    dose = 2e5
    counts = rng.poisson(_columns(qx, qy, 8.0 / 10) * dose * step**2).astype(float)
    image = temsim.load_image(counts.T, pixel_size=step)
    fit = ("thickness", "shift", "scale", "dose")
    plain = compare(image, series, fit=fit)
    corrected = compare(image, series, fit=fit, row_shifts=True)
    assert corrected.converged, corrected.message
    found = corrected.row_shifts
    assert found.dims == ("y",) and found.sizes["y"] == u.size
    error = found.values - jitter
    sigma = found["row_shift_sigma"].values
    informative = sigma < 0.05  # lines through atom columns (between rows there is nothing to align)
    assert informative.mean() > 0.4
    assert np.sqrt(np.mean(error[informative] ** 2)) < 0.2 * np.std(jitter)
    assert np.mean(np.abs(error) <= 2 * sigma) > 0.85
    assert abs(corrected.parameters["dose"] - dose) < 3 * corrected.uncertainties["dose"] < 0.2 * dose
    assert plain.parameters["gain"] > 1.5 * corrected.parameters["gain"]  # unmodelled jitter looks like noise
    paths = corrected.report(tmp_path / "jitter")
    import xarray

    with xarray.open_dataset(paths["netcdf"], engine="h5netcdf") as ds:
        np.testing.assert_allclose(ds["row_shifts"].values, found.values)


def test_stem_mode_of_a_study_is_scanned_over_the_cell():
    import dataclasses

    from temsim.comparison import simulate_for_comparison
    from temsim.errors import AccuracyWarning
    from temsim.structure import graphene, tile
    from temsim.study import Mode, example_study

    study = dataclasses.replace(
        example_study("graphene-si"),
        atoms=tile(graphene(vacuum=2.0), (4, 2, 1)),
        modes=(Mode("HAADF", 60, 200),),
        energies=(80e3,),
        phonons=None,
        sampling=0.06,
        scan_step=0.5,
    )
    with pytest.warns(AccuracyWarning, match="wrap around"):  # a 9.8 × 8.5 Å cell: periodic on purpose
        model, start = simulate_for_comparison(study)
    assert isinstance(model, ImageModel) and model.kind == "stem" and start == {}
    assert model.values.shape[1:] == (20, 18) and model.hypothesis == "H1"
    truth = model.values[-1]
    step = model.sampling
    da = xr.DataArray(
        truth, dims=("scan_x", "scan_y"), coords={"scan_x": np.arange(20) * step[0], "scan_y": np.arange(18) * step[1]}
    )
    counts = temsim.apply_noise(da.assign_attrs(signal="stem"), 1e5, camera="ideal", seed=0)
    result = compare(counts, model, fit=("shift", "scale", "dose"))
    assert result.converged
    assert abs(result.parameters["dose"] / 1e5 - 1) < 3 * result.uncertainties["dose"] / 1e5 < 0.4  # 360 positions
    with pytest.raises(InputError, match="has no mode named 'iDPC'"):
        simulate_for_comparison(study, mode="iDPC")


# ----------------------------------------------------------------------------- STEM: drift, defocus series, iDPC
def test_affine_evaluation_with_drift_and_row_shifts_matches_the_analytic_image():
    extent = (5.0, 4.0)
    grid = np.arange(50) * 0.1, np.arange(40) * 0.1
    periodic = PeriodicImage(_cosines(grid[0][:, None], grid[1][None, :], extent), extent)
    u, v = np.arange(31) * 0.21, np.arange(27) * 0.19
    drift, shift, rows = (0.8, -0.5), (0.3, -0.2), np.linspace(-0.1, 0.2, v.size)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    tau = (vv - v.mean()) / (v[-1] - v[0])  # −½ … ½ from the first to the last scan line
    qx = uu - shift[0] - drift[0] * tau - rows[None, :]
    qy = vv - shift[1] - drift[1] * tau
    found = periodic.evaluate_affine(u, v, shift, drift=drift, row_shifts=rows)
    np.testing.assert_allclose(found, _cosines(qx, qy, extent), atol=1e-8)


def test_slow_drift_is_recovered(rng):
    series = _stem_series()
    step = float(series.scan_x[1] - series.scan_x[0])
    u = np.arange(40) * step
    uu, vv = np.meshgrid(u, u, indexing="ij")
    drift, shift = (1.2, -0.8), (0.4, -0.7)  # Å over the frame: a shear along x, a compression along y
    tau = (vv - u.mean()) / (u[-1] - u[0])
    dose = 2e5
    truth = _columns(uu - shift[0] - drift[0] * tau, vv - shift[1] - drift[1] * tau, 8.0 / 10)
    image = temsim.load_image(rng.poisson(truth * dose * step**2).astype(float).T, pixel_size=step)
    options = {"initial": {"thickness": 8.0}}
    plain = compare(image, series, fit=("shift", "scale", "dose"), **options)
    result = compare(image, series, fit=("shift", "drift", "scale", "dose"), **options)
    assert result.converged, result.message
    p, s = result.parameters, result.uncertainties
    for name, truth_value in (("drift_x", drift[0]), ("drift_y", drift[1])):
        assert abs(p[name] - truth_value) < 3 * s[name] < 0.15, (name, p[name], s[name])
    assert 0.8 < p["gain"] < 1.2  # the drift explains the misfit; without it, it looks like noise
    assert plain.parameters["gain"] > 2 * p["gain"]


def test_defocus_series_is_a_cubic_spline_between_members():
    defoci = np.array([-60.0, -30.0, -10.0, 20.0, 50.0])  # uneven on purpose
    rng = np.random.default_rng(5)
    a, b, c = rng.random((3, 12, 10))
    values = a[None] + b[None] * defoci[:, None, None] / 50 + c[None] * (defoci[:, None, None] / 50) ** 3
    step = 0.4
    da = xr.DataArray(
        values[:, None],
        dims=("defocus", "thickness", "scan_x", "scan_y"),
        coords={"defocus": defoci, "thickness": [10.0], "scan_x": np.arange(12) * step, "scan_y": np.arange(10) * step},
    )
    model = ImageModel(da.isel(defocus=[3, 0, 4, 1, 2]))  # any order: sorted by defocus
    assert model.fittable[0] == "defocus" and "dose" in model.fittable
    d = 7.3  # between members: a cubic in defocus is reproduced exactly (not-a-knot spline)
    expected = a + b * d / 50 + c * (d / 50) ** 3
    grid = np.arange(12) * step, np.arange(10) * step
    np.testing.assert_allclose(model.image(0, d).evaluate(*grid), expected, atol=1e-10)
    with pytest.raises(InputError, match="outside the simulated series"):
        model.image(0, 60.0)
    with pytest.raises(InputError, match="at least 3 distinct defoci"):
        ImageModel(da.isel(defocus=[0, 1]))


def _probe_blurred(qx, qy, defocus, extent=6.0):
    """Columns whose width grows away from focus (like a probe): σ² = 0.3² + (0.01 (Δf − 15))², and a
    ring around each column on one side of focus only (as Cs makes over- and underfocus differ)."""
    width2 = 0.3**2 + (0.01 * (defocus - 15.0)) ** 2
    out = np.zeros(np.broadcast(qx, qy).shape)
    for cx, cy, weight in [(1.5, 1.5, 1.0), (4.5, 4.5, 0.5), (1.5, 4.5, 0.3)]:
        dx = (qx - cx + extent / 2) % extent - extent / 2
        dy = (qy - cy + extent / 2) % extent - extent / 2
        r2 = dx**2 + dy**2
        ring = 0.1 * (1 + np.tanh((15.0 - defocus) / 30.0)) * np.exp(-((np.sqrt(r2) - 0.9) ** 2) / (2 * 0.2**2))
        out += weight * (0.3**2 / width2 * np.exp(-r2 / (2 * width2)) + ring)
    return 0.01 + 0.05 * out


def test_stem_probe_defocus_is_fitted_from_a_series(rng):
    n, extent = 30, 6.0
    x = np.arange(n) * extent / n
    defoci = np.arange(-40.0, 81.0, 20.0)
    values = np.stack([_probe_blurred(x[:, None], x[None, :], d) for d in defoci])
    series = xr.DataArray(
        values, dims=("defocus", "scan_x", "scan_y"), coords={"defocus": defoci, "scan_x": x, "scan_y": x}
    )
    step = extent / n
    u = np.arange(40) * step
    truth_defocus, dose = -13.0, 2e5  # between members, on the far side of focus
    truth = _probe_blurred(u[:, None] - 0.4, u[None, :] + 0.7, truth_defocus)
    image = temsim.load_image(rng.poisson(truth * dose * step**2).astype(float).T, pixel_size=step)
    result = compare(image, series, fit=("defocus", "shift", "scale", "dose"))
    assert result.converged, result.message
    p, s = result.parameters, result.uncertainties
    assert abs(p["defocus"] - truth_defocus) < 3 * s["defocus"] < 10.0
    assert abs(p["dose"] / dose - 1) < 0.1
    narrow = compare(image, series, fit=("defocus", "shift", "scale"), bounds={"defocus": (-40.0, -20.0)})
    assert not narrow.converged and "defocus" in narrow.at_bound
    with pytest.raises(InputError, match="outside the simulated defocus series"):
        compare(image, series, fit=("defocus", "shift", "scale"), bounds={"defocus": (-100.0, 0.0)})


def _gradient(phi, step):
    """(∂φ/∂x, ∂φ/∂y) of a periodic image by Fourier differentiation (per Å)."""
    qx = np.fft.fftfreq(phi.shape[0], step)[:, None]
    qy = np.fft.fftfreq(phi.shape[1], step)[None, :]
    spectrum = np.fft.fft2(phi)
    return np.real(np.fft.ifft2(2j * np.pi * qx * spectrum)), np.real(np.fft.ifft2(2j * np.pi * qy * spectrum))


def test_integrated_noise_is_whitened(rng):
    from temsim.comparison.prepare import integrated_modes_lost, whiten_integrated
    from temsim.detectors import integrate_gradient

    step, eps, s = (0.2, 0.25), 0.05, 0.7
    gx, gy = rng.normal(0.0, s, (2, 64, 48))
    integrated = integrate_gradient(gx, gy, step, regularization=eps)
    white = whiten_integrated(integrated, step, eps)
    qx = np.fft.fftfreq(64, step[0])[:, None]
    qy = np.fft.fftfreq(48, step[1])[None, :]
    q = np.hypot(qx, qy)
    projection = (qx * np.fft.fft2(gx) + qy * np.fft.fft2(gy)) / (1j * np.where(q == 0, 1.0, q))
    projection[0, 0] = projection[32, :] = projection[:, 24] = 0.0  # the mean and the Nyquist lines are left out
    np.testing.assert_allclose(white, np.real(np.fft.ifft2(projection)), atol=1e-10)
    kept = 1 - integrated_modes_lost(white.shape) / white.size
    assert np.var(white) / kept == pytest.approx(s**2, rel=0.05)  # white, with one component's variance


def _idpc_cell(n=24, extent=6.0, eps=0.05):
    step = extent / n
    x = np.arange(n) * step
    phi = _columns(*np.meshgrid(x, x, indexing="ij"), 1.0, extent)  # a phase-like periodic image
    gx, gy = _gradient(phi, step)
    from temsim.detectors import integrate_gradient

    idpc = integrate_gradient(gx, gy, (step, step), regularization=eps)
    attrs = {"detector": "idpc", "signal": "derived", "regularization": eps}
    da = xr.DataArray(idpc, dims=("scan_x", "scan_y"), coords={"scan_x": x, "scan_y": x}, attrs=attrs)
    return da, gx, gy, step


def test_idpc_image_is_fitted_with_whitened_noise(rng):
    from temsim.detectors import integrate_gradient

    cell, gx, gy, step = _idpc_cell()
    eps, s, shift = 0.05, 0.02, (0.37, -0.52)  # s: noise of each DPC component per probe position
    u = np.arange(48) * step  # two cells: the frame is periodic, as the integration assumes
    noisy = [PeriodicImage(g, (6.0, 6.0)).evaluate(u, u, shift) + rng.normal(0.0, s, (48, 48)) for g in (gx, gy)]
    experiment = 3.0 * integrate_gradient(*noisy, (step, step), regularization=eps) + 17.0  # any units, any mean
    image = temsim.load_image(experiment.T, pixel_size=step)
    result = compare(image, cell, fit=("shift", "scale"))
    assert result.converged, result.message
    assert result.attrs["signal"] == "integrated"
    p, u_ = result.parameters, result.uncertainties
    for axis, truth in zip("xy", shift):
        error = (p[f"shift_{axis}"] - truth + 3.0) % 6.0 - 3.0  # the shift is found modulo the cell
        assert abs(error) < 3 * u_[f"shift_{axis}"] < 0.2 * step
    assert p["scale"] == pytest.approx(3.0, rel=0.05)
    assert p["noise_sigma"] == pytest.approx(3.0 * s, rel=0.1)  # the gradient's noise, in data units/Å
    assert 0.85 < result.metrics["chi2_per_dof"] < 1.15
    assert "dose" not in p and "gain" not in p
    # the same cell integrated without regularization and re-integrated for the experiment's ε
    exact = cell.copy(data=integrate_gradient(gx, gy, (step, step))).assign_attrs(regularization=0.0)
    again = compare(image, exact, fit=("shift", "scale"), regularization=eps)
    assert (again.parameters["shift_x"] - p["shift_x"] + 3.0) % 6.0 - 3.0 == pytest.approx(0.0, abs=1e-6)
    for fit, match in ((("shift", "dose"), "dose cannot be read"), (("shift", "offset"), "lost its mean")):
        with pytest.raises(InputError, match=match):
            compare(image, cell, fit=fit)
    with pytest.raises(InputError, match="Gaussian likelihood only"):
        compare(image, cell, fit=("shift", "scale"), likelihood="poisson")


def test_idpc_mode_of_a_study_with_a_probe_defocus_series():
    import dataclasses

    from temsim.comparison import simulate_for_comparison
    from temsim.errors import AccuracyWarning
    from temsim.structure import graphene, tile
    from temsim.study import Mode, example_study

    study = dataclasses.replace(
        example_study("graphene-si"),
        atoms=tile(graphene(vacuum=2.0), (2, 1, 1)),
        modes=(Mode("iDPC"), Mode("iCoM"), Mode("HRTEM", defocus=-50.0)),
        energies=(80e3,),
        phonons=None,
        sampling=0.1,
        scan_step=0.5,
    )
    with pytest.warns(AccuracyWarning, match="wrap around"):
        model, start = simulate_for_comparison(study, mode="iDPC", defoci=(-40.0, 0.0, 40.0))
    assert model.signal == "integrated" and model.kind == "stem"
    assert model.defoci.tolist() == [-40.0, 0.0, 40.0] and start == {"defocus": 0.0}
    assert "defocus" in model.fittable and "dose" not in model.fittable
    members = model.values[:, -1]
    assert np.all(np.abs(members.mean(axis=(-2, -1))) < 1e-6 * members.std())  # the integration loses the mean
    assert np.abs(members[0] - members[1]).max() > 0.1 * members[1].std()  # defocus changes the image
    with pytest.warns(AccuracyWarning, match="wrap around"):
        icom, _ = simulate_for_comparison(study, mode="iCoM")  # a pixelated mode: integrated centre of mass
    assert icom.signal == "integrated" and icom.defoci is None and icom.values.shape[1:] == model.values.shape[2:]
    with pytest.raises(InputError, match="defoci= is for STEM modes"):
        simulate_for_comparison(study, mode=study.modes[2].label, defoci=(-40.0, 0.0, 40.0))


def test_signed_dpc_component_with_inverted_sign_and_offset(rng):
    cell, gx, _, step = _idpc_cell()
    com = cell.copy(data=gx).assign_attrs(detector="center_of_mass", regularization=0.0)  # one CoM component
    s, shift = 0.02, (0.61, 1.93)
    u = np.arange(40) * step
    values = -2.0 * PeriodicImage(gx, (6.0, 6.0)).evaluate(u, u, shift) + 0.3 + rng.normal(0.0, s, (40, 40))
    image = temsim.load_image(values.T, pixel_size=step)
    result = compare(image, com, fit=("shift", "scale", "offset"))
    assert result.converged, result.message
    assert result.attrs["signal"] == "signed"
    p, u_ = result.parameters, result.uncertainties
    assert abs(p["scale"] + 2.0) < 3 * u_["scale"]  # inverted: a detector rotated by 180°
    assert abs(p["offset"] - 0.3) < 3 * u_["offset"]
    for axis, truth in zip("xy", shift):
        error = (p[f"shift_{axis}"] - truth + 3.0) % 6.0 - 3.0
        assert abs(error) < 3 * u_[f"shift_{axis}"] < 0.2 * step
    assert p["noise_sigma"] == pytest.approx(s, rel=0.1)
    assert 0.9 < result.metrics["chi2_per_dof"] < 1.1
