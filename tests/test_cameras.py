"""Camera models (temsim.cameras): the public sample() checks, the names and the deprecated aliases."""

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

import temsim
import temsim.noise as tn
from temsim.camera_data import STATUSES, camera_table, characterised_range
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


def _mid_energy(preset):
    """An energy inside the preset's characterised range (80 kV for energy-independent presets)."""
    span = characterised_range(preset)
    return 80e3 if span is None else 0.5 * (span[0] + span[1])


def _mode(camera, kind="annular", **extra):
    return SimpleNamespace(
        label="mode", name="HRTEM" if kind == "image" else "HAADF", kind=kind, camera_name=camera, **extra
    )


def _sims(fractions: dict, energies, area, dims="channel", coords=None):
    return {
        (e, h, 0): {"mode": xr.DataArray(v, dims=dims, coords=coords, attrs={"channel_area": area})}
        for e in energies
        for h, v in fractions.items()
    }


@pytest.mark.parametrize("preset", sorted(CAMERA_PRESETS))
def test_every_preset_reaches_the_planner_and_the_dose_scales_as_one_over_dqe0(preset):
    """The planner's rates carry the preset's DQE(0) at the beam energy, so its required dose
    scales as 1/DQE(0) (high counts: the same study with the ideal camera as reference)."""
    from temsim import detection
    from temsim.plan_simulation import _rates_of

    energy = _mid_energy(preset)
    fractions = {"H0": np.full(6, 0.02), "H1": np.array([0.02, 0.02, 0.026, 0.02, 0.02, 0.02])}
    sims = _sims(fractions, (energy,), 0.09)
    study = SimpleNamespace(energies=(energy,))
    kind = "annular" if preset in ("ideal", "annular-pmt") else "pixelated"  # a kind the preset records
    rates = {camera: _rates_of(study, _mode(camera, kind), sims, 1) for camera in ("ideal", preset)}
    dqe0 = camera_model(preset, energy=energy).dqe0
    assert rates[preset].attrs["efficiency"] == pytest.approx(dqe0)
    np.testing.assert_allclose(rates[preset].values, dqe0 * rates["ideal"].values, rtol=1e-12)
    target = detection.DecisionTarget()
    doses = {}
    for camera, r in rates.items():
        r0, r1 = (r.isel(hypothesis=i).values.reshape(-1) for i in (0, 1))  # H0, H1
        doses[camera] = detection.required_dose(detection.detection_statistics(r0, r1), target)
    assert doses[preset] == pytest.approx(doses["ideal"] / dqe0, rel=1e-9)


# --------------------------------------------------------------------------- the data table
def test_every_camera_number_has_unit_status_and_source():
    """Each number in cameras.toml has a unit, a status and a source; measured and fitted numbers
    cite a DOI and the place in it; every numeric field of every preset's model is in the table."""
    table = camera_table()
    assert set(table) == set(CAMERA_PRESETS)
    for name, entry in table.items():
        assert entry["summary"]
        for key, number in entry["parameters"].items():
            assert number["status"] in STATUSES and number["unit"] and number["source"], (name, key)
            if number["status"] in ("measured", "fitted"):
                assert number["doi"].startswith("10.") and number["where"], (name, key)
        model = camera_model(name)
        numeric = {
            k
            for k, v in model.parameters().items()
            if (isinstance(v, (int, float)) or v is None) and k not in ("reference_energy", "model")
        }
        assert numeric <= set(entry["parameters"]), name  # no number outside the table
        statuses = {row[0]: row[3] for row in model.provenance}
        assert set(statuses) == set(entry["parameters"])


