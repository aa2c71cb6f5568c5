import tracemalloc

import array_api_strict
import numpy as np
import pytest
import xarray as xr
from test_multislice import smooth_field

import temsim
from temsim.backend import FFTPlan, to_numpy
from temsim.detectors import (
    AnnularDetector,
    CenterOfMass,
    FlexibleAnnularDetector,
    IntegratedCenterOfMass,
    IntegratedDPC,
    PixelatedDetector,
    SegmentedDetector,
    annular_preset,
    integrate_annular,
)
from temsim.grid import Grid
from temsim.imaging import hrtem_image
from temsim.optics import Aberrations
from temsim.positions import CustomScan, GridScan, LineScan
from temsim.potentials.array_potential import ArrayPotential
from temsim.solvers.multislice import SliceStack, multislice, propagate
from temsim.solvers.stem import scan
from temsim.waves import PlaneWave, Probe


def vacuum(n=192, extent=24.0, slices=2):
    return ArrayPotential(np.zeros((slices, n, n)), (extent, extent), 2.0)


def test_vacuum_bf_is_one_and_haadf_zero():
    potential = vacuum()
    probe = Probe(energy=200e3, semiangle_cutoff=20.0)
    edge = probe.edge(potential.grid)
    detectors = {"BF": AnnularDetector(0, 20 + edge), "HAADF": AnnularDetector(40, 65)}
    positions = GridScan(start=(10, 10), end=(12, 12), gpts=(2, 3))
    ds = scan(probe, potential, detectors, positions, dtype="complex128")
    np.testing.assert_allclose(ds.BF.values, 1.0, atol=1e-6)
    np.testing.assert_allclose(ds.HAADF.values, 0.0, atol=1e-6)
    single = scan(probe, potential, detectors, positions)  # complex64 default: float32 round-off
    np.testing.assert_allclose(single.BF.values, 1.0, atol=1e-5)
    assert ds.BF.dims == ("scan_x", "scan_y") and ds.BF.attrs["signal"] == "stem"


