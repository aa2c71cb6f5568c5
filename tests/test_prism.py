"""PRISM (S-matrix) STEM and frozen-phonon averaging in scan(): fast unit tests."""

import array_api_strict
import numpy as np
import pytest
from test_multislice import smooth_field

import temsim
from temsim.backend import to_numpy
from temsim.detectors import AnnularDetector, PixelatedDetector, annular_preset
from temsim.grid import Grid
from temsim.phonons import FrozenPhonons
from temsim.positions import CustomScan, GridScan
from temsim.potentials.array_potential import ArrayPotential
from temsim.solvers.prism import (
    estimate_prism_memory,
    parse_interpolation,
    plane_wave_indices,
    prism_engine,
    window_tail_fraction,
)
from temsim.structure import srtio3, tile
from temsim.waves import Probe

PERIODIC = pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")  # small periodic cells on purpose

PROBE = Probe(energy=200e3, semiangle_cutoff=20.0)


def random_specimen(rng, n=128, extent=16.0, slices=3):
    stack = np.stack([smooth_field(rng, n, extent, 40.0, 0.25) for _ in range(slices)])
    return ArrayPotential(stack, (extent, extent), 2.0)


def small_srtio3(phonons=None, reps=(2, 2, 2)):
    """A tiny SrTiO3 crystal (periodic probe overlap intended), 0.122 Å sampling."""
    atoms = tile(srtio3(), reps)
    return temsim.Potential(atoms, gpts=(32 * reps[0], 32 * reps[1]), slice_thickness=3.905 / 2, phonons=phonons)


def test_interpolation_one_equals_multislice_for_every_detector(rng):
    """f = 1 uses every plane wave of the cell: PRISM is then multislice, by linearity."""
    potential = random_specimen(rng)
    detectors = {
        "HAADF": AnnularDetector(40, 66),
        "ABF": annular_preset("ABF", 20),
        "BF": annular_preset("BF", 20),
        "4D": PixelatedDetector(max_angle=60),
    }
    positions = GridScan(start=(5, 5), end=(7, 7), gpts=(3, 3))
    ms = temsim.scan(PROBE, potential, detectors, positions)
    pr = temsim.scan(PROBE, potential, detectors, positions, method="prism", interpolation=1)
    for name in ("HAADF", "ABF", "BF"):
        np.testing.assert_allclose(pr[name].values, ms[name].values, rtol=1e-4)
    scale = ms["4D"].values.max()
    np.testing.assert_allclose(pr["4D"].values, ms["4D"].values, atol=1e-4 * scale)
    assert pr.attrs["solver"] == "prism" and pr.attrs["prism_plane_waves"] > 400


@PERIODIC
def test_vacuum_probe_is_exact_at_any_interpolation():
    """In vacuum the probe replicas tile the cell exactly: one window holds one whole period,
    so the diffraction pattern is the aperture (BF = 1, nothing scattered) at every f."""
    potential = ArrayPotential(np.zeros((1, 120, 120)), (24.0, 24.0), 1.0)
    probe = Probe(energy=200e3, semiangle_cutoff=20.0, aperture_edge=0.0)
    for f in (2, 3):
        ds = temsim.scan(
            probe,
            potential,
            {"BF": AnnularDetector(0, 21), "DF": AnnularDetector(21, 40), "4D": PixelatedDetector()},
            CustomScan([(3.1, 7.7), (12.0, 12.0)]),
            method="prism",
            interpolation=f,
        )
        np.testing.assert_allclose(ds.BF.values, 1.0, atol=1e-5)
        np.testing.assert_allclose(ds.DF.values, 0.0, atol=1e-6)
        assert ds["4D"].sizes["kx"] < 120 // f + 1  # the window's coarser reciprocal sampling
        np.testing.assert_allclose(ds["4D"].values.sum(axis=(-2, -1)), 1.0, atol=1e-5)


