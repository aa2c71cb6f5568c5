"""Frozen phonons: displacement statistics, reproducibility, B factors and the Debye model.

The statistical tests use fixed seeds, so they are deterministic; their bounds are set so
that a correct implementation would fail them with probability below 1e-6 for a random
seed (5σ for means, chi-square quantiles 1e-7 / 1 − 1e-7 for variances).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.constants as sc
from scipy import special, stats

from temsim.errors import InputError
from temsim.phonons import (
    FrozenPhonons,
    b_factor_to_sigma,
    debye_b_factor,
    debye_mean_square_displacement,
    sigma_to_b_factor,
)
from temsim.structure import graphene, srtio3, tile

Z_BOUND = 5.0  # two-sided p = 5.7e-7
CHI2_TAIL = 1e-7


def assert_mean_zero(samples: np.ndarray, sigma: float) -> None:
    n = samples.size
    assert abs(samples.mean()) <= Z_BOUND * sigma / math.sqrt(n)


def assert_variance(samples: np.ndarray, sigma: float) -> None:
    """(n−1)s²/σ² is χ²(n−1) for Gaussian samples with known σ (the mean is estimated)."""
    n = samples.size
    statistic = (n - 1) * samples.var(ddof=1) / sigma**2
    low, high = stats.chi2.ppf([CHI2_TAIL, 1 - CHI2_TAIL], n - 1)
    assert low <= statistic <= high, (statistic / (n - 1), low / (n - 1), high / (n - 1))


@pytest.fixture(scope="module")
def crystal():
    return tile(srtio3(), (8, 8, 8))  # 2560 atoms: 512 Sr, 512 Ti, 1536 O


def stacked_displacements(phonons: FrozenPhonons, atoms) -> np.ndarray:
    """(num_configs, N, 3) displacements measured from the configurations themselves."""
    return np.stack([c.positions - atoms.positions for c in phonons.configurations(atoms)])


# --- statistics ---------------------------------------------------------------------------------


def test_isotropic_displacements_have_zero_mean_and_variance_sigma2(crystal):
    phonons = FrozenPhonons(sigmas=0.1, num_configs=6, seed=11)
    shifts = stacked_displacements(phonons, crystal)
    assert shifts.shape == (6, len(crystal), 3)
    for axis in range(3):
        assert_mean_zero(shifts[..., axis], 0.1)
        assert_variance(shifts[..., axis], 0.1)
    # each atom's mean over configurations: variance σ²/n_configs (the atoms really move independently)
    per_atom_mean = shifts.mean(axis=0)[..., 0]
    assert_variance(per_atom_mean, 0.1 / math.sqrt(6))


def test_configurations_and_axes_are_uncorrelated(crystal):
    shifts = FrozenPhonons(sigmas=0.1, num_configs=2, seed=3).displacements(crystal, 0)
    other = FrozenPhonons(sigmas=0.1, num_configs=2, seed=3).displacements(crystal, 1)
    n = shifts.size
    bound = Z_BOUND / math.sqrt(n)  # Fisher: r ~ N(0, 1/n) under independence
    assert abs(np.corrcoef(shifts.ravel(), other.ravel())[0, 1]) < bound
    n_atoms = len(crystal)
    assert abs(np.corrcoef(shifts[:, 0], shifts[:, 1])[0, 1]) < Z_BOUND / math.sqrt(n_atoms)
    assert abs(np.corrcoef(shifts[:, 0], shifts[:, 2])[0, 1]) < Z_BOUND / math.sqrt(n_atoms)


def test_per_element_anisotropic_sigmas_are_honoured(crystal):
    sigmas = {"Sr": 0.05, "Ti": (0.08, 0.02), "O": (0.11, 0.04)}
    phonons = FrozenPhonons(sigmas=sigmas, num_configs=4, seed=5)
    shifts = stacked_displacements(phonons, crystal)
    symbols = np.array(crystal.get_chemical_symbols())
    expected = {"Sr": (0.05, 0.05), "Ti": (0.08, 0.02), "O": (0.11, 0.04)}
    for element, (sigma_xy, sigma_z) in expected.items():
        group = shifts[:, symbols == element]
        for axis, sigma in ((0, sigma_xy), (1, sigma_xy), (2, sigma_z)):
            assert_mean_zero(group[..., axis], sigma)
            assert_variance(group[..., axis], sigma)
    table = phonons.sigma_per_atom(crystal)
    assert np.allclose(table[symbols == "O"], [0.11, 0.11, 0.04])
    assert np.allclose(table[symbols == "Sr"], 0.05)


def test_b_factor_gives_the_debye_waller_attenuation(crystal):
    """⟨cos(2π g·u)⟩ over the displacements must equal exp(−B|g|²/4) = exp(−B s²), s = |g|/2."""
    b = 0.6
    phonons = FrozenPhonons(b_factors=b, num_configs=4, seed=9)
    shifts = stacked_displacements(phonons, crystal)
    for g in (0.5, 1.0, 2.0):  # 1/Å
        phase = np.cos(2 * math.pi * g * shifts[..., 0])
        attenuation = math.exp(-b * g * g / 4)
        # var(cos X) for X ~ N(0, s²): (1 + e^{−2s²})/2 − e^{−s²}
        s2 = (2 * math.pi * g) ** 2 * b / (8 * math.pi**2)
        spread = math.sqrt((1 + math.exp(-2 * s2)) / 2 - math.exp(-s2))
        assert abs(phase.mean() - attenuation) <= Z_BOUND * spread / math.sqrt(phase.size)


def test_displace_z_false_keeps_z_and_the_same_in_plane_shifts():
    atoms = tile(graphene(vacuum=3.0), (4, 4, 1))
    planar = FrozenPhonons(sigmas=0.08, num_configs=3, seed=2, displace_z=False)
    full = dataclasses.replace(planar, displace_z=True)
    for a, b in zip(planar.configurations(atoms), full.configurations(atoms)):
        assert np.array_equal(a.positions[:, 2], atoms.positions[:, 2])
        assert np.array_equal(a.positions[:, :2], b.positions[:, :2])
        assert not np.array_equal(b.positions[:, 2], atoms.positions[:, 2])
    assert np.all(planar.sigma_per_atom(atoms)[:, 2] == 0)


# --- reproducibility and provenance ----------------------------------------------------------


def test_same_seed_identical_different_seed_different():
    atoms = srtio3()
    first = [c.positions for c in FrozenPhonons(sigmas=0.1, num_configs=3, seed=42).configurations(atoms)]
    again = [c.positions for c in FrozenPhonons(sigmas=0.1, num_configs=3, seed=42).configurations(atoms)]
    other = [c.positions for c in FrozenPhonons(sigmas=0.1, num_configs=3, seed=43).configurations(atoms)]
    for a, b, c in zip(first, again, other):
        assert np.array_equal(a, b)
        assert not np.allclose(a, c)
    assert not np.allclose(first[0], first[1])  # configurations differ from each other


def test_configurations_follow_the_documented_seed_recipe():
    """Bit-identical across machines because the stream is SeedSequence.spawn + PCG64."""
    atoms = srtio3()
    phonons = FrozenPhonons(sigmas={"Sr": 0.07, "Ti": 0.05, "O": 0.09}, num_configs=5, seed=2024)
    children = np.random.SeedSequence(2024).spawn(5)
    sigma = phonons.sigma_per_atom(atoms)
    for index, configuration in enumerate(phonons.configurations(atoms)):
        generator = np.random.Generator(np.random.PCG64(children[index]))
        expected = atoms.positions + generator.standard_normal((len(atoms), 3)) * sigma
        assert np.array_equal(configuration.positions, expected)
        assert configuration.info["phonon_configuration"] == index
        assert configuration.info["phonon_seed"] == 2024
        assert np.array_equal(phonons.configuration(atoms, index).positions, configuration.positions)
    assert [s.spawn_key for s in phonons.seeds()] == [c.spawn_key for c in children]
    assert len(phonons) == 5


def test_input_is_never_mutated():
    atoms = srtio3()
    before = atoms.positions.copy()
    phonons = FrozenPhonons(sigmas=0.2, num_configs=2, seed=0)
    configurations = list(phonons.configurations(atoms))
    phonons.configuration(atoms, 1)
    assert np.array_equal(atoms.positions, before)
    assert all(c is not atoms for c in configurations)


def test_parameters_are_frozen_hashable_and_serialisable():
    phonons = FrozenPhonons(sigmas={"Sr": 0.07, "O": (0.1, 0.05), 22: 0.05}, num_configs=2, seed=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        phonons.seed = 8
    assert hash(phonons) == hash(
        FrozenPhonons(sigmas={"O": (0.1, 0.05), "Ti": 0.05, "Sr": 0.07}, num_configs=2, seed=7)
    )
    record = json.loads(json.dumps(phonons.to_dict()))
    assert record["sigmas"] == {"O": [0.1, 0.05], "Sr": [0.07, 0.07], "Ti": [0.05, 0.05]}
    assert record["seed"] == 7 and record["model"] == "sigmas"


# --- validation errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigmas": -0.1}, "≥ 0"),
        ({"sigmas": {"Si": (0.1, -0.1)}}, "≥ 0"),
        ({"sigmas": 0.1, "num_configs": 0}, "num_configs"),
        ({"sigmas": 0.1, "b_factors": 0.5}, "exactly one"),
        ({}, "exactly one"),
        ({"sigmas": 0.1, "seed": -1}, "seed"),
        ({"sigmas": 0.1, "seed": 1.5}, "seed"),
        ({"sigmas": {"Qq": 0.1}}, "unknown element"),
        ({"sigmas": {}}, "empty"),
        ({"sigmas": (0.1, 0.2, 0.3)}, "pair"),
        ({"debye_temperature": 0.0}, "> 0 K"),
        ({"debye_temperature": 400.0, "temperature": -5.0}, "temperature"),
        ({"b_factors": float("nan")}, "finite"),
        ({"sigmas": 0.1, "displace_z": "no"}, "displace_z"),
    ],
)
def test_invalid_parameters_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        FrozenPhonons(**kwargs)


def test_missing_elements_are_listed():
    phonons = FrozenPhonons(sigmas={"Sr": 0.1}, num_configs=2)
    with pytest.raises(InputError, match=r"no value for O, Ti \(it has Sr\)"):
        phonons.sigma_per_atom(srtio3())
    with pytest.raises(InputError, match="no value for O, Ti"):
        next(phonons.configurations(srtio3()))
    with pytest.raises(InputError, match="index"):
        FrozenPhonons(sigmas=0.1, num_configs=2).configuration(srtio3(), 2)


# --- B factors and the Debye model -------------------------------------------------------------


def test_b_factor_sigma_conversion():
    assert b_factor_to_sigma(8 * math.pi**2 * 0.01) == pytest.approx(0.1)
    assert sigma_to_b_factor(b_factor_to_sigma(0.4632)) == pytest.approx(0.4632)
    assert np.allclose(
        b_factor_to_sigma(np.array([0.0, 0.5, 1.0])), np.sqrt(np.array([0.0, 0.5, 1.0]) / (8 * math.pi**2))
    )
    phonons = FrozenPhonons(b_factors={"Sr": 0.6, "Ti": 0.4, "O": (0.8, 0.5)})
    table = phonons.sigma_per_atom(srtio3())
    assert np.allclose(sigma_to_b_factor(table[0]), 0.6)
    assert np.allclose(sigma_to_b_factor(table[2]), [0.8, 0.8, 0.5])
    with pytest.raises(InputError):
        b_factor_to_sigma(-0.1)


def _phi_closed_form(x: float) -> float:
    """φ(x) = (1/x)∫₀ˣ t/(eᵗ−1) dt = (1/x)[π²/6 + x ln(1 − e^{−x}) − Li₂(e^{−x})]."""
    q = math.exp(-x)
    dilog = special.spence(1 - q)  # scipy's spence(z) = Li₂(1 − z)
    return (math.pi**2 / 6 + x * math.log1p(-q) - dilog) / x


def _phi_series(x: float) -> float:
    """Bernoulli series of the first Debye function, valid for |x| < 2π."""
    bern = special.bernoulli(40)
    total = 1 - x / 4
    for k in range(1, 20):
        total += bern[2 * k] * x ** (2 * k) / ((2 * k + 1) * math.factorial(2 * k))
    return total


def _msd_si_units(theta, temperature, mass_u, phi):
    """⟨u_x²⟩ in Å² from scipy.constants (independent of temsim.constants)."""
    x = theta / temperature
    value = 3 * sc.hbar**2 * temperature / (mass_u * sc.atomic_mass * sc.k * theta**2) * (phi + x / 4)
    return value * 1e20


@pytest.mark.parametrize("x", [1e-4, 5e-4, 0.05, 0.5, 1.0, 2.0, 5.0, 12.0, 30.0, 59.0, 61.0, 200.0])
def test_debye_formula_against_independent_evaluations(x):
    theta, mass = 400.0, 50.0
    temperature = theta / x
    phi = _phi_closed_form(x) if x > 0.5 else _phi_series(x)
    expected = _msd_si_units(theta, temperature, mass, phi)
    assert debye_mean_square_displacement(theta, temperature, mass) == pytest.approx(expected, rel=1e-8)
    if x <= 2:  # the two independent φ evaluations agree where the series converges fast
        assert _phi_series(x) == pytest.approx(_phi_closed_form(x), rel=1e-9)


def test_debye_limits():
    theta, mass = 543.0, 28.0855
    hbar2_over_mk = sc.hbar**2 / (mass * sc.atomic_mass * sc.k) * 1e20  # Å² K
    # classical equipartition limit T ≫ Θ: 3ħ²T/(M k_B Θ²), corrections O((Θ/T)²/36)
    for temperature in (1e4, 1e5):
        classical = 3 * hbar2_over_mk * temperature / theta**2
        x = theta / temperature
        assert debye_mean_square_displacement(theta, temperature, mass) == pytest.approx(
            classical * (1 + x * x / 36), rel=1e-6
        )
    # zero-point motion T = 0: 3ħ²/(4 M k_B Θ), approached continuously
    zero_point = 3 * hbar2_over_mk / (4 * theta)
    assert debye_mean_square_displacement(theta, 0.0, mass) == pytest.approx(zero_point, rel=1e-8)
    # at T = 2 K the thermal part (π²/6)(T/Θ)² is 2.2e-5 of the bracket's 1/4
    assert debye_mean_square_displacement(theta, 2.0, mass) == pytest.approx(zero_point, rel=2e-4)
    assert debye_mean_square_displacement(theta, 2.0, mass) > zero_point
    temperatures = np.linspace(0, 1500, 31)
    values = [debye_mean_square_displacement(theta, t, mass) for t in temperatures]
    assert np.all(np.diff(values) > 0)
    assert debye_b_factor(theta, 300.0, mass) == pytest.approx(8 * math.pi**2 * values[6], rel=1e-12)


def test_debye_sigmas_use_each_atoms_mass():
    """At fixed Θ and T, ⟨u²⟩ ∝ 1/M: ¹³C vibrates √(12.011/13) as far as natural C."""
    sheet = graphene()
    heavy = sheet.copy()
    heavy.set_masses([13.0033] * 4)
    phonons = FrozenPhonons(debye_temperature={"C": 1000.0}, temperature=300.0)
    natural = phonons.sigma_per_atom(sheet)
    enriched = phonons.sigma_per_atom(heavy)
    assert np.allclose(enriched / natural, math.sqrt(sheet.get_masses()[0] / 13.0033))
    expected = math.sqrt(debye_mean_square_displacement(1000.0, 300.0, sheet.get_masses()[0]))
    assert np.allclose(natural, expected)
