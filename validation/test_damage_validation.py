"""Damage physics against analytic results and hand calculations from the documented formulas."""

import math

import numpy as np
import pytest
import xarray as xr
from _record import record  # noqa: E402
from scipy.integrate import quad

from temsim.beam_damage import (
    damage,
    displacement_cross_section,
    fading_weights,
    knock_on,
    max_transferred_energy,
    mean_fading,
    threshold_energy,
)

M0C2 = 510998.95  # eV
AMU = 931494102.42  # eV
R_E = 2.8179403262e-5  # Å
ALPHA = 7.2973525693e-3


def _record(name: str, data: dict) -> None:
    record("damage_validation", name, data)


def _image(n=8):
    c = np.arange(n) * 0.2
    v = np.random.default_rng(1).uniform(0.8, 1.2, (n, n))
    return xr.DataArray(v, dims=("x", "y"), coords={"x": c, "y": c}, attrs={"signal": "image"})


@pytest.mark.parametrize("n_frames", [1, 7, 40])
@pytest.mark.parametrize("dose_over_dc", [0.1, 1.0, 5.0])
def test_integrated_signal_is_dc_over_d_times_one_minus_exp(n_frames, dose_over_dc):
    dc = 30.0
    dose = dose_over_dc * dc
    sig = _image()
    out = damage(sig, dose, dc, n_frames=n_frames, damaged="zero")
    ratio = (out / sig).values
    analytic = dc / dose * (1 - math.exp(-dose / dc))
    numeric = quad(lambda d: math.exp(-d / dc), 0, dose)[0] / dose  # time average at constant rate
    assert np.allclose(ratio, analytic, rtol=1e-12)
    assert analytic == pytest.approx(numeric, rel=1e-12)
    # per-frame signals: frame k integrates exp(−D/Dc) over [k, k+1)·D/N
    frames = damage(sig, dose, dc, n_frames=n_frames, damaged="zero", frames=True)
    per_frame = (frames / sig).isel(x=0, y=0).values
    edges = np.arange(n_frames + 1) * dose / n_frames
    expected = [quad(lambda d: math.exp(-d / dc), a, b)[0] / (b - a) for a, b in zip(edges[:-1], edges[1:])]
    assert np.allclose(per_frame, expected, rtol=1e-10)
    assert np.all(np.diff(per_frame) < 0)  # frame order matters: later frames are darker


def test_raster_without_overlap_and_with_overlap_total_dose_limit():
    dc, dose = 20.0, 40.0
    no_overlap = fading_weights(dose, dc, (12, 12), order="raster", n_frames=3)
    assert np.allclose(no_overlap.mean(axis=1), mean_fading(dose, dc), rtol=1e-12)
    # with probe overlap the interior receives the same total dose, but part of it before its own
    # dwell: the recorded fraction lies between exp(−D/Dc) and Dc/D(1 − e^{−D/Dc})
    w = fading_weights(dose, dc, (40, 40), order="raster", step=(0.2, 0.2), probe_fwhm=1.0)[0, 0]
    interior = w[20, 20]
    assert math.exp(-dose / dc) < interior < mean_fading(dose, dc)
    first_line = w[20, 0]
    _record(
        "raster_overlap",
        {
            "dose": dose,
            "critical_dose": dc,
            "probe_fwhm_A": 1.0,
            "step_A": 0.2,
            "interior": float(interior),
            "first_line": float(first_line),
            "no_overlap": float(mean_fading(dose, dc)),
        },
    )
    assert first_line > interior


def test_knock_on_emax_carbon_200kev_by_hand():
    # E_max = 2E(E + 2 m0c²)/(Mc²), natural carbon 12.011 u
    by_hand = 2 * 200e3 * (200e3 + 2 * M0C2) / (12.011 * AMU)
    r = knock_on("C", 200e3, 21.5)
    assert r.max_transferred_energy == pytest.approx(by_hand, rel=1e-9)
    assert r.max_transferred_energy == pytest.approx(43.69, abs=0.01)
    _record("emax_carbon_200kV", {"E_max_eV": r.max_transferred_energy, "by_hand_eV": by_hand})