def test_presets_resolve_by_beam_energy_interpolate_or_refuse():
    """Between characterised energies the numbers are linear in energy; outside, refused unless
    extrapolation is asked for (then marked); user values need no extrapolation."""
    v = camera_table()["timepix4"]["parameters"]["mtf_f1"]["values"]
    at100, at200 = camera_model("timepix4", energy=100e3), camera_model("timepix4", energy=200e3)
    assert (at100.mtf_f1, at200.mtf_f1) == (v[0], v[1])
    for t in (0.25, 0.5, 0.9):
        e = 100e3 + t * 100e3
        assert camera_model("timepix4", energy=e).mtf_f1 == pytest.approx(v[0] + t * (v[1] - v[0]), rel=1e-12)
    # the energy changes the preset's DQE(f) at Nyquist
    assert at100.dqe(0.5) > 10 * at200.dqe(0.5)
    for energy in (80e3, 300e3):
        with pytest.raises(InputError, match=r"characterised from 100 to 200 keV.*allow_extrapolation=True"):
            camera_model("timepix4", energy=energy)
    with pytest.raises(InputError, match="from 60 to 300 keV"):
        camera_model("counting-ded", energy=20e3)
    extrapolated = camera_model("timepix4", energy=300e3, allow_extrapolation=True)
    assert extrapolated.mtf_f1 == at200.mtf_f1
    assert {r[0]: r[3] for r in extrapolated.provenance}["mtf_f1"] == "fitted, extrapolated"
    own = camera_model("timepix4", energy=300e3, dqe0=0.85, mtf_f1=0.02)
    assert {r[0]: r[3] for r in own.provenance}["dqe0"] == "override" and own.dqe0 == 0.85
    # statuses: interpolation keeps the weaker of the two ends
    assert {r[0]: r[3] for r in camera_model("timepix4", energy=150e3).provenance}["dqe0"] == "measured"


def test_the_planner_resolves_the_camera_at_each_beam_energy():
    """Same fractions at two energies: the image statistics use each energy's camera (or refuse)."""
    from temsim.plan_simulation import _rates_of

    n = 16
    x = np.arange(n) * 0.1
    fringe = 1.0 + 0.01 * np.cos(2 * np.pi * 0.25 * np.arange(n))[:, None] * np.ones(n)[None, :]
    sims = _sims({"H0": np.ones((n, n)), "H1": fringe}, (100e3, 200e3), 0.01, ("x", "y"), {"x": x, "y": x})
    rates = _rates_of(SimpleNamespace(energies=(100e3, 200e3)), _mode("timepix4", "image"), sims, 1)
    contrast = (rates.isel(hypothesis=1) - rates.isel(hypothesis=0)).isel(configuration=0)
    amplitude = np.abs(contrast).max(("x", "y")).values / (0.01 * 0.01 * 0.9)
    for energy, a in zip((100e3, 200e3), amplitude):
        model = camera_model("timepix4", energy=energy)
        assert a == pytest.approx(np.sqrt(model.dqe(0.25) / model.dqe0), rel=1e-6)
    provenance = json.loads(rates.attrs["camera_provenance"])
    assert set(provenance) == {"100000", "200000"}
    with pytest.raises(InputError, match="100 to 200 keV"):
        _rates_of(
            SimpleNamespace(energies=(80e3,)),
            _mode("timepix4", "image"),
            _sims({"H0": 1.0, "H1": 1.0}, (80e3,), 1.0, ()),
            1,
        )


# --------------------------------------------------------------------------- DQE(f) in HRTEM
def _fringe_rates(camera, k=0.375, n=32, eps=0.01, pixel_size=None, sampling=0.1):
    """Planner rates of a weak fringe cos(2π k x) (k in cycles per simulated pixel) on a flat image."""
    from temsim.plan_simulation import _rates_of

    x = np.arange(n) * sampling
    fringe = 1.0 + eps * np.cos(2 * np.pi * k * np.arange(n))[:, None] * np.ones(n)[None, :]
    sims = _sims({"H0": np.ones((n, n)), "H1": fringe}, (80e3,), sampling**2, ("x", "y"), {"x": x, "y": x})
    mode = _mode(camera, "image", pixel_size=pixel_size)
    return _rates_of(SimpleNamespace(energies=(80e3,)), mode, sims, 1).isel(energy=0, configuration=0)


def _j(rates):
    from temsim import detection

    return detection.detection_statistics(rates.isel(hypothesis=0).values, rates.isel(hypothesis=1).values).j_per_dose


@pytest.mark.parametrize("camera", ["ideal", "annular-pmt"])
def test_a_frequency_independent_dqe_leaves_the_pixel_wise_statistics_unchanged(camera):
    """DQE(f) = const: the image rates are exactly the old a·η·I, H1 included."""
    rates = _fringe_rates(camera)
    eta = camera_model(camera, energy=80e3).dqe0
    fractions = np.stack(
        [np.ones((32, 32)), 1 + 0.01 * np.cos(2 * np.pi * 0.375 * np.arange(32))[:, None] * np.ones(32)]
    )
    np.testing.assert_array_equal(rates.values, 0.1**2 * eta * fractions)


