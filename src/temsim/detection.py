"""Detection statistics on raw Poisson counts: the dose at which a feature is detected.

Every channel k (image pixel, detector segment, diffraction pixel × probe position) records
Poisson counts with mean ``λ_k = D · r_k`` where ``r_k = a_k η_k I_k`` is the expected count
per unit dose (e/Å²) — area per channel × detection efficiency × simulated fraction of the
beam. ``r⁰`` (feature absent, H0) and ``r¹`` (present, H1) come from one noise-free
simulation each, and every statistic below is linear in D, so the whole dose axis follows
from them (see ``docs/planning.md``).

The likelihood-ratio test on the raw counts is the most powerful test (Neyman–Pearson): no
processing of the same counts (iDPC, CoM, ptychography) can detect the feature at a lower
dose. The doses reported here are therefore lower bounds for any reconstruction of that data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from temsim.backend import array_namespace, to_numpy
from temsim.errors import InputError

__all__ = [
    "DecisionTarget",
    "DetectionStatistics",
    "detection_statistics",
    "required_dose",
    "detection_power",
    "monte_carlo_error_rates",
    "fading_factor",
]

#: Optimum of ``(1 − e^{−x})² / x`` (x = D/Dc): the dose that maximizes J under fading.
_FADING_XOPT = optimize.minimize_scalar(lambda x: -((1 - math.exp(-x)) ** 2) / x, bounds=(0.1, 5), method="bounded").x


@dataclass(frozen=True)
class DecisionTarget:
    """What "detected" means.

    Either a Neyman–Pearson target (``false_alarm`` α and ``power`` 1 − β) or a target
    probability of error ``probability_of_error`` (equal priors, ``Pe = ½(α + β)``).
    ``search_sites`` > 1 applies a Bonferroni correction (α / n) for a feature whose position
    must be searched for among that many candidate sites.
    """

    false_alarm: float = 0.05
    power: float = 0.95
    probability_of_error: float | None = None
    search_sites: int = 1

    def __post_init__(self):
        if self.probability_of_error is not None:
            if not 0 < self.probability_of_error < 0.5:
                raise InputError(f"probability_of_error must lie in (0, 0.5), got {self.probability_of_error!r}")
            if self.power != 0.95:
                raise InputError(
                    f"power={self.power!r} and probability_of_error={self.probability_of_error!r} are two different "
                    "targets; give one (probability_of_error ignores power)"
                )
        if not 0 < self.false_alarm < 0.5:
            raise InputError(f"false_alarm must lie in (0, 0.5), got {self.false_alarm!r}")
        if not 0.5 < self.power < 1:
            raise InputError(f"power must lie in (0.5, 1), got {self.power!r}")
        if int(self.search_sites) < 1:
            raise InputError(f"search_sites must be ≥ 1, got {self.search_sites!r}")

    @property
    def effective_false_alarm(self) -> float:
        """Per-site false-alarm rate after the Bonferroni correction."""
        return self.false_alarm / int(self.search_sites)

    @property
    def required_j(self) -> float:
        """Value of ``J = Σ (λ¹ − λ⁰)² / λ̄`` the target needs (Gaussian approximation).

        Neyman–Pearson: ``√J = z_{1−α} + z_{power}``; probability of error: ``√J = 2 z_{1−Pe}``
        (equal priors, threshold at L = 0). α = β = 0.05 gives J = 10.82.
        """
        if self.probability_of_error is not None:
            return (2 * stats.norm.isf(self.probability_of_error / int(self.search_sites))) ** 2
        return (stats.norm.isf(self.effective_false_alarm) + stats.norm.ppf(self.power)) ** 2

    def describe(self) -> str:
        if self.probability_of_error is not None:
            text = f"probability of error ≤ {self.probability_of_error:g}"
        else:
            text = f"false alarm ≤ {self.false_alarm:g}, detection power ≥ {self.power:g}"
        if int(self.search_sites) > 1:
            text += f" (Bonferroni over {int(self.search_sites)} candidate sites)"
        return text


@dataclass(frozen=True)
class DetectionStatistics:
    """Per-unit-dose statistics of a detection problem (all scale linearly with D).

    Attributes
    ----------
    j_per_dose : float
        ``j₁ = Σ (r¹ − r⁰)² / r̄`` with r̄ = (r⁰ + r¹)/2 (per e/Å²).
    bhattacharyya_per_dose : float
        ``b₁ = ½ Σ (√r¹ − √r⁰)²``; ``Pe ≤ ½ exp(−b₁ D)`` holds exactly.
    rose_per_dose : float
        Rose SNR² per unit dose on the magnitude of the feature's contrast over its footprint R
        (the channels where ``|r¹ − r⁰|`` is at least 10 % of its maximum):
        ``(Σ_R |r¹ − r⁰|)² / Σ_R r̄`` — the SNR² of an observer who sums the footprint's
        counts (with the sign pattern known), on the same noise r̄ = (r⁰ + r¹)/2 as ``j₁``. The
        magnitude keeps contrast of both signs (HRTEM fringes, DPC segments) from cancelling;
        by Cauchy–Schwarz it never exceeds ``j₁``: summing is never better than the matched
        filter.
    channels : int
        Number of channels.
    """

    j_per_dose: float
    bhattacharyya_per_dose: float
    rose_per_dose: float
    channels: int


def detection_statistics(rate0, rate1, region=None) -> DetectionStatistics:
    """Statistics of feature-present (``rate1``) vs absent (``rate0``) expected counts per unit dose.

    Parameters
    ----------
    rate0, rate1 : arrays of the same shape
        Expected counts per channel per e/Å² (``a · η · I``), H0 and H1.
    region : boolean array, optional
        Channels for the Rose criterion, the feature's footprint (default: where ``|r¹ − r⁰|`` is
        at least 10 % of its maximum).
    """
    xp = array_namespace(rate0, rate1)
    r0 = to_numpy(xp.reshape(rate0, (-1,))).astype(np.float64)
    r1 = to_numpy(xp.reshape(rate1, (-1,))).astype(np.float64)
    if r0.shape != r1.shape:
        raise InputError(f"H0 and H1 have different numbers of channels ({r0.size} vs {r1.size})")
    if np.any(r0 < 0) or np.any(r1 < 0) or not (np.all(np.isfinite(r0)) and np.all(np.isfinite(r1))):
        raise InputError("expected counts must be finite and non-negative")
    mean = 0.5 * (r0 + r1)
    diff = r1 - r0
    ok = mean > 0
    j = float(np.sum(diff[ok] ** 2 / mean[ok]))
    b = 0.5 * float(np.sum((np.sqrt(r1) - np.sqrt(r0)) ** 2))
    if region is None:
        region = np.abs(diff) > 0.1 * np.abs(diff).max() if np.any(diff) else np.zeros_like(diff, bool)
    else:
        region = np.asarray(region).reshape(-1)
    background = mean[region].sum()
    rose = float(np.abs(diff[region]).sum() ** 2 / background) if background > 0 else 0.0
    return DetectionStatistics(j, b, rose, int(r0.size))


def fading_factor(dose, critical_dose: float | None):
    """Mean surviving fraction of a first-order fading signal, ``Dc/D (1 − e^{−D/Dc})``."""
    dose = np.asarray(dose, dtype=float)
    if critical_dose is None:
        return np.ones_like(dose)
    x = dose / critical_dose
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(x > 1e-8, -np.expm1(-x) / np.where(x > 0, x, 1), 1 - x / 2)
    return out


def _j_at(stat: DetectionStatistics, dose, critical_dose):
    """J(D) with fading: the feature's contrast fades, the background counts do not."""
    return stat.j_per_dose * np.asarray(dose, float) * fading_factor(dose, critical_dose) ** 2


