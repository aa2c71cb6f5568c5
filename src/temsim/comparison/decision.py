"""Which of two simulations does the experiment support, and how strongly.

Both fits are judged on the same data with the same noise model (the variance of the first
fit), so their χ² values are comparable: ``Δχ² = χ²_b − χ²_a``. Under the Gaussian noise model
``−2 ln L = χ² + const``, so ``Δχ²/2`` is the log-likelihood ratio of *a* over *b* with every
nuisance parameter (defocus, thickness, blur, shift, scale, dose) at its best fit — the profile
likelihood ratio, the statistic the planner's decision uses (:mod:`temsim.detection`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["chi2_difference", "log_likelihood_ratio", "feature_probability"]


def _values(data):
    return np.asarray(getattr(data, "values", data), dtype=float)


def chi2_difference(data, a, b) -> tuple[float, float]:
    """``Δχ² = χ²_b − χ²_a`` on ``data`` with ``a``'s noise variance, and its standard error.

    Parameters
    ----------
    data : array or DataArray
        The experimental image both fits were made to (``[x, y]``, data units).
    a, b : CompareResult
        Two fits to ``data`` (``a``: the reference, e.g. the right structure).

    Returns
    -------
    (float, float)
        Δχ² (> 0: ``a`` fits better) and the standard deviation of Δχ² under noise if ``a`` is
        true, ``2 √(Σ (m_b − m_a)² / σ²)`` (the noise enters Δχ² linearly through
        ``2 Σ (d − m_a)(m_a − m_b)/σ²``).
    """
    d = _values(data)
    ma = _values(a.simulation)
    mb = _values(b.simulation)
    variance = _values(a.variance)
    white = _whitener(a)
    ra, rb = white(d - ma), white(d - mb)
    delta = float(np.sum((rb**2 - ra**2) / variance))
    sigma = 2.0 * math.sqrt(float(np.sum(white(mb - ma) ** 2 / variance)))
    return delta, sigma


def _whitener(result):
    """iDPC/iCoM fits are judged on whitened residuals (their noise is coloured); others as they are."""
    if result.attrs.get("signal") != "integrated":
        return lambda image: image
    from temsim.comparison.prepare import whiten_integrated
    from temsim.readers import pixel_size_of

    pixel = pixel_size_of(result.experiment)
    eps = float(result.attrs.get("regularization", 0.0))
    return lambda image: whiten_integrated(image, pixel, eps)


def _poisson(result) -> bool:
    return result.attrs.get("likelihood") == "poisson"


def log_likelihood_ratio(data, without, with_feature) -> float:
    """``ln L(H1)/L(H0)`` with every nuisance parameter at its fit under each hypothesis.

    When both fits used the Poisson likelihood, this is the planner's statistic on the raw
    counts ``n = (data − offset)/gain``: ``Σ [n ln(λ₁/λ₀) − (λ₁ − λ₀)]`` with the fitted
    expected counts λ (:mod:`temsim.detection`). Otherwise the Gaussian ``Δχ²/2`` on H1's noise
    variance (:func:`chi2_difference`).
    """
    if _poisson(without) and _poisson(with_feature):
        gain = float(with_feature.parameters.get("gain", 1.0))
        offset0 = float(without.parameters.get("offset", without.attrs.get("offset", 0.0)))
        offset1 = float(with_feature.parameters.get("offset", with_feature.attrs.get("offset", 0.0)))
        counts = np.maximum((_values(data) - offset1) / gain, 0.0)
        lam0 = np.maximum((_values(without.simulation) - offset0) / gain, 1e-12)
        lam1 = np.maximum((_values(with_feature.simulation) - offset1) / gain, 1e-12)
        return float(np.sum(counts * np.log(lam1 / lam0) - (lam1 - lam0)))
    delta, _ = chi2_difference(data, with_feature, without)  # χ²_H0 − χ²_H1
    return 0.5 * delta


def feature_probability(data, without, with_feature, prior: float = 0.5) -> float:
    """Posterior probability that the feature is present, from fits without (H0) and with it (H1).

    ``P(H1 | data) = 1 / (1 + (1 − prior)/prior · exp(−ln Λ))`` with ``ln Λ`` from
    :func:`log_likelihood_ratio` (nuisance parameters fitted: the profile likelihood ratio).
    """
    log_odds = log_likelihood_ratio(data, without, with_feature) + math.log(prior / (1 - prior))
    if log_odds > 700:
        return 1.0
    if log_odds < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-log_odds))