def test_a_fine_camera_pixel_recovers_the_dqe0_limit():
    """A camera pixel much smaller than the fringe period sees DQE(f) ≈ DQE(0): the old numbers."""
    eta = camera_model("counting-ded", energy=80e3).dqe0
    ideal = _j(_fringe_rates("ideal"))
    assert _j(_fringe_rates("counting-ded", pixel_size=1e-4)) == pytest.approx(eta * ideal, rel=1e-6)


@pytest.mark.parametrize("camera", ["counting-ded", "ccd", "timepix4"])
def test_fringe_information_is_dqe_of_f_times_the_ideal_one(camera):
    """Analytic single-frequency fringe: J per unit dose = DQE(k)·N·c·ε²/2 (Σ_f DQE(f)|ΔS(f)|²/S̄)."""
    energy = 150e3 if camera == "timepix4" else 80e3
    model = camera_model(camera, energy=energy)
    from temsim.plan_simulation import _rates_of

    n, eps, c, k = 32, 0.01, 0.01, 0.375
    x = np.arange(n) * 0.1
    fringe = 1.0 + eps * np.cos(2 * np.pi * k * np.arange(n))[:, None] * np.ones(n)[None, :]
    sims = _sims({"H0": np.ones((n, n)), "H1": fringe}, (energy,), c, ("x", "y"), {"x": x, "y": x})
    rates = _rates_of(SimpleNamespace(energies=(energy,)), _mode(camera, "image"), sims, 1)
    j = _j(rates.isel(energy=0, configuration=0))
    analytic = float(model.dqe(k, 0.0)) * n * n * c * eps**2 / 2
    assert j == pytest.approx(analytic, rel=2 * eps)  # the LR's mean (r0 + r1)/2 differs at O(ε)
    # the frequency-blind statistics would be too optimistic by 1/(MTF²/NNPS)
    assert model.dqe0 * n * n * c * eps**2 / 2 > 1.2 * analytic


@pytest.mark.parametrize("camera", ["counting-ded", "ccd"])
def test_whitened_statistics_match_a_monte_carlo_of_the_camera(camera):
    """Independent check: draw recorded images of the fringe with the camera model itself and
    measure the matched filter's SNR²; it equals dose × J of the whitened pixel-wise statistics."""
    n, eps, k, per_pixel = 32, 0.01, 0.375, 1e4
    model = camera_model(camera, energy=80e3)
    fringe = np.cos(2 * np.pi * k * np.arange(n))[:, None] * np.ones(n)[None, :]
    rng = np.random.default_rng(7)
    draws = 600
    t = {}
    for h, image in (("H0", np.full((n, n), per_pixel)), ("H1", per_pixel * (1 + eps * fringe))):
        expected = np.broadcast_to(image, (draws, n, n))
        t[h] = np.tensordot(np.asarray(model.sample(expected, rng), float), fringe, axes=([1, 2], [0, 1]))
    snr2 = (t["H1"].mean() - t["H0"].mean()) ** 2 / t["H0"].var(ddof=1)
    rates = _fringe_rates(camera, k=k, eps=eps, sampling=0.1)
    dose = per_pixel / 0.01  # e/Å² for per_pixel electrons in a 0.1 Å pixel
    assert snr2 == pytest.approx(dose * _j(rates), rel=0.2)
    assert not snr2 == pytest.approx(dose * model.dqe0 * _j(_fringe_rates("ideal", k=k, eps=eps)), rel=0.2)


def test_study_modes_carry_camera_parameters_and_pixel_size():
    """A mode's camera numbers and pixel size reach the camera; keys that do not apply are refused."""
    from temsim.planning import mode_camera
    from temsim.study import Mode, StudyError

    mode = Mode("HRTEM", camera="timepix4", pixel_size=0.2, camera_parameters={"allow_extrapolation": True})
    assert mode.camera_parameters == (("allow_extrapolation", True),)
    assert mode_camera(mode, 300e3).mtf_f1 == camera_model("timepix4", energy=200e3).mtf_f1
    with pytest.raises(InputError, match="100 to 200 keV"):
        mode_camera(Mode("HRTEM", camera="timepix4"), 300e3)
    own = Mode("HRTEM", camera="timepix4", camera_parameters={"dqe0": 0.8, "mtf_f1": 0.1})
    assert mode_camera(own, 300e3).dqe0 == 0.8  # the user's own numbers need no extrapolation
    with pytest.raises(StudyError, match="valid"):
        Mode("HRTEM", camera_parameters={"bogus": 1.0})
    with pytest.raises(StudyError, match="pixel_size does not apply"):
        Mode("HAADF", pixel_size=0.2)
    with pytest.raises(StudyError, match="pixel_size"):
        Mode("HRTEM", pixel_size=-1.0)


