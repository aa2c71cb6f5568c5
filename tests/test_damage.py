"""Damage: fading laws, critical-dose presets, scan-order bookkeeping, knock-on basics."""

import math

import numpy as np
import pytest
import xarray as xr

from temsim.beam_damage import (
    CRITICAL_DOSE_PRESETS,
    CriticalDose,
    critical_dose,
    critical_exposure_cryo,
    damage,
    fading,
    fading_weights,
    knock_on,
    mean_fading,
    optimal_dose,
    signal_to_noise_with_damage,
)
from temsim.errors import InputError


def _stem(n=16, step=0.5):
    c = np.arange(n) * step
    rng = np.random.default_rng(0)
    return xr.DataArray(
        rng.uniform(0.1, 0.3, (n, n)).astype(np.float64),
        dims=("scan_x", "scan_y"),
        coords={"scan_x": c, "scan_y": c},
        attrs={"signal": "stem", "detector": "annular"},
    )


def test_fading_is_one_over_e_at_dc_and_mean_fading_limits():
    assert fading(25.0, "zif-8") == pytest.approx(math.exp(-1))
    assert mean_fading(0.0, 10.0) == 1.0
    assert mean_fading(1e-9, 10.0) == pytest.approx(1 - 0.5e-10, rel=1e-12)  # 1 − x/2 for small x
    assert mean_fading(1e6, 10.0) == pytest.approx(1e-5)  # Dc/D for D ≫ Dc


def test_every_preset_has_a_source_with_doi():
    for name, cd in CRITICAL_DOSE_PRESETS.items():
        assert cd.value > 0
        assert "doi:" in cd.source, name
    assert critical_dose("uio-66").value == 256.0
    assert critical_dose("ZIF-8").value == 25.0
    assert critical_dose(42).value == 42.0


def test_cryo_protein_critical_exposure_formula():
    # Grant & Grigorieff 2015: N_e(k) = 0.245 k^−1.665 + 2.81; at 1/3 Å⁻¹ (3 Å) ≈ 4.34 e/Å²
    assert critical_exposure_cryo(1 / 3) == pytest.approx(0.245 * 3**1.665 + 2.81)
    assert critical_dose("cryo-protein@3").value == pytest.approx(4.337, abs=0.01)


def test_bad_critical_doses():
    for bad in (0, -5, float("nan")):
        with pytest.raises(InputError):
            CriticalDose(bad)
    with pytest.raises(InputError, match="valid presets"):
        critical_dose("unobtainium")
    with pytest.raises(InputError, match="knock-on"):
        critical_dose("graphene")
    with pytest.raises(InputError, match="≥ 0"):
        fading(-1.0, 10.0)


def test_snr_optimum_near_1p26_dc():
    d = np.linspace(1, 60, 59001)
    snr = signal_to_noise_with_damage(d, 20.0)
    assert d[np.argmax(snr)] == pytest.approx(1.2564 * 20.0, abs=2e-3)
    assert optimal_dose(20.0) == pytest.approx(25.1286, abs=1e-3)


def test_array_api_strict_fading():
    xps = pytest.importorskip("array_api_strict")
    d = xps.asarray([0.0, 10.0, 100.0])
    np.testing.assert_allclose(np.asarray(fading(d, 10.0)), np.exp(-np.array([0.0, 1.0, 10.0])), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(mean_fading(d, 10.0)), [1.0, 1 - math.exp(-1), 0.1 * (1 - math.exp(-10))], rtol=1e-12
    )


def test_damage_adds_dose_dim_and_conserves_mean_with_mean_reference():
    sig = _stem()
    out = damage(sig, [1.0, 10.0, 100.0], 20.0)
    assert out.dims == ("dose", "scan_x", "scan_y")
    np.testing.assert_allclose(out.mean(("scan_x", "scan_y")).values, float(sig.mean()), rtol=1e-12)
    contrast = out.std(("scan_x", "scan_y")).values / float(sig.std())
    np.testing.assert_allclose(contrast, mean_fading(np.array([1.0, 10.0, 100.0]), 20.0), rtol=1e-12)


def test_raster_with_overlap_damages_later_lines_more():
    w = fading_weights(50.0, 20.0, (16, 16), order="raster", step=(0.5, 0.5), probe_fwhm=1.5, fast_axis=0)[0, 0]
    # first scanned line (y index 0) has seen fewer neighbours than the lines after it
    assert w[8, 0] > w[8, 8]
    # along a line, later positions were pre-dosed by the probe tail of earlier ones
    assert w[2, 8] > w[8, 8] or w[1, 8] > w[8, 8]
    serp = fading_weights(50.0, 20.0, (16, 16), order="serpentine", step=(0.5, 0.5), probe_fwhm=1.5)[0, 0]
    assert not np.allclose(serp, w)


def test_damage_input_errors():
    sig = _stem()
    with pytest.raises(InputError, match="order"):
        damage(sig, 10.0, 20.0, order="spiral")
    derived = sig.copy()
    derived.attrs["signal"] = "com"
    with pytest.raises(InputError, match="4D-STEM"):
        damage(derived, 10.0, 20.0)


def test_knock_on_probability_and_dose():
    r = knock_on("C", 200e3, 21.5)
    d = r.dose_for_probability(0.5)
    assert r.displacement_probability(d) == pytest.approx(0.5)
    assert r.critical_dose.value == pytest.approx(1 / (r.cross_section * 1e-8))
    below = knock_on("C", 80e3, 21.5)
    assert below.cross_section == 0.0 and below.displacement_probability(1e9) == 0.0
    with pytest.raises(InputError):
        knock_on("Xx", 200e3, 20)
    with pytest.raises(InputError):
        knock_on("C", 200e3, -1)
    with pytest.raises(InputError, match="debye"):
        knock_on("Mo", 80e3, 7, temperature=300)