def test_threshold_voltage_carbon_21p5_ev_by_hand():
    # solve 2E(E + 2m0c²) = E_d·Mc² for E: E = −m0c² + sqrt((m0c²)² + E_d·Mc²/2)
    mc2 = 12.011 * AMU
    by_hand = -M0C2 + math.sqrt(M0C2**2 + 21.5 * mc2 / 2)
    r = knock_on("C", 200e3, 21.5)
    assert r.threshold_voltage == pytest.approx(by_hand, rel=1e-9)
    assert 105.5e3 < r.threshold_voltage < 107.0e3  # ≈ 106 kV
    assert max_transferred_energy(r.threshold_voltage, 12.011) == pytest.approx(21.5, rel=1e-12)
    r12 = threshold_energy(21.14, 12.0)
    _record("threshold_carbon", {"E_d_eV": 21.5, "threshold_V": r.threshold_voltage, "threshold_12C_21.14eV_V": r12})


def _mckinley_feshbach_by_angle(z, energy, e_max, e_d):
    """Independent route: integrate the Rutherford cross-section times the McKinley–Feshbach
    ratio R = 1 − β² sin²(θ/2) + παZβ sin(θ/2)(1 − sin(θ/2)) over scattering angles that
    transfer more than E_d (T = E_max sin²(θ/2))."""
    gamma = 1 + energy / M0C2
    b2 = 1 - 1 / gamma**2
    b = math.sqrt(b2)
    pref = (z * R_E) ** 2 * (1 - b2) / (4 * b2**2)  # Å²/sr, Rutherford with 1/sin⁴(θ/2)
    s_min = math.sqrt(e_d / e_max)

    def integrand(theta):
        s = math.sin(theta / 2)
        ratio = 1 - b2 * s**2 + math.pi * ALPHA * z * b * s * (1 - s)
        return pref / s**4 * ratio * 2 * math.pi * math.sin(theta)

    return quad(integrand, 2 * math.asin(s_min), math.pi, epsabs=0, epsrel=1e-12)[0] / 1e-8  # barn


@pytest.mark.parametrize(
    "element,z,mass,energy,e_d",
    [
        ("C", 6, 12.011, 200e3, 21.5),
        ("C", 6, 12.0, 300e3, 21.14),
        ("Si", 14, 28.085, 300e3, 13.0),
        ("B", 5, 10.81, 120e3, 15.0),
    ],
)
def test_cross_section_closed_form_equals_angular_integral(element, z, mass, energy, e_d):
    r = knock_on(element, energy, e_d, mass=mass)
    numeric = _mckinley_feshbach_by_angle(z, energy, r.max_transferred_energy, e_d)
    assert r.static_cross_section == pytest.approx(numeric, rel=1e-8)


def test_cross_section_against_egerton_sigdis_arithmetic():
    """Egerton's published SIGDIS program (EELS in the Electron Microscope, 3rd ed., 2011) uses
    rounded constants (0.2494 barn = πr_e², E_max = E0(E0+1022)/(465.7 A) with E0 in keV): the
    same formula must agree within the ~0.5 % those roundings allow."""
    z, a, e_d, e0_kev = 6, 12.011, 21.5, 200.0
    t = e0_kev * (1 + e0_kev / 1022) / (1 + e0_kev / 511) ** 2
    b = math.sqrt(2 * t / 511)
    e_max = e0_kev / a * (e0_kev + 1022) / 465.7
    x = e_max / e_d
    al = z / 137
    pref = 0.2494 * z**2 * (1 - b * b) / b**4
    sigdis = pref * (x - 1 - b * b * math.log(x) + math.pi * al * b * (2 * math.sqrt(x) - math.log(x) - 2))
    r = knock_on("C", e0_kev * 1e3, e_d)
    _record(
        "cross_section_carbon_200kV_21.5eV",
        {
            "temsim_barn": r.static_cross_section,
            "sigdis_arithmetic_barn": sigdis,
            "E_max_eV": r.max_transferred_energy,
            "sigdis_E_max_eV": e_max,
        },
    )
    assert r.static_cross_section == pytest.approx(sigdis, rel=0.01)
    assert r.max_transferred_energy == pytest.approx(e_max, rel=0.005)


def test_rutherford_model_and_threshold_behaviour():
    r = knock_on("C", 300e3, 21.14)
    gamma = 1 + 300e3 / M0C2
    b2 = 1 - 1 / gamma**2
    x = r.max_transferred_energy / 21.14
    ruth = math.pi * (6 * R_E) ** 2 * (1 - b2) / b2**2 * (x - 1) / 1e-8
    assert displacement_cross_section(6, 300e3, r.max_transferred_energy, 21.14, "rutherford") == pytest.approx(ruth)
    # cross-section vanishes continuously at the threshold
    th = r.threshold_voltage
    assert knock_on("C", th * 0.999, 21.14).cross_section == 0.0
    assert 0 < knock_on("C", th * 1.001, 21.14).cross_section < 0.05


