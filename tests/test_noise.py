"""Camera models and apply_noise: statistics, dose axis, signal compatibility, backends."""

import math

import numpy as np
import pytest
import xarray as xr

from temsim.cameras import CAMERA_PRESETS, camera_model, frequency_grid
from temsim.errors import AccuracyWarning, InputError
from temsim.noise import apply_noise


def _image(n=64, value=1.0, sampling=0.1):
    c = np.arange(n) * sampling
    return xr.DataArray(
        np.full((n, n), value, np.float32), dims=("x", "y"), coords={"x": c, "y": c}, attrs={"signal": "image"}
    )


def _stem(n=32, value=0.3, step=0.2, detector="annular"):
    c = np.arange(n) * step
    return xr.DataArray(
        np.full((n, n), value, np.float32),
        dims=("scan_x", "scan_y"),
        coords={"scan_x": c, "scan_y": c},
        attrs={"signal": "stem", "detector": detector},
    )


def _within_sampling_error(sample, mean, var, n_sigma=3.0):
    """Check sample mean and variance against Poisson-family expectations (3σ of sampling error)."""
    n = sample.size
    m, v = float(sample.mean()), float(sample.var())
    assert abs(m - mean) < n_sigma * math.sqrt(var / n), (m, mean)
    # var of the sample variance ≈ 2σ⁴/(n−1) (+ a small excess-kurtosis term for Poisson)
    assert abs(v - var) < n_sigma * math.sqrt(2 * var**2 / (n - 1) + var / n), (v, var)


def test_ideal_flat_field_is_poisson():
    out = apply_noise(_image(128), 5000.0, "ideal", seed=1)
    lam = 5000.0 * 0.1 * 0.1  # 5000 e/Å² on 0.1 Å pixels: 50 e per pixel
    assert out.attrs["units"] == "counts"
    _within_sampling_error(out.values, lam, lam)


def test_counting_camera_flat_field_mean_and_variance():
    det = camera_model("counting-ded", dqe0=0.7)
    out = apply_noise(_image(128), 3000.0, det, seed=2)
    lam = 0.7 * 30.0  # thinning keeps Poisson statistics
    _within_sampling_error(out.values, lam, lam)


def test_dose_axis_without_resimulation_and_linear_mean():
    doses = [5.0, 20.0, 100.0, 1000.0]
    out = apply_noise(_image(64), doses, "ideal", seed=3)
    assert out.dims == ("dose", "x", "y")
    np.testing.assert_allclose(out["dose"].values, doses)
    assert out["dose"].attrs["units"] == "e/Å²"
    means = out.mean(("x", "y")).values
    expected = np.array(doses) * 0.01
    assert np.all(np.abs(means - expected) < 4 * np.sqrt(expected / 64**2))


def test_seed_reproducible_and_recorded_and_input_untouched():
    img = _image(32)
    before = img.copy(deep=True)
    a = apply_noise(img, 100.0, "ccd", seed=7)
    b = apply_noise(img, 100.0, "ccd", seed=7)
    c = apply_noise(img, 100.0, "ccd", seed=8)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert a.attrs["seed"] == "7"
    xr.testing.assert_identical(img, before)


def test_annular_pmt_compound_poisson_statistics():
    det = camera_model("annular-pmt", pulse_height_cv=0.5, electronic_noise=0.3, efficiency=0.9)
    sig = _stem(128, value=0.25, step=0.2)
    out = apply_noise(sig, 2000.0, det, seed=4)
    n_e = 2000.0 * 0.04 * 0.25  # 20 electrons per probe position
    mean = 0.9 * n_e
    var = 0.9 * n_e * (1 + 0.5**2) + 0.3**2
    _within_sampling_error(out.values, mean, var)
    assert det.dqe0 == pytest.approx(0.9 / 1.25)


def test_afterglow_correlates_along_fast_axis_only():
    det = camera_model("annular-pmt", afterglow=2.0, electronic_noise=0.0, pulse_height_cv=0.0)
    out = apply_noise(_stem(128, 0.5), 5000.0, det, seed=5, fast_axis="scan_x").values
    d = out - out.mean()
    r_fast = np.mean(d[1:, :] * d[:-1, :]) / d.var()
    r_slow = np.mean(d[:, 1:] * d[:, :-1]) / d.var()
    assert r_fast == pytest.approx(math.exp(-1 / 2.0), abs=0.05)  # AR(1) lag-1 correlation r
    assert abs(r_slow) < 0.05


def test_coincidence_loss_matches_binomial_per_readout_frame():
    det = camera_model("counting-ded", dqe0=1.0, frame_rate=400.0)
    img = _image(128)
    # 40 e/pixel in 0.1 s = 40 readout frames: μ = 1 per pixel per frame
    out = apply_noise(img, 4000.0, det, seed=6, exposure_time=0.1)
    mean = 40 * (1 - math.exp(-1.0))
    var = 40 * (1 - math.exp(-1.0)) * math.exp(-1.0)
    _within_sampling_error(out.values, mean, var)
    assert det.recorded_fraction(400.0) == pytest.approx(1 - math.exp(-1.0))
    assert det.dqe0_at_rate(400.0) == pytest.approx(math.exp(-1.0) / (1 - math.exp(-1.0)))


def test_integrating_camera_gain_and_read_noise():
    det = camera_model("ccd", gain=4.0, read_noise=3.0, dqe0=0.5, white_noise_fraction=1.0)
    out = apply_noise(_image(128), 2000.0, det, seed=9)
    n_e = 20.0
    fx, fy = frequency_grid((128, 128))
    # white NNPS → per-pixel variance = g²·N/DQE(0) + σ_r²; mean is exactly g·N·MTF(0) = g·N
    var = 16 * n_e / 0.5 + 9
    _within_sampling_error(out.values, 4 * n_e, var)
    assert out.attrs["units"] == "ADU"
    assert float(np.mean(det.nnps(fx, fy))) == pytest.approx(1.0)


