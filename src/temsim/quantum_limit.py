"""The quantum limit: the lowest dose at which any detector at all could detect the feature.

At one probe position every electron leaves the specimen in the exit state ``ψ₀`` (feature
absent, H0) or ``ψ₁`` (present, H1). A detector — any detector: annular, segmented, pixelated,
with phase plates or lenses after the specimen — is a measurement (POVM) of that state; the
probabilities ``p_k`` of its outcomes are all the planner's statistics see.

The planner's decision statistic for Poisson counts of mean ``λ_k = D a η p_k`` (dose D,
area a per probe position, efficiency η) is ``J = Σ_k (λ¹_k − λ⁰_k)² / λ̄_k``. Per electron
that is ``2 η Σ_k (p¹_k − p⁰_k)² / (p⁰_k + p¹_k)``, twice the triangular (Le Cam) divergence
of the outcome distributions. Two inequalities bound it for every measurement:

1. ``(p − q)² / (p + q) ≤ 2 (√p − √q)²`` term by term, so
   ``Σ (p¹ − p⁰)² / (p⁰ + p¹) ≤ 2 (Σp⁰ + Σp¹ − 2 Σ √(p⁰ p¹))``;
2. the Bhattacharyya coefficient of any measurement is at least the fidelity of the states:
   ``Σ_k √(p⁰_k p¹_k) ≥ |⟨ψ₀|ψ₁⟩|`` (Fuchs & Caves), with equality for the optimal measurement.

Hence, with ``h = ½(‖ψ₀‖² + ‖ψ₁‖²) − |⟨ψ₀|ψ₁⟩|`` (the *state distance*; ``1 − |⟨ψ₀|ψ₁⟩|`` for
normalized states),

    ``j₁ ≤ j_Q = 8 a Σ_positions h``   and   ``b₁ ≤ b_Q = a Σ_positions h``

per unit dose, for every detector and every efficiency η ≤ 1. The quantum-limit dose
``D_Q = J* / j_Q`` is therefore a true lower bound of every mode's minimum dose for the same
target, and ``D_Q(Bhattacharyya) = ln(1/2Pe) / b_Q`` bounds the guaranteed doses the same way.
For a weak feature (``ψ₁ → ψ₀``) inequality 1 becomes an equality and the optimal measurement
reaches inequality 2: ``j_Q`` is then the quantum Fisher information of the feature's
strength, and ``j₁ / j_Q`` the ratio of classical to quantum Fisher information
(Dwyer & Paganin, Phys. Rev. B 110, 024110 (2024)). For n electrons at one position the
quantum Chernoff (Bhattacharyya) exponent of two pure states is ``−ln|⟨ψ₀|ψ₁⟩|²`` per electron
and the Helstrom error ``½(1 − √(1 − |⟨ψ₀|ψ₁⟩|^{2n}))`` (:func:`helstrom_error`); with Poisson
electron numbers the root fidelity of the two experiments is ``exp(−D a h)``, which is the
``b_Q`` above.

Frozen phonons make the states mixed: each electron sees a random configuration. The root
fidelity is jointly concave, so ``F(Σ ρ₀ᵢ/n, Σ ρ₁ᵢ/n) ≥ Σ |⟨ψ₀ᵢ|ψ₁ᵢ⟩| / n`` for configuration
pairs i; the planner uses the configuration mean of ``h`` — never less information than the
mixed states hold, so ``D_Q`` stays a lower bound (it is tight when the pairs share their
displacements). Focal spread is averaged the same way.
"""

from __future__ import annotations

import math

import numpy as np

from temsim.detection import DetectionStatistics
from temsim.errors import InputError

__all__ = ["state_distance", "quantum_statistics", "helstrom_error", "fidelity"]


def fidelity(psi0, psi1, axes=(-2, -1)) -> np.ndarray:
    """``|⟨ψ₀|ψ₁⟩|`` over ``axes`` (the root fidelity of two pure states)."""
    psi0, psi1 = np.asarray(psi0), np.asarray(psi1)
    return np.abs(np.sum(np.conj(psi0) * psi1, axis=axes))


def state_distance(psi0, psi1, axes=(-2, -1)) -> np.ndarray:
    """``h = ½(‖ψ₀‖² + ‖ψ₁‖²) − |⟨ψ₀|ψ₁⟩|`` over ``axes`` (≥ 0).

    Computed as ``½ ‖ψ₀ − u ψ₁‖²`` with the phase ``u = ⟨ψ₁|ψ₀⟩/|⟨ψ₀|ψ₁⟩|`` that aligns the
    two waves, so a tiny difference between nearly equal waves loses no digits (float64 sums).

    Parameters
    ----------
    psi0, psi1 : complex arrays of the same shape
        The two waves (e.g. ``(positions, nx, ny)`` exit waves in any orthonormal basis:
        Fourier amplitudes ``F[ψ]/√N`` or real-space samples times √(pixel fraction)).
    axes : tuple of int
        The axes of one state.
    """
    psi0, psi1 = np.asarray(psi0), np.asarray(psi1)
    if psi0.shape != psi1.shape:
        raise InputError(f"the two waves have different shapes {psi0.shape} and {psi1.shape}")
    overlap = np.sum(np.conj(psi0).astype(np.complex128) * psi1, axis=axes)
    size = np.abs(overlap)
    phase = np.where(size > 0, np.conj(overlap) / np.where(size > 0, size, 1), 1.0)
    for axis in sorted(a % psi0.ndim for a in axes):
        phase = np.expand_dims(phase, axis)
    diff = psi0.astype(np.complex128) - phase * psi1  # in double precision: the difference is tiny
    return 0.5 * np.sum((diff.real.astype(np.float64) ** 2 + diff.imag.astype(np.float64) ** 2), axis=axes)


def quantum_statistics(distance, area: float) -> DetectionStatistics:
    """Per-unit-dose statistics of the best possible detector from the state distances.

    ``j_per_dose = 8 a Σ h`` and ``bhattacharyya_per_dose = a Σ h`` (see the module text);
    ``rose_per_dose`` is 0: no summed-footprint observer is defined for a quantum measurement.

    Parameters
    ----------
    distance : array
        State distance ``h`` per probe position (already averaged over phonon configurations
        and defoci).
    area : float
        Area per probe position (Å²).
    """
    h = np.asarray(distance, dtype=float).reshape(-1)
    if np.any(h < -1e-12) or not np.all(np.isfinite(h)):
        raise InputError("state distances must be finite and non-negative")
    total = float(np.sum(np.maximum(h, 0.0)))
    return DetectionStatistics(8 * area * total, area * total, 0.0, int(h.size))


def helstrom_error(overlap: float, electrons) -> np.ndarray:
    """Minimum probability of error (equal priors) between ``ψ₀^{⊗n}`` and ``ψ₁^{⊗n}``.

    ``½ (1 − √(1 − |⟨ψ₀|ψ₁⟩|^{2n}))`` (Helstrom); bounded by ``½ |⟨ψ₀|ψ₁⟩|^{2n}`` (quantum
    Chernoff/Bhattacharyya) from above and a quarter of it from below.
    """
    c = float(overlap)
    if not 0 <= c <= 1:
        raise InputError(f"|⟨ψ0|ψ1⟩| of normalized states lies in [0, 1], got {overlap!r}")
    n = np.asarray(electrons, dtype=float)
    f = np.exp(2 * n * math.log(c)) if c > 0 else (n == 0).astype(float)
    return 0.5 * (1 - np.sqrt(1 - f))
