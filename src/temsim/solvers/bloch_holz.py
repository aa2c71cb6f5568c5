"""Bloch waves of the 3-D crystal: the period propagator and its eigenmodes (all Laue zones).

The zero-order-Laue-zone solver (:func:`temsim.solvers.bloch.solve_bloch` with
``holz=False``) replaces the crystal by its potential averaged over one period along the
beam. Here the variation along the beam is kept. In the basis of the lateral beams the
forward-scattering equation multislice integrates reads

``dφ/dz = i H(z) φ``,  ``H(z) = 2π diag(s_g) + σ V(z)``,
``V(z)_gh = Σ_l V_(g−h, l) exp(2πi l z / c)``,

with ``V_(q, l)`` the 3-D Fourier coefficients of the crystal potential (the same
parametrization and Debye–Waller damping as the projected solver) and c the period. H is
periodic in z, so (Bloch–Floquet) the solutions are Bloch waves: the eigenvectors w_j of
the period propagator ``U_c = 𝒯 exp(i∫₀ᶜ H dz)``, with eigenvalues ``exp(iγ_j c)``. At a
thickness ``t = n c + τ`` (0 ≤ τ < c)

``φ(t) = U(τ) W diag(exp(iγ n c)) W⁻¹ φ(0)``.

``U_c`` is the ordered product of ``exp(iΔz H̄_k)`` over sub-slices of thickness Δz, with
``H̄_k`` the average of H over sub-slice k (the harmonic sum is analytic per sub-slice), so
the only discretization is second order in Δz (checked by halving Δz in the tests). Every
Laue zone is included — there is no truncation in l beyond ``l_max`` harmonics, far past
the slice resolution — and the eigenproblem keeps the lateral size N of the projected
solver: the cost is one N×N Hermitian eigendecomposition per sub-slice plus one general
eigendecomposition of ``U_c``.

Why not the textbook route of adding the reflections of higher Laue zones to the structure
matrix (``s_g = s⊥ − g_z``)? It is the same equation in a Fourier basis along z, but it
converges slowly in the number of zones for sharp atomic potentials (the harmonics decay
only as 1/l²): for Si [110] at 200 keV, 5–50 nm, adding zones |l| ≤ 1…5 left 0.5…0.1 % of
the incident beam against this propagator (measured, docs/bloch-waves.md), at 3–11 times
the eigenproblem size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from temsim.backend import array_namespace
from temsim.constants import interaction_parameter, wavelength
from temsim.solvers.bloch_beams import OrientedCrystal, eigensystem, inversion_centre, structure_factors

__all__ = ["PeriodPropagator", "DEFAULT_HOLZ_SLICE", "harmonic_weights"]

#: Default largest sub-slice thickness (Å) of the period propagator.
DEFAULT_HOLZ_SLICE = 0.0625


def harmonic_weights(num_slices: int, l_max: int, rows=None) -> np.ndarray:
    """Average of ``exp(2πi l z/c)`` over each of ``num_slices`` equal sub-slices of the period.

    Returns
    -------
    (num_slices, 2 l_max + 1) complex ndarray (or only the sub-slices ``rows``)
        Row k, column ``l + l_max``: ``(1/Δz) ∫_{kΔz}^{(k+1)Δz} exp(2πi l z/c) dz``.
    """
    l = np.arange(-l_max, l_max + 1)
    k = np.arange(num_slices)[:, None] if rows is None else np.atleast_1d(rows)[:, None]
    x = math.pi * l / num_slices  # π l Δz / c
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(l == 0, 1.0, np.sin(x) / np.where(l == 0, 1.0, x))
    return sinc[None, :] * np.exp(1j * (2 * k + 1) * x[None, :])


@dataclass(frozen=True)
class PeriodPropagator:
    """Sub-slice propagators of one crystal period in the lateral beam basis.

    Attributes
    ----------
    crystal : OrientedCrystal
    indices : (N, 2) int ndarray
        Lateral beams (n, m) of the zone-axis cell.
    diagonal : (N,) ndarray
        ``2π s_g`` (1/Å): the excitation errors of the incident direction.
    table : (2 l_max + 1, D) complex ndarray
        ``σ(1 + iκ) V_(q, l) exp(2πi q·r₀)`` (1/Å) for the D distinct lateral differences
        q = g − h, in the frame centred on r₀ (see ``frame``).
    gather : (N, N) int ndarray
        Column of ``table`` holding the entry (g, h).
    num_slices : int
        Sub-slices per period.
    absorption : float
        κ (the matrices are non-Hermitian when κ > 0).
    frame : (N,) complex ndarray
        ``d_g = exp(2πi g·r₀)``: the operators are built for ``φ' = d φ``. When every
        sub-slice is centrosymmetric about the lateral point r₀ (SrTiO3 [001], Si [110]) the
        matrices are then real symmetric, and their eigenproblems about four times cheaper.
    real : bool
        Whether the frame makes the sub-slice matrices real.
    mirror : bool
        Whether sub-slice k equals sub-slice S−1−k (a mirror plane normal to the beam on a
        sub-slice boundary). With real matrices each operator E_k is then symmetric and
        ``U_c = Lᵀ L`` with L the product over the first half period: half the work.
    """

    crystal: OrientedCrystal
    indices: np.ndarray
    diagonal: np.ndarray
    table: np.ndarray
    gather: np.ndarray
    num_slices: int
    absorption: float
    frame: np.ndarray
    real: bool
    mirror: bool = False

    @property
    def period(self) -> float:
        return self.crystal.period

    @property
    def slice_thickness(self) -> float:
        return self.period / self.num_slices

    @classmethod
    def build(
        cls,
        crystal: OrientedCrystal,
        indices: np.ndarray,
        g: np.ndarray,
        energy: float,
        tilt_k,
        parametrization,
        b_factors,
        cutoff: float | None,
        absorption: float,
        max_slice: float,
        l_max: int | None = None,
    ) -> PeriodPropagator:
        """Tabulate the 3-D structure factors of every beam difference (see the module docstring).

        ``l_max`` defaults to 8 harmonics per sub-slice (the sub-slice average damps harmonic l
        as 1/l beyond the slice resolution and the structure factors fall as 1/l², so the
        neglected tail is below 1e-4 of the potential).
        """
        num_slices = max(2, int(math.ceil(crystal.period / max_slice - 1e-9)))
        num_slices += num_slices % 2  # even, so a mirror plane on a sub-slice boundary can be used
        l_max = 8 * num_slices if l_max is None else int(l_max)
        lam = wavelength(energy)
        sigma = interaction_parameter(energy)
        indices = np.asarray(indices, dtype=np.int64)
        diagonal = -math.pi * lam * (g[:, 0] ** 2 + g[:, 1] ** 2 + 2 * (g[:, 0] * tilt_k[0] + g[:, 1] * tilt_k[1]))
        span = 2 * int(np.abs(indices).max()) + 1
        code = (indices[:, None, 0] - indices[None, :, 0] + span) * (2 * span + 1) + (
            indices[:, None, 1] - indices[None, :, 1] + span
        )
        unique, gather = np.unique(code.ravel(), return_inverse=True)
        diff = np.column_stack([unique // (2 * span + 1) - span, unique % (2 * span + 1) - span])
        Lx, Ly = crystal.extent
        q = diff / np.array([Lx, Ly])
        keep = np.ones(len(q), dtype=bool) if cutoff is None else np.hypot(q[:, 0], q[:, 1]) <= cutoff * (1 + 1e-12)
        ls = np.arange(-l_max, l_max + 1)
        q3 = np.column_stack([np.repeat(q[keep], len(ls), axis=0), np.tile(ls / crystal.period, int(keep.sum()))])
        values = structure_factors(crystal, q3, parametrization, b_factors).reshape(-1, len(ls)).T
        table = np.zeros((len(ls), len(q)), dtype=np.complex128)
        table[:, keep] = values
        centre, real = _real_frame(crystal, q, table)
        table *= np.exp(2j * math.pi * (q @ centre))[None, :]
        if real:
            table = table.real + 0j
        table *= complex(sigma, sigma * absorption)
        frame = np.exp(2j * math.pi * (np.asarray(g) @ centre))
        coefficients = harmonic_weights(num_slices, l_max) @ table  # (S, D)
        mirror = num_slices % 2 == 0 and bool(
            np.abs(coefficients - coefficients[::-1]).max() <= 1e-10 * np.abs(coefficients).max()
        )
        real = bool(real and absorption == 0)
        return cls(
            crystal,
            indices,
            diagonal,
            table,
            np.asarray(gather).reshape(len(indices), -1),
            num_slices,
            float(absorption),
            frame,
            real,
            mirror and real,
        )

    def hamiltonian(self, k: int, xp):
        """``H̄_k`` in the frame (H averaged over sub-slice k, 1/Å): (N, N), real when ``self.real``."""
        l_max = (self.table.shape[0] - 1) // 2
        w = harmonic_weights(self.num_slices, l_max, rows=k)[0]
        v = (w @ self.table)[self.gather]
        if self.real:
            v = np.ascontiguousarray(v.real)
        v[np.diag_indices(len(self.diagonal))] += self.diagonal
        return xp.asarray(v)

    def slice_eigen(self, k: int, xp):
        """Eigen-decomposition ``(λ, C, C⁻¹)`` of ``H̄_k`` (C⁻¹ = Cᴴ without absorption)."""
        h = self.hamiltonian(k, xp)
        if self.absorption == 0:
            lam, c = xp.linalg.eigh(h)
            return lam, c, xp.conj(xp.permute_dims(c, (1, 0)))
        lam, c = eigensystem(h, hermitian=False)
        return lam, c, xp.linalg.inv(c)

    @staticmethod
    def _operator(eigen, length: float, xp):
        lam, c, c_inv = eigen
        phase = xp.exp(1j * length * xp.astype(lam, xp.complex128))
        return (xp.astype(c, xp.complex128) * phase[None, :]) @ xp.astype(c_inv, xp.complex128)

    def slice_operator(self, k: int, xp, length: float | None = None):
        """``exp(i ℓ H̄_k)`` in the frame, for a length ℓ (Å, default the sub-slice thickness)."""
        return self._operator(self.slice_eigen(k, xp), self.slice_thickness if length is None else length, xp)

    def period_operator(self, xp):
        """``U_c`` in the frame: the ordered product of the sub-slice operators over one period."""
        half = self.num_slices // 2 if self.mirror else self.num_slices
        u = None
        for k in range(half):
            e = self.slice_operator(k, xp)
            u = e if u is None else e @ u
        if self.mirror:  # E_(S−1−k) = E_k = E_kᵀ: the second half is the transposed first half
            u = xp.permute_dims(u, (1, 0)) @ u
        return u

    def advance(self, taus: np.ndarray, vectors, xp):
        """Apply ``U(τ)`` (0 ≤ τ < c) to the rows of ``vectors`` (T, N) given in the frame.

        One sweep through the period: the full sub-slices once, then per distinct τ only a
        partial step with the current sub-slice's eigenvectors (O(N²) per row).
        """
        positive = np.flatnonzero(taus > 1e-9)
        if len(positive) == 0:
            return vectors
        order = positive[np.argsort(taus[positive], kind="stable")]
        dz = self.slice_thickness
        u = None
        k = 0
        eigen = None
        rows = {}
        for i in order:
            tau = float(taus[i])
            while k < self.num_slices and (k + 1) * dz <= tau + 1e-9:
                eigen = self.slice_eigen(k, xp)
                e = self._operator(eigen, dz, xp)
                u = e if u is None else e @ u
                k += 1
                eigen = None
            x = vectors[int(i), :]
            if u is not None:
                x = u @ x
            rest = tau - k * dz
            if rest > 1e-9:
                if eigen is None:
                    eigen = self.slice_eigen(k, xp)
                lam, c, c_inv = eigen
                x = xp.astype(c, xp.complex128) @ (
                    xp.exp(1j * rest * xp.astype(lam, xp.complex128)) * (xp.astype(c_inv, xp.complex128) @ x)
                )
            rows[int(i)] = x
        return xp.stack([rows.get(i, vectors[i, :]) for i in range(vectors.shape[0])], axis=0)


def _real_frame(crystal: OrientedCrystal, q: np.ndarray, table: np.ndarray):
    """A lateral centre r₀ about which every sub-slice is centrosymmetric, and whether one exists."""
    centre = inversion_centre(crystal)
    if centre is None:
        return np.zeros(2), False
    shifted = table * np.exp(2j * math.pi * (q @ centre))[None, :]
    scale = np.abs(table).max()
    return np.asarray(centre, dtype=float), bool(np.abs(shifted.imag).max() <= 1e-10 * scale)


def propagator_modes(propagator: PeriodPropagator, xp):
    """Bloch waves of the 3-D crystal: wavevectors γ (1/Å), modes W and excitations W⁻¹e₀.

    γ_j = −i log(μ_j) / c from the eigenvalues μ_j of the period operator (complex with
    absorption), so ``W exp(iγ n c) W⁻¹ e₀`` is the wave after n periods.
    """
    u = propagator.period_operator(xp)
    mu, w = eigensystem(u, hermitian=False)
    gamma = -1j * xp.log(mu) / propagator.period
    n = w.shape[0]
    # back from the frame: φ = d* φ'
    w = xp.asarray(np.conj(propagator.frame))[:, None] * w
    e0 = xp.asarray(np.eye(n, 1, dtype=np.complex128))
    alpha = xp.linalg.solve(w, e0)[:, 0]
    return gamma, w, alpha


def holz_amplitudes(propagator: PeriodPropagator, gamma, w, alpha, thickness: np.ndarray):
    """Beam amplitudes (T, N) at any thickness: whole periods by the modes, the rest by ``U(τ)``."""
    xp = array_namespace(gamma, w, alpha)
    c = propagator.period
    t = np.asarray(thickness, dtype=float)
    n = np.floor(t / c + 1e-9)
    tau = t - n * c
    tau[tau < 1e-9] = 0.0
    phase = xp.exp(1j * (xp.astype(xp.asarray(n * c), xp.complex128)[:, None] * gamma[None, :]))  # (T, N)
    base = (phase * alpha[None, :]) @ xp.permute_dims(w, (1, 0))
    if not np.any(tau > 0):
        return base
    d = xp.asarray(propagator.frame)
    return propagator.advance(tau, base * d[None, :], xp) * xp.conj(d)[None, :]
