"""Bloch waves: exact beam amplitudes of a perfect crystal at every thickness at once.

For a crystal periodic along the beam, the forward-scattering (paraxial) wave equation that
multislice integrates slice by slice,

``∂ψ/∂z = (iλ/4π) ∇⊥²ψ − 2πλ (k_t·∇⊥/2π·i) ψ + iσ V(r) ψ``,

becomes, for the beam amplitudes φ_g of ``ψ = Σ_g φ_g(z) exp(2πi g·r)`` in the zero-order
Laue zone (the potential averaged along the beam period),

``dφ/dz = i A φ``,  ``A_gh = 2π s_g δ_gh + σ V_{g−h} = 2π [s_g δ_gh + λ U_{g−h}/2]``,

with ``s_g = −(λ/2)(|g|² + 2 g·k_t)`` the excitation error and ``U_g = σV_g/(πλ)``. A is
diagonalized once, ``A = C Γ C⁻¹``, and every thickness follows by diagonal propagation:
``φ(t) = C exp(iΓt) C⁻¹ φ(0)`` with ``φ(0) = δ_g0``. Without absorption A is Hermitian
(``eigh``); with the proportional absorptive potential ``V → (1 + iκ)V`` it is not (``eig``).

The phases are those of multislice (the wave in the frame of the tilted beam, the mean inner
potential's phase ``σV_0 t`` included), so a Bloch exit wave and a multislice exit wave on the
same grid can be subtracted directly.

Approximations (documented in docs/bloch-waves.md): forward scattering / paraxial
(no back-scattering, no curvature of the Ewald sphere beyond second order, as multislice),
zero-order Laue zone only (higher-order Laue zones neglected: the crystal is replaced by its
projection along the beam period), perfect infinite crystal laterally (no defects, no surface
relaxation), isolated-atom scattering factors, Debye–Waller damping instead of thermal diffuse
scattering, and a phenomenological absorption proportional to the real potential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from temsim._version import __version__
from temsim.backend import array_namespace, to_numpy
from temsim.constants import check_energy, interaction_parameter, wavelength
from temsim.errors import InputError, MemoryLimitError, SamplingError
from temsim.grid import Grid
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.solvers.bloch_beams import (
    DEFAULT_EXCITATION_ERROR_MAX,
    DEFAULT_G_MAX,
    BeamSet,
    OrientedCrystal,
    eigensystem,
    inversion_centre,
    orient_crystal,
    select_beams,
    structure_factors,
    u_from_v,
)

__all__ = [
    "bloch",
    "BlochWaves",
    "solve_bloch",
    "structure_matrix",
    "eigensystem",
    "propagate_amplitudes",
    "estimate_memory",
    "beam_convergence",
]

#: Bytes per beam² of the eigenproblem (matrix, eigenvectors, inverse, LAPACK workspace; complex128).
BYTES_PER_BEAM2 = 6 * 16


def estimate_memory(num_beams: int, num_thicknesses: int = 1) -> int:
    """Bytes needed to solve ``num_beams`` beams and keep ``num_thicknesses`` amplitude rows."""
    return int(BYTES_PER_BEAM2 * num_beams**2 + 3 * 16 * num_beams * num_thicknesses)


def _check_thickness(thickness) -> np.ndarray:
    try:
        t = np.asarray(thickness, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"thickness must be a number or an array of lengths in Å, got {thickness!r}") from None
    if t.size == 0:
        raise InputError("thickness is empty; give at least one thickness in Å")
    if not np.all(np.isfinite(t)):
        raise InputError(f"thickness must be finite (Å), got {thickness!r}")
    if np.any(t < 0):
        raise InputError(f"thickness must be ≥ 0 Å, got {t[t < 0][:5].tolist()} (negative values)")
    return t


def _check_positive(value, name: str, unit: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in {unit}, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name} must be a positive number in {unit}, got {value!r}")
    return v


# ---------------------------------------------------------------------------- kernels
def structure_matrix(g, v_g_minus_h, energy: float, tilt_k=(0.0, 0.0), absorption: float = 0.0):
    """The Bloch structure matrix ``A = diag(2π s_g) + σ(1 + iκ)V_{g−h}`` (1/Å), complex128.

    Parameters
    ----------
    g : (N, 2) array
        Lateral wavevectors of the beams (1/Å) relative to the wave's frame.
    v_g_minus_h : (N, N) array
        Potential coefficients V_{g−h} (V).
    energy : float
        eV.
    tilt_k : (float, float)
        Beam tilt as a lateral wavevector (1/Å), k_t = θ/λ.
    absorption : float
        κ: absorptive potential ``iκV``.
    """
    xp = array_namespace(g, v_g_minus_h)
    lam = wavelength(energy)
    sigma = interaction_parameter(energy)
    g = xp.asarray(g, dtype=xp.float64)
    diag = -math.pi * lam * (g[:, 0] ** 2 + g[:, 1] ** 2 + 2 * (g[:, 0] * tilt_k[0] + g[:, 1] * tilt_k[1]))
    factor = complex(sigma, sigma * absorption)
    a = xp.astype(v_g_minus_h, xp.complex128) * factor
    eye = xp.eye(g.shape[0], dtype=xp.complex128)
    return a + eye * xp.astype(diag, xp.complex128)[:, None]


def propagate_amplitudes(gamma, c, alpha, thickness):
    """Beam amplitudes ``φ(t) = C exp(iΓt) α`` for every thickness (vectorized).

    Parameters
    ----------
    gamma : (N,) complex array
        Eigenvalues (1/Å).
    c : (N, N) complex array
        Eigenvectors (columns).
    alpha : (N,) or (N, M) complex array
        Bloch-wave excitations ``C⁻¹ φ(0)`` (M incident conditions).
    thickness : (T,) float array
        Å.

    Returns
    -------
    (T, N) or (T, M, N) complex array
    """
    xp = array_namespace(gamma, c, alpha, thickness)
    t = xp.asarray(thickness, dtype=xp.float64)
    phase = xp.exp(1j * (xp.astype(t, xp.complex128)[:, None] * gamma[None, :]))  # (T, N)
    if alpha.ndim == 1:
        return (phase * alpha[None, :]) @ xp.permute_dims(c, (1, 0))
    weighted = phase[:, None, :] * xp.permute_dims(alpha, (1, 0))[None, :, :]  # (T, M, N)
    return weighted @ xp.permute_dims(c, (1, 0))


def _potential_table(
    crystal: OrientedCrystal, indices: np.ndarray, span, parametrization, b_factors, cutoff: float | None = None
) -> np.ndarray:
    """V_q (V) on the grid of index differences ``q = (n, m)``, ``|n| ≤ span[0]``, ``|m| ≤ span[1]``.

    Only the differences that beams with integer ``indices`` can form are evaluated (inside the
    disc of twice the beam radius; zero outside); ``cutoff`` (1/Å) sets V_q = 0 for |q| above it
    (a band-limited potential). Entry ``[n + span[0], m + span[1]]`` holds V_(n, m).
    """
    n = np.arange(-span[0], span[0] + 1)
    m = np.arange(-span[1], span[1] + 1)
    table_indices = np.stack(np.meshgrid(n, m, indexing="ij"), -1).reshape(-1, 2)
    Lx, Ly = crystal.extent
    radius = 2 * np.max(np.hypot(indices[:, 0] / Lx, indices[:, 1] / Ly)) * (1 + 1e-9)
    q = table_indices / np.array([Lx, Ly])
    length = np.hypot(q[:, 0], q[:, 1])
    inside = length <= radius
    if cutoff is not None:
        inside &= length <= cutoff * (1 + 1e-12)
    values = np.zeros(len(q), dtype=np.complex128)
    values[inside] = structure_factors(crystal, q[inside], parametrization, b_factors)
    return values.reshape(len(n), len(m))


def _potential_matrix(
    crystal: OrientedCrystal, indices: np.ndarray, parametrization, b_factors, cutoff: float | None = None
) -> np.ndarray:
    """V_{g−h} (N, N) for beams with integer ``indices``, each distinct difference computed once.

    ``cutoff`` (1/Å): set V_{g−h} = 0 for |g − h| > cutoff (a band-limited potential).
    """
    span = np.abs(indices).max(axis=0) * 2
    table = _potential_table(crystal, indices, span, parametrization, b_factors, cutoff)
    dn = indices[:, None, 0] - indices[None, :, 0] + span[0]
    dm = indices[:, None, 1] - indices[None, :, 1] + span[1]
    return table[dn, dm]


# ---------------------------------------------------------------------------- solution object
@dataclass(frozen=True)
class BlochWaves:
    """A solved Bloch-wave problem: any thickness, exit waves and diffraction from one eigensolve.

    Build with :func:`solve_bloch`. Attributes hold numpy arrays except ``gamma``, ``vectors``
    and ``alpha``, which live in the namespace of the device solved on.

    Attributes
    ----------
    crystal : OrientedCrystal
        The crystal in its zone-axis cell (``crystal.atoms`` is the cell to give
        :class:`temsim.potentials.Potential` for a multislice comparison).
    beams : BeamSet
        Reflections (row 0 the transmitted beam).
    energy : float
        eV.
    tilt : (float, float)
        mrad.
    potential_coefficients : (N,) complex ndarray
        V_g (V) of the beams (including Debye–Waller damping, without absorption).
    gamma, vectors, alpha
        Eigenvalues (1/Å), eigenvectors and excitations ``C⁻¹ e_0``.
    settings : dict
        g_max, excitation_error_max, parametrization, b_factors, absorption, holz.
    expansion : (orbit, weight) or None
        With the symmetry reduction (untilted incidence on a symmetric zone axis): ``gamma``,
        ``vectors`` and ``alpha`` belong to the reduced problem with one row per orbit of
        symmetry-equivalent beams, and beam g has amplitude ``weight[g] · φ_orbit[g]``.
    propagator : PeriodPropagator or None
        With ``holz=True``: the sub-slice operators of one period (the crystal's structure
        along the beam); ``gamma``, ``vectors`` and ``alpha`` are then the Bloch waves of the
        period operator. None: zero-order Laue zone.
    """

    crystal: OrientedCrystal
    beams: BeamSet
    energy: float
    tilt: tuple[float, float]
    potential_coefficients: np.ndarray
    gamma: object
    vectors: object
    alpha: object
    settings: dict
    propagator: object = None
    expansion: tuple | None = None

    @property
    def num_beams(self) -> int:
        return len(self.beams)

    def amplitudes(self, thickness):
        """Complex beam amplitudes (T, N) at ``thickness`` (Å), in the solver's namespace."""
        t = _check_thickness(thickness)
        if self.propagator is not None:
            from temsim.solvers.bloch_holz import holz_amplitudes

            return holz_amplitudes(self.propagator, self.gamma, self.vectors, self.alpha, t)
        xp = array_namespace(self.gamma)
        phi = propagate_amplitudes(self.gamma, self.vectors, self.alpha, xp.asarray(t))
        if self.expansion is None:
            return phi
        orbit, weight = self.expansion  # one amplitude per orbit of symmetry-equivalent beams
        return xp.take(phi, xp.asarray(orbit), axis=1) * xp.asarray(weight)[None, :]

    def to_dataset(self, thickness) -> xr.Dataset:
        """Beam amplitudes and intensities vs thickness as an ``xarray.Dataset``.

        Variables ``amplitude`` (complex) and ``intensity`` (fraction of the incident beam), dims
        (``thickness``, ``beam``); beam coords ``h, k, l`` (Miller indices in the given cell),
        ``n, m`` (indices in the zone-axis cell), ``gx, gy`` (1/Å), ``excitation_error``
        (1/Å), ``U`` (|U_g|, 1/Å²) and ``extinction_distance`` (Å).
        """
        t = _check_thickness(thickness)
        phi = to_numpy(self.amplitudes(t))
        b = self.beams
        u = np.abs(u_from_v(self.potential_coefficients, self.energy))
        lam = wavelength(self.energy)
        with np.errstate(divide="ignore"):
            xi = np.where(u > 0, 1.0 / (lam * np.maximum(u, 1e-300)), np.inf)
        coords = {
            "thickness": ("thickness", t, {"units": "Å"}),
            "beam": ("beam", np.arange(len(b))),
            "h": ("beam", b.hkl[:, 0] + 0.0),
            "k": ("beam", b.hkl[:, 1] + 0.0),
            "l": ("beam", b.hkl[:, 2] + 0.0),
            "n": ("beam", b.indices[:, 0]),
            "m": ("beam", b.indices[:, 1]),
            "gx": ("beam", b.g[:, 0], {"units": "1/Å"}),
            "gy": ("beam", b.g[:, 1], {"units": "1/Å"}),
            "excitation_error": ("beam", b.excitation_error, {"units": "1/Å"}),
            "U": ("beam", u, {"units": "1/Å²", "long_name": "|U_g| = σ|V_g|/(πλ)"}),
            "extinction_distance": ("beam", xi, {"units": "Å"}),
        }
        data = {
            "amplitude": (("thickness", "beam"), phi, {"long_name": "beam amplitude"}),
            "intensity": (
                ("thickness", "beam"),
                np.abs(phi) ** 2,
                {"units": "fraction of incident beam", "long_name": "beam intensity"},
            ),
        }
        return xr.Dataset(data, coords=coords, attrs=self._attrs())

    def _attrs(self) -> dict:
        s = self.settings
        b = s["b_factors"]
        return {
            "signal": "bloch_beams",
            "energy": self.energy,
            "energy_units": "eV",
            "wavelength": wavelength(self.energy),
            "zone_axis": list(self.crystal.zone_axis),
            "tilt": list(self.tilt),
            "tilt_units": "mrad",
            "g_max": s["g_max"],
            "excitation_error_max": s["excitation_error_max"],
            "num_beams": self.num_beams,
            "parametrization": s["parametrization"],
            "b_factors": repr(b) if b is not None else "none",
            "absorption": s["absorption"],
            "cell_extent": list(self.crystal.extent),
            "beam_period": self.crystal.period,
            "holz": bool(s.get("holz", False)),
            "approximations": (
                "forward scattering (paraxial), zero-order Laue zone, perfect crystal"
                if self.propagator is None
                else "forward scattering (paraxial), 3-D potential along the beam (all Laue zones, sub-slices of "
                f"{self.propagator.slice_thickness:.4f} Å), perfect crystal"
            ),
            "temsim_version": __version__,
        }

    def grid(self, sampling=None, gpts=None) -> Grid:
        """The multislice grid over the zone-axis cell (default sampling 0.05 Å)."""
        extent = self.crystal.extent
        if gpts is not None:
            return Grid(extent, tuple(int(g) for g in gpts))
        return Grid.from_sampling(extent, 0.05 if sampling is None else sampling)

    def exit_wave(self, thickness, sampling=None, gpts=None) -> xr.DataArray:
        """Exit wave(s) in real space on the multislice grid of the zone-axis cell.

        ``ψ(r) = Σ_g φ_g(t) exp(2πi g·r)`` sampled at the pixels of
        ``Grid.from_sampling(cell extent, sampling)`` (the grid
        :class:`~temsim.potentials.Potential` uses for the same cell and sampling), in the
        frame of the (tilted) incident beam, as multislice returns it.

        Returns
        -------
        DataArray
            Complex128, dims (``thickness``, ``x``, ``y``) (or (``x``, ``y``) for a scalar
            thickness); attrs as :func:`temsim.multislice`'s, so
            :func:`temsim.diffraction_pattern` and :func:`temsim.hrtem_image` apply.

        Raises
        ------
        SamplingError
            If a beam lies beyond the grid's Nyquist frequency.
        """
        scalar = np.ndim(thickness) == 0
        t = _check_thickness(thickness)
        grid = self.grid(sampling, gpts)
        spectrum = _place_beams(self.beams.indices, to_numpy(self.amplitudes(t)), grid)
        from temsim.backend import ifft2

        wave = ifft2(spectrum) * (grid.gpts[0] * grid.gpts[1])
        attrs = self._attrs()
        attrs.update(
            signal="exit_wave",
            sampling=list(grid.sampling),
            extent=list(grid.extent),
            gpts=list(grid.gpts),
            solver="bloch",
            dtype="complex128",
        )
        coords = {"x": ("x", grid.x(), {"units": "Å"}), "y": ("y", grid.y(), {"units": "Å"})}
        if scalar:
            return xr.DataArray(wave[0], dims=("x", "y"), coords=coords, attrs=attrs, name="exit_wave")
        coords["thickness"] = ("thickness", t, {"units": "Å"})
        return xr.DataArray(wave, dims=("thickness", "x", "y"), coords=coords, attrs=attrs, name="exit_wave")


