"""Projection kernels: radial Fourier factors of a slice's atoms, and real-space references.

A slice's projected potential is built in Fourier space (see :mod:`.superposition`):

``v(k) = (1/A) Σ_atoms F_a(|k|) exp(−2πi k·r_a)``,

where ``F_a`` depends only on the element for infinite projection
(:meth:`Parametrization.projected_potential_fourier`) and also on the atom's height relative
to the slice limits for finite projection
(:meth:`Parametrization.finite_projection_fourier`). Atoms sharing a radial factor are
grouped; each group's sum is a matrix product (BLAS). When a slice has many distinct factors
(frozen phonons with finite projection) the numba kernel :func:`accumulate_radial` sums atom by
atom with tabulated radial factors; :func:`accumulate_radial_reference` is its plain
array-API twin.

This module also gives the *independent* real-space references used by the tests:
:func:`band_limited_radial_potential` (the Hankel transform of a band-limited Fourier factor)
and :func:`projected_potential_at` (a sum over atoms at arbitrary points).
"""

from __future__ import annotations

import math

import numpy as np

from temsim.backend import array_namespace
from temsim.errors import InputError
from temsim.potentials.parametrizations import Parametrization, load_parametrization

__all__ = [
    "radial_factor",
    "radial_table",
    "accumulate_radial",
    "accumulate_radial_reference",
    "band_limited_radial_potential",
    "projected_potential_at",
]


def radial_factor(parametrization: Parametrization, Z: int, k, z_start: float = -math.inf, z_stop: float = math.inf):
    """Radial Fourier factor F(|k|) (V·Å³) of one atom for slice limits relative to the atom.

    ``(−inf, inf)`` is the infinite projection; otherwise the potential integrated over
    ``z_start ≤ z − z_atom ≤ z_stop`` (Å). ``k`` is |k| in 1/Å, any array-API namespace.
    """
    if math.isinf(z_start) and math.isinf(z_stop) and z_start < 0 < z_stop:
        return parametrization.projected_potential_fourier(Z, k)
    return parametrization.finite_projection_fourier(Z, k, z_start, z_stop)


def radial_table(parametrization: Parametrization, groups, k_max: float, spacing: float = 1e-3):
    """Tabulate radial factors of ``groups`` = [(Z, z_start, z_stop), ...] on a uniform |k| grid.

    Groups of one element are evaluated together (numpy broadcasting over their limits).

    Returns
    -------
    k_step : float
        Table spacing (1/Å); entry ``m`` is at ``m · k_step``.
    table : (n_groups, n_k) float64 ndarray
        F values in V·Å³. ``n_k`` covers ``[0, k_max]`` plus one guard point. Linear
        interpolation at the default spacing is accurate to ~1e-4 of F.
    """
    from scipy.special import erf

    n_k = int(math.ceil(k_max / spacing)) + 2
    k2 = (np.arange(n_k) * spacing)[None, :] ** 2
    table = np.zeros((len(groups), n_k))
    numbers = np.array([g[0] for g in groups], dtype=int)
    t1_all = np.array([g[1] for g in groups], dtype=float)
    t2_all = np.array([g[2] for g in groups], dtype=float)
    scale = parametrization.projected_potential_fourier(1, 0.0) / parametrization.scattering_factor(1, 0.0)

    def edge(beta, t, squared):
        u = 2 * math.pi * np.abs(t)[:, None] * beta
        e = np.exp(-np.where(np.isinf(u), np.inf, u))
        with np.errstate(invalid="ignore"):
            body = 2 - (2 + np.where(np.isinf(u), 0.0, u)) * e if squared else 1 - e
        return np.sign(t)[:, None] * body

    for Z in np.unique(numbers):
        rows = np.flatnonzero(numbers == Z)
        t1, t2 = t1_all[rows], t2_all[rows]
        terms = parametrization.element_terms(int(Z))
        acc = np.zeros((rows.size, n_k))
        for a, b in terms.lorentzian:
            beta = np.sqrt(k2 + b)
            acc += a / (2 * beta**2) * (edge(beta, t2, False) - edge(beta, t1, False))
        for a, b in terms.lorentzian_squared:
            beta = np.sqrt(k2 + b)
            acc += a / (4 * beta**4) * (edge(beta, t2, True) - edge(beta, t1, True))
        for a, b in terms.gaussian:
            w = 0.5 * (erf(math.pi * t2 / math.sqrt(b)) - erf(math.pi * t1 / math.sqrt(b)))
            acc += (a * w)[:, None] * np.exp(-b * k2)
        table[rows] = scale * acc
    return spacing, table


