import math

import array_api_strict
import numpy as np
import pytest

import temsim
from temsim.backend import FFTPlan, to_numpy
from temsim.grid import Grid
from temsim.potentials.array_potential import ArrayPotential
from temsim.solvers.multislice import SliceStack, multislice, propagate
from temsim.waves import PlaneWave


def smooth_field(rng, n, extent, amplitude, width):
    """A random smooth (band-limited) projected potential, V·Å."""
    grid = Grid((extent, extent), (n, n))
    noise = rng.standard_normal((n, n))
    k2 = grid.k2()
    field = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-k2 * (np.pi * width) ** 2)))
    field -= field.min()
    return (amplitude * field / field.max()).astype(np.float32)


def test_vacuum_plane_wave_is_unchanged():
    potential = ArrayPotential(np.zeros((5, 32, 32)), (8.0, 8.0), 2.0)
    wave = multislice(PlaneWave(energy=200e3), potential)
    np.testing.assert_allclose(wave.values, 1.0, atol=1e-6)


def test_single_thin_slice_gives_phase_sigma_v(rng):
    v = smooth_field(rng, 64, 12.0, 10.0, 0.6)
    potential = ArrayPotential(v, (12.0, 12.0), 1e-6)  # negligible propagation
    wave = multislice(PlaneWave(energy=200e3), potential, dtype="complex128")
    sigma = temsim.interaction_parameter(200e3)
    np.testing.assert_allclose(np.angle(wave.values), sigma * v, atol=2e-3 * sigma * v.max())


def test_norm_is_conserved_for_band_limited_phase_object(rng):
    v = smooth_field(rng, 64, 12.0, 20.0, 0.8)
    potential = ArrayPotential(np.stack([v] * 10), (12.0, 12.0), 2.0)
    wave = multislice(PlaneWave(energy=100e3), potential, dtype="complex128")
    assert np.mean(np.abs(wave.values) ** 2) == pytest.approx(1.0, abs=1e-6)


def test_free_space_propagation_of_gaussian_matches_fresnel():
    """Vacuum propagation of a Gaussian beam vs the analytic paraxial solution."""
    energy = 200e3
    lam = temsim.wavelength(energy)
    n, extent, w0, z = 256, 40.0, 1.5, 200.0
    grid = Grid((extent, extent), (n, n))
    x = grid.x() - extent / 2
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    psi0 = np.exp(-r2 / w0**2).astype(np.complex128)
    potential = ArrayPotential(np.zeros((10, n, n)), (extent, extent), z / 10)
    stack = SliceStack(potential, energy, np, dtype="complex128")
    plan = FFTPlan((n, n), np, "complex128")
    plan.load(psi0)
    propagate(plan, stack)
    zr = math.pi * w0**2 / lam
    wz = w0 * math.sqrt(1 + (z / zr) ** 2)
    expected = (w0 / wz) ** 2 * np.exp(-2 * r2 / wz**2)
    np.testing.assert_allclose(np.abs(plan.buffer) ** 2, expected, atol=2e-4)


def test_tilted_propagator_equals_explicitly_tilted_wave(rng):
    """Tilt through the propagator == a tilted incident wave, in the beam's frame."""
    energy, n, extent = 200e3, 64, 12.0
    lam = temsim.wavelength(energy)
    v = smooth_field(rng, n, extent, 15.0, 0.7)
    potential = ArrayPotential(np.stack([v, np.roll(v, 7, 0), np.roll(v, 3, 1)]), (extent, extent), 3.0)
    grid = potential.grid
    kt = np.array([2 / extent, -1 / extent])  # commensurate with the cell
    tilt = tuple(kt * lam * 1e3)
    tilted = multislice(PlaneWave(energy=energy, tilt=tilt), potential, dtype="complex128").values
    x, y = grid.x()[:, None], grid.y()[None, :]
    ramp = np.exp(2j * np.pi * (kt[0] * x + kt[1] * y))
    stack = SliceStack(potential, energy, np, dtype="complex128")
    plan = FFTPlan(grid.gpts, np, "complex128")
    plan.load(ramp)
    propagate(plan, stack)
    explicit = plan.buffer / ramp
    explicit *= np.exp(1j * np.pi * lam * potential.thickness * (kt**2).sum())  # constant phase
    np.testing.assert_allclose(tilted, explicit, atol=1e-6)


def test_thickness_series_ends_with_exit_wave(rng):
    v = smooth_field(rng, 32, 8.0, 5.0, 0.5)
    potential = ArrayPotential(np.stack([v] * 7), (8.0, 8.0), 1.5)
    series = multislice(PlaneWave(energy=200e3), potential, save_every=2)
    exit_wave = multislice(PlaneWave(energy=200e3), potential)
    np.testing.assert_allclose(series.thickness, [3.0, 6.0, 9.0, 10.5])
    np.testing.assert_allclose(series.isel(thickness=-1).values, exit_wave.values, atol=1e-6)
    shorter = multislice(PlaneWave(energy=200e3), ArrayPotential(np.stack([v] * 4), (8.0, 8.0), 1.5))
    np.testing.assert_allclose(series.sel(thickness=6.0).values, shorter.values, atol=1e-5)


def test_array_api_strict_kernel_matches_numpy(rng):
    v = smooth_field(rng, 48, 10.0, 30.0, 0.5)
    potential = ArrayPotential(np.stack([v, 0.5 * v, np.roll(v, 5, 0)]), (10.0, 10.0), 2.0)
    results = []
    for xp in (np, array_api_strict):
        stack = SliceStack(potential, 200e3, xp, tilt=(1.0, -2.0))
        plan = FFTPlan(potential.grid.gpts, xp)
        plan.load(xp.ones(potential.grid.gpts, dtype=xp.complex64))
        propagate(plan, stack)
        results.append(to_numpy(plan.buffer))
    np.testing.assert_allclose(results[1], results[0], atol=1e-5)
    assert type(plan.buffer).__module__.startswith("array_api_strict")


def test_wave_grid_mismatch_raises():
    potential = ArrayPotential(np.zeros((1, 32, 32)), (8.0, 8.0), 1.0)
    with pytest.raises(temsim.GridMismatchError, match="does not match"):
        multislice(PlaneWave(energy=200e3, grid=Grid((8.0, 8.0), (64, 64))), potential)


def test_too_coarse_sampling_raises_with_advice():
    potential = ArrayPotential(np.zeros((1, 16, 16)), (16.0, 16.0), 1.0)
    with pytest.raises(temsim.SamplingError, match="sampling ≤"):
        multislice(PlaneWave(energy=200e3), potential)


def test_bad_tilt_and_save_every():
    with pytest.raises(temsim.InputError):
        PlaneWave(energy=200e3, tilt=(500.0, 0.0))
    potential = ArrayPotential(np.zeros((2, 32, 32)), (8.0, 8.0), 1.0)
    with pytest.raises(temsim.InputError, match="save_every"):
        multislice(PlaneWave(energy=200e3), potential, save_every=0)