def test_thermal_vibrations_lower_the_onset_in_graphene():
    """Meyer et al. 2012: out-of-plane vibrations (Debye, θ = 1287 K, zero point included) spread
    E_max and make ¹²C graphene displaceable below the static threshold."""
    e_d = 21.14
    energies = np.arange(80e3, 121e3, 0.5e3)
    static = np.array([knock_on("C", e, e_d, mass=12.0).cross_section for e in energies])
    thermal = np.array([knock_on("C", e, e_d, mass=12.0, temperature=300).cross_section for e in energies])
    heavy = np.array([knock_on("C", e, e_d, mass=13.0034, temperature=300).cross_section for e in energies])
    level = 0.01  # barn: 1e-10 Å², i.e. 1 % of atoms displaced after 1e8 e/Å²
    onset_static = float(energies[np.argmax(static > level)])
    onset_thermal = float(energies[np.argmax(thermal > level)])
    onset_13c = float(energies[np.argmax(heavy > level)])
    r100 = knock_on("C", 100e3, e_d, mass=12.0, temperature=300)
    _record(
        "graphene_thermal_onset",
        {
            "E_d_eV": e_d,
            "debye_K": 1287.0,
            "temperature_K": 300.0,
            "static_threshold_V": threshold_energy(e_d, 12.0),
            "onset_static_0.01barn_V": onset_static,
            "onset_thermal_0.01barn_V": onset_thermal,
            "onset_thermal_13C_0.01barn_V": onset_13c,
            "sigma_12C_100kV_thermal_barn": r100.cross_section,
            "sigma_12C_100kV_static_barn": r100.static_cross_section,
            "E_max_spread_100kV_eV": r100.transfer_spread,
            "sigma_13C_100kV_thermal_barn": knock_on("C", 100e3, e_d, mass=13.0034, temperature=300).cross_section,
        },
    )
    assert r100.static_cross_section == 0.0 and r100.cross_section > 0.1
    assert onset_static - onset_thermal > 10e3  # lowered by more than 10 kV
    assert onset_13c > onset_thermal  # heavier isotope is more robust
    # far above threshold vibrations change little
    hi = knock_on("C", 300e3, e_d, mass=12.0, temperature=300)
    assert hi.cross_section == pytest.approx(hi.static_cross_section, rel=1e-3)


# ----------------------------------------------------------------------------- published damage numbers
def _row(temsim_value, published, source, note=""):
    ratio = temsim_value / published if published else None
    return {"temsim": temsim_value, "published": published, "ratio": ratio, "source": source, "note": note}


def test_srtio3_thresholds_and_oxygen_budget_against_liu_2013():
    """Liu et al., J. Phys.: Condens. Matter 25, 485003 (2013), abstract: minimum thresholds 13 (O),
    25 (Sr), 38 (Ti) eV; direction averages 35.7, 53.5, > 64.9 eV. The table carries them; temsim
    turns them into static threshold voltages and the O displacement budget."""
    from temsim import damage_data

    liu = "Liu et al. 2013, doi:10.1088/0953-8984/25/48/485003, abstract"
    published = {("O", ""): 13.0, ("Sr", ""): 25.0, ("Ti", ""): 38.0}
    published.update({("O", "average"): 35.7, ("Sr", "average"): 53.5, ("Ti", "average"): 64.9})
    table = {}
    for (element, variant), value in published.items():
        entry = damage_data.lookup("srtio3", element, "displacement_energy", variant)
        assert entry.value == value and entry.status == "calculated"
        mass = {"O": 15.999, "Sr": 87.62, "Ti": 47.867}[element]
        table[f"E_d {element} {variant or 'minimum'} (eV)"] = _row(entry.value, value, liu)
        table[f"static threshold {element} {variant or 'minimum'} (kV)"] = {
            "temsim": threshold_energy(entry.value, mass) / 1e3,
            "published": None,
            "ratio": None,
            "source": "temsim from the E_d above",
            "note": "",
        }
    # The hand calculation: 10 % of O displaced at ~2.7e5 (13 eV, 200 kV) and ~2.4e6 e/Å²
    # (35.7 eV, 300 kV). Not published numbers: a second, independent evaluation of the same model.
    d13 = knock_on("O", 200e3, 13.0).dose_for_probability(0.1)
    d357 = knock_on("O", 300e3, 35.7).dose_for_probability(0.1)
    table["10% O displaced, 13 eV, 200 kV (e/Å²)"] = _row(d13, 2.7e5, "issue 16 hand calculation")
    table["10% O displaced, 35.7 eV, 300 kV (e/Å²)"] = _row(d357, 2.4e6, "issue 16 hand calculation")
    _record("srtio3_liu_2013", table)
    assert d13 == pytest.approx(2.7e5, rel=0.03)
    assert d357 == pytest.approx(2.4e6, rel=0.03)
    # Sr and Ti cannot be displaced at 300 kV: E_max 9.7 eV and 17.8 eV are below their minimum E_d
    assert knock_on("Sr", 300e3, material="srtio3").cross_section == 0.0
    assert knock_on("Ti", 300e3, material="srtio3").cross_section == 0.0


