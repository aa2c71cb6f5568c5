"""Camera models (temsim.cameras): the public sample() checks, the names and the deprecated aliases."""

import warnings

import numpy as np
import pytest
import xarray as xr

import temsim
import temsim.noise as tn
from temsim.cameras import (
    CAMERA_PRESETS,
    AnnularPMT,
    CameraModel,
    CountingCamera,
    HybridPixel,
    IdealCounting,
    IntegratingCamera,
    camera_model,
)
from temsim.errors import InputError


def _image(n=32, value=1.0, sampling=0.1):
    c = np.arange(n) * sampling
    return xr.DataArray(
        np.full((n, n), value, np.float32), dims=("x", "y"), coords={"x": c, "y": c}, attrs={"signal": "image"}
    )


def test_every_preset_is_a_camera_model_subclass():
    classes = {IdealCounting, CountingCamera, IntegratingCamera, HybridPixel, AnnularPMT}
    for name in CAMERA_PRESETS:
        model = camera_model(name)
        assert isinstance(model, CameraModel) and type(model) in classes
        assert model.name == name
    for cls in classes:
        assert cls.__name__ in CameraModel.__doc__
        assert "_sample" in cls.__dict__  # each model implements the hook, not the public method
        assert "sample" not in cls.__dict__


def test_sample_checks_its_arguments():
    model = camera_model("ideal")
    rng = np.random.default_rng(0)
    for bad in (np.array([[1.0, np.nan]]), np.array([[1.0, np.inf]]), np.array([[10.0, -1.0]])):
        with pytest.raises(InputError, match="expected electron counts"):
            model.sample(bad, rng)
    with pytest.raises(InputError, match="Generator"):
        model.sample(np.ones((2, 2)), 0)
    with pytest.raises(InputError, match="readout_frames"):
        camera_model("counting-ded").sample(np.ones((4, 4)), rng, readout_frames=0)
    with pytest.raises(InputError, match="fast_axis"):
        camera_model("annular-pmt").sample(np.ones((4, 4)), rng, fast_axis=2)


def test_sample_tolerates_round_off_negatives():
    expected = np.full((8, 8), 100.0)
    expected[0, 0] = -1e-6
    counts = camera_model("ideal").sample(expected, np.random.default_rng(1))
    assert counts.shape == (8, 8) and counts[0, 0] == 0


def test_sample_is_the_same_draw_as_apply_noise():
    img = _image(16)
    apply = tn.apply_noise(img, 100.0, "counting-ded", seed=3)
    expected = 100.0 * 0.1 * 0.1 * img.values
    rng = np.random.default_rng(np.random.SeedSequence(3))
    counts = camera_model("counting-ded").sample(expected, rng)
    np.testing.assert_array_equal(counts, apply.values)


def test_camera_keyword_and_deprecated_detector_keyword():
    img = _image(16)
    new = temsim.apply_noise(img, 100.0, camera="ccd", seed=5)
    with pytest.warns(DeprecationWarning, match="camera="):
        old = temsim.apply_noise(img, 100.0, detector="ccd", seed=5)
    np.testing.assert_array_equal(new.values, old.values)
    assert new.attrs["camera_model"] == "ccd" and new.attrs["detector_model"] == "ccd"
    with pytest.raises(InputError, match="not both"):
        temsim.apply_noise(img, 100.0, camera="ccd", detector="ccd", seed=5)
    with pytest.raises(InputError, match="not both"):
        temsim.apply_noise(img, 100.0, "ideal", seed=5, detector="ccd")


def test_deprecated_aliases_warn_and_agree():
    with pytest.warns(DeprecationWarning, match="camera_model"):
        old = temsim.detector_model("counting-ded", dqe0=0.7)
    with pytest.warns(DeprecationWarning, match="camera_model"):
        old_noise = tn.detector_model("counting-ded", dqe0=0.7)
    assert old == old_noise == temsim.camera_model("counting-ded", dqe0=0.7)
    with pytest.warns(DeprecationWarning, match="CAMERA_PRESETS"):
        assert tn.DETECTOR_PRESETS is CAMERA_PRESETS
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert tn.IdealCounting is IdealCounting  # the models are still importable from temsim.noise
        assert temsim.CameraModel is CameraModel


def test_damage_function_no_longer_shadows_its_module():
    import temsim.beam_damage as bd

    assert temsim.damage is bd.damage and callable(temsim.damage)
    assert temsim.critical_dose is bd.critical_dose and temsim.knock_on is bd.knock_on


@pytest.mark.parametrize("preset", sorted(CAMERA_PRESETS))
def test_every_preset_reaches_the_planner_and_the_dose_scales_as_one_over_dqe0(preset):
    """The planner's rates carry the preset's DQE(0), so its required dose scales as 1/DQE(0)."""
    from types import SimpleNamespace

    import xarray as xr

    from temsim import detection
    from temsim.planning import _rates_of

    fractions = {"H0": np.full(6, 0.02), "H1": np.array([0.02, 0.02, 0.026, 0.02, 0.02, 0.02])}
    sims = {
        (80e3, h, 0): {"mode": xr.DataArray(v, dims="channel", attrs={"channel_area": 0.09})}
        for h, v in fractions.items()
    }
    study = SimpleNamespace(energies=(80e3,))
    rates = {}
    for camera in ("ideal", preset):
        mode = SimpleNamespace(label="mode", name="HAADF", kind="annular", camera_name=camera)
        rates[camera] = _rates_of(study, mode, sims, 1)
    dqe0 = camera_model(preset).dqe0
    assert rates[preset].attrs["efficiency"] == pytest.approx(dqe0)
    np.testing.assert_allclose(rates[preset].values, dqe0 * rates["ideal"].values, rtol=1e-12)
    target = detection.DecisionTarget()
    doses = {}
    for camera, r in rates.items():
        r0, r1 = (r.isel(hypothesis=i).values.reshape(-1) for i in (0, 1))  # H0, H1
        doses[camera] = detection.required_dose(detection.detection_statistics(r0, r1), target)
    assert doses[preset] == pytest.approx(doses["ideal"] / dqe0, rel=1e-9)