def required_dose(
    stat: DetectionStatistics, target: DecisionTarget, critical_dose: float | None = None, criterion: str = "likelihood"
) -> float:
    """Smallest dose (e/Å²) meeting ``target``; ``inf`` if no dose can (fading, or no contrast).

    ``criterion``: ``"likelihood"`` (Gaussian approximation of the LLR test, J = J*),
    ``"bhattacharyya"`` (guaranteed Pe bound ``½e^{−B}`` ≤ Pe target) or ``"rose"``
    (the summed footprint's SNR² reaches the same J* as the likelihood-ratio test: k = √J*,
    3.29 for α = β = 5 %, instead of Rose's empirical 5 for a human observer).
    """
    if criterion == "likelihood":
        per_dose, needed = stat.j_per_dose, target.required_j
    elif criterion == "bhattacharyya":
        pe = (
            target.probability_of_error
            if target.probability_of_error is not None
            else 0.5 * (target.effective_false_alarm + 1 - target.power)
        )
        per_dose, needed = stat.bhattacharyya_per_dose, math.log(1 / (2 * pe))
    elif criterion == "rose":
        per_dose, needed = stat.rose_per_dose, target.required_j
    else:
        raise InputError(f"criterion must be 'likelihood', 'bhattacharyya' or 'rose', got {criterion!r}")
    if per_dose <= 0:
        return math.inf
    linear = needed / per_dose
    if critical_dose is None or criterion == "bhattacharyya":
        # the Bhattacharyya bound is reported for the undamaged specimen
        return linear
    # with fading J(D) = j₁ Dc² (1 − e^{−D/Dc})² / D peaks at D = x_opt Dc
    d_opt = _FADING_XOPT * critical_dose
    scale = {"likelihood": 1.0, "rose": 1.0}[criterion]
    best = per_dose * scale * d_opt * fading_factor(d_opt, critical_dose) ** 2
    if best < needed:
        return math.inf
    f = lambda d: per_dose * d * fading_factor(d, critical_dose) ** 2 - needed  # noqa: E731
    return float(optimize.brentq(f, 1e-12 * d_opt, d_opt, xtol=1e-12 * d_opt, rtol=1e-10))