def _interp_indices(k_abs: np.ndarray, k_step: float, inside: np.ndarray):
    pos = k_abs / k_step
    idx = np.floor(pos).astype(np.int32)
    frac = (pos - idx).astype(np.float64)
    idx = np.where(inside, idx, -1).astype(np.int32)
    return idx, frac


def accumulate_radial_reference(ex, ey, group_of_atom, factors):
    """Reference twin: ``out[i, j] = Σ_a factors[g(a)][i, j] · ex[i, a] · ey[j, a]``.

    Parameters
    ----------
    ex : (n_kx, N) complex array
        ``exp(−2πi kx_i x_a)``.
    ey : (n_ky, N) complex array
        ``exp(−2πi ky_j y_a)``.
    group_of_atom : (N,) int sequence
        Group index of each atom.
    factors : sequence of (n_kx, n_ky) real arrays
        Radial factor of each group on the (kx, ky) band.

    Returns
    -------
    (n_kx, n_ky) complex array in ``ex``'s namespace: one matrix product per group.
    """
    xp = array_namespace(ex, ey)
    groups = np.asarray(group_of_atom)
    out = xp.zeros((ex.shape[0], ey.shape[0]), dtype=ex.dtype)
    for g in np.unique(groups):
        members = xp.asarray(np.flatnonzero(groups == g))
        s = xp.take(ex, members, axis=1) @ xp.matrix_transpose(xp.take(ey, members, axis=1))
        out = out + xp.astype(factors[int(g)], ex.dtype) * s
    return out


_NUMBA_KERNEL = None


def _numba_kernel():
    global _NUMBA_KERNEL  # compiled-kernel cache (code, not numbers)
    if _NUMBA_KERNEL is None:
        import numba

        @numba.njit(parallel=True, cache=True, fastmath=False)
        def kernel(ex, ey, group, table, idx, frac, out):  # pragma: no cover - compiled
            # table is (n_k, n_groups): the groups of one |k| are contiguous
            nkx, nky = out.shape
            n_atoms = ex.shape[1]
            n_groups = table.shape[1]
            for i in numba.prange(nkx):
                f = np.empty(n_groups, dtype=np.float32)
                for j in range(nky):
                    m = idx[i, j]
                    if m < 0:
                        out[i, j] = 0
                        continue
                    w = frac[i, j]
                    for g in range(n_groups):
                        f[g] = table[m, g] * (1.0 - w) + table[m + 1, g] * w
                    acc_re = 0.0
                    acc_im = 0.0
                    for a in range(n_atoms):
                        p = ex[i, a] * ey[j, a]
                        fa = f[group[a]]
                        acc_re += fa * p.real
                        acc_im += fa * p.imag
                    out[i, j] = complex(acc_re, acc_im)

        _NUMBA_KERNEL = kernel
    return _NUMBA_KERNEL


def accumulate_radial(ex, ey, group_of_atom, table, k_step, k_abs, inside):
    """numba fast path of :func:`accumulate_radial_reference` with tabulated factors (numpy).

    Parameters
    ----------
    ex, ey : complex64 ndarrays ``(n_kx, N)``, ``(n_ky, N)``
        Phase factors (see the reference twin).
    group_of_atom : (N,) int ndarray
        Group index of each atom (row of ``table``).
    table, k_step
        From :func:`radial_table`; factors are interpolated linearly in |k|.
    k_abs : (n_kx, n_ky) float ndarray
        |k| of the band pixels (1/Å).
    inside : (n_kx, n_ky) bool ndarray
        Pixels inside the band limit (others are set to 0).

    Returns
    -------
    (n_kx, n_ky) complex64 ndarray
    """
    ex = np.ascontiguousarray(ex, dtype=np.complex64)
    ey = np.ascontiguousarray(ey, dtype=np.complex64)
    group = np.ascontiguousarray(group_of_atom, dtype=np.int64)
    table = np.ascontiguousarray(np.asarray(table, dtype=np.float32).T)
    if np.any(inside) and float(np.max(np.where(inside, k_abs, 0.0))) / k_step > table.shape[0] - 2:
        raise InputError("radial table does not reach the band limit; build it with k_max ≥ max |k|")
    idx, frac = _interp_indices(np.asarray(k_abs), k_step, np.asarray(inside))
    out = np.empty((ex.shape[0], ey.shape[0]), dtype=np.complex64)
    _numba_kernel()(ex, ey, group, table, idx, frac.astype(np.float32), out)
    return out