def _place_beams(indices: np.ndarray, amplitudes: np.ndarray, grid: Grid) -> np.ndarray:
    """Spectrum (T, nx, ny) with beam amplitudes at their FFT-grid points (integer indices)."""
    nx, ny = grid.gpts
    lim = np.array([nx, ny]) / 2
    # with gpts given, the grid's cell is the zone-axis cell; beams must be inside Nyquist
    if np.any(np.abs(indices) >= lim[None, :]):
        worst = float(np.max(np.abs(indices) / np.array(grid.extent)))
        raise SamplingError(
            f"a beam at {worst:.2f} 1/Å lies beyond the grid's Nyquist frequency "
            f"({1 / (2 * max(grid.sampling)):.2f} 1/Å, sampling {max(grid.sampling):.4f} Å); use a sampling ≤ "
            f"{1 / (2.05 * worst):.4f} Å or a smaller g_max"
        )
    spectrum = np.zeros((amplitudes.shape[0], nx, ny), dtype=np.complex128)
    spectrum[:, indices[:, 0] % nx, indices[:, 1] % ny] = amplitudes
    return spectrum


# ---------------------------------------------------------------------------- drivers
def solve_bloch(
    atoms,
    energy: float,
    zone_axis=(0, 0, 1),
    *,
    g_max: float | None = None,
    excitation_error_max: float | None = None,
    tilt=(0.0, 0.0),
    parametrization="lobato",
    b_factors=None,
    absorption: float = 0.0,
    device: str | None = None,
    memory_limit: int | None = None,
    potential_cutoff: float | None = None,
    crystal: OrientedCrystal | None = None,
    holz: bool = False,
    holz_slice: float | None = None,
    symmetry: bool = True,
    settings: ExecutionSettings | None = None,
) -> BlochWaves:
    """Set up and diagonalize the Bloch-wave problem of a crystal (see :func:`bloch`).

    ``potential_cutoff`` (1/Å) band-limits the potential: V_{g−h} = 0 for |g − h| above it
    (give a multislice grid's ``antialias_cutoff`` to describe exactly the potential that grid
    holds). ``crystal`` (an :class:`OrientedCrystal` from an earlier solve) skips the
    orientation step when the same crystal is solved for many tilts. ``holz`` and
    ``holz_slice`` as for :func:`bloch`. ``symmetry`` (default True): for untilted incidence,
    reduce the eigenproblem to one row per orbit of beams related by the projection's point
    symmetry (SrTiO3 [001]: 845 beams → 120 orbits), found by testing the candidate operations on
    the centred structure-factor table and the excitation errors; the amplitudes are the same as
    without it (tested to 1e-10). ``settings`` (:class:`~temsim.settings.ExecutionSettings`)
    gives the device and memory limit (or the single keywords ``device``, ``memory_limit``).
    """
    from temsim.waves import check_tilt

    settings = resolve_settings(settings, device=device, memory_limit=memory_limit)

    energy = check_energy(energy)
    tilt = check_tilt(tilt)
    g_max = DEFAULT_G_MAX if g_max is None else _check_positive(g_max, "g_max", "1/Å")
    s_max = (
        DEFAULT_EXCITATION_ERROR_MAX
        if excitation_error_max is None
        else _check_positive(excitation_error_max, "excitation_error_max", "1/Å")
    )
    try:
        kappa = float(absorption)
    except (TypeError, ValueError):
        raise InputError(f"absorption must be a number (fraction of the real potential), got {absorption!r}") from None
    if not (math.isfinite(kappa) and 0 <= kappa < 1):
        raise InputError(
            f"absorption must be a fraction 0 ≤ κ < 1 of the real potential (typically 0.05–0.1), got {absorption!r}"
        )
    if not isinstance(holz, (bool, np.bool_)):
        raise InputError(f"holz must be True or False, got {holz!r}")
    from temsim.solvers.bloch_holz import DEFAULT_HOLZ_SLICE

    holz_slice = DEFAULT_HOLZ_SLICE if holz_slice is None else _check_positive(holz_slice, "holz_slice", "Å")
    xp = settings.xp
    if crystal is None:
        crystal = orient_crystal(atoms, zone_axis)
    beams = select_beams(crystal, energy, g_max, s_max, tilt, parametrization, b_factors, along_beam=bool(holz))
    n = len(beams)
    _check_memory(n, settings.memory_limit, g_max)
    if potential_cutoff is not None:
        potential_cutoff = _check_positive(potential_cutoff, "potential_cutoff", "1/Å")
    lam = wavelength(energy)
    tilt_k = tuple(t * 1e-3 / lam for t in tilt)
    settings = {
        "g_max": g_max,
        "excitation_error_max": s_max,
        "parametrization": str(getattr(parametrization, "name", parametrization)),
        "b_factors": b_factors,
        "absorption": kappa,
        "potential_cutoff": potential_cutoff,
        "holz": bool(holz),
        "holz_slice": holz_slice if holz else None,
    }
    if holz:
        from temsim.solvers.bloch_holz import PeriodPropagator, propagator_modes

        propagator = PeriodPropagator.build(
            crystal,
            beams.indices,
            beams.g,
            energy,
            tilt_k,
            parametrization,
            b_factors,
            potential_cutoff,
            kappa,
            holz_slice,
        )
        gamma, c, alpha = propagator_modes(propagator, xp)
        span = np.abs(beams.indices).max(axis=0)
        v0 = _potential_table(crystal, beams.indices, span, parametrization, b_factors, potential_cutoff)[
            beams.indices[:, 0] + span[0], beams.indices[:, 1] + span[1]
        ]
        return BlochWaves(crystal, beams, energy, tilt, v0, gamma, c, alpha, settings, propagator)
    centre = inversion_centre(crystal) if kappa == 0 else None
    if centre is not None and symmetry and tilt == (0.0, 0.0):
        solution = _solve_symmetric(
            crystal, beams, energy, tilt, centre, parametrization, b_factors, potential_cutoff, settings, xp
        )
        if solution is not None:
            return solution
    v = _potential_matrix(crystal, beams.indices, parametrization, b_factors, potential_cutoff)
    if centre is not None:
        # with the origin on an inversion centre of the projection V_g is real: a real
        # symmetric eigenproblem (several times faster); φ = D^H φ' with D = diag(e^{2πi g·c})
        d = np.exp(2j * math.pi * (beams.g @ centre))
        v_real = np.real(v * d[:, None] * np.conj(d)[None, :])
        a = xp.real(structure_matrix(xp.asarray(beams.g), xp.asarray(v_real), energy, tilt_k, 0.0))
        gamma, c = xp.linalg.eigh(a)
        gamma = xp.astype(gamma, xp.complex128)
        c = xp.asarray(np.conj(d))[:, None] * xp.astype(c, xp.complex128)
    else:
        a = structure_matrix(xp.asarray(beams.g), xp.asarray(v), energy, tilt_k, kappa)
        gamma, c = eigensystem(a, hermitian=(kappa == 0))
    e0 = xp.asarray(np.eye(n, 1, dtype=np.complex128)[:, 0])
    if kappa == 0:
        alpha = xp.conj(c[0, :])  # C⁻¹ = C^H for the unitary eigenvectors of eigh
    else:
        alpha = xp.linalg.solve(c, e0[:, None])[:, 0]
    return BlochWaves(crystal, beams, energy, tilt, v[:, 0].copy(), gamma, c, alpha, settings)