def optimal_dose_under_fading(critical_dose: float) -> float:
    """Dose (e/Å²) maximizing J under first-order fading: ≈ 1.2564 Dc."""
    return _FADING_XOPT * critical_dose


def detection_power(stat: DetectionStatistics, target: DecisionTarget, dose, critical_dose: float | None = None):
    """Detection power at each dose (Gaussian approximation of the LLR test at the target's α)."""
    j = _j_at(stat, dose, critical_dose)
    z_alpha = stats.norm.isf(target.effective_false_alarm)
    return stats.norm.cdf(np.sqrt(j) - z_alpha)


def probability_of_error(stat: DetectionStatistics, dose, critical_dose: float | None = None, search_sites: int = 1):
    """Probability of error (equal priors) at each dose, Gaussian approximation ``Q(√J / 2)``."""
    j = _j_at(stat, dose, critical_dose)
    return np.minimum(0.5, search_sites * stats.norm.sf(np.sqrt(j) / 2))


def monte_carlo_error_rates(
    rate0,
    rate1,
    dose: float,
    target: DecisionTarget,
    trials: int = 4000,
    seed: int = 0,
    critical_dose: float | None = None,
    exact_fraction: float = 0.999,
    max_exact_channels: int = 4096,
) -> dict:
    """Exact Poisson Monte-Carlo of the likelihood-ratio test at ``dose``.

    Counts are drawn from the expected counts under H0 and H1; the log-likelihood ratio
    ``L = Σ n_k ln(λ¹_k/λ⁰_k) − (λ¹_k − λ⁰_k)`` is thresholded at the (1 − α) quantile of its
    H0 distribution (Neyman–Pearson) or at 0 (probability of error). Returns the measured
    false-alarm rate, power, probability of error and their binomial standard errors.

    The strongest channels — those holding ``exact_fraction`` of the LLR variance, at least
    ``max_exact_channels`` and at most five times that (or all, if fewer) — are sampled
    exactly; the many weak channels left (a camera image's far pixels) contribute a Gaussian
    of their exact mean and variance.
    """
    r0 = np.asarray(to_numpy(rate0), dtype=float).reshape(-1)
    r1 = np.asarray(to_numpy(rate1), dtype=float).reshape(-1)
    fade = float(fading_factor(dose, critical_dose))
    lam0 = dose * r0
    lam1 = dose * (r0 + (r1 - r0) * fade)
    keep = (lam0 > 0) | (lam1 > 0)
    lam0, lam1 = lam0[keep], lam1[keep]
    tiny = 1e-300
    weights = np.log(np.maximum(lam1, tiny)) - np.log(np.maximum(lam0, tiny))
    offset = float(np.sum(lam1 - lam0))
    # Channels are drawn exactly (Poisson) in decreasing order of their share of the LLR
    # variance until `exact_fraction` of it is covered; the remaining many weak channels add a
    # Gaussian with their exact mean and variance under each hypothesis (central limit theorem).
    variance = 0.5 * (lam0 + lam1) * weights**2
    order = np.argsort(variance)[::-1]
    cumulative = np.cumsum(variance[order])
    total = cumulative[-1] if cumulative.size else 0.0
    n_cover = int(np.searchsorted(cumulative, exact_fraction * total) + 1) if total > 0 else lam0.size
    n_exact = min(lam0.size, max(max_exact_channels, min(n_cover, 5 * max_exact_channels)))
    exact, rest = order[:n_exact], order[n_exact:]
    rng = np.random.default_rng(seed)
    batch = max(1, min(trials, int(2e7 // max(1, n_exact))))

    def llr(lam):
        out = []
        done = 0
        while done < trials:
            n = min(batch, trials - done)
            counts = rng.poisson(lam[exact], size=(n, n_exact))
            out.append(counts @ weights[exact] - offset)
            done += n
        values = np.concatenate(out)
        if rest.size:
            mean = float(np.sum(lam[rest] * weights[rest]))
            sd = math.sqrt(float(np.sum(lam[rest] * weights[rest] ** 2)))
            values = values + rng.normal(mean, sd, size=trials)
        return values

    l0, l1 = llr(lam0), llr(lam1)
    if target.probability_of_error is not None:
        threshold = 0.0
        # ties at the threshold split evenly (randomized test)
        alpha = np.mean(l0 > threshold) + 0.5 * np.mean(l0 == threshold)
        beta = np.mean(l1 < threshold) + 0.5 * np.mean(l1 == threshold)
    else:
        alpha_target = target.effective_false_alarm
        threshold = np.quantile(l0, 1 - alpha_target)
        # randomize at the threshold so the false-alarm rate equals the target for discrete L
        above0, at0 = np.mean(l0 > threshold), np.mean(l0 == threshold)
        gamma = 0.0 if at0 == 0 else float(np.clip((alpha_target - above0) / at0, 0, 1))
        alpha = above0 + gamma * at0
        beta = np.mean(l1 < threshold) + (1 - gamma) * np.mean(l1 == threshold)
    se = lambda p: math.sqrt(max(p * (1 - p), 1 / trials) / trials)  # noqa: E731
    return {
        "dose": float(dose),
        "false_alarm": float(alpha),
        "power": float(1 - beta),
        "probability_of_error": float(0.5 * (alpha + beta)),
        "false_alarm_se": se(alpha),
        "power_se": se(1 - beta),
        "trials": int(trials),
        "seed": int(seed),
        "exact_channels": int(n_exact),
        "channels": int(lam0.size),
    }
