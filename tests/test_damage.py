"""Damage: fading laws, critical-dose presets, scan-order bookkeeping, knock-on basics."""

import math
import re
import sys

import numpy as np
import pytest
import xarray as xr

from temsim import damage_data
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


def test_every_preset_has_a_source_with_doi_and_a_status():
    for name, cd in CRITICAL_DOSE_PRESETS.items():
        assert cd.value > 0
        assert "doi:" in cd.source, name
        assert cd.status in damage_data.STATUSES, name
        assert cd.dose_kind in ("1/e", "end-point"), name
    # UiO-66 could not be confirmed in its paper: only its status is asserted, never its value
    assert critical_dose("uio-66").status == "unverified"
    # ZIF-8's 25 e/Å² is an end-point dose (crystallinity gone), and says so
    assert critical_dose("ZIF-8").dose_kind == "end-point"
    assert critical_dose(42).value == 42.0 and critical_dose(42).status == "user"


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


# ----------------------------------------------------------------------------- damage data table
def test_damage_table_schema_every_entry_is_traceable():
    rows = damage_data.entries()
    assert len(rows) >= 15
    doi = re.compile(r"^10\.\d{4,9}/[^\s]+$")
    for e in rows:
        assert math.isfinite(e.value) and e.value > 0, e
        assert e.unit == damage_data.QUANTITIES[e.quantity], e
        assert e.status in damage_data.STATUSES, e
        assert e.source.strip() and e.where.strip() and e.conditions.strip(), e
        assert doi.match(e.doi), e
    for c in damage_data.unquantified():
        assert doi.match(c.doi) and c.note
    # the radiolysis presets are the table's critical doses, not numbers kept in code
    assert set(CRITICAL_DOSE_PRESETS) == set(damage_data.critical_dose_entries())


def test_damage_table_refuses_untraceable_entries(tmp_path):
    good = (
        'schema = 1\n[[entry]]\nmaterial = "x"\nelement = "C"\nquantity = "displacement_energy"\nvalue = 20.0\n'
        'unit = "eV"\nconditions = "c"\nsource = "s"\ndoi = "10.1000/abc"\nwhere = "Table 1"\nstatus = "measured"\n'
    )
    path = tmp_path / "t.toml"
    path.write_text(good)
    assert damage_data.entries(path)[0].value == 20.0
    for old, new, match in [
        ('doi = "10.1000/abc"', 'doi = "not-a-doi"', "doi"),
        ('status = "measured"', 'status = "guessed"', "status"),
        ('unit = "eV"', 'unit = "keV"', "unit"),
        ('where = "Table 1"\n', "", "where"),
        ("value = 20.0", "value = -1.0", "value"),
    ]:
        path.write_text(good.replace(old, new))
        with pytest.raises(InputError, match=match):
            damage_data.entries(path)


def test_missing_damage_data_says_what_to_provide():
    with pytest.raises(damage_data.MissingDamageDataError, match="damage.displacement_energy"):
        knock_on("O", 200e3, material="graphene")
    with pytest.raises(InputError, match="debye_temperature"):
        knock_on("O", 200e3, material="srtio3", temperature=300)
    with pytest.raises(InputError, match="material="):
        knock_on("N", 200e3)


# ----------------------------------------------------------------------------- thermal knock-on
def test_thermal_average_equals_an_independent_quadrature_below_threshold():
    """σ_th = ∫ φ(u) σ_MF(E_max + s·u) du, evaluated here with scipy.quad from the threshold on."""
    from scipy.integrate import quad
    from scipy.stats import norm

    from temsim.beam_damage import displacement_cross_section

    for element, energy, material in [("S", 80e3, "mos2"), ("C", 80e3, "graphene"), ("C", 100e3, "graphene")]:
        r = knock_on(element, energy, material=material, temperature=300)
        assert r.below_threshold and r.static_cross_section == 0
        u0 = (r.displacement_energy - r.max_transferred_energy) / r.transfer_spread

        def integrand(u, r=r, energy=energy):
            e_max = r.max_transferred_energy + r.transfer_spread * u
            return norm.pdf(u) * displacement_cross_section(r.atomic_number, energy, e_max, r.displacement_energy)

        ref = quad(
            integrand,
            u0,
            u0 + 15,
            epsabs=0,
            epsrel=1e-10,
            points=[u0 + 0.01, u0 + 0.1, u0 + 1],
        )[0]
        assert r.cross_section == pytest.approx(ref, rel=1e-3), (element, energy)


def test_mos2_sulfur_sputters_at_80_kv_only_through_vibrations():
    r = knock_on("S", 80e3, material="mos2", temperature=300)
    assert r.displacement_energy == 6.9 and r.debye_temperature == 600.0
    assert r.static_cross_section == 0.0  # E_max = 5.9 eV < 6.9 eV
    assert r.cross_section > 0.01  # barn: S vacancies form at 80 kV
    assert any("Komsa" in s for s in r.sources) and any("measured" in s for s in r.sources)


