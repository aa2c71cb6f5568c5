import math

import numpy as np
import pytest
from scipy import stats

import temsim
from temsim.detection import (
    DecisionTarget,
    detection_statistics,
    fading_factor,
    monte_carlo_error_rates,
    optimal_dose_under_fading,
    required_dose,
)


def exact_poisson_min_dose(r0, r1, alpha=0.05, power=0.95):
    """Independent method: the exact randomized Neyman–Pearson test on one Poisson channel.

    Reject H0 when n > c (and with probability γ when n = c) so that P(reject|H0) = α exactly;
    find the smallest dose whose power reaches the target (bisection in D).
    """

    def exact_power(dose):
        l0, l1 = dose * r0, dose * r1
        c = stats.poisson.isf(alpha, l0)  # P(N > c) ≤ α
        above = stats.poisson.sf(c, l0)
        at = stats.poisson.pmf(c, l0)
        gamma = (alpha - above) / at if at > 0 else 0
        return stats.poisson.sf(c, l1) + gamma * stats.poisson.pmf(c, l1)

    lo, hi = 1e-3, 1e7
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if exact_power(mid) < power else (lo, mid)
    return hi


def test_required_j_for_five_percent_is_10_82():
    assert DecisionTarget().required_j == pytest.approx(10.82, abs=0.01)
    assert DecisionTarget(probability_of_error=0.05).required_j == pytest.approx(10.82, abs=0.01)


@pytest.mark.parametrize("r0, r1", [(1.0, 1.05), (2.0, 2.2), (0.5, 0.45)])
def test_single_pixel_dose_matches_exact_poisson_at_high_counts(r0, r1):
    stat = detection_statistics(np.array([r0]), np.array([r1]))
    dose = required_dose(stat, DecisionTarget())
    if r1 > r0:
        exact = exact_poisson_min_dose(r0, r1)
        assert dose == pytest.approx(exact, rel=0.03)
    rates = monte_carlo_error_rates(np.array([r0]), np.array([r1]), dose, DecisionTarget(), trials=20000, seed=3)
    assert abs(rates["false_alarm"] - 0.05) < 3 * rates["false_alarm_se"] + 1e-3
    assert abs(rates["power"] - 0.95) < 3 * rates["power_se"] + 0.01


def test_few_identical_pixels_need_proportionally_less_dose():
    one = detection_statistics(np.array([1.0]), np.array([1.1]))
    four = detection_statistics(np.full(4, 1.0), np.full(4, 1.1))
    target = DecisionTarget()
    assert required_dose(one, target) / required_dose(four, target) == pytest.approx(4.0, rel=1e-12)


def _exact_pe_threshold_zero(lam0, lam1):
    threshold = (lam1 - lam0) / math.log(lam1 / lam0)  # L > 0  ⇔  n > threshold
    c = math.floor(threshold)
    return 0.5 * (stats.poisson.sf(c, lam0) + stats.poisson.cdf(c, lam1))


@pytest.mark.parametrize("mean_denominator, expected", [(False, 0.063), (True, None)])
def test_low_count_monte_carlo_matches_exact_poisson(mean_denominator, expected):
    """One pixel, λ⁰ = 100, at J = 10.82 (Gaussian Pe = 0.05).

    With J = Δ²/λ⁰ the exact Pe is ≈ 0.063 (the Gaussian approximation is
    optimistic at low counts); temsim's J uses the mean (λ⁰+λ¹)/2, for which the exact Pe is
    close to 0.05. The Monte-Carlo must reproduce the exact Poisson value in both cases.
    """
    target = DecisionTarget(probability_of_error=0.05)
    j = target.required_j
    if mean_denominator:
        delta = (j + math.sqrt(j * j + 16 * 100 * j)) / 4  # Δ²/(λ⁰ + Δ/2) = J
    else:
        delta = math.sqrt(j * 100)  # Δ²/λ⁰ = J
    exact = _exact_pe_threshold_zero(100.0, 100.0 + delta)
    if expected is not None:
        assert exact == pytest.approx(expected, abs=0.002)
    else:
        assert abs(exact - 0.05) < 0.002
    rates = monte_carlo_error_rates(np.array([100.0]), np.array([100.0 + delta]), 1.0, target, trials=40000, seed=1)
    assert rates["probability_of_error"] == pytest.approx(exact, abs=3 * rates["false_alarm_se"])


