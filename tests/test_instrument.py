"""The instrument: segmented-detector rotation, the probe's soft aperture edge, the source size
(partial spatial coherence), the focal spread from the energy spread, and microscope presets."""

import math

import numpy as np
import pytest
import xarray as xr

from temsim.constants import wavelength
from temsim.detectors import SegmentedDetector
from temsim.errors import InputError
from temsim.grid import Grid
from temsim.microscopes import (
    FWHM_PER_SIGMA,
    PRESET_NAMES,
    focal_spread_from_energy_spread,
    microscope_preset,
    preset_sources,
    source_blur,
)
from temsim.waves import Probe

ENERGY = 80e3


@pytest.fixture(scope="module")
def grid():
    return Grid(extent=(20.0, 20.0), gpts=(128, 128))


def _segments(detector, grid, intensity):
    compiled = detector.compile(grid, ENERGY, np)
    return np.asarray(compiled.measure(intensity[None]))[0, 0]  # (ring 0, segments)


@pytest.mark.parametrize("n", [4, 8])
def test_rotating_a_segmented_detector_by_one_segment_permutes_its_signals(grid, n):
    """Rotating an N-segment detector by 360°/N moves segment j+1's area onto segment j."""
    intensity = np.random.default_rng(3).random(grid.gpts)  # no symmetry at all
    plain = _segments(SegmentedDetector(5.0, 40.0, nsegments=n), grid, intensity)
    rotated = _segments(SegmentedDetector(5.0, 40.0, nsegments=n, rotation=2 * np.pi / n), grid, intensity)
    np.testing.assert_allclose(rotated, np.roll(plain, -1), rtol=1e-6)
    # a rotation by half a segment is a different layout, and the total is the same ring
    half = _segments(SegmentedDetector(5.0, 40.0, nsegments=n, rotation=np.pi / n), grid, intensity)
    assert not np.allclose(half, plain, rtol=1e-3) and half.sum() == pytest.approx(plain.sum(), rel=1e-6)


def test_quadrants_see_a_rotated_pattern_rotated(grid):
    """A diffraction pattern turned by 90° about the optic axis moves each quadrant's signal to the next one."""
    intensity = np.random.default_rng(4).random(grid.gpts)
    n = grid.gpts[0]
    negative = (-np.arange(n)) % n  # FFT index of −k
    turned = intensity.T[negative, :]  # new(kx, ky) = old(ky, −kx): turned counter-clockwise by 90°
    plain = _segments(SegmentedDetector(5.0, 40.0), grid, intensity)
    after = _segments(SegmentedDetector(5.0, 40.0), grid, turned)
    np.testing.assert_allclose(after, np.roll(plain, 1), rtol=1e-6)


def test_the_aperture_edge_changes_the_probe_smoothly_and_keeps_it_normalized(grid):
    """Every edge width gives a probe with Σ|ψ|² = 1; the probe changes continuously with the width
    (a small change of the edge, a small change of the probe) and a wider edge lowers the peak."""
    edges = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
    probes = [Probe(ENERGY, 25.0, aperture_edge=e).intensity(grid, (10.0, 10.0)) for e in edges]
    for p in probes:
        assert p.sum() == pytest.approx(1.0, rel=1e-10)
    steps = [np.abs(b - a).sum() for a, b in zip(probes, probes[1:])]
    widths = np.diff(edges)
    # smooth: the change per mrad of edge stays bounded (no jump), and vanishes with the step
    assert max(s / w for s, w in zip(steps, widths)) < 0.2
    tiny = Probe(ENERGY, 25.0, aperture_edge=1.0 + 1e-3).intensity(grid, (10.0, 10.0))
    assert np.abs(tiny - probes[3]).sum() < 1e-3 * 0.2
    # the probe departs further from the hard-aperture probe the wider the edge
    departures = [np.abs(p - probes[0]).sum() for p in probes[1:]]
    assert all(b > a for a, b in zip(departures, departures[1:]))
    with pytest.raises(InputError, match="aperture_edge"):
        Probe(ENERGY, 25.0, aperture_edge=-1.0)


def _image(rng, shape=(12, 10), step=0.3):
    x = np.arange(shape[0]) * step
    y = np.arange(shape[1]) * step
    values = 1.0 + np.exp(-((x[:, None] - 1.5) ** 2 + (y[None, :] - 1.4) ** 2) / 0.05)
    values = values[..., None] * (1 + 0.1 * rng.random((1, 1, 3)))
    return xr.DataArray(values, dims=("scan_x", "scan_y", "segment"), coords={"scan_x": x, "scan_y": y})