def test_a_coarse_camera_pixel_loses_the_contrast_beyond_its_nyquist_frequency():
    """pixel_size sets where DQE(f) is read: a fringe beyond the camera's Nyquist frequency is not recorded."""
    k = 0.375  # cycles per 0.1 Å simulated pixel: 3.75 1/Å
    model = camera_model("counting-ded", energy=80e3)
    resolved = _j(_fringe_rates("counting-ded", k=k, pixel_size=0.05))  # 0.1875 cycles/camera pixel
    ideal = _j(_fringe_rates("ideal", k=k))
    assert resolved == pytest.approx(float(model.dqe(k / 2, 0.0)) * ideal, rel=0.02)
    assert _j(_fringe_rates("counting-ded", k=k, pixel_size=0.2)) == 0.0  # 0.75 cycles/pixel > Nyquist


def test_the_report_prints_the_status_and_source_of_every_camera_number():
    from temsim.plan_simulation import _rates_of
    from temsim.report import _camera_section

    sims = _sims({"H0": np.full(4, 0.02), "H1": np.full(4, 0.03)}, (100e3, 150e3), 0.09)
    study = SimpleNamespace(energies=(100e3, 150e3))
    rates = xr.Dataset({"HAADF": _rates_of(study, _mode("timepix4", "pixelated"), sims, 1)})
    text = "\n".join(_camera_section(SimpleNamespace(rates=rates)))
    assert "**timepix4 at 100 kV** (DQE(0) = 0.9; HAADF):" in text and "**timepix4 at 150 kV**" in text
    for key, entry in camera_table()["timepix4"]["parameters"].items():
        assert text.count(f"* {key} = ") == 2 and entry["status"] in text
    assert "mtf_f1 = 0.1662 cycles/pixel — fitted;" in text and "interpolated linearly between 100 and 200 keV" in text
    assert "doi:10.48550/arXiv.2411.16258" in text
    # modes sharing a camera at an energy are listed under one heading
    shared = xr.Dataset({"HAADF": rates["HAADF"], "ABF": rates["HAADF"].copy()})
    text = "\n".join(_camera_section(SimpleNamespace(rates=shared)))
    assert text.count("**timepix4 at 100 kV** (DQE(0) = 0.9; HAADF, ABF):") == 1


def test_a_camera_that_does_not_record_the_modes_signal_is_refused():
    """A PMT cannot record an image, a pixelated camera cannot record an annular STEM signal."""
    from temsim.study import Mode, StudyError

    with pytest.raises(StudyError, match=r"does not record 'image' signals; cameras that do: ideal, counting-ded"):
        Mode("HRTEM", camera="annular-pmt")
    with pytest.raises(StudyError, match=r"does not record 'stem' signals; cameras that do: ideal, annular-pmt"):
        Mode("HAADF", camera="counting-ded")
    assert Mode("4D-STEM", camera="timepix4").camera_name == "timepix4"
    assert Mode("HRTEM", camera="timepix4").camera_name == "timepix4"  # hybrid pixel detectors record images


def test_the_table_checks_refuse_entries_without_provenance():
    from temsim.camera_data import _check_entry

    good = {"value": 1.0, "unit": "1", "status": "measured", "conditions": "", "source": "s", "doi": "", "where": ""}
    _check_entry("p", "k", good, 2)
    bad = {
        "status": dict(good, status="guessed"),
        "lacks": {k: v for k, v in good.items() if k != "source"},
        "exactly one": dict(good, values=[1.0, 2.0]),
        "2 values for 3": {**{k: v for k, v in good.items() if k != "value"}, "values": [1.0, 2.0]},
        "infinite at some": {**{k: v for k, v in good.items() if k != "value"}, "values": [1.0, float("inf")]},
    }
    for message, entry in bad.items():
        with pytest.raises(InputError, match=message):
            _check_entry("p", "k", entry, 3 if message.startswith("2 values") else 2)