#: Point operations tried on the zone-axis cell's reflection indices (n, m): identity, the 2-fold
#: axis, the two mirrors and, on a square cell, the 4-fold axes and diagonal mirrors.
_OPERATIONS = [np.array(m) for m in ([[1, 0], [0, 1]], [[-1, 0], [0, -1]], [[-1, 0], [0, 1]], [[1, 0], [0, -1]])]
_SQUARE_OPERATIONS = [np.array(m) for m in ([[0, 1], [1, 0]], [[0, -1], [-1, 0]], [[0, -1], [1, 0]], [[0, 1], [-1, 0]])]


def _beam_orbits(beams: BeamSet, table: np.ndarray, span: int, extent) -> np.ndarray | None:
    """Orbit index of every beam under the symmetry of the structure matrix, or None.

    An operation R of the zone-axis cell's point group is a symmetry when it maps the beam set
    onto itself, keeps every excitation error and leaves the centred potential table unchanged,
    ``V'(Rq) = V'(q)`` for every difference q on the table (so ``A[Rg, Rh] = A[g, h]`` for the
    whole structure matrix, cut-off included). For untilted incidence the transmitted beam is
    invariant, so the solution is constant on each orbit. Returns None when only the identity
    is a symmetry.
    """
    n = len(beams)
    nmax = int(np.abs(beams.indices).max())
    lookup = np.full((2 * nmax + 1, 2 * nmax + 1), -1, dtype=np.int64)  # (n, m) → row
    lookup[beams.indices[:, 0] + nmax, beams.indices[:, 1] + nmax] = np.arange(n)
    candidates = list(_OPERATIONS[1:])
    if abs(extent[0] - extent[1]) <= 1e-9 * max(extent):  # square cell
        candidates += _SQUARE_OPERATIONS
    grid = np.stack(np.meshgrid(np.arange(-span, span + 1), np.arange(-span, span + 1), indexing="ij"), -1)
    scale = np.abs(table).max()
    s = beams.excitation_error
    perms = [np.arange(n)]
    for r in candidates:
        mapped = beams.indices @ r.T
        perm = lookup[mapped[:, 0] + nmax, mapped[:, 1] + nmax]
        if np.any(perm < 0) or np.abs(s[perm] - s).max() > 1e-12 * max(np.abs(s).max(), 1e-300):
            continue
        turned = grid @ r.T + span
        if np.abs(table[turned[..., 0], turned[..., 1]] - table).max() <= 1e-10 * scale:
            perms.append(perm)
    if len(perms) == 1:
        return None
    representative = np.min(np.stack(perms), axis=0)
    _, orbit = np.unique(representative, return_inverse=True)  # orbit 0 holds beam 0
    return np.asarray(orbit).reshape(-1)


