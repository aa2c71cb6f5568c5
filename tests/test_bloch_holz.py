"""The 3-D (higher-order-Laue-zone) Bloch solver: the period propagator and its Bloch waves."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from temsim.errors import InputError
from temsim.solvers.bloch import solve_bloch
from temsim.solvers.bloch_holz import PeriodPropagator, harmonic_weights, holz_amplitudes, propagator_modes
from temsim.structure import srtio3

E = 200e3


@pytest.fixture(scope="module")
def sto_holz():
    return solve_bloch(srtio3(), E, (0, 0, 1), g_max=2.0, holz=True, holz_slice=0.25)


def test_harmonic_weights_are_sub_slice_averages():
    """Row k averages exp(2πi l z/c) over sub-slice k; the rows of l ≠ 0 sum to zero over a period."""
    s, l_max = 8, 5
    w = harmonic_weights(s, l_max)
    z = (np.arange(s)[:, None] + (np.arange(2000)[None, :] + 0.5) / 2000) / s  # z/c inside each sub-slice
    for j, l in enumerate(range(-l_max, l_max + 1)):
        np.testing.assert_allclose(w[:, j], np.exp(2j * np.pi * l * z).mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(w.sum(axis=0)[np.arange(-l_max, l_max + 1) != 0], 0, atol=1e-12)


def test_holz_conserves_current_and_sees_the_3d_crystal(sto_holz):
    """Unitary period operator: Σ|φ_g|² = 1 to 1e-10 at whole and fractional periods."""
    c = sto_holz.crystal.period
    t = np.array([0.0, 0.3, 1.7, c, 10 * c + 0.9, 128 * c])
    phi = sto_holz.amplitudes(t)
    np.testing.assert_allclose((np.abs(phi) ** 2).sum(axis=1), 1.0, atol=1e-10)
    np.testing.assert_allclose(np.abs(phi[0]), np.eye(1, phi.shape[1])[0], atol=1e-12)
    # SrTiO3 [001] slices are centrosymmetric about a column and mirror-symmetric about the
    # SrO plane: both savings apply
    assert sto_holz.propagator.real and sto_holz.propagator.mirror


def test_holz_thickness_is_continuous_across_period_boundaries(sto_holz):
    """Just below a whole period (sub-slice steps) equals the period by the Bloch modes."""
    c = sto_holz.crystal.period
    t = np.array([5 * c - 1e-6, 5 * c, 5 * c + 1e-6])
    phi = sto_holz.amplitudes(t)
    np.testing.assert_allclose(phi[0], phi[1], atol=1e-5)
    np.testing.assert_allclose(phi[2], phi[1], atol=1e-5)


def test_holz_with_only_the_mean_harmonic_is_the_projected_solver():
    """Keeping only l = 0 (the potential averaged along the beam) reproduces the ZOLZ solver."""
    zolz = solve_bloch(srtio3(), E, (0, 0, 1), g_max=2.0)
    prop = PeriodPropagator.build(
        zolz.crystal, zolz.beams.indices, zolz.beams.g, E, (0.0, 0.0), "lobato", None, None, 0.0, 0.5, l_max=0
    )
    gamma, w, alpha = propagator_modes(prop, np)
    t = np.array([10.0, 97.3, 503.1])
    np.testing.assert_allclose(holz_amplitudes(prop, gamma, w, alpha, t), zolz.amplitudes(t), atol=1e-9)


def test_holz_converges_at_second_order_in_the_sub_slice():
    """Halving Δz shrinks the change about four times (second-order splitting)."""
    atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    t = np.arange(1, 131) * 3.8403
    runs = [
        np.abs(solve_bloch(atoms, E, (1, 1, 0), g_max=2.0, holz=True, holz_slice=h).amplitudes(t)) ** 2
        for h in (0.5, 0.25, 0.125)
    ]
    first, second = np.abs(runs[1] - runs[0]).max(), np.abs(runs[2] - runs[1]).max()
    assert 2.5 < first / second < 6
    assert second < 2e-3


def test_holz_differs_from_the_projection_for_a_thick_crystal(sto_holz):
    """The structure along the beam matters at 50 nm (the ZOLZ model is not exact)."""
    zolz = solve_bloch(srtio3(), E, (0, 0, 1), g_max=2.0)
    t = np.array([500.0])
    a = np.abs(zolz.amplitudes(t)) ** 2
    b = np.abs(sto_holz.amplitudes(t)) ** 2
    assert np.abs(a - b).max() > 1e-3  # 2e-3 with these 45 beams; up to 0.1 with the full band
    assert sto_holz.to_dataset(t).attrs["holz"] is True


def test_holz_under_array_api_strict(sto_holz):
    xps = pytest.importorskip("array_api_strict")
    prop = sto_holz.propagator
    gamma, w, alpha = propagator_modes(prop, xps)
    t = np.array([0.0, 7.1, 300.0])
    ours = np.asarray(holz_amplitudes(prop, gamma, w, alpha, t))
    np.testing.assert_allclose(ours, sto_holz.amplitudes(t), atol=1e-9)


def test_holz_bad_input():
    with pytest.raises(InputError, match="holz must be True or False"):
        solve_bloch(srtio3(), E, (0, 0, 1), g_max=1.0, holz="yes")
    with pytest.raises(InputError, match="holz_slice"):
        solve_bloch(srtio3(), E, (0, 0, 1), g_max=1.0, holz=True, holz_slice=-0.1)


def test_holz_convergent_beam_conserves_the_probe():
    """CBED of the 3-D crystal: every partial wave solved with holz=True; with discs that do not
    overlap (3 mrad, reflections 9.8 mrad apart) the pattern holds the whole probe (no
    absorption), and it differs from the projected model."""
    from temsim.optics import Aberrations
    from temsim.solvers.bloch_probe import bloch_cbed
    from temsim.waves import Probe

    probe = Probe(E, 3.0, Aberrations(C10=-20.0))
    kwargs = dict(thickness=[300.0], repetitions=(3, 3), sampling=0.15, g_max=1.5)
    flat = bloch_cbed(probe, srtio3(), (0, 0, 1), **kwargs)
    deep = bloch_cbed(probe, srtio3(), (0, 0, 1), holz=True, holz_slice=0.5, **kwargs)
    assert float(deep.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(flat.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(np.abs(deep - flat).max()) > 1e-5