def test_hybrid_pixel_saturation_warns_and_clips():
    pattern = xr.DataArray(
        np.full((16, 16), 1 / 256, np.float32),
        dims=("kx", "ky"),
        coords={"kx": np.arange(16) * 0.1, "ky": np.arange(16) * 0.1},
        attrs={"signal": "diffraction", "illuminated_area": 1e4},
    )
    det = camera_model("hybrid-pixel", max_counts=100)
    with pytest.warns(AccuracyWarning, match="dynamic range"):
        out = apply_noise(pattern, 10.0, det, seed=1)  # ~370 e per pixel
    assert float(out.max()) == 100.0


def test_diffraction_needs_illuminated_area():
    pattern = xr.DataArray(np.full((8, 8), 0.01, np.float32), dims=("kx", "ky"), attrs={"signal": "diffraction"})
    with pytest.raises(InputError, match="illuminated_area"):
        apply_noise(pattern, 10.0, "ideal")


def test_4dstem_noise_on_diffraction_axes():
    data = xr.DataArray(
        np.full((4, 5, 16, 16), 1 / 256, np.float32),
        dims=("scan_x", "scan_y", "kx", "ky"),
        coords={"scan_x": np.arange(4) * 0.5, "scan_y": np.arange(5) * 0.5},
        attrs={"signal": "4dstem"},
    )
    out = apply_noise(data, [1e4, 2e4], "hybrid-pixel", seed=3)
    assert out.dims == ("dose", "scan_x", "scan_y", "kx", "ky")
    # 1e4 e/Å² × 0.25 Å² = 2500 e per probe position; hybrid DQE(0) 0.95
    totals = out.sum(("kx", "ky")).values
    assert np.allclose(totals.mean(axis=(1, 2)), [0.95 * 2500, 0.95 * 5000], rtol=0.02)


@pytest.mark.parametrize("det", ["ccd", "counting-ded", "hybrid-pixel"])
def test_camera_models_refuse_annular_stem(det):
    with pytest.raises(InputError, match="annular-pmt"):
        apply_noise(_stem(), 100.0, det)


def test_pmt_refuses_images_and_names_models_that_fit():
    with pytest.raises(InputError, match="counting-ded"):
        apply_noise(_image(), 100.0, "annular-pmt")


@pytest.mark.parametrize("detector_attr", ["center_of_mass", "idpc"])
def test_derived_signals_refused(detector_attr):
    with pytest.raises(InputError, match="4D-STEM"):
        apply_noise(_stem(detector=detector_attr), 100.0, "ideal")


def test_negative_dose_and_bad_dqe_rejected():
    with pytest.raises(InputError, match="≥ 0"):
        apply_noise(_image(), [10.0, -1.0], "ideal")
    for bad in (0.0, 1.2, -0.1):
        with pytest.raises(InputError, match=r"\(0, 1\]"):
            camera_model("counting-ded", dqe0=bad)
    with pytest.raises(InputError, match="valid presets"):
        camera_model("k9000")
    with pytest.raises(InputError, match="no parameter"):
        camera_model("ccd", bogus=1)


def test_negative_signal_refused():
    img = _image()
    img[0, 0] = -0.5
    with pytest.raises(InputError, match="negative"):
        apply_noise(img, 10.0, "ideal")


def test_energy_outside_the_characterised_range_is_refused():
    """Presets resolve by beam energy (tests/test_cameras.py); outside their range they are refused."""
    with pytest.raises(InputError, match="characterised from 100 to 200 keV"):
        camera_model("timepix4", energy=60e3)
    with pytest.raises(InputError, match="characterised from 100 to 200 keV"):
        apply_noise(_image(), 10.0, "timepix4", energy=300e3, signal_kind="diffraction", area=1.0)


def test_dataset_processed_per_variable_with_independent_seeds():
    ds = xr.Dataset({"haadf": _stem(32, 0.1), "bf": _stem(32, 0.1, detector="annular")})
    out = apply_noise(ds, 1e4, "annular-pmt", seed=11)
    assert set(out.data_vars) == {"haadf", "bf"}
    assert not np.array_equal(out["haadf"].values, out["bf"].values)


def test_dqe_relation_holds_for_every_model():
    f = np.linspace(0, 0.5, 11)
    for name in CAMERA_PRESETS:
        det = camera_model(name)
        np.testing.assert_allclose(det.dqe(f), det.dqe0 * det.mtf(f) ** 2 / det.nnps(f))
        assert det.dqe(0.0) == pytest.approx(det.dqe0)


def test_array_api_strict_plain_arrays_match_numpy():
    xps = pytest.importorskip("array_api_strict")
    values = np.random.default_rng(0).uniform(0.5, 1.5, (32, 32)).astype(np.float32)
    for name in ("ideal", "counting-ded", "ccd"):
        ref = apply_noise(values, [10.0, 100.0], name, seed=5, signal_kind="image", area=1.0)
        got = apply_noise(xps.asarray(values), [10.0, 100.0], name, seed=5, signal_kind="image", area=1.0)
        assert type(got).__module__.startswith("array_api_strict")
        assert got.shape == (2, 32, 32)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-3)


def test_plain_array_needs_kind_and_area():
    with pytest.raises(InputError, match="signal_kind"):
        apply_noise(np.ones((4, 4)), 10.0, "ideal")