def _solve_symmetric(
    crystal, beams, energy, tilt, centre, parametrization, b_factors, cutoff, settings, xp
) -> BlochWaves | None:
    """Untilted incidence on a symmetric zone axis: one row per orbit of equivalent beams.

    Only the rows of one representative per orbit are built: ``A_red[O, O'] =
    √(|O|/|O'|) Σ_(h∈O') A'[rep(O), h]`` in the frame centred on the inversion centre (real).
    Returns None when the projection has no symmetry besides the inversion.
    """
    indices = beams.indices
    span = 2 * int(np.abs(indices).max())  # a square table, so 4-fold operations map it onto itself
    Lx, Ly = crystal.extent
    uncentred = _potential_table(crystal, indices, (span, span), parametrization, b_factors, cutoff)
    axis = np.arange(-span, span + 1)
    shift = np.exp(2j * math.pi * (axis[:, None] / Lx * centre[0] + axis[None, :] / Ly * centre[1]))
    table = np.real(uncentred * shift)  # centred on the inversion centre: real
    orbit = _beam_orbits(beams, table, span, crystal.extent)
    if orbit is None:
        return None
    n_orbits = int(orbit.max()) + 1
    size = np.bincount(orbit, minlength=n_orbits).astype(float)
    _, reps = np.unique(orbit, return_index=True)
    sigma = interaction_parameter(energy)
    diff = indices[reps, None, :] - indices[None, :, :] + span
    rows = sigma * table[diff[..., 0], diff[..., 1]]  # (orbits, beams)
    rows[np.arange(n_orbits), reps] += 2 * math.pi * beams.excitation_error[reps]
    summed = np.zeros((n_orbits, n_orbits))
    np.add.at(summed.T, orbit, rows.T)  # Σ_(h∈O') rows[O, h]
    reduced = np.sqrt(size)[:, None] / np.sqrt(size)[None, :] * summed
    gamma, c = xp.linalg.eigh(xp.asarray(0.5 * (reduced + reduced.T)))
    c = xp.astype(c, xp.complex128)
    alpha = c[int(orbit[0]), :]
    d = np.exp(2j * math.pi * (beams.g @ centre))
    weight = np.conj(d) / np.sqrt(size[orbit])
    v0 = uncentred[indices[:, 0] + span, indices[:, 1] + span]
    settings = dict(settings, symmetry_orbits=n_orbits)
    return BlochWaves(
        crystal, beams, energy, tilt, v0, xp.astype(gamma, xp.complex128), c, alpha, settings, expansion=(orbit, weight)
    )