def test_bhattacharyya_bound_holds_in_monte_carlo():
    target = DecisionTarget(probability_of_error=0.05)
    r0, r1 = np.array([0.2, 1.0, 3.0]), np.array([0.35, 1.2, 2.7])
    stat = detection_statistics(r0, r1)
    dose = required_dose(stat, target, criterion="bhattacharyya")
    rates = monte_carlo_error_rates(r0, r1, dose, target, trials=20000, seed=2)
    assert rates["probability_of_error"] <= 0.05 + 3 * rates["false_alarm_se"]


def test_doubling_dqe_halves_the_dose():
    rng = np.random.default_rng(0)
    intensity0 = rng.uniform(0.1, 1.0, 50)
    intensity1 = intensity0 * (1 + 0.05 * rng.standard_normal(50))
    doses = []
    for dqe in (0.4, 0.8):
        eta = temsim.camera_model("ideal", dqe0=dqe).efficiency
        stat = detection_statistics(eta * intensity0, eta * intensity1)
        doses.append(required_dose(stat, DecisionTarget()))
    assert doses[0] / doses[1] == pytest.approx(2.0, rel=1e-12)


def test_fading_optimum_and_infeasibility():
    assert optimal_dose_under_fading(100.0) == pytest.approx(125.64, rel=1e-3)
    np.testing.assert_allclose(fading_factor([1e-10, 100.0], 100.0), [1.0, 1 - math.exp(-1)], rtol=1e-8)
    stat = detection_statistics(np.array([1.0]), np.array([1.2]))
    free = required_dose(stat, DecisionTarget())
    assert required_dose(stat, DecisionTarget(), critical_dose=free / 10) == math.inf
    damaged = required_dose(stat, DecisionTarget(), critical_dose=free * 10)
    assert free < damaged < optimal_dose_under_fading(free * 10)


def test_search_sites_raise_the_dose():
    stat = detection_statistics(np.array([1.0]), np.array([1.1]))
    assert required_dose(stat, DecisionTarget(search_sites=100)) > 1.5 * required_dose(stat, DecisionTarget())


def test_no_contrast_is_infinite_and_bad_targets_raise():
    stat = detection_statistics(np.ones(3), np.ones(3))
    assert required_dose(stat, DecisionTarget()) == math.inf
    with pytest.raises(temsim.InputError):
        DecisionTarget(false_alarm=0.7)
    with pytest.raises(temsim.InputError):
        detection_statistics(np.array([-1.0]), np.array([1.0]))


def test_hybrid_monte_carlo_matches_fully_exact_sampling():
    """Weak channels summarized by a Gaussian give the same error rates as sampling them all."""
    rng = np.random.default_rng(5)
    r0 = rng.uniform(0.5, 2.0, 3000)
    r1 = r0 * (1 + 0.02 * rng.standard_normal(3000))
    r1[:5] *= 1.5  # a few strong channels
    target = DecisionTarget()
    dose = required_dose(detection_statistics(r0, r1), target)
    full = monte_carlo_error_rates(r0, r1, dose, target, trials=6000, seed=1, max_exact_channels=3000)
    hybrid = monte_carlo_error_rates(
        r0, r1, dose, target, trials=6000, seed=2, max_exact_channels=10, exact_fraction=0.5
    )
    assert full["exact_channels"] == 3000 and hybrid["exact_channels"] < 3000
    assert hybrid["power"] == pytest.approx(full["power"], abs=4 * math.hypot(full["power_se"], hybrid["power_se"]))


def test_rose_uses_the_contrast_magnitude_so_mixed_signs_do_not_cancel():
    r0 = np.full(8, 100.0)
    same = r0 + np.array([0, 0, 10, 10, 10, 10, 0, 0])
    mixed = r0 + np.array([0, 0, 10, -10, 10, -10, 0, 0])
    rose_same = detection_statistics(r0, same).rose_per_dose
    rose_mixed = detection_statistics(r0, mixed).rose_per_dose
    # (Σ|Δ|)² / Σ λ̄ over the 4 changed channels, whatever the signs: 40² / (4·105) and 40² / 400
    assert rose_same == pytest.approx(40**2 / 420)
    assert rose_mixed == pytest.approx(40**2 / 400)
    # summing is never better than the matched filter: Rose SNR² ≤ J (Cauchy–Schwarz)
    rng = np.random.default_rng(3)
    for _ in range(20):
        stat = detection_statistics(r0, r0 + rng.normal(0, 5, r0.shape))
        assert stat.rose_per_dose <= stat.j_per_dose * (1 + 1e-12)
    # Rose asks for the same J* as the likelihood-ratio test: on one channel the doses agree
    one = detection_statistics(np.array([100.0]), np.array([110.0]))
    target = DecisionTarget()
    assert required_dose(one, target, criterion="rose") == pytest.approx(required_dose(one, target))