def test_mean_square_displacement_route_equals_the_debye_route():
    from temsim.phonons import debye_mean_square_displacement

    msd = debye_mean_square_displacement(600.0, 300.0, 32.06)
    a = knock_on("S", 80e3, material="mos2", temperature=300)
    b = knock_on("S", 80e3, 6.9, temperature=300, mean_square_displacement=msd)
    assert b.debye_temperature == pytest.approx(600.0, rel=1e-9)
    assert b.cross_section == pytest.approx(a.cross_section, rel=1e-9)
    # the E_max spread is set by the vibrational energy: classical limit ⟨E⟩ → k_B·T for T ≫ θ
    hot = knock_on("S", 80e3, 6.9, temperature=6000, debye_temperature=600.0)
    classical = math.sqrt(2 * hot.max_transferred_energy * 8.617333262e-5 * 6000)
    assert hot.transfer_spread == pytest.approx(classical, rel=1e-3)


# ----------------------------------------------------------------------------- budgets and survival
def _example_budgets(name):
    from temsim.plan_limits import _feature_damage, damage_budget
    from temsim.study import example_study

    study = example_study(name)
    feature = _feature_damage(study)
    return study, feature, {e: damage_budget(e, study.critical_dose, study.knock_on, feature) for e in study.energies}


def test_knock_on_below_threshold_is_reported_as_none():
    from temsim.damage_channels import format_damage_dose
    from temsim.planning import damage_budget

    b = damage_budget(60e3, knock_on={"element": "C", "material": "graphene", "temperature": 300})
    assert b.dose == math.inf
    assert "no knock-on of C (E_max < E_d" in b.basis
    # the thermal tail exists (σ ≈ 1e-20 b) but stays below 1e-12 per atom even at 1e12 e/Å²
    assert 0 < b.knock_on_cross_section < 1e-16
    assert format_damage_dose(b.dose) == "∞"
    assert format_damage_dose(3.1e12) == "> 1e12" and format_damage_dose(123456.0) == "1.2e+05"


def test_graphene_si_example_budgets_use_the_documented_defaults():
    study, feature, budgets = _example_budgets("graphene-si")
    assert "debye_temperature" not in study.knock_on and "displacement_energy" not in study.knock_on
    r = knock_on("C", 80e3, material="graphene", temperature=300)
    assert (r.displacement_energy, r.debye_temperature) == (21.14, 1287.0)
    assert feature == {"sites": {"C": 3}, "dopant": "Si"}
    assert budgets[60e3].dose == math.inf and "no knock-on" in budgets[60e3].basis
    # 80 kV: the thermal tail gives a finite budget; the feature (3 C neighbours) sets it
    b80 = budgets[80e3]
    assert math.isfinite(b80.dose) and b80.basis.startswith("feature survival")
    assert b80.feature_cross_section == pytest.approx(3 * r.cross_section, rel=1e-12)
    assert "bond inversion" in b80.survival_caveat


def test_srtio3_example_oxygen_budget_reproduces_liu_2013_numbers():
    _, feature, budgets = _example_budgets("srtio3-oxygen-vacancy")
    assert feature == {"sites": {"O": 8}, "dopant": None}  # the vacancy's O neighbours at a/√2
    for b in budgets.values():
        knock = next(c for c in b.channels if c.name == "knock-on of O")
        assert math.isfinite(knock.dose) and math.isfinite(b.dose)
        assert b.dose == pytest.approx(knock.dose / 8, rel=1e-9)  # 8 neighbours at the same 10 %
        assert any("Liu et al." in s for s in knock.sources)
    # 10 % of O displaced at ≈ 2.7e5 e/Å² with E_d = 13 eV at 200 kV
    knock200 = next(c for c in budgets[200e3].channels if c.name == "knock-on of O")
    assert knock200.dose == pytest.approx(2.7e5, rel=0.02)


def test_feature_survival_matches_a_direct_monte_carlo_of_the_damage_model():
    """The survival column that evaluate() reports at a mode's minimum dose, against a direct
    Monte-Carlo: draw displacement events per atom (Poisson, mean σ_i·D) for the vacancy's eight O
    neighbours in SrTiO3 at 200 kV; the feature survives a trial when none of them is hit."""
    from temsim.detection import DecisionTarget
    from temsim.planning import damage_budget, evaluate

    spec = {"element": "O", "material": "srtio3"}
    budget = damage_budget(200e3, knock_on=spec, feature={"sites": {"O": 8}, "dopant": None})
    rates = xr.Dataset(
        {"ADF": (("energy", "hypothesis", "configuration", "pixel"), [[[[100.0]], [[100.05]]]])},
        coords={"energy": [200e3], "hypothesis": ["H0", "H1"], "configuration": [0]},
    )
    limits = evaluate(rates, DecisionTarget(), budget)
    dose = float(limits.required_dose.squeeze())
    reported = float(limits.survival_probability.squeeze())
    per_atom = knock_on("O", 200e3, material="srtio3").cross_section  # barn, static lattice
    rng = np.random.default_rng(7)
    trials = 40000
    hits = rng.poisson(per_atom * 1e-8 * dose, size=(trials, 8))
    mc = np.mean(np.all(hits == 0, axis=1))
    se = math.sqrt(mc * (1 - mc) / trials)
    assert 0.1 < reported < 0.9
    assert abs(mc - reported) < 4 * se