def test_plane_waves_lie_on_the_interpolated_lattice_inside_the_aperture():
    grid = Grid((40.0, 30.0), (400, 300))
    for factors in ((1, 1), (2, 2), (4, 2)):
        beams = plane_wave_indices(PROBE, grid, factors)
        assert np.all(beams[:, 0] % factors[0] == 0) and np.all(beams[:, 1] % factors[1] == 0)
        kx, ky = grid.kx()[beams[:, 0]], grid.ky()[beams[:, 1]]
        alpha = np.hypot(kx, ky) * PROBE.wavelength * 1e3
        assert alpha.max() <= 20.0 + PROBE.edge(grid)
        # the number of waves is the aperture's area over the lattice cell, (πα²/λ²)·(Lx Ly)/(fx fy),
        # with α reaching to the middle of the soft edge
        alpha = (20.0 + PROBE.edge(grid) / 2) * 1e-3
        expected = np.pi * (alpha / PROBE.wavelength) ** 2 * 40.0 * 30.0 / (factors[0] * factors[1])
        assert len(beams) == pytest.approx(expected, rel=0.05)


def test_bad_interpolation_factors_are_refused_with_the_fix():
    potential = ArrayPotential(np.zeros((1, 90, 90)), (18.0, 18.0), 1.0)
    detectors = {"BF": AnnularDetector(0, 20)}
    with pytest.raises(temsim.InputError, match=r"does not divide the cell's 90 grid points.*e\.g\. 96"):
        temsim.scan(PROBE, potential, detectors, method="prism", interpolation=4)
    for bad in (0, 1.5, (2, 2, 2), True):
        with pytest.raises(temsim.InputError, match="interpolation"):
            parse_interpolation(bad)
    assert parse_interpolation((3, 2)) == (3, 2)
    with pytest.raises(temsim.InputError, match="method must be"):
        temsim.scan(PROBE, potential, detectors, method="bloch-ish")


def test_small_window_warns_with_expected_error():
    potential = ArrayPotential(np.zeros((1, 96, 96)), (24.0, 24.0), 1.0)
    fraction = window_tail_fraction(PROBE, (3.0, 3.0), 0.25)
    assert 0.05 < fraction < 1  # a 3 Å window cuts a 20 mrad probe's tails
    with pytest.warns(temsim.AccuracyWarning, match=r"outside it: expect errors of about \d+%"):
        temsim.scan(
            PROBE, potential, {"BF": AnnularDetector(0, 20)}, CustomScan([(1.0, 1.0)]), method="prism", interpolation=8
        )
    # the tail fraction falls as the window grows
    assert window_tail_fraction(PROBE, (12.0, 12.0), 0.25) < window_tail_fraction(PROBE, (6.0, 6.0), 0.25) < fraction