def test_airy_probe_first_zero():
    energy, alpha = 200e3, 25.0
    grid = Grid.from_sampling((40.0, 40.0), 0.02)
    probe = Probe(energy=energy, semiangle_cutoff=alpha, aperture_edge=0.0)
    intensity = probe.intensity(grid, (20.0, 20.0))
    profile = intensity[:, grid.gpts[1] // 2]
    x = grid.x() - 20.0
    right = np.flatnonzero(x > 0)
    values = profile[right]
    first = np.flatnonzero((values[1:-1] < values[:-2]) & (values[1:-1] < values[2:]))[0] + 1
    first_min = x[right][first]
    expected = 0.61 * temsim.wavelength(energy) / (alpha * 1e-3)
    assert abs(first_min - expected) <= grid.sampling[0]
    assert intensity.sum() == pytest.approx(1.0, rel=1e-6)


PERIODIC = pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")  # wrap-around intended


@PERIODIC
def test_reciprocity_bf_stem_equals_hrtem(rng):
    """Small on-axis BF detector in STEM == HRTEM with the probe aperture as objective aperture."""
    energy, n, extent = 200e3, 64, 10.0
    v = smooth_field(rng, n, extent, 25.0, 0.4)
    potential = ArrayPotential(np.stack([v, np.roll(v, 11, 1)]), (extent, extent), 1.0)
    ab = Aberrations.from_defocus(defocus=40.0, Cs=2e4)
    alpha = 25.0
    probe = Probe(energy=energy, semiangle_cutoff=alpha, aberrations=ab, aperture_edge=0.0)
    lam = temsim.wavelength(energy)
    beta = 0.5 * lam / extent * 1e3  # half a reciprocal pixel: only k = 0
    stem = scan(probe, potential, {"BF": AnnularDetector(0, beta)}, GridScan(gpts=(n, n)), progress=False)
    ref = scan(
        probe,
        ArrayPotential(np.zeros((1, n, n)), (extent, extent), 1.0),
        {"BF": AnnularDetector(0, beta)},
        GridScan(start=(0, 0), end=(1, 1), gpts=(1, 1)),
    )
    stem_image = stem.BF.values / ref.BF.values[0, 0]
    # HRTEM: the thin specimen's exit wave through the same lens (reciprocity swaps source and detector)
    exit_wave = multislice(PlaneWave(energy=energy), potential, dtype="complex128")
    image = hrtem_image(exit_wave, ab, semiangle_cutoff=alpha).values
    error = np.linalg.norm(stem_image - image) / np.linalg.norm(image)
    assert error < 1e-2


def _weak_object(rng, n=96, extent=12.0):
    v = smooth_field(rng, n, extent, 1.0, 0.5)
    return v, ArrayPotential(v, (extent, extent), 0.01)


@PERIODIC
def test_weak_phase_com_is_gradient_of_probe_convolved_potential(rng):
    energy = 200e3
    v, potential = _weak_object(rng)
    grid = potential.grid
    probe = Probe(energy=energy, semiangle_cutoff=30.0)
    ds = scan(
        probe,
        potential,
        {"com": CenterOfMass(), "icom": IntegratedCenterOfMass(), "idpc": IntegratedDPC(5, 30)},
        GridScan(gpts=grid.gpts),
        progress=False,
    )
    # probe-convolved potential and its gradient (periodic convolution with |ψ_probe|²)
    p = np.fft.ifftshift(probe.intensity(grid, (grid.extent[0] / 2, grid.extent[1] / 2)))
    p = np.roll(np.roll(p, 0, 0), 0, 1)
    intensity_at_origin = probe.intensity(grid, (0.0, 0.0))
    conv = np.real(np.fft.ifft2(np.fft.fft2(v) * np.fft.fft2(intensity_at_origin[::-1, ::-1])))
    conv = np.roll(np.roll(conv, 1, 0), 1, 1)  # reversal about pixel 0
    kx, ky = grid.kx()[:, None], grid.ky()[None, :]
    gx = np.real(np.fft.ifft2(2j * np.pi * kx * np.fft.fft2(conv)))
    gy = np.real(np.fft.ifft2(2j * np.pi * ky * np.fft.fft2(conv)))
    sigma = temsim.interaction_parameter(energy)
    com = ds.com.values
    for got, expected in ((com[..., 0], gx), (com[..., 1], gy)):
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99
        slope = np.sum(got * expected) / np.sum(expected**2)
        assert slope == pytest.approx(sigma / (2 * np.pi), rel=0.05)
    for name in ("icom", "idpc"):
        assert np.corrcoef(ds[name].values.ravel(), conv.ravel())[0, 1] > 0.99


def test_flexible_detector_reproduces_annular(rng):
    energy = 200e3
    v = smooth_field(rng, 160, 16.0, 300.0, 0.15)
    potential = ArrayPotential(np.stack([v, np.roll(v, 40, 0)]), (16.0, 16.0), 2.0)
    probe = Probe(energy=energy, semiangle_cutoff=20.0)
    ds = scan(
        probe,
        potential,
        {
            "flex": FlexibleAnnularDetector(step=2.0),
            "adf": AnnularDetector(40, 80),
            "segments": SegmentedDetector(40, 80, nsegments=6, rings=2),
        },
        CustomScan([(8.0, 8.0), (3.0, 5.0)]),
    )
    np.testing.assert_allclose(integrate_annular(ds.flex, 40, 80).values, ds.adf.values, rtol=1e-5)
    np.testing.assert_allclose(ds.segments.sum(("ring", "segment")).values, ds.adf.values, rtol=1e-5)
    assert ds.adf.dims == ("scan_position",)


def test_pixelated_detector_conserves_intensity_and_bins():
    potential = vacuum(n=128, extent=16.0)
    probe = Probe(energy=200e3, semiangle_cutoff=15.0)
    ds = scan(
        probe,
        potential,
        {"full": PixelatedDetector(), "binned": PixelatedDetector(max_angle=30, binning=2)},
        LineScan(start=(4, 4), end=(8, 8), gpts=3),
    )
    # two pixelated detectors with different sampling: their dims get the detector's name
    assert ds.full.dims == ("scan_position", "full_kx", "full_ky")
    np.testing.assert_allclose(ds.full.sum(("full_kx", "full_ky")).values, 1.0, atol=1e-5)
    np.testing.assert_allclose(ds.binned.sum(("binned_kx", "binned_ky")).values, 1.0, atol=1e-5)
    assert ds.sizes["binned_kx"] * 2 <= ds.sizes["full_kx"]
    single = scan(probe, potential, {"4D": PixelatedDetector()}, LineScan(start=(4, 4), end=(8, 8), gpts=3))
    assert single["4D"].dims == ("scan_position", "kx", "ky")


def test_presets_and_bad_detectors():
    assert annular_preset("ABF", 20.0) == AnnularDetector(10.0, 20.0)
    with pytest.raises(temsim.InputError, match="valid presets"):
        annular_preset("XYZ", 20.0)
    with pytest.raises(temsim.InputError, match="smaller than"):
        AnnularDetector(80, 40)
    with pytest.raises(temsim.InputError):
        Probe(energy=200e3, semiangle_cutoff=-5)
    potential = vacuum(n=64, extent=16.0)
    with pytest.raises(temsim.SamplingError, match="use sampling"):
        scan(Probe(energy=200e3, semiangle_cutoff=10.0), potential, {"HAADF": AnnularDetector(70, 200)})


def test_scan_outside_cell_and_memory_refusal():
    potential = vacuum(n=256, extent=32.0)
    probe = Probe(energy=200e3, semiangle_cutoff=20.0)
    with pytest.raises(temsim.InputError, match="outside the cell"):
        scan(probe, potential, {"BF": AnnularDetector(0, 20)}, GridScan(start=(0, 0), end=(33, 4)))
    many = GridScan(gpts=(700, 700))
    with pytest.raises(temsim.MemoryLimitError, match="batch_size="):
        scan(probe, potential, {"BF": AnnularDetector(0, 20)}, many, batch_size=700 * 700)
    with pytest.raises(temsim.MemoryLimitError, match="output="):
        scan(probe, potential, {"4D": PixelatedDetector()}, many)


def test_small_cell_warns_about_wrapping_probe():
    potential = vacuum(n=48, extent=4.0)
    with pytest.warns(temsim.AccuracyWarning, match="tails"):
        scan(
            Probe(energy=200e3, semiangle_cutoff=10.0), potential, {"BF": AnnularDetector(0, 10)}, GridScan(gpts=(1, 1))
        )


def test_streamed_4d_stays_within_memory_limit_and_is_readable(tmp_path, rng):
    """4D output ~4× the memory limit: peak traced allocation stays below the limit."""
    v = smooth_field(rng, 96, 12.0, 50.0, 0.3)
    potential = ArrayPotential(np.stack([v, np.roll(v, 30, 1)]), (12.0, 12.0), 2.0)
    probe = Probe(energy=200e3, semiangle_cutoff=20.0)
    limit = 6 * 1024**2
    detectors = {"4D": PixelatedDetector(), "HAADF": AnnularDetector(40, 65), "icom": IntegratedCenterOfMass()}
    grid_scan = GridScan(gpts=(48, 48))
    path = tmp_path / "scan.nc"
    # warm-up: first-use imports (h5netcdf, xarray backends) allocate on their own
    scan(probe, potential, detectors, GridScan(gpts=(2, 2)), output=tmp_path / "warm.nc", progress=False)
    tracemalloc.start()
    ds = scan(probe, potential, detectors, grid_scan, output=path, memory_limit=limit, batch_size=16, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    data_bytes = 4 * np.prod(ds["4D"].shape)
    assert data_bytes > 4 * limit
    assert peak < limit, f"peak traced memory {peak / 1024**2:.1f} MiB above the {limit / 1024**2:.0f} MiB limit"
    reread = xr.open_dataset(path, engine="h5netcdf")
    np.testing.assert_allclose(reread["4D"].sum(("kx", "ky")).values, 1.0, atol=1e-4)
    # identical to the in-memory result for a few positions
    mem = scan(probe, potential, {"HAADF": AnnularDetector(40, 65)}, grid_scan, progress=False)
    np.testing.assert_allclose(reread.HAADF.values, mem.HAADF.values, rtol=1e-5, atol=1e-9)
    with pytest.raises(FileExistsError):
        scan(probe, potential, detectors, grid_scan, output=path)


def test_interrupted_streamed_run_resumes_to_identical_result(tmp_path, rng, monkeypatch):
    from temsim.solvers.multislice import MultisliceEngine

    v = smooth_field(rng, 64, 10.0, 50.0, 0.3)
    potential = ArrayPotential(v, (10.0, 10.0), 2.0)
    probe = Probe(energy=200e3, semiangle_cutoff=20.0)
    detectors = {"ADF": AnnularDetector(30, 50), "4D": PixelatedDetector(max_angle=40)}
    grid_scan = GridScan(gpts=(8, 8))
    path = tmp_path / "run.nc"
    original = MultisliceEngine.intensities
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MultisliceEngine, "intensities", crashing)
    with pytest.raises(KeyboardInterrupt):
        scan(probe, potential, detectors, grid_scan, output=path, batch_size=10, progress=False)
    assert not path.exists() and (tmp_path / "run.nc.part").exists()
    monkeypatch.setattr(MultisliceEngine, "intensities", original)
    resumed = scan(probe, potential, detectors, grid_scan, output=path, batch_size=10, progress=False)
    fresh = scan(probe, potential, detectors, grid_scan, batch_size=10, progress=False)
    np.testing.assert_allclose(resumed.ADF.values, fresh.ADF.values, rtol=1e-6)
    np.testing.assert_allclose(resumed["4D"].values, fresh["4D"].values, rtol=1e-5, atol=1e-10)
    assert not (tmp_path / "run.nc.part").exists()


@PERIODIC
def test_focal_spread_averaging_matches_explicit_defocus_average():
    potential = vacuum(n=96, extent=12.0, slices=1)
    base = Probe(energy=200e3, semiangle_cutoff=20.0, focal_spread=30.0, focal_samples=5)
    detector = {"BF": AnnularDetector(0, 10)}
    pos = CustomScan([(6.0, 6.0)])
    averaged = scan(base, potential, detector, pos).BF.values[0]
    offsets, weights = base.defocus_samples()
    explicit = sum(
        w
        * scan(
            Probe(energy=200e3, semiangle_cutoff=20.0, aberrations=Aberrations(C10=-d)), potential, detector, pos
        ).BF.values[0]
        for d, w in zip(offsets, weights)
    )
    assert averaged == pytest.approx(explicit, rel=1e-5)


def test_stem_core_on_array_api_strict_matches_numpy(rng):
    v = smooth_field(rng, 64, 10.0, 40.0, 0.4)
    potential = ArrayPotential(np.stack([v, np.roll(v, 9, 0)]), (10.0, 10.0), 2.0)
    probe = Probe(energy=200e3, semiangle_cutoff=20.0)
    grid = potential.grid
    positions = np.array([[2.0, 3.0], [5.5, 5.0]])
    out = []
    for xp in (np, array_api_strict):
        stack = SliceStack(potential, 200e3, xp)
        plan = FFTPlan((2,) + grid.gpts, xp)
        plan.load(probe.build(grid, positions, xp))
        propagate(plan, stack)
        plan.forward()
        intensity = xp.real(plan.buffer * xp.conj(plan.buffer)) / (grid.gpts[0] * grid.gpts[1])
        values = [
            to_numpy(det.compile(grid, 200e3, xp).measure(intensity))
            for det in (AnnularDetector(20, 50), CenterOfMass(), SegmentedDetector(5, 20))
        ]
        out.append(values)
    for a, b in zip(*out):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)