def test_survival_column_and_verdict_in_evaluate():
    from temsim.detection import DecisionTarget
    from temsim.planning import DamageBudget, evaluate, verdicts

    rates = xr.Dataset(
        {"BF": (("energy", "hypothesis", "configuration", "pixel"), [[[[100.0]], [[110.0]]]])},
        coords={"energy": [80e3], "hypothesis": ["H0", "H1"], "configuration": [0]},
    )
    target = DecisionTarget()
    budget = DamageBudget(dose=1e6, feature_cross_section=2e6, survival_caveat="")
    limits = evaluate(rates, target, budget)
    dose = float(limits.required_dose.squeeze())
    survival = float(limits.survival_probability.squeeze())
    assert survival == pytest.approx(math.exp(-2e6 * 1e-8 * dose), rel=1e-12)
    assert 0.5 < survival < 0.95
    both = math.floor(100 * (0.95 + survival - 1)) / 100
    assert (
        str(verdicts(limits).squeeze().values)
        == f"detected before the feature is damaged with probability ≥ {both:.2f}"
    )


def test_study_with_missing_damage_data_is_refused_with_what_to_provide():
    from importlib import resources

    from temsim.errors import StudyError
    from temsim.study import study_from_dict

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

    text = resources.files("temsim.examples").joinpath("graphene-si.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    data["damage"]["material"] = "srtio3"  # no C in the SrTiO3 table
    with pytest.raises(
        StudyError, match="no displacement or sputtering energy for C in 'srtio3'.*damage.displacement_energy"
    ):
        study_from_dict(data)
    data["damage"] = {"knock_on_element": "C", "material": "graphene", "displacement_energy": 20.0, "temperature": 300}
    assert study_from_dict(data).knock_on["displacement_energy"] == 20.0  # a study value overrides the table
    data["damage"] = {"material": "graphene"}
    with pytest.raises(StudyError, match="knock_on_element"):
        study_from_dict(data)


def test_report_prints_every_damage_channel_and_number_with_status_and_source():
    from types import SimpleNamespace

    from temsim.detection import DecisionTarget
    from temsim.planning import damage_budget, evaluate
    from temsim.report import _damage_section

    rates = xr.Dataset(
        {"BF": (("energy", "hypothesis", "configuration", "pixel"), [[[[100.0]], [[110.0]]]])},
        coords={"energy": [60e3], "hypothesis": ["H0", "H1"], "configuration": [0]},
    )
    spec = {"element": "C", "material": "graphene", "temperature": 300}
    budget = damage_budget(60e3, 20.0, spec, {"sites": {"C": 3}, "dopant": "Si"})
    text = "\n".join(_damage_section(SimpleNamespace(dataset=evaluate(rates, DecisionTarget(), budget))))
    assert "∞ e/Å² — no knock-on of C (E_max < E_d" in text
    assert "20 e/Å² — radiolysis Dc = 20 e/Å² (user-given)" in text
    assert "21.14 eV — fitted; Meyer et al." in text and "1287 K — calculated; Tewary & Yang" in text
    assert "doi:10.1103/PhysRevLett.113.115501" in text  # the unquantified bond-inversion channel is named
    assert (
        budget.basis.startswith("radiolysis")
        and budget.survival_caveat == "upper bound: Si-C bond inversion not included"
    )


def test_dopant_events_measured_at_this_energy_enter_the_feature_survival():
    """A P dopant in graphene at 60 kV: direct exchange 0.05 b + C-neighbour knockout 0.01 b (Su et al.
    2019, Table 1); the pristine C neighbours add nothing (no knock-on). At 80 kV no P measurement
    exists, so only the neighbours count."""
    from temsim.damage_channels import feature_channel

    spec = {"element": "C", "material": "graphene", "temperature": 300}
    at60 = feature_channel(60e3, {"C": 3}, spec, 0.1, dopant="P")
    assert at60.cross_section == pytest.approx(0.06, rel=1e-9)
    assert at60.dose == pytest.approx(-math.log(0.9) / (0.06e-8), rel=1e-9)
    assert sum("Su et al." in s and "measured" in s for s in at60.sources) == 2
    at80 = feature_channel(80e3, {"C": 3}, spec, 0.1, dopant="P")
    c80 = knock_on("C", 80e3, material="graphene", temperature=300).cross_section
    assert at80.cross_section == pytest.approx(3 * c80, rel=1e-12)
