import math

import numpy as np
import pytest

import temsim
from temsim.optics import (
    Aberrations,
    aberration_gradient,
    aberration_phase,
    contrast_transfer_function,
    gauss_hermite_defoci,
    scherzer_defocus,
    soft_aperture,
    temporal_envelope,
)


def test_defocus_convention():
    ab = Aberrations.from_defocus(defocus=120.0, Cs=1e4)
    assert ab.C10 == -120.0 and ab.defocus == 120.0 and ab.Cs == 1e4


def test_round_aberration_phase_formula():
    energy = 200e3
    lam = temsim.wavelength(energy)
    k = np.linspace(0, 1.0, 50)
    ab = Aberrations(C10=-500.0, C30=1.2e7, C50=2e7)
    chi = aberration_phase(k, np.zeros_like(k), energy, ab)
    expected = np.pi * lam * (-500.0) * k**2 + 0.5 * np.pi * 1.2e7 * lam**3 * k**4 + (np.pi / 3) * 2e7 * lam**5 * k**6
    np.testing.assert_allclose(chi, expected, rtol=1e-12, atol=1e-12)


def test_twofold_astigmatism_has_twofold_symmetry():
    ab = Aberrations(C12=50.0, phi12=0.3)
    k = np.full(8, 0.5)
    phi = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    chi = aberration_phase(k, phi, 200e3, ab)
    np.testing.assert_allclose(chi, aberration_phase(k, phi + np.pi, 200e3, ab), atol=1e-12)
    assert abs(aberration_phase(np.array([0.5]), np.array([0.3]), 200e3, ab)[0]) > 0


def test_aberration_gradient_matches_finite_difference():
    energy = 300e3
    lam = temsim.wavelength(energy)
    ab = Aberrations(C10=-80.0, C12=20.0, phi12=0.4, C21=3e3, phi21=1.0, C23=2e3, phi23=0.2, C30=1e5, C34=4e4)
    k0, phi0 = 0.6, 0.7
    radial, azimuthal = aberration_gradient(np.array([k0]), np.array([phi0]), energy, ab)
    h = 1e-7

    def chi(k, p):
        return aberration_phase(np.array([k]), np.array([p]), energy, ab)[0]

    d_alpha = (chi(k0 + h / lam, phi0) - chi(k0 - h / lam, phi0)) / (2 * h)
    d_phi = (chi(k0, phi0 + 1e-6) - chi(k0, phi0 - 1e-6)) / 2e-6 / (k0 * lam)
    assert radial[0] == pytest.approx(d_alpha, rel=1e-5)
    assert azimuthal[0] == pytest.approx(d_phi, rel=1e-5)


def test_ctf_zeros_at_scherzer_match_analytic_positions():
    energy, cs = 200e3, 1.2e7
    lam = temsim.wavelength(energy)
    df = scherzer_defocus(cs, energy)
    grid = temsim.Grid.from_sampling((200.0, 200.0), 0.1)
    kx = grid.kx()
    ctf = contrast_transfer_function(kx[:, None], np.zeros((1, 1)), energy, Aberrations.from_defocus(df, cs))
    sin_chi = -np.imag(ctf[:, 0])
    order = np.argsort(kx)
    k_sorted, s_sorted = kx[order], sin_chi[order]
    positive = (k_sorted > 0) & (k_sorted < 0.6)
    k_pos, s_pos = k_sorted[positive], s_sorted[positive]
    crossings = k_pos[:-1][np.sign(s_pos[:-1]) != np.sign(s_pos[1:])]
    # analytic zeros: χ(k) = nπ, χ = πλ(−Δf)k² + π/2 Cs λ³ k⁴
    analytic = []
    for n in range(-3, 40):
        # (π/2)Csλ³ u² − πλΔf u − nπ = 0, u = k²
        a, b, c = 0.5 * cs * lam**3, -lam * df, -n
        disc = b * b - 4 * a * c
        if disc < 0:
            continue
        for u in ((-b + math.sqrt(disc)) / (2 * a), (-b - math.sqrt(disc)) / (2 * a)):
            if u > 0 and math.sqrt(u) < k_pos.max():
                analytic.append(math.sqrt(u))
    analytic = np.sort(analytic)
    assert len(crossings) == len(analytic) >= 3
    dk = grid.reciprocal_sampling[0]
    np.testing.assert_array_less(np.abs(crossings - analytic), dk + 1e-12)


def test_temporal_envelope_conventions():
    energy = 200e3
    lam = temsim.wavelength(energy)
    k = np.array([0.0, 0.5, 1.0])
    sigma_f = 30.0
    env = temporal_envelope(k, energy, sigma_f)
    np.testing.assert_allclose(env, np.exp(-0.5 * (np.pi * lam * sigma_f) ** 2 * k**4))
    delta = math.sqrt(2) * sigma_f  # 1/e half-width form
    np.testing.assert_allclose(env, np.exp(-((0.5 * np.pi * lam * delta * k**2) ** 2)))


def test_gauss_hermite_average_equals_temporal_envelope():
    """Averaging exp(−iχ) over Gaussian defoci gives the envelope (an independent check)."""
    energy, sigma_f = 200e3, 40.0
    lam = temsim.wavelength(energy)
    k = np.linspace(0, 0.8, 20)
    offsets, weights = gauss_hermite_defoci(sigma_f, 40)
    average = sum(w * np.exp(-1j * np.pi * lam * (-d) * k**2) for d, w in zip(offsets, weights))
    np.testing.assert_allclose(np.abs(average), temporal_envelope(k, energy, sigma_f), atol=1e-10)


def test_soft_aperture_area_is_continuous_and_hard_edge_exact():
    alpha = np.linspace(0, 40, 4001)
    hard = soft_aperture(alpha, 20.0, 0.0)
    assert hard[alpha <= 20].min() == 1 and hard[alpha > 20].max() == 0
    soft = soft_aperture(alpha, 20.0, 2.0)
    assert soft[alpha < 19].min() == 1 and soft[alpha > 21].max() == 0
    assert soft[np.argmin(abs(alpha - 20))] == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [dict(Cs=-1.0), dict(Cs=1e7, convention="nope")])
def test_scherzer_bad_input(bad):
    with pytest.raises(temsim.InputError):
        scherzer_defocus(energy=200e3, **{"Cs": 1e7, **bad})


def test_aberrations_reject_non_numbers():
    with pytest.raises(temsim.InputError, match="C30"):
        Aberrations(C30="big")
