"""Fast tests of the projected-potential stage (parametrizations, placement, slicing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from scipy.integrate import quad

from temsim.constants import BOHR_RADIUS
from temsim.constants import SCATTERING_FACTOR_TO_VOLT_A2 as K
from temsim.errors import InputError, StructureError
from temsim.potentials import (
    PARAMETRIZATIONS,
    Potential,
    band_limited_radial_potential,
    load_parametrization,
    projected_potential_at,
)
from temsim.potentials.projection import (
    accumulate_radial,
    accumulate_radial_reference,
    radial_factor,
    radial_table,
)
from temsim.potentials.superposition import BandGeometry, phase_factors

ELEMENTS = {"C": 6, "O": 8, "Si": 14, "Au": 79}


def single_atom(symbol, xy=(4.0, 4.0), z=1.0, cell=(8.0, 8.0, 2.0)):
    return Atoms(symbol, positions=[(xy[0], xy[1], z)], cell=cell)


def strontium_titanate(reps=(2, 2, 2)):
    """SrTiO3 [001] (Sr at the corner, Ti at the body centre, O at the face centres), repeated."""
    from temsim.structure import srtio3

    return srtio3().repeat(reps)


# ------------------------------------------------------------------ parametrizations
def test_unknown_parametrization_lists_valid_names():
    with pytest.raises(InputError, match="'lobato', 'kirkland'"):
        load_parametrization("peng")
    with pytest.raises(InputError, match="kirkland"):
        Potential(single_atom("C"), parametrization="doyle-turner")


@pytest.mark.parametrize("name", PARAMETRIZATIONS)
@pytest.mark.parametrize("symbol", list(ELEMENTS))
def test_real_space_potentials_integrate_to_scattering_factor(name, symbol):
    """∫ V d³r = ∫ v_z d²r = K f_e(0): checks the real-space/Fourier pair and its units."""
    p = load_parametrization(name)
    Z = ELEMENTS[symbol]
    total = K * float(p.scattering_factor(Z, 0.0))
    volume = quad(lambda r: 4 * math.pi * r * r * p.potential(Z, r), 0, np.inf, limit=400)[0]
    area = quad(lambda r: 2 * math.pi * r * p.projected_potential(Z, r), 0, np.inf, limit=400)[0]
    assert volume == pytest.approx(total, rel=1e-6)
    assert area == pytest.approx(total, rel=1e-6)
    # v_z is the z-integral of V
    for r0 in (0.1, 0.5, 1.5):
        line = 2 * quad(lambda z, r0=r0: p.potential(Z, math.hypot(r0, z)), 0, np.inf, limit=400)[0]
        assert line == pytest.approx(float(p.projected_potential(Z, r0)), rel=1e-6)


@pytest.mark.parametrize("name", PARAMETRIZATIONS)
def test_finite_projection_fourier_is_additive_and_symmetric(name):
    """Integrals over adjacent z ranges add up; halves of a symmetric atom are equal; the whole
    line is the infinite projection (the closed form against quadrature is in validation/)."""
    p = load_parametrization(name)
    k = np.linspace(0, 4, 9)
    for Z in (6, 79):
        a = p.finite_projection_fourier(Z, k, -np.inf, -0.3)
        b = p.finite_projection_fourier(Z, k, -0.3, 0.7)
        c = p.finite_projection_fourier(Z, k, 0.7, np.inf)
        whole = p.projected_potential_fourier(Z, k)
        np.testing.assert_allclose(a + b + c, whole, rtol=1e-12)
        np.testing.assert_allclose(p.finite_projection_fourier(Z, k, -np.inf, 0.0), 0.5 * whole, rtol=1e-12)
        np.testing.assert_allclose(
            p.finite_projection_fourier(Z, k, -0.4, 0.0), p.finite_projection_fourier(Z, k, 0.0, 0.4), rtol=1e-12
        )
        assert np.all(b > 0) and np.all(b < whole)


@pytest.mark.parametrize("symbol", ["C", "Si", "Au"])
def test_lobato_and_kirkland_agree(symbol):
    """Both fit the same (Dirac-)Hartree-Fock data: a mis-transcribed coefficient would show."""
    k = np.linspace(0, 2, 201)
    lob = load_parametrization("lobato").scattering_factor(ELEMENTS[symbol], k)
    kir = load_parametrization("kirkland").scattering_factor(ELEMENTS[symbol], k)
    assert np.max(np.abs(lob / kir - 1)) < 0.02  # observed: C 0.35%, Si 0.43%, Au 0.40%


@pytest.mark.parametrize("name", PARAMETRIZATIONS)
def test_all_elements_mott_bethe_limit(name):
    """Mott–Bethe (ITC Vol. C eq. 4.3.1.15): f_e(q) = (Z − f_x(q)) / (2π² a0 q²) and f_x → 0 at
    large q, so at q = 10 1/Å the scaled f_e is close to (just below) Z for every element 1–103
    (observed 0.92–1.00 for Lobato, 0.92–1.02 for Kirkland, whose fit is 2% high for He)."""
    p = load_parametrization(name)
    q = 10.0
    for Z in range(1, 104):
        ratio = float(p.scattering_factor(Z, q)) * 2 * math.pi**2 * BOHR_RADIUS * q**2 / Z
        assert 0.9 < ratio < 1.03, (Z, ratio)
        assert float(p.scattering_factor(Z, 0.0)) > 0


def test_scattering_factor_broadcasts_and_cutoff_radius():
    p = load_parametrization("lobato")
    k = np.linspace(0, 3, 12).reshape(3, 4)
    assert p.scattering_factor(6, k).shape == (3, 4)
    assert np.all(np.diff(p.scattering_factor(79, np.linspace(0, 5, 50))) < 0)
    r1 = p.cutoff_radius(79, 1e-2)
    r3 = p.cutoff_radius(79, 1e-3)
    assert 0.5 < r1 < r3 < 10
    assert float(p.projected_fraction_outside(79, r3)) <= 1e-3
    with pytest.raises(InputError):
        p.cutoff_radius(6, 2.0)
    with pytest.raises(InputError):
        p.scattering_factor(0, 1.0)


# ------------------------------------------------------------------ placement
@pytest.mark.parametrize("name", PARAMETRIZATIONS)
@pytest.mark.parametrize("projection", ["infinite", "finite"])
@pytest.mark.parametrize("symbol", list(ELEMENTS))
def test_area_integral_equals_scattering_factor(name, projection, symbol):
    pot = Potential(
        single_atom(symbol, xy=(4.013, 3.977)),
        sampling=0.1,
        slice_thickness=0.5,
        parametrization=name,
        projection=projection,
    )
    v = pot.projected().values
    dx, dy = pot.grid.sampling
    expected = K * float(load_parametrization(name).scattering_factor(ELEMENTS[symbol], 0.0))
    assert v.sum() * dx * dy == pytest.approx(expected, rel=0.01)


def test_fourier_map_matches_analytic_projected_potential_away_from_nucleus():
    """The band-limited map equals the analytic v_z(r) to within the Gibbs ringing of the
    2/3-Nyquist band limit: ≤ 2.5% of the peak beyond 3 pixels (observed C 1.7%, Au 2.2%)."""
    for symbol in ("C", "Au"):
        xy = (6.0, 6.0)
        pot = Potential(single_atom(symbol, xy=xy, cell=(12, 12, 2)), sampling=0.05, slice_thickness=2)
        v = pot.projected().values
        X, Y = np.meshgrid(pot.grid.x(), pot.grid.y(), indexing="ij")
        r = np.hypot(X - xy[0], Y - xy[1])
        sel = (r > 3 * pot.grid.sampling[0]) & (r < 4)
        ref = projected_potential_at([ELEMENTS[symbol]], [xy], np.stack([X[sel], Y[sel]], 1), cell=(12, 12), images=1)
        assert np.max(np.abs(v[sel] - ref)) < 0.025 * v.max()


def test_exact_placement_at_subpixel_offsets():
    """Pixels equal the band-limited projected potential at the pixel positions relative to the
    true atom position (0.5% of the peak), and a Fourier shift maps on-pixel to off-pixel."""
    rng = np.random.default_rng(7)
    cell = (6.0, 6.0, 2.0)
    base = (3.0, 3.0)
    pot0 = Potential(single_atom("O", xy=base, cell=cell), sampling=0.1, slice_thickness=2)
    grid = pot0.grid
    v0 = pot0.build_slice(0)
    kc = pot0.band_limit
    r_grid = np.linspace(0, 1.6, 801)
    radial = band_limited_radial_potential("lobato", 8, r_grid, kc)
    X, Y = np.meshgrid(grid.x(), grid.y(), indexing="ij")
    kx, ky = grid.kx(), grid.ky()
    for offset in rng.uniform(0, 1, (3, 2)):
        shift = offset * np.array(grid.sampling)
        pos = (base[0] + shift[0], base[1] + shift[1])
        v = Potential(single_atom("O", xy=pos, cell=cell), sampling=0.1, slice_thickness=2).build_slice(0)
        r = np.hypot(X - pos[0], Y - pos[1])
        sel = r < 1.5
        # periodic images of the band-limited function are small at r < 1.5 Å in a 6 Å cell;
        # the test allows 0.5% of the peak as the brief requires
        ref = np.interp(r[sel], r_grid, radial)
        assert np.max(np.abs(v[sel] - ref)) < 0.005 * v.max()
        shifted = np.fft.ifft2(
            np.fft.fft2(v0) * np.exp(-2j * np.pi * (kx[:, None] * shift[0] + ky[None, :] * shift[1]))
        ).real
        assert np.max(np.abs(shifted - v)) < 1e-4 * v.max()


def test_numba_kernel_matches_reference_twin():
    grid = BandGeometry.from_grid(Potential(single_atom("C"), sampling=0.2).grid)
    rng = np.random.default_rng(3)
    pos = rng.uniform(0, 8, (12, 2))
    groups = [(6, -0.4, 0.7), (8, -np.inf, 0.3), (79, -1.1, np.inf)]
    group_of_atom = rng.integers(0, 3, 12)
    p = load_parametrization("kirkland")
    spacing, table = radial_table(p, groups, float(grid.k_abs.max()))
    ex = phase_factors(grid.kx, pos[:, 0])
    ey = phase_factors(grid.ky, pos[:, 1])
    fast = accumulate_radial(ex, ey, group_of_atom, table, spacing, grid.k_abs, grid.inside)
    factors = [np.where(grid.inside, radial_factor(p, Z, grid.k_abs, z1, z2), 0.0) for Z, z1, z2 in groups]
    slow = accumulate_radial_reference(ex, ey, group_of_atom, factors)
    assert np.max(np.abs(fast - slow)) < 1e-4 * np.max(np.abs(slow))


# ------------------------------------------------------------------ finite projection
def test_finite_matches_infinite_for_atom_in_thick_slice():
    atoms = single_atom("Si", xy=(4.02, 3.96), z=6.0, cell=(8, 8, 12))
    inf = Potential(atoms, sampling=0.1, slice_thickness=12, projection="infinite").projected().values
    fin = Potential(atoms, sampling=0.1, slice_thickness=12, projection="finite").projected().values
    assert np.max(np.abs(fin - inf)) < 0.01 * inf.max()


def test_finite_projection_splits_atom_on_slice_boundary():
    atoms = single_atom("Au", xy=(4.0, 4.0), z=6.0, cell=(8, 8, 12))  # boundary of 2 slices
    pot = Potential(atoms, sampling=0.1, slice_thickness=6.0, projection="finite")
    s0, s1 = list(pot.iter_slices())
    total = Potential(atoms, sampling=0.1, slice_thickness=12, projection="infinite").projected().values
    assert s0.sum() == pytest.approx(0.5 * total.sum(), rel=1e-3)
    assert s1.sum() == pytest.approx(0.5 * total.sum(), rel=1e-3)
    assert np.max(np.abs(s0 + s1 - total)) < 1e-3 * total.max()
    # the infinite projection puts it whole into the slice containing its centre
    i0, i1 = list(Potential(atoms, sampling=0.1, slice_thickness=6.0).iter_slices())
    assert i0.sum() == 0 and i1.sum() == pytest.approx(total.sum(), rel=1e-5)


# ------------------------------------------------------------------ slicing
def test_iter_slices_sum_to_projected_and_slice_keys_repeat():
    atoms = strontium_titanate((2, 2, 3))
    pot = Potential(atoms, sampling=0.15, slice_thickness=3.905 / 2)
    slices = list(pot.iter_slices())
    assert len(slices) == pot.num_slices == 6
    assert all(s.shape == pot.grid.gpts and s.dtype == np.float32 for s in slices)
    np.testing.assert_allclose(np.sum(slices, axis=0), pot.projected().values, rtol=1e-5, atol=1e-3)
    keys = [pot.slice_key(i) for i in range(pot.num_slices)]
    assert len(set(keys)) == 2 and keys[0] == keys[2] == keys[4] and keys[0] != keys[1]
    np.testing.assert_array_equal(slices[0], slices[4])
    # different content → different key
    moved = atoms.copy()
    moved.positions[0] += (0.1, 0, 0)
    pot2 = Potential(moved, sampling=0.15, slice_thickness=3.905 / 2)
    assert pot2.slice_key(0) != pot.slice_key(0) and pot2.slice_key(2) == pot.slice_key(2)
    # finite projection: interior slices repeat too
    fin = Potential(strontium_titanate((1, 1, 6)), sampling=0.2, slice_thickness=3.905 / 2, projection="finite")
    fkeys = [fin.slice_key(i) for i in range(fin.num_slices)]
    assert fkeys[4] == fkeys[6] and fkeys[5] == fkeys[7] and fkeys[4] != fkeys[5]


def test_projected_dataarray_and_slices_metadata():
    import temsim

    pot = Potential(strontium_titanate((1, 1, 2)), sampling=0.2, slice_thickness=3.905)
    da = pot.projected()
    assert da.dims == ("x", "y") and da.attrs["units"] == "V·Å"
    assert da.attrs["parametrization"] == "lobato" and da.attrs["temsim_version"] == temsim.__version__
    np.testing.assert_allclose(da.x.values, pot.grid.x())
    sl = pot.slices()
    assert sl.dims == ("slice", "x", "y") and sl.sizes["slice"] == 2
    np.testing.assert_allclose(sl.z.values, [3.905 / 2, 3 * 3.905 / 2])
    np.testing.assert_allclose(pot.slice_thicknesses, [3.905, 3.905])
    assert pot.thickness == pytest.approx(7.81)
    assert len(pot.slice_limits) == 3


def test_array_api_strict_matches_numpy():
    xps = pytest.importorskip("array_api_strict")
    for projection in ("infinite", "finite"):
        pot = Potential(strontium_titanate((1, 1, 1)), sampling=0.2, slice_thickness=3.905 / 2, projection=projection)
        ref = list(pot.iter_slices())
        strict = list(pot.iter_slices(xp=xps))
        for a, b in zip(ref, strict):
            assert type(b).__module__.startswith("array_api_strict")
            b = np.asarray(b)
            assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))


def test_vacuum_gives_zero_and_input_is_not_mutated():
    empty = Atoms(cell=[5, 5, 4])
    pot = Potential(empty, sampling=0.25, slice_thickness=2)
    assert pot.num_slices == 2 and np.all(pot.projected().values == 0)
    atoms = single_atom("C", xy=(9.5, -1.0))  # outside the cell laterally
    before = atoms.positions.copy()
    pot = Potential(atoms, sampling=0.2, slice_thickness=2)
    np.testing.assert_array_equal(atoms.positions, before)
    assert 0 <= pot.atoms.positions[0, 0] < 8 and 0 <= pot.atoms.positions[0, 1] < 8


def test_slicing_rules_and_bad_input():
    atoms = single_atom("C", cell=(8, 8, 10))
    pot = Potential(atoms, sampling=0.2, slice_thickness=3)  # ceil(10/3) = 4 equal slices
    np.testing.assert_allclose(pot.slice_thicknesses, [2.5] * 4)
    pot = Potential(atoms, sampling=0.2, slice_thickness=[4, 6])
    np.testing.assert_allclose(pot.slice_limits, [0, 4, 10])
    with pytest.raises(InputError, match="sum to 9.000000"):
        Potential(atoms, sampling=0.2, slice_thickness=[4, 5])
    with pytest.raises(InputError, match="slice_thickness ≤ 10"):
        Potential(atoms, sampling=0.2, slice_thickness=11)
    with pytest.raises(InputError):
        Potential(atoms, sampling=0.2, slice_thickness=0)
    with pytest.raises(InputError):
        Potential(atoms, sampling=-0.1)
    with pytest.raises(InputError, match="disagree"):
        Potential(atoms, sampling=0.1, gpts=(64, 64))
    assert Potential(atoms, sampling=0.125, gpts=(64, 64)).grid.gpts == (64, 64)
    assert Potential(atoms, gpts=(40, 50)).grid.sampling == (0.2, 0.16)
    with pytest.raises(InputError, match="'infinite', 'finite'"):
        Potential(atoms, projection="exact")
    with pytest.raises(InputError):
        Potential(atoms, cutoff_tolerance=0)
    skewed = atoms.copy()
    skewed.set_cell([[8, 0, 0], [2, 8, 0], [0, 0, 10]])
    with pytest.raises(StructureError):
        Potential(skewed)


def test_tile_and_with_atoms():
    pot = Potential(strontium_titanate((1, 1, 1)), sampling=0.2, slice_thickness=3.905 / 2)
    big = pot.tile((2, 2, 3))
    assert big.grid.gpts == (2 * pot.grid.gpts[0], 2 * pot.grid.gpts[1]) and big.num_slices == 6
    assert big.projected().values.sum() == pytest.approx(12 * pot.projected().values.sum(), rel=1e-5)
    other = pot.with_atoms(single_atom("C", cell=(3.905, 3.905, 3.905), xy=(1, 1)))
    assert other.parametrization == pot.parametrization and other.num_slices == 2
