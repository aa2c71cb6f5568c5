"""Fast checks of the Bloch-wave solver: analytic limits, conservation, symmetry, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk

from temsim.constants import interaction_parameter, wavelength
from temsim.errors import InputError, MemoryLimitError, SamplingError, StructureError
from temsim.solvers.bloch import (
    bloch,
    eigensystem,
    propagate_amplitudes,
    solve_bloch,
    structure_matrix,
)
from temsim.solvers.bloch_beams import extinction_distance, orient_crystal, structure_factors, u_from_v
from temsim.structure import srtio3

E = 200e3


@pytest.fixture(scope="module")
def sto():
    return solve_bloch(srtio3(), E, (0, 0, 1), g_max=2.5)


def _beam(ds, h, k, l=0):
    pick = (ds.h == h) & (ds.k == k) & (ds.l == l)
    return int(np.flatnonzero(pick.values)[0])


def test_two_beam_pendelloesung_from_u_g():
    """Two beams at the Bragg condition: I_g = sin²(πt/ξ_g), ξ_g = 1/(λ|U_g|), to 1e-3."""
    crystal = orient_crystal(srtio3(), (0, 0, 1))
    g = np.array([[0.0, 0.0], [2 / 3.905, 0.0]])  # (200): all atoms scatter in phase
    v = structure_factors(crystal, np.array([[0.0, 0.0], g[1], -g[1]]))
    vmat = np.array([[v[0], v[2]], [v[1], v[0]]])
    lam = wavelength(E)
    tilt_k = (-g[1, 0] / 2, 0.0)  # exact Bragg condition: s_g = 0
    a = structure_matrix(g, vmat, E, tilt_k)
    gamma, c = eigensystem(a, hermitian=True)
    t = np.linspace(0, 2000, 401)
    phi = propagate_amplitudes(gamma, c, np.conj(c[0, :]), t)
    xi = 1 / (lam * abs(u_from_v(v[1], E)))
    assert xi == pytest.approx(extinction_distance(v[1], E))
    assert np.abs(np.abs(phi[:, 1]) ** 2 - np.sin(math.pi * t / xi) ** 2).max() < 1e-3
    # SrTiO3 (200) at 200 keV: ξ of a few tens of nm (a strong low-order reflection)
    assert 100 < xi < 1000


def test_kinematic_limit_thin_crystal(sto):
    """Thin crystal: I_g = (πλ|U_g| t)² sinc²(π s_g t) (kinematic) within 2%."""
    t = np.array([1.0, 2.0])
    ds = sto.to_dataset(t)
    lam = wavelength(E)
    for hk in [(1, 0), (1, 1), (2, 0)]:
        i = _beam(ds, *hk)
        s = float(ds.excitation_error[i])
        kin = (math.pi * lam * float(ds.U[i]) * t) ** 2 * np.sinc(s * t) ** 2
        assert np.allclose(ds.intensity[:, i], kin, rtol=0.02)
    # and they scale as t² (ratio 4 for 2× thickness within 2%)
    i = _beam(ds, 1, 0)
    assert float(ds.intensity[1, i] / ds.intensity[0, i]) == pytest.approx(4.0, rel=0.02)


def test_current_conservation(sto):
    t = np.linspace(0, 1000, 51)
    total = (np.abs(sto.amplitudes(t)) ** 2).sum(axis=1)
    assert np.abs(total - 1).max() < 1e-8


def test_zero_thickness_is_incident_beam(sto):
    phi = sto.amplitudes([0.0])[0]
    assert abs(phi[0] - 1) < 1e-10 and np.abs(phi[1:]).max() < 1e-10


def test_zone_axis_symmetry_and_tilt_breaks_it():
    t = np.array([100.0, 300.0])
    ds = bloch(srtio3(), E, (0, 0, 1), t, g_max=2.5)
    i = {hk: _beam(ds, *hk) for hk in [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1)]}
    ref = ds.intensity[:, i[(1, 0)]].values
    for hk in [(-1, 0), (0, 1), (0, -1)]:  # 4mm projection: all {100} equal
        assert np.allclose(ds.intensity[:, i[hk]], ref, atol=1e-10)
    assert np.allclose(ds.intensity[:, i[(1, 1)]], ds.intensity[:, i[(-1, 1)]], atol=1e-10)
    tilted = bloch(srtio3(), E, (0, 0, 1), t, g_max=2.5, tilt=(3.0, 0.0))
    j = {hk: _beam(tilted, *hk) for hk in [(2, 0), (-2, 0), (0, 2), (0, -2)]}
    # the x tilt breaks the x mirror (Friedel pair 200/-200 differs, dynamically) ...
    assert np.abs(tilted.intensity[:, j[(2, 0)]] - tilted.intensity[:, j[(-2, 0)]]).max() > 1e-2
    # ... keeps the y mirror
    assert np.allclose(tilted.intensity[:, j[(0, 2)]], tilted.intensity[:, j[(0, -2)]], atol=1e-10)
    # Friedel's law holds kinematically: a very thin crystal has I(g) ≈ I(-g) even when tilted
    thin = bloch(srtio3(), E, (0, 0, 1), [2.0], g_max=2.5, tilt=(3.0, 0.0))
    a, b = float(thin.intensity[0, _beam(thin, 2, 0)]), float(thin.intensity[0, _beam(thin, -2, 0)])
    assert abs(a - b) < 0.02 * a


def test_miller_labels_si110_and_forbidden_points_pruned():
    sol = solve_bloch(bulk("Si", cubic=True), E, (1, 1, 0), g_max=1.0)
    hkl = sol.beams.hkl
    assert np.all(hkl @ np.array([1, 1, 0]) == 0)  # zero-order Laue zone of [110]
    # the first ring is {111} (4 beams), then {002}, both with all-odd or all-even indices
    assert sorted(map(tuple, np.abs(hkl[1:5]).astype(int))) == [(1, 1, 1)] * 4
    parity = np.mod(hkl, 2)
    assert np.all((parity == parity[:, :1]).all(axis=1))


def test_miller_labels_follow_the_recorded_rotation_for_any_input_frame():
    """Labels come from zone_axis's rotation: a rotated input cell gives the same hkl, and each
    label's reciprocal vector, rotated, is the beam's g."""
    atoms = bulk("Si", cubic=True)
    turned = atoms.copy()
    turned.rotate(37.0, (0.3, -0.5, 0.8), rotate_cell=True)
    for given in (atoms, turned):
        sol = solve_bloch(given, E, (1, 1, 0), g_max=1.2)
        rotation = np.asarray(sol.crystal.atoms.info["zone_axis_rotation"])
        g3 = sol.beams.hkl @ np.linalg.inv(np.asarray(given.cell)).T @ rotation.T
        np.testing.assert_allclose(g3[:, :2], sol.beams.g, atol=1e-9)
        np.testing.assert_allclose(g3[:, 2], 0.0, atol=1e-9)
        labels = sorted(map(tuple, sol.beams.hkl.astype(int)))
        if given is atoms:
            reference = labels
    assert labels == reference


def test_exit_wave_diffraction_matches_beams(sto):
    from temsim.imaging import diffraction_pattern

    ew = sto.exit_wave([150.0], sampling=0.1)
    dp = diffraction_pattern(ew)
    ds = sto.to_dataset([150.0])
    for hk in [(0, 0), (1, 0), (1, 1)]:
        i = _beam(ds, *hk)
        value = float(dp.sel(kx=float(ds.gx[i]), ky=float(ds.gy[i]), method="nearest")[0])
        assert value == pytest.approx(float(ds.intensity[0, i]), abs=1e-6)
    # exit-wave intensity averages to 1 (no absorption)
    assert float((np.abs(ew.values) ** 2).mean()) == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(SamplingError, match="Nyquist"):
        sto.exit_wave([10.0], sampling=0.5)


def test_absorption_thin_crystal_loss():
    """With iκV the total intensity falls, initially as 1 − 2σκV₀t."""
    kappa = 0.08
    sol = solve_bloch(srtio3(), E, (0, 0, 1), g_max=1.5, absorption=kappa)
    t = np.array([0.5, 1.0, 200.0, 400.0])
    total = (np.abs(sol.amplitudes(t)) ** 2).sum(axis=1)
    v0 = float(np.real(sol.potential_coefficients[0]))
    sigma = interaction_parameter(E)
    assert total[0] == pytest.approx(1 - 2 * sigma * kappa * v0 * t[0], abs=2e-4)
    assert np.all(np.diff(total) < 0)


def test_array_api_strict_kernels_match_numpy():
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(0)
    n = 6
    v = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    v = v + v.conj().T
    g = rng.normal(size=(n, 2))
    a_np = structure_matrix(g, v, E, (0.1, 0.0))
    a_st = structure_matrix(xps.asarray(g), xps.asarray(v), E, (0.1, 0.0))
    t = np.array([0.0, 10.0, 100.0])
    gn, cn = eigensystem(a_np, True)
    gs, cs = eigensystem(a_st, True)
    pn = propagate_amplitudes(gn, cn, np.conj(cn[0, :]), t)
    ps = propagate_amplitudes(gs, cs, xps.conj(cs[0, :]), xps.asarray(t))
    assert np.allclose(np.asarray(ps), pn, atol=1e-10)
    # the general (absorbing) eigenproblem goes through the host and comes back
    gs2, cs2 = eigensystem(a_st + 0.01j * xps.eye(n, dtype=xps.complex128), False)
    assert isinstance(gs2, type(gs))


def test_bad_inputs():
    with pytest.raises(InputError, match="integers"):
        bloch(srtio3(), E, (0.5, 0.5, 0), [10.0])
    with pytest.raises(InputError, match="≥ 0"):
        bloch(srtio3(), E, (0, 0, 1), [10.0, -5.0])
    slab = srtio3()
    slab.pbc = (True, True, False)
    with pytest.raises(StructureError, match="not periodic along c"):
        bloch(slab, E, (0, 0, 1), [10.0])
    vacuum = srtio3()
    vacuum.set_cell([3.905, 3.905, 20.0])
    with pytest.raises(StructureError, match="slab"):
        bloch(vacuum, E, (0, 0, 1), [10.0])
    with pytest.raises(MemoryLimitError, match=r"lower g_max to about"):
        bloch(srtio3(), E, (0, 0, 1), [10.0], g_max=3.0, memory_limit=10_000_000)
    with pytest.raises(InputError, match="g_max"):
        bloch(srtio3(), E, (0, 0, 1), [10.0], g_max=-1)
    with pytest.raises(InputError, match="absorption"):
        bloch(srtio3(), E, (0, 0, 1), [10.0], absorption=2.0)


def test_dataset_labels_and_defaults_are_recorded():
    ds = bloch(srtio3(), E, (0, 0, 1), [10.0, 20.0], g_max=1.0)
    assert ds.intensity.dims == ("thickness", "beam")
    assert ds.attrs["g_max"] == 1.0 and ds.attrs["num_beams"] == ds.sizes["beam"]
    assert (int(ds.h[0]), int(ds.k[0]), int(ds.l[0])) == (0, 0, 0)
    assert set(map(int, np.abs(ds.h.values))) <= {0, 1, 2, 3}


def test_symmetry_reduction_gives_the_full_solution():
    """Untilted incidence: one row per orbit of symmetry-equivalent beams, same amplitudes to 1e-10."""
    t = np.arange(0.0, 1001.0, 50.0)
    for atoms, uvw in ((srtio3(), (0, 0, 1)), (bulk("Si", cubic=True), (1, 1, 0))):
        reduced = solve_bloch(atoms, E, uvw, g_max=2.5)
        full = solve_bloch(atoms, E, uvw, g_max=2.5, symmetry=False)
        assert reduced.expansion is not None and full.expansion is None
        assert reduced.settings["symmetry_orbits"] < reduced.num_beams / 1.9
        np.testing.assert_allclose(reduced.amplitudes(t), full.amplitudes(t), atol=1e-10)
    # SrTiO3 [001] is 4mm: the reduction is about eightfold
    sto = solve_bloch(srtio3(), E, (0, 0, 1), g_max=2.5)
    assert sto.settings["symmetry_orbits"] < sto.num_beams / 6
    # a tilt breaks the symmetry: no reduction
    assert solve_bloch(srtio3(), E, (0, 0, 1), g_max=2.5, tilt=(1.0, 0.0)).expansion is None
