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

__all__ = ["chi2_difference", "feature_probability"]


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
    delta = float(np.sum(((d - mb) ** 2 - (d - ma) ** 2) / variance))
    sigma = 2.0 * math.sqrt(float(np.sum((mb - ma) ** 2 / variance)))
    return delta, sigma


def feature_probability(data, without, with_feature, prior: float = 0.5) -> float:
    """Posterior probability that the feature is present, from fits without (H0) and with it (H1).

    ``P(H1 | data) = 1 / (1 + (1 − prior)/prior · exp(−Δχ²/2))`` with ``Δχ² = χ²_H0 − χ²_H1``
    (both on H1's noise variance): the likelihood ratio with the nuisance parameters fitted.
    """
    delta, _ = chi2_difference(data, with_feature, without)  # χ²_H0 − χ²_H1
    log_odds = 0.5 * delta + math.log(prior / (1 - prior))
    if log_odds > 700:
        return 1.0
    return 1.0 / (1.0 + math.exp(-log_odds))