def _check_memory(n: int, memory_limit, g_max: float) -> None:
    from temsim.memory import available_memory

    need = estimate_memory(n)
    limit = int(memory_limit) if memory_limit is not None else available_memory() // 2
    if need > limit:
        fit = g_max * math.sqrt(limit / need) * 0.95
        raise MemoryLimitError(
            f"{n} beams need about {need / 1024**3:.2f} GiB for the eigenproblem (complex128 N² matrices), more than "
            f"the {limit / 1024**3:.2f} GiB allowed; lower g_max to about {fit:.2f} 1/Å (beams grow as g_max²) or "
            "lower excitation_error_max"
        )


def bloch(
    atoms,
    energy: float,
    zone_axis=(0, 0, 1),
    thickness=(100.0,),
    *,
    g_max: float | None = None,
    excitation_error_max: float | None = None,
    tilt=(0.0, 0.0),
    parametrization="lobato",
    b_factors=None,
    absorption: float = 0.0,
    device: str | None = None,
    memory_limit: int | None = None,
    holz: bool = False,
    holz_slice: float | None = None,
    settings: ExecutionSettings | None = None,
) -> xr.Dataset:
    """Beam amplitudes and intensities of a perfect crystal vs thickness by Bloch waves.

    Parameters
    ----------
    atoms : ase.Atoms
        Bulk crystal, periodic in 3-D (any cell; not modified).
    energy : float
        Beam energy, eV.
    zone_axis : (int, int, int)
        Zone axis [uvw] in the basis of ``atoms.cell``, rotated onto the beam with
        :func:`temsim.structure.zone_axis`.
    thickness : float or array of float
        Crystal thicknesses (Å, ≥ 0); all are computed from one eigen-decomposition.
    g_max : float, optional
        Largest |g| (1/Å) of the beam set (default 8 1/Å, ≈ 200 mrad at 200 keV: doubling the
        beam set then changes no SrTiO3 [001] beam by more than 0.0019 of the incident beam up
        to 50 nm; see :func:`beam_convergence` and docs/bloch-waves.md). Cost grows as g_max⁶.
    excitation_error_max : float, optional
        Largest |s_g| (1/Å) (default 1 1/Å; on a zone axis at ≥ 100 keV g_max binds first).
    tilt : (float, float)
        Crystal/beam tilt (θx, θy) in mrad, in the zone-axis cell's frame.
    parametrization : {"lobato", "kirkland"}
        Scattering factors (as :class:`temsim.potentials.Potential`).
    b_factors : float, mapping element → B, FrozenPhonons or None
        Debye–Waller factors (Å²); default none (static lattice, as multislice without phonons).
    absorption : float
        κ of the absorptive potential ``iκV`` (0 ≤ κ < 1; 0.05–0.1 is typical of the
        Hashimoto–Howie–Whelan estimate). Default 0: no absorption.
    device : {"cpu", "gpu"}
        Where the eigenproblem is solved (``"gpu"``: cupy's eigensolver); or ``settings``.
    memory_limit : int, optional
        Bytes allowed for the eigenproblem (default half the available memory); or ``settings``.
    holz : bool
        Keep the crystal's structure along the beam (all higher-order Laue zones): the Bloch
        waves are the eigenmodes of the period propagator built from sub-slices of the 3-D
        potential (:mod:`temsim.solvers.bloch_holz`). Default False: the zero-order Laue zone
        (the potential averaged over one period), exact for the projected crystal and much
        cheaper. Where the period is long or the columns heavy the difference is several %
        of the incident beam (SrTiO3 [001], 200 keV, 5–50 nm: up to 10 %; docs/bloch-waves.md).
    holz_slice : float, optional
        Largest sub-slice thickness (Å) of the period propagator (default 0.0625 Å: about
        0.1 % of the incident beam for SrTiO3 [001] at 50 nm); the error falls as its square.
    settings : ExecutionSettings, optional
        Device and memory limit of the eigenproblem.

    Returns
    -------
    xarray.Dataset
        ``amplitude`` and ``intensity`` with dims (``thickness``, ``beam``) and beam labels
        ``h, k, l`` (see :meth:`BlochWaves.to_dataset`). For exit waves, CBED and STEM use
        :func:`solve_bloch` (``.exit_wave``), :func:`temsim.solvers.bloch_probe.bloch_cbed`
        and :func:`temsim.solvers.bloch_probe.bloch_scan`.

    Raises
    ------
    StructureError
        Not a crystal periodic along the beam.
    InputError
        Non-integer zone axis, negative thickness, bad parameters.
    MemoryLimitError
        Too many beams for memory (the message estimates the memory and suggests a g_max).

    Examples
    --------
    >>> from temsim.solvers.bloch import bloch
    >>> from temsim.structure import srtio3
    >>> ds = bloch(srtio3(), 200e3, (0, 0, 1), thickness=[0, 50, 100], g_max=2.0)
    >>> float(ds.intensity.sum("beam")[-1].round(6))
    1.0
    """
    t = _check_thickness(thickness)
    solution = solve_bloch(
        atoms,
        energy,
        zone_axis,
        g_max=g_max,
        excitation_error_max=excitation_error_max,
        tilt=tilt,
        parametrization=parametrization,
        b_factors=b_factors,
        absorption=absorption,
        device=device,
        memory_limit=memory_limit,
        holz=holz,
        holz_slice=holz_slice,
        settings=settings,
    )
    return solution.to_dataset(t)