def band_limited_radial_potential(
    parametrization,
    Z: int,
    r,
    cutoff: float,
    *,
    z_start: float = -math.inf,
    z_stop: float = math.inf,
    n_nodes: int | None = None,
):
    """Projected potential of one isolated atom, band-limited to |k| ≤ ``cutoff``, in V·Å.

    ``v(r) = 2π ∫_0^{cutoff} k J0(2π k r) F(k) dk`` (Hankel transform, Gauss–Legendre
    quadrature), with ``F`` the infinite (default) or finite projection factor for slice
    limits ``z_start, z_stop`` relative to the atom. This is the continuous-space reference a
    grid construction is compared with (no FFT, no periodic images).

    Parameters
    ----------
    parametrization : str or Parametrization
    Z : int
    r : array_like
        Distances from the atom (Å).
    cutoff : float
        Band limit in 1/Å (e.g. ``grid.antialias_cutoff``).
    """
    from scipy.special import j0

    p = load_parametrization(parametrization)
    r = np.asarray(r, dtype=float)
    if n_nodes is None:
        # J0(2π k r) has ~cutoff·r oscillations on [0, cutoff]; Gauss–Legendre converges
        # exponentially once there are a few nodes per oscillation.
        n_nodes = int(min(20000, 200 + 8 * cutoff * float(np.max(r, initial=0.0))))
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    k = 0.5 * cutoff * (x + 1.0)
    w = 0.5 * cutoff * w
    weights = k * np.asarray(radial_factor(p, Z, k, z_start, z_stop)) * w
    flat = r.reshape(-1)
    out = np.empty(flat.shape)
    chunk = max(1, 2_000_000 // n_nodes)
    for s in range(0, flat.size, chunk):
        out[s : s + chunk] = j0(2 * math.pi * np.multiply.outer(flat[s : s + chunk], k)) @ weights
    return 2 * math.pi * out.reshape(r.shape)


def projected_potential_at(
    numbers, positions, points, parametrization="lobato", *, cutoff: float | None = None, cell=None, images: int = 1
):
    """Sum of atomic projected potentials at arbitrary points (V·Å), an independent reference.

    Parameters
    ----------
    numbers : (N,) int array_like
        Atomic numbers.
    positions : (N, 2) array_like
        Lateral atom positions (Å).
    points : (M, 2) array_like
        Where to evaluate (Å).
    parametrization : str or Parametrization
    cutoff : float, optional
        Band limit in 1/Å; without it the analytic (unlimited) ``v_z`` is used, which diverges
        at an atom's centre.
    cell : (float, float), optional
        Lateral cell (Å); periodic images within ``images`` cells are added.
    images : int
        Image range used with ``cell`` (default 1: the 3 × 3 neighbourhood).

    Returns
    -------
    (M,) float64 ndarray
    """
    p = load_parametrization(parametrization)
    numbers = np.asarray(numbers, dtype=int).reshape(-1)
    positions = np.asarray(positions, dtype=float).reshape(-1, 2)
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    shifts = [(0.0, 0.0)]
    if cell is not None:
        n = int(images)
        shifts = [(i * cell[0], j * cell[1]) for i in range(-n, n + 1) for j in range(-n, n + 1)]
    out = np.zeros(points.shape[0])
    for Z in np.unique(numbers):
        pos = positions[numbers == Z]
        dist = []
        for sx, sy in shifts:
            d = points[:, None, :] - (pos[None, :, :] + np.array([sx, sy]))
            dist.append(np.hypot(d[..., 0], d[..., 1]))
        dist = np.concatenate(dist, axis=1)
        if cutoff is None:
            out += p.projected_potential(int(Z), dist).sum(axis=1)
        else:
            # tabulate the band-limited radial function once, interpolate (cubic spline)
            from scipy.interpolate import CubicSpline

            r_max = float(dist.max()) + 0.1
            r_grid = np.linspace(0.0, r_max, int(r_max / 0.002) + 2)
            v = band_limited_radial_potential(p, int(Z), r_grid, cutoff)
            out += CubicSpline(r_grid, v)(dist).sum(axis=1)
    return out