def test_source_blur_keeps_the_total_signal_and_lowers_the_contrast():
    """Partial spatial coherence redistributes the signal over probe positions: the total per
    channel is kept, the contrast falls monotonically with the source size, and a Gaussian
    source blurs an (approximate) point image to a Gaussian of the summed variances."""
    da = _image(np.random.default_rng(0))
    totals = da.sum(("scan_x", "scan_y")).values
    contrasts = []
    for fwhm in (0.0, 0.3, 0.8, 2.0):
        blurred = source_blur(da, fwhm)
        np.testing.assert_allclose(blurred.sum(("scan_x", "scan_y")).values, totals, rtol=1e-12)
        contrasts.append(float(blurred.isel(segment=0).max() - blurred.isel(segment=0).min()))
    assert contrasts[0] > contrasts[1] > contrasts[2] > contrasts[3] > 0
    # a delta at the centre of a periodic 64×64 scan becomes the sampled Gaussian of σ = FWHM/2.3548
    step, fwhm = 0.1, 0.5
    coords = np.arange(64) * step
    delta = xr.DataArray(np.zeros((64, 64)), dims=("scan_x", "scan_y"), coords={"scan_x": coords, "scan_y": coords})
    delta[32, 32] = 1.0
    blurred = source_blur(delta, fwhm, boundary="wrap").values
    sigma = fwhm / FWHM_PER_SIGMA
    r2 = (coords[:, None] - coords[32]) ** 2 + (coords[None, :] - coords[32]) ** 2
    expected = np.exp(-r2 / (2 * sigma**2))
    np.testing.assert_allclose(blurred, expected / expected.sum(), atol=2e-3 * blurred.max())
    variance = (blurred * (coords[:, None] - coords[32]) ** 2).sum()
    assert variance == pytest.approx(sigma**2, rel=0.02)


def test_source_blur_refuses_bad_sizes():
    da = _image(np.random.default_rng(1))
    for bad in (-0.1, math.inf, math.nan):
        with pytest.raises(InputError, match="source size"):
            source_blur(da, bad)
    with pytest.raises(InputError, match="boundary"):
        source_blur(da, 0.5, boundary="nearest")


def test_focal_spread_from_energy_spread_follows_the_wavelength():
    """σ_f = Cc σ_E / E × d ln(λ⁻²)/d ln E: the relativistic factor is the change of the lens's
    focusing (∝ 1/λ²) with energy, taken here numerically from the wavelength."""
    for energy in (60e3, 200e3, 300e3):
        h = 1e-4 * energy
        factor = (
            -2
            * (math.log(wavelength(energy + h)) - math.log(wavelength(energy - h)))
            / (math.log(energy + h) - math.log(energy - h))
        )
        expected = 1.4e7 * (0.7 / FWHM_PER_SIGMA) / energy * factor
        assert focal_spread_from_energy_spread(energy, 0.7, 1.4e7) == pytest.approx(expected, rel=1e-6)
    # non-relativistic limit (E ≪ m₀c²): Cc · σ_E / E
    assert focal_spread_from_energy_spread(1e3, 0.7, 1.4e7) == pytest.approx(
        1.4e7 * 0.7 / FWHM_PER_SIGMA / 1e3, rel=2e-3
    )
    with pytest.raises(InputError):
        focal_spread_from_energy_spread(200e3, -0.1, 1.4e7)


def test_presets_are_representative_with_sources_and_unknown_ones_are_refused():
    assert {"corrected-stem-cfeg", "uncorrected-tem-schottky-200kv"} <= set(PRESET_NAMES)
    cfeg, schottky = microscope_preset("corrected-stem-cfeg"), microscope_preset("uncorrected-tem-schottky-200kv")
    # a cold FEG has the narrower energy spread; a corrected instrument has a far smaller Cs
    assert 0.3 <= cfeg["energy_spread"] <= 0.4 and schottky["energy_spread"] == pytest.approx(0.7)
    assert cfeg["aberrations"]["C30"] < 1e5 <= 1e6 < schottky["aberrations"]["C30"]
    assert cfeg["energies"] == (60e3, 300e3)
    for name in PRESET_NAMES:
        preset = microscope_preset(name)
        assert preset["status"] == "representative"
        sources = preset_sources(name)
        assert set(sources) >= {"energy_spread", "chromatic_aberration", "source_size", "aberrations.C30"}
        assert all(isinstance(s, str) and s for s in sources.values())
    with pytest.raises(InputError, match="valid presets are .*corrected-stem-cfeg"):
        microscope_preset("titan-9000")
