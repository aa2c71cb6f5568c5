"""How well a simulation matches an experiment: NCC, χ²/dof, R-factor, SSIM.

>>> import numpy as np
>>> from temsim.comparison.metrics import ncc, r_factor
>>> a = np.arange(16.0).reshape(4, 4)
>>> round(ncc(a, 2 * a + 1), 6), r_factor(a + 1, a + 1)
(1.0, 0.0)
"""

from __future__ import annotations

import numpy as np

__all__ = ["ncc", "chi2_per_dof", "r_factor", "ssim", "match_metrics"]


def ncc(experiment, simulation) -> float:
    """Normalized cross-correlation (Pearson coefficient) of two images, in [−1, 1]."""
    a = np.asarray(experiment, dtype=float).ravel()
    b = np.asarray(simulation, dtype=float).ravel()
    a = a - a.mean()
    b = b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def chi2_per_dof(experiment, simulation, variance, n_parameters: int) -> tuple[float, int]:
    """χ² = Σ (data − model)² / variance and its degrees of freedom (pixels − parameters)."""
    residual = (np.asarray(experiment, dtype=float) - np.asarray(simulation, dtype=float)) ** 2
    chi2 = float(np.sum(residual / np.asarray(variance, dtype=float)))
    dof = max(int(np.size(experiment)) - int(n_parameters), 1)
    return chi2, dof


def r_factor(experiment, simulation) -> float:
    """R = Σ|data − model| / Σ|data| (0 for a perfect match)."""
    a = np.asarray(experiment, dtype=float)
    b = np.asarray(simulation, dtype=float)
    total = np.sum(np.abs(a))
    return float(np.sum(np.abs(a - b)) / total) if total > 0 else float("nan")


def ssim(experiment, simulation) -> float | None:
    """Structural similarity (scikit-image), or ``None`` when scikit-image is not installed."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return None
    a = np.asarray(experiment, dtype=float)
    b = np.asarray(simulation, dtype=float)
    span = float(max(a.max(), b.max()) - min(a.min(), b.min())) or 1.0
    win = min(7, *(s - (1 - s % 2) for s in a.shape))
    return float(structural_similarity(a, b, data_range=span, win_size=max(win, 3)))


def match_metrics(experiment, simulation, variance, n_parameters: int) -> dict:
    """All metrics in one dict: ``ncc``, ``chi2``, ``dof``, ``chi2_per_dof``, ``r_factor``, ``ssim``."""
    chi2, dof = chi2_per_dof(experiment, simulation, variance, n_parameters)
    return {
        "ncc": ncc(experiment, simulation),
        "chi2": chi2,
        "dof": dof,
        "chi2_per_dof": chi2 / dof,
        "r_factor": r_factor(experiment, simulation),
        "ssim": ssim(experiment, simulation),
    }
