import math

import pytest

import temsim
from temsim.constants import SCATTERING_FACTOR_TO_VOLT_A2, check_energy
from temsim.grid import Grid, fast_fft_size, fft_friendly_size, is_fft_friendly, required_sampling


@pytest.mark.parametrize("energy, expected", [(80e3, 0.041757), (200e3, 0.025079), (300e3, 0.019687)])
def test_wavelength_matches_design_values(energy, expected):
    # The reference values are given to 5-6 significant digits; compare at their precision and
    # check the exact relativistic formula independently at 1e-6.
    assert temsim.wavelength(energy) == pytest.approx(expected, abs=6e-7)
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    exact = h / math.sqrt(2 * m0 * e * energy * (1 + e * energy / (2 * m0 * c**2))) * 1e10
    assert temsim.wavelength(energy) == pytest.approx(exact, rel=1e-6)


def test_interaction_parameter_200kev():
    assert temsim.interaction_parameter(200e3) == pytest.approx(7.2884e-4, rel=1e-4)
    # σ = 2π m e λ / h² with relativistic mass, independently
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    lam = temsim.wavelength(200e3) * 1e-10
    gamma = 1 + e * 200e3 / (m0 * c**2)
    assert temsim.interaction_parameter(200e3) == pytest.approx(
        2 * math.pi * gamma * m0 * e * lam / h**2 * 1e-10, rel=1e-6
    )


def test_scattering_factor_conversion_is_47_878():
    assert SCATTERING_FACTOR_TO_VOLT_A2 == pytest.approx(47.878, rel=1e-4)


@pytest.mark.parametrize("bad", [0, -200e3, float("nan"), 20e6, 200, "x"])
def test_absurd_energies_raise(bad):
    with pytest.raises(temsim.InputError):
        check_energy(bad)


def test_fft_friendly_sizes():
    assert fft_friendly_size(313) == 315
    assert all(is_fft_friendly(fft_friendly_size(n)) for n in range(1, 600))
    assert all(fft_friendly_size(n) >= n for n in range(1, 600))


def test_grid_from_sampling_never_coarsens():
    for length in (3.905, 15.62, 39.05, 7.1):
        grid = Grid.from_sampling((length, 2 * length), 0.05)
        assert max(grid.sampling) <= 0.05 + 1e-12
        assert all(is_fft_friendly(n) for n in grid.gpts)
    assert Grid.from_sampling((15.62, 15.62), 0.05).gpts == (320, 320)


def test_fast_fft_sizes_prefer_powers_of_two_within_slack():
    for n in range(2, 2000):
        m = fast_fft_size(n)
        assert is_fft_friendly(m) and n <= m <= max(fft_friendly_size(n), n * 1.06)
        assert (m & -m) >= (fft_friendly_size(n) & -fft_friendly_size(n))
    assert (fast_fft_size(313), fast_fft_size(375), fast_fft_size(781)) == (320, 384, 800)


def test_band_limit_and_required_sampling_are_consistent():
    grid = Grid.from_sampling((10.0, 10.0), required_sampling(100.0, 200e3))
    assert grid.max_angle(200e3) >= 100.0 - 1e-9
    with pytest.raises(temsim.SamplingError, match="sampling ≤"):
        Grid.from_sampling((10.0, 10.0), 0.1).check_angle(150.0, 200e3)