def test_mos2_sulfur_sputtering_with_komsa_2012_threshold():
    """Komsa et al., PRL 109, 035503 (2012): E_d(S) = 6.9 eV (DFT), S vacancies observed to form at
    80 kV. A static lattice gives σ = 0 below 92.4 kV; with the S vibration (Debye 600 K, Dai et al.
    2017) σ(80 kV) > 0. No published cross-section value could be confirmed from the sources
    available to us, so the table records temsim's numbers and the qualitative observation only."""
    rows = {}
    for kv in (60, 70, 80, 90, 100):
        r = knock_on("S", kv * 1e3, material="mos2", temperature=300)
        rows[f"sigma S {kv} kV (barn)"] = {
            "temsim": r.cross_section,
            "temsim_static": r.static_cross_section,
            "published": None,
            "ratio": None,
            "source": "Komsa et al. 2012, doi:10.1103/PhysRevLett.109.035503 (E_d only)",
            "note": "vacancies observed at 80 kV (qualitative); published σ not confirmed",
        }
    r80 = knock_on("S", 80e3, material="mos2", temperature=300)
    rows["static threshold (kV)"] = _row(r80.threshold_energy / 1e3, None, "temsim from E_d = 6.9 eV")
    _record("mos2_komsa_2012", rows)
    assert r80.static_cross_section == 0.0 and r80.cross_section > 0.01
    assert 92.0e3 < r80.threshold_energy < 93.0e3


def test_graphene_cross_sections_80_to_100_kv_and_dopant_neighbours():
    """Graphene knock-on with the table's E_d = 21.14 eV (Meyer et al. 2012, fitted) and θ = 1287 K
    (Tewary & Yang 2009). Meyer et al. 2012 and Susi et al. 2016 (doi:10.1038/ncomms13040) measured
    σ at 80-100 kV; their numbers could not be confirmed from the sources available to us, so no
    ratio is asserted. Su et al. 2019 (Sci. Adv., Table 1) measured the knockout of the C
    neighbour of P and Al dopants at 60 kV: the pristine-C model is orders of magnitude below
    them, which is why dopant neighbours need their own measured cross-sections (damage table)."""
    rows = {}
    for kv in (80, 85, 90, 95, 100):
        for mass, label in ((12.0, "12C"), (13.0034, "13C")):
            r = knock_on("C", kv * 1e3, mass=mass, material="graphene", temperature=300)
            rows[f"sigma {label} {kv} kV (barn)"] = {
                "temsim": r.cross_section,
                "published": None,
                "ratio": None,
                "source": "Meyer et al. 2012 doi:10.1103/PhysRevLett.108.196102; Susi et al. 2016",
                "note": "published values not confirmed here; compare before quoting",
            }
    pristine60 = knock_on("C", 60e3, material="graphene", temperature=300).cross_section
    for dopant, published in (("P", 0.01), ("Al", 0.25)):
        rows[f"C neighbour of {dopant} knocked out, 60 kV (barn)"] = _row(
            pristine60, published, "Su et al. 2019, doi:10.1126/sciadv.aav2252, Table 1", "temsim: pristine C"
        )
    _record("graphene_cross_sections", rows)
    s100 = rows["sigma 12C 100 kV (barn)"]["temsim"]
    assert 0.1 < s100 < 2.0  # thermal model: non-zero at 100 kV although E_max < E_d
    assert rows["sigma 13C 100 kV (barn)"]["temsim"] < s100 / 5  # heavier isotope: far more robust
    assert pristine60 / 0.01 < 1e-6  # the pristine-lattice model cannot describe dopant neighbours