def beam_convergence(
    atoms,
    energy: float,
    zone_axis=(0, 0, 1),
    thickness=(100.0,),
    *,
    g_max=None,
    excitation_error_max=None,
    factors=(1.0, 2**0.5, 2.0),
    tilt=(0.0, 0.0),
    parametrization="lobato",
    b_factors=None,
    absorption: float = 0.0,
    holz: bool = False,
) -> xr.Dataset:
    """How beam intensities change as the beam set grows.

    Solves with ``g_max·f`` and ``excitation_error_max·f²`` for each factor ``f`` (f = √2
    about doubles the number of beams) and reports, relative to the largest set, the
    largest change of any beam intensity (fraction of the incident beam) over all
    thicknesses.

    Returns
    -------
    xarray.Dataset
        Dim ``factor``: ``num_beams``, ``g_max`` (1/Å), ``excitation_error_max`` (1/Å),
        ``max_change`` (largest |ΔI| vs the largest set) and ``max_change_next`` (vs the next
        larger set; NaN for the last).
    """
    t = _check_thickness(thickness)
    g0 = DEFAULT_G_MAX if g_max is None else float(g_max)
    s0 = DEFAULT_EXCITATION_ERROR_MAX if excitation_error_max is None else float(excitation_error_max)
    factors = sorted(float(f) for f in factors)
    crystal = orient_crystal(atoms, zone_axis)
    results = []
    for f in factors:
        sol = solve_bloch(
            None,
            energy,
            zone_axis,
            g_max=g0 * f,
            excitation_error_max=s0 * f * f,
            tilt=tilt,
            parametrization=parametrization,
            b_factors=b_factors,
            absorption=absorption,
            crystal=crystal,
            holz=holz,
        )
        intensity = np.abs(to_numpy(sol.amplitudes(t))) ** 2
        results.append((sol.num_beams, {tuple(i): j for j, i in enumerate(sol.beams.indices.tolist())}, intensity))

    def change(small, large):
        _, index_small, i_small = small
        _, index_large, i_large = large
        worst = 0.0
        cols_small = list(index_small.values())
        cols_large = [index_large[k] for k in index_small]
        worst = float(np.max(np.abs(i_small[:, cols_small] - i_large[:, cols_large])))
        missing = [j for k, j in index_large.items() if k not in index_small]
        if missing:
            worst = max(worst, float(np.max(i_large[:, missing])))
        return worst

    largest = results[-1]
    max_change = [change(r, largest) for r in results]
    next_change = [change(results[i], results[i + 1]) for i in range(len(results) - 1)] + [np.nan]
    return xr.Dataset(
        {
            "num_beams": ("factor", [r[0] for r in results]),
            "g_max": ("factor", [g0 * f for f in factors], {"units": "1/Å"}),
            "excitation_error_max": ("factor", [s0 * f * f for f in factors], {"units": "1/Å"}),
            "max_change": ("factor", max_change, {"units": "fraction of incident beam"}),
            "max_change_next": ("factor", next_change, {"units": "fraction of incident beam"}),
        },
        coords={"factor": factors},
        attrs={"energy": energy, "zone_axis": list(crystal.zone_axis), "thickness_max": float(t.max())},
    )