def test_memory_estimate_and_refusal():
    grid = Grid((48.0, 48.0), (480, 480))
    one = estimate_prism_memory(PROBE, grid, 1)
    four = estimate_prism_memory(PROBE, grid, 4)
    # 16x fewer plane waves (the aperture's lattice), same stored grid
    assert one["beams"] / four["beams"] == pytest.approx(16, rel=0.1)
    assert one["s_matrix"] == one["beams"] * one["cropped_gpts"][0] * one["cropped_gpts"][1] * 8
    # the stored grid holds the 2/3-Nyquist band only
    assert one["cropped_gpts"][0] < 480 * 0.7
    potential = ArrayPotential(np.zeros((1, 480, 480)), (48.0, 48.0), 1.0)
    with pytest.raises(temsim.MemoryLimitError, match="raise the interpolation factor"):
        prism_engine(PROBE, [potential], potential.grid, 1, np, memory_limit=one["s_matrix"] // 2)


@PERIODIC
def test_prism_core_on_array_api_strict_matches_numpy(rng):
    potential = random_specimen(rng, n=64, extent=8.0, slices=2)
    positions = np.array([[2.0, 3.0], [5.5, 5.0], [7.9, 0.5]])
    out = []
    for xp in (np, array_api_strict):
        engine = prism_engine(PROBE, [potential], potential.grid, 2, xp)
        intensity = engine.intensities_at(0, positions, 0.0)
        det = AnnularDetector(20, 60).compile(engine.detector_grid, 200e3, xp)
        out.append((to_numpy(intensity), to_numpy(det.measure(intensity))))
    np.testing.assert_allclose(out[1][0], out[0][0], atol=1e-6)
    np.testing.assert_allclose(out[1][1], out[0][1], rtol=1e-4)


@PERIODIC
def test_prism_thickness_series_equals_separate_runs(rng):
    potential = random_specimen(rng, n=128, extent=16.0, slices=4)
    detectors = {"ADF": AnnularDetector(25, 60), "BF": AnnularDetector(0, 20)}
    positions = CustomScan([(4.0, 4.0), (9.0, 6.5)])
    series = temsim.scan(PROBE, potential, detectors, positions, method="prism", interpolation=2, save_every=2)
    assert series.ADF.dims == ("thickness", "scan_position")
    np.testing.assert_allclose(series.thickness.values, [4.0, 8.0])
    slices = np.stack([to_numpy(s) for s in potential.iter_slices()])
    thin = ArrayPotential(slices[:2], (16.0, 16.0), 2.0)
    for index, specimen in ((0, thin), (1, potential)):
        single = temsim.scan(PROBE, specimen, detectors, positions, method="prism", interpolation=2)
        # equal to complex64 rounding: 1e-5 relative, or 1e-9 of the incident beam for the weak
        # ADF signal (≈ 1e-5 of the beam here), which intermediate and final S-matrices reach by
        # different FFT paths
        np.testing.assert_allclose(series.ADF.values[index], single.ADF.values, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(series.BF.values[index], single.BF.values, rtol=1e-5, atol=1e-9)
    # multislice gives the same thickness series from one propagation (PRISM at f = 1 is multislice)
    exact = temsim.scan(PROBE, potential, detectors, positions, method="prism", interpolation=1, save_every=2)
    multislice = temsim.scan(PROBE, potential, detectors, positions, save_every=2)
    assert multislice.ADF.dims == ("thickness", "scan_position") and multislice.attrs["solver"] == "multislice"
    np.testing.assert_allclose(multislice.thickness.values, [4.0, 8.0])
    for name in detectors:
        np.testing.assert_allclose(multislice[name].values, exact[name].values, rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------------------------
# frozen phonons in the solvers
# ------------------------------------------------------------------------------------------

DETECTORS = {"HAADF": AnnularDetector(40, 66), "BF": AnnularDetector(0, 20)}
SCAN = CustomScan([(0.0, 0.0), (1.95, 1.95), (0.98, 0.0)])


@PERIODIC
def test_without_phonons_the_diffuse_part_is_zero():
    potential = small_srtio3()
    for method in ("multislice", "prism"):
        ds = temsim.scan(PROBE, potential, DETECTORS, SCAN, method=method, elastic=True)
        np.testing.assert_allclose(ds.HAADF_diffuse.values, 0.0, atol=1e-6 * ds.HAADF.values.max())
        np.testing.assert_allclose(ds.HAADF_elastic.values, ds.HAADF.values, rtol=1e-4)
        assert ds.HAADF_elastic.attrs["component"] == "elastic"


@PERIODIC
def test_phonon_average_splits_into_elastic_and_diffuse_the_same_way_in_both_solvers():
    phonons = FrozenPhonons(sigmas={"Sr": 0.1, "Ti": 0.1, "O": 0.1}, num_configs=3, seed=7)
    potential = small_srtio3(phonons)
    ms = temsim.scan(PROBE, potential, DETECTORS, SCAN, elastic=True)
    pr = temsim.scan(PROBE, potential, DETECTORS, SCAN, method="prism", interpolation=1, elastic=True)
    for name in ("HAADF", "HAADF_elastic", "BF", "BF_elastic"):
        np.testing.assert_allclose(pr[name].values, ms[name].values, rtol=2e-4)
    # ⟨|ψ|²⟩ ≥ |⟨ψ⟩|² pixel by pixel, so the diffuse part of any detector is ≥ 0 and here > 0
    assert np.all(ms.HAADF_diffuse.values > 0)
    np.testing.assert_allclose(ms.HAADF_diffuse.values, ms.HAADF.values - ms.HAADF_elastic.values)
    # and the total is the plain average over the configurations, each computed statically
    static = [temsim.scan(PROBE, p, DETECTORS, SCAN).HAADF.values for p in potential.configurations()]
    np.testing.assert_allclose(ms.HAADF.values, np.mean(static, axis=0), rtol=1e-5)


@PERIODIC
def test_same_seed_same_result_different_seed_different_configurations():
    def run(seed):
        phonons = FrozenPhonons(sigmas=0.1, num_configs=2, seed=seed)
        return temsim.scan(PROBE, small_srtio3(phonons), DETECTORS, SCAN, method="prism", interpolation=2).HAADF.values

    first, again, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first, again)
    assert np.max(np.abs(other - first)) > 1e-3 * np.max(first)
    a = [p.atoms.positions for p in small_srtio3(FrozenPhonons(sigmas=0.1, num_configs=2, seed=1)).configurations()]
    b = [p.atoms.positions for p in small_srtio3(FrozenPhonons(sigmas=0.1, num_configs=2, seed=2)).configurations()]
    assert not np.allclose(a[0], b[0]) and not np.allclose(a[0], a[1])


def test_bad_phonon_inputs_are_refused():
    with pytest.raises(temsim.InputError, match="≥ 0"):
        FrozenPhonons(sigmas=-0.1)
    with pytest.raises(temsim.InputError, match="num_configs"):
        FrozenPhonons(sigmas=0.1, num_configs=0)
    with pytest.raises(temsim.InputError, match="FrozenPhonons"):
        temsim.Potential(srtio3(), gpts=(32, 32), phonons={"Sr": 0.1})


def test_potential_configurations_are_static_copies_with_displaced_atoms():
    phonons = FrozenPhonons(sigmas=0.1, num_configs=3, seed=3)
    potential = small_srtio3(phonons)
    configurations = list(potential.configurations())
    assert len(configurations) == 3 and potential.phonons is phonons
    assert all(
        c.phonons is None and c.grid == potential.grid and c.num_slices == potential.num_slices for c in configurations
    )
    shift = configurations[0].atoms.positions - potential.atoms.positions
    shift[:, :2] = (shift[:, :2] + 1.0) % potential.grid.extent[0] - 1.0  # undo lateral wrapping
    assert 0.03 < np.std(shift) < 0.2
    assert potential.tile((2, 1)).phonons is phonons
    assert list(small_srtio3().configurations())[0].phonons is None


@PERIODIC
def test_phonon_convergence_reports_running_mean_and_standard_error():
    from temsim.convergence import phonon_convergence, standard_error

    phonons = FrozenPhonons(sigmas=0.1, num_configs=4, seed=5)
    potential = small_srtio3(phonons)
    study = phonon_convergence(PROBE, potential, DETECTORS, SCAN, method="prism", interpolation=2)
    averaged = temsim.scan(PROBE, potential, DETECTORS, SCAN, method="prism", interpolation=2)
    # the last running mean is the frozen-phonon average scan() computes
    np.testing.assert_allclose(study.HAADF.values[-1], averaged.HAADF.values, rtol=1e-5)
    assert study.HAADF.dims == ("num_configs", "scan_position")
    assert np.isnan(study.HAADF_relative_error.values[0]) and np.all(study.HAADF_relative_error.values[1:] > 0)
    assert np.all(study.HAADF_standard_error.values[1:] > 0)
    # SE = s/√n on known numbers
    np.testing.assert_allclose(standard_error(np.array([1.0, 2.0, 3.0, 4.0])), np.std([1, 2, 3, 4], ddof=1) / 2)
    with pytest.raises(temsim.InputError, match="phonons"):
        phonon_convergence(PROBE, small_srtio3(), DETECTORS, SCAN)
