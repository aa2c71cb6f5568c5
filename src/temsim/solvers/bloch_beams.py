"""Crystal intake, reflections and structure factors for the Bloch-wave solver.

The crystal is rotated so the zone axis [uvw] points along the beam (+z) with
:func:`temsim.structure.zone_axis` — the same orthogonal cell multislice slices — and the
reflections are the reciprocal-lattice points of that cell in the zero-order Laue zone
(g_z = 0) that the projected crystal actually couples to the transmitted beam.

Conventions (shared with multislice, :mod:`temsim.solvers.multislice`):

* Fourier coefficients of the cell-averaged potential ``V(r) = Σ_g V_g exp(2πi g·r)`` (V),
  ``V_g = (K / Ω) Σ_j f_e,j(|g|) exp(−B_j |g|²/4) exp(−2πi g·r_j)``
  with ``K = h²/(2π m0 e)`` = 47.878 V·Å² (:data:`temsim.constants.SCATTERING_FACTOR_TO_VOLT_A2`),
  ``Ω`` the cell volume (Å³), ``f_e`` from the same parametrization tables as
  :class:`temsim.potentials.Potential` and ``B_j`` the Debye–Waller factor of atom j (Å²).
* ``U_g = σ V_g / (π λ)`` (1/Å²) with σ the interaction parameter and λ the wavelength
  (equivalently ``U_g = 2 γ m0 e V_g / h²``); extinction distance ``ξ_g = 1/(λ |U_g|)``.
* Excitation error (paraxial, forward scattering — exactly multislice's Fresnel propagator):
  ``s_g = −(λ/2)(|g|² + 2 g·k_t)`` for a beam tilted by ``k_t = θ/λ``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from temsim.backend import array_namespace, is_cupy_namespace, is_numpy_namespace, to_numpy
from temsim.constants import SCATTERING_FACTOR_TO_VOLT_A2, interaction_parameter, wavelength
from temsim.errors import InputError, StructureError
from temsim.potentials.parametrizations import Parametrization, load_parametrization

__all__ = [
    "OrientedCrystal",
    "orient_crystal",
    "structure_factors",
    "BeamSet",
    "select_beams",
    "DEFAULT_G_MAX",
    "DEFAULT_EXCITATION_ERROR_MAX",
    "MAX_VACUUM_GAP",
]

#: Default largest |g| (1/Å) of the beam set (see docs/bloch-waves.md for the convergence study).
DEFAULT_G_MAX = 8.0
#: Default largest |s_g| (1/Å) of the beam set.
DEFAULT_EXCITATION_ERROR_MAX = 1.0
#: Largest empty gap (Å) between atomic planes along the beam that a bulk crystal may have.
MAX_VACUUM_GAP = 5.0
_FORBIDDEN = 1e-9  # |V_g| below this fraction of |V_0| counts as structurally forbidden


@dataclass(frozen=True)
class OrientedCrystal:
    """A crystal in its orthogonal zone-axis cell (beam along +z).

    Attributes
    ----------
    atoms : ase.Atoms
        Orthogonal cell ``diag(Lx, Ly, Lz)`` (Å) with [uvw] along z (a copy; the same cell
        :class:`temsim.potentials.Potential` slices for multislice).
    zone_axis : tuple of int
        [uvw] in the basis of the given cell.
    original_cell : (3, 3) ndarray
        The given cell (rows a, b, c; Å), for Miller indices.
    rotation : (3, 3) ndarray or None
        Rotation taking the given frame to the oriented one, as recorded by
        :func:`temsim.structure.zone_axis` in ``info["zone_axis_rotation"]`` (None: unknown,
        Miller indices are then NaN).
    """

    atoms: object
    zone_axis: tuple[int, int, int]
    original_cell: np.ndarray
    rotation: np.ndarray | None

    @property
    def extent(self) -> tuple[float, float]:
        """Lateral cell size (Lx, Ly) in Å."""
        cell = np.diag(np.asarray(self.atoms.cell))
        return float(cell[0]), float(cell[1])

    @property
    def period(self) -> float:
        """Period of the crystal along the beam (Å)."""
        return float(np.asarray(self.atoms.cell)[2, 2])

    @property
    def volume(self) -> float:
        """Cell volume Ω (Å³)."""
        return float(abs(np.linalg.det(np.asarray(self.atoms.cell))))

    def miller_indices(self, g: np.ndarray) -> np.ndarray:
        """Miller indices (h, k, l) in the given cell of lateral reciprocal vectors ``g`` (N, 2) 1/Å."""
        if self.rotation is None:
            return np.full((len(g), 3), np.nan)
        g3 = np.column_stack([g, np.zeros(len(g))])
        original = g3 @ self.rotation  # R^T g for row vectors
        hkl = original @ self.original_cell.T
        rounded = np.round(hkl)
        return np.where(np.abs(hkl - rounded) < 1e-3, rounded, hkl)


def _zone_indices(zone_axis) -> tuple[int, int, int]:
    from temsim.structure import zone_axis_indices

    try:
        return tuple(int(v) for v in zone_axis_indices(zone_axis))
    except StructureError as err:
        raise InputError(f"{err}; for a small misorientation give tilt=(θx, θy) in mrad instead") from None


def _check_bulk(atoms) -> None:
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not np.all(pbc):
        axes = ", ".join(ax for ax, p in zip("abc", pbc) if not p)
        raise StructureError(
            f"Bloch waves need a crystal periodic in 3-D, but the structure is not periodic along {axes} "
            f"(pbc={pbc.tolist()}): a slab, a flake or a structure with vacuum is not a periodic crystal "
            "along the beam. Use temsim.multislice for it, or set pbc=True on a bulk cell"
        )
    if len(atoms) == 0:
        raise StructureError("the structure has no atoms; Bloch waves need a crystal")


def _vacuum_gap(oriented) -> float:
    z = np.sort(np.mod(oriented.positions[:, 2], oriented.cell[2, 2]))
    gaps = np.diff(np.concatenate([z, [z[0] + oriented.cell[2, 2]]]))
    return float(gaps.max())


def orient_crystal(atoms, zone_axis=(0, 0, 1)) -> OrientedCrystal:
    """Rotate a bulk crystal so [uvw] is along the beam, in its smallest orthogonal cell.

    Parameters
    ----------
    atoms : ase.Atoms
        Bulk crystal, periodic in 3-D (``pbc=True``), any cell shape.
    zone_axis : (int, int, int)
        [uvw] in the basis of ``atoms.cell``.

    Raises
    ------
    StructureError
        If the structure is not periodic in 3-D, or has a vacuum gap along the beam wider than
        :data:`MAX_VACUUM_GAP` Å (a slab, not a crystal).
    InputError
        If ``zone_axis`` is not three integers.
    """
    from temsim.structure import as_atoms
    from temsim.structure import zone_axis as rotate_zone_axis

    uvw = _zone_indices(zone_axis)
    atoms = as_atoms(atoms)
    _check_bulk(atoms)
    oriented = rotate_zone_axis(atoms, uvw)
    gap = _vacuum_gap(oriented)
    if gap > MAX_VACUUM_GAP:
        raise StructureError(
            f"along [{' '.join(map(str, uvw))}] the structure has an empty gap of {gap:.1f} Å between atomic "
            f"planes (more than {MAX_VACUUM_GAP:g} Å): it looks like a slab with vacuum, not a periodic crystal "
            "along the beam; use temsim.multislice for slabs"
        )
    rotation = oriented.info.get("zone_axis_rotation")
    return OrientedCrystal(
        oriented,
        uvw,
        np.asarray(atoms.cell, dtype=float).copy(),
        None if rotation is None else np.asarray(rotation, dtype=float),
    )


# ---------------------------------------------------------------------------- structure factors
def _b_per_atom(atoms, b_factors) -> np.ndarray:
    n = len(atoms)
    if b_factors is None:
        return np.zeros(n)
    if hasattr(b_factors, "sigma_per_atom"):  # FrozenPhonons: B = 8π²σ² (in-plane σ)
        sigma = np.asarray(b_factors.sigma_per_atom(atoms))[:, 0]
        return 8 * math.pi**2 * sigma**2
    if isinstance(b_factors, Mapping):
        symbols = atoms.get_chemical_symbols()
        from ase.data import chemical_symbols

        table = {}
        for key, value in b_factors.items():
            symbol = chemical_symbols[int(key)] if isinstance(key, (int, np.integer)) else str(key)
            table[symbol] = float(value)
        missing = sorted(set(symbols) - set(table))
        if missing:
            raise InputError(f"b_factors has no Debye–Waller B for {', '.join(missing)} (Å²); give every element")
        out = np.array([table[s] for s in symbols])
    else:
        try:
            out = np.full(n, float(b_factors))
        except (TypeError, ValueError):
            raise InputError(
                f"b_factors must be a number (Å²), a mapping element → B (Å²) or a FrozenPhonons, got {b_factors!r}"
            ) from None
    if not np.all(np.isfinite(out)) or np.any(out < 0):
        raise InputError(f"Debye–Waller B factors must be finite and ≥ 0 Å², got {b_factors!r}")
    return out


def structure_factors(
    crystal: OrientedCrystal, g, parametrization: str | Parametrization = "lobato", b_factors=None
) -> np.ndarray:
    """Fourier coefficients V_g (V, complex128) of the cell-averaged crystal potential.

    Parameters
    ----------
    crystal : OrientedCrystal
        The oriented crystal (any object with ``atoms`` and ``volume``).
    g : (N, 2) or (N, 3) array
        Reciprocal vectors (1/Å) in the crystal's frame: lateral (g_x, g_y) for the zero-order
        Laue zone (g_z = 0), or (g_x, g_y, g_z) with g_z = l / period for Laue zone l.
    parametrization : {"lobato", "kirkland"} or Parametrization
        Electron scattering factors (the same tables as the multislice potential).
    b_factors : float, mapping element → float, FrozenPhonons or None
        Debye–Waller B (Å²): damping ``exp(−B|g|²/4)`` per atom. None: static lattice (as
        the multislice :class:`~temsim.potentials.Potential` without frozen phonons).

    Returns
    -------
    (N,) complex128 ndarray
        ``V_g = (K/Ω) Σ_j f_e,j(|g|) exp(−B_j|g|²/4) exp(−2πi g·r_j)``.
    """
    p = load_parametrization(parametrization)
    atoms = crystal.atoms
    g = np.asarray(g, dtype=float)
    dim = g.shape[-1] if g.ndim > 1 else 2
    if dim not in (2, 3):
        raise InputError(f"reciprocal vectors must have 2 (lateral) or 3 components, got shape {g.shape}")
    g = g.reshape(-1, dim)
    k = np.linalg.norm(g, axis=1)
    positions = np.asarray(atoms.positions)[:, :dim]
    numbers = np.asarray(atoms.numbers)
    b = _b_per_atom(atoms, b_factors)
    out = np.zeros(len(g), dtype=np.complex128)
    for Z in np.unique(numbers):
        f = np.asarray(p.scattering_factor(int(Z), k), dtype=float)
        for bj in np.unique(b[numbers == Z]):
            pick = (numbers == Z) & (b == bj)
            phase = np.exp(-2j * math.pi * (g @ positions[pick].T)).sum(axis=1)
            out += f * np.exp(-bj * k**2 / 4) * phase
    return out * (SCATTERING_FACTOR_TO_VOLT_A2 / crystal.volume)


# ---------------------------------------------------------------------------- beams
@dataclass(frozen=True)
class BeamSet:
    """The reflections kept in a Bloch-wave calculation.

    Attributes
    ----------
    indices : (N, 2) int ndarray
        Reflection indices (n, m) on the oriented cell's reciprocal lattice, g = (n/Lx, m/Ly).
        Row 0 is the transmitted beam (0, 0).
    g : (N, 2) ndarray
        Lateral reciprocal vectors (1/Å) in the oriented frame.
    hkl : (N, 3) ndarray
        Miller indices in the given cell (NaN if the orientation could not be identified).
    excitation_error : (N,) ndarray
        s_g (1/Å) for the incident direction.
    """

    indices: np.ndarray
    g: np.ndarray
    hkl: np.ndarray
    excitation_error: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def excitation_errors(g, energy: float, tilt_k=(0.0, 0.0)) -> np.ndarray:
    """Paraxial excitation errors ``s_g = −(λ/2)(|g|² + 2 g·k_t)`` in 1/Å (``g``, ``k_t`` in 1/Å)."""
    lam = wavelength(energy)
    g = np.asarray(g, dtype=float).reshape(-1, 2)
    return -0.5 * lam * (g[:, 0] ** 2 + g[:, 1] ** 2 + 2 * (g[:, 0] * tilt_k[0] + g[:, 1] * tilt_k[1]))


def _euclid_step(rows: list) -> list:
    """Reduce every row's first entry modulo the row with the smallest non-zero |first entry|.

    The pivot row is kept first; rows that become (0, 0) are dropped.
    """
    pivot = min((r for r in rows if r[0] != 0), key=lambda r: abs(r[0]))
    new = [pivot]
    for r in rows:
        if r is pivot:
            continue
        if r[0]:
            q = r[0] // pivot[0]
            r = (r[0] - q * pivot[0], r[1] - q * pivot[1])
        if r[0] or r[1]:
            new.append(r)
    return new


def _lattice_2d(vectors: np.ndarray):
    """Hermite basis ((a, b), (0, d)) of the integer lattice spanned by 2-D integer ``vectors``.

    Euclid's algorithm on the first column leaves at most one row (the pivot ``(a, b)``)
    with a non-zero first entry; ``d`` is the gcd of the other rows' second entries.
    """
    rows = [tuple(int(x) for x in v) for v in vectors if v[0] or v[1]]
    while sum(1 for r in rows if r[0] != 0) > 1:
        rows = _euclid_step(rows)
    pivot = next((r for r in rows if r[0] != 0), None)
    d = 0
    for r in rows:
        if r is not pivot:
            d = math.gcd(d, abs(r[1]))
    if pivot is None:
        return None, d
    a, b = pivot if pivot[0] > 0 else (-pivot[0], -pivot[1])
    return (a, b % d if d else b), d


def _in_lattice(nn: np.ndarray, basis) -> np.ndarray:
    (a, b), d = basis
    n, m = nn[:, 0], nn[:, 1]
    ok = (n % a) == 0
    rest = m - (n // a) * b
    return ok & ((rest % d) == 0) if d else ok & (rest == 0)


def select_beams(
    crystal: OrientedCrystal,
    energy: float,
    g_max: float,
    excitation_error_max: float,
    tilt=(0.0, 0.0),
    parametrization="lobato",
    b_factors=None,
    offset=(0.0, 0.0),
    along_beam: bool = False,
) -> BeamSet:
    """Reflections with ``|g + offset| ≤ g_max`` and ``|s_g| ≤ excitation_error_max``.

    Only reflections the projected crystal couples to the transmitted beam are kept: those
    on the lattice generated by the reflections with non-zero structure factor (in the
    orthogonal cell of, e.g., Si [110] half of the reciprocal points are forbidden by the
    centring and never excited).

    Parameters
    ----------
    crystal : OrientedCrystal
    energy : float
        eV.
    g_max : float
        1/Å.
    excitation_error_max : float
        1/Å.
    tilt : (float, float)
        Incident-beam tilt in mrad.
    offset : (float, float)
        Lateral wavevector (1/Å) of the incident partial wave relative to the frame (the
        convergent-beam solver uses it; 0 for a plane wave).
    along_beam : bool
        Couple through the 3-D crystal (higher-order Laue zones): a lateral reflection is
        allowed when any Laue zone l (|l| ≤ 3) has a non-zero structure factor there (in
        Si [110] the reflections forbidden in projection are then reached).
    """
    lam = wavelength(energy)
    Lx, Ly = crystal.extent
    nx = int(math.ceil((g_max + abs(offset[0])) * Lx)) + 1
    ny = int(math.ceil((g_max + abs(offset[1])) * Ly)) + 1
    n = np.arange(-nx, nx + 1)
    m = np.arange(-ny, ny + 1)
    nn = np.stack(np.meshgrid(n, m, indexing="ij"), -1).reshape(-1, 2)
    g = nn / np.array([Lx, Ly])
    k = g + np.asarray(offset, dtype=float)
    keep = np.hypot(k[:, 0], k[:, 1]) <= g_max * (1 + 1e-12)
    tilt_k = np.asarray(tilt, dtype=float) * 1e-3 / lam + np.asarray(offset, dtype=float)
    s = excitation_errors(g, energy, tilt_k)
    keep &= np.abs(s) <= excitation_error_max * (1 + 1e-12)
    keep |= np.all(nn == 0, axis=1)
    nn, g, s = nn[keep], g[keep], s[keep]
    # the lattice generated by allowed reflections (|g - h| reaches up to twice the beam radius)
    n2 = np.arange(-2 * nx, 2 * nx + 1)
    m2 = np.arange(-2 * ny, 2 * ny + 1)
    dd = np.stack(np.meshgrid(n2, m2, indexing="ij"), -1).reshape(-1, 2)
    dd = dd[np.hypot(dd[:, 0] / Lx, dd[:, 1] / Ly) <= 2 * g_max + 2 * max(abs(offset[0]), abs(offset[1])) + 1e-9]
    q = dd / np.array([Lx, Ly])
    v = np.abs(structure_factors(crystal, q, parametrization, b_factors))
    if along_beam:
        for ll in (1, -1, 2, -2, 3, -3):
            q3 = np.column_stack([q, np.full(len(q), ll / crystal.period)])
            v = np.maximum(v, np.abs(structure_factors(crystal, q3, parametrization, b_factors)))
    v0 = np.abs(structure_factors(crystal, np.zeros((1, 2)), parametrization, b_factors))[0]
    allowed = dd[(v > _FORBIDDEN * v0) & np.any(dd != 0, axis=1)]
    if len(allowed):
        # the 200 shortest allowed reflections contain a basis of the coupling lattice
        shortest = allowed[np.argsort(np.hypot(allowed[:, 0] / Lx, allowed[:, 1] / Ly), kind="stable")[:200]]
        basis = _lattice_2d(shortest)
        if basis[0] is not None:
            on = _in_lattice(nn, basis)
            nn, g, s = nn[on], g[on], s[on]
        else:  # pragma: no cover - one-dimensional coupling (all allowed along y)
            on = (nn[:, 0] == 0) & ((nn[:, 1] % basis[1]) == 0)
            nn, g, s = nn[on], g[on], s[on]
    else:
        on = np.all(nn == 0, axis=1)
        nn, g, s = nn[on], g[on], s[on]
    order = np.lexsort((np.arctan2(g[:, 1], g[:, 0]), np.round(np.hypot(g[:, 0], g[:, 1]), 9)))
    nn, g, s = nn[order], g[order], s[order]
    return BeamSet(nn.astype(np.int64), g, crystal.miller_indices(g), s)


def u_from_v(v_g, energy: float):
    """``U_g = σ V_g / (π λ)`` (1/Å²) from potential coefficients V_g (V)."""
    return np.asarray(v_g) * (interaction_parameter(energy) / (math.pi * wavelength(energy)))


def extinction_distance(v_g, energy: float):
    """Two-beam extinction distance ``ξ_g = 1/(λ|U_g|) = π/(σ|V_g|)`` in Å."""
    return math.pi / (interaction_parameter(energy) * np.abs(np.asarray(v_g)))


def eigensystem(a, hermitian: bool):
    """Eigenvalues Γ and eigenvectors C of the structure matrix (the one non-array-API call).

    ``hermitian=True`` uses ``xp.linalg.eigh`` (array-API linalg extension: numpy, cupy,
    array_api_strict). The general problem (absorption) has no array-API function: numpy uses
    ``numpy.linalg.eig``, cupy ``cupy.linalg.eig`` when it exists (cupy ≥ 14) and the host
    otherwise, any other namespace the host; results come back in the input's namespace.
    """
    xp = array_namespace(a)
    if hermitian:
        a = (a + xp.conj(xp.permute_dims(a, (1, 0)))) * 0.5
        gamma, c = xp.linalg.eigh(a)
        return xp.astype(gamma, xp.complex128), c
    if is_numpy_namespace(xp):
        gamma, c = np.linalg.eig(np.asarray(a))
        return gamma, c
    if is_cupy_namespace(xp):
        import cupy

        if hasattr(cupy.linalg, "eig"):
            return cupy.linalg.eig(a)
    gamma, c = np.linalg.eig(to_numpy(a))
    return xp.asarray(gamma), xp.asarray(c)


def inversion_centre(crystal: OrientedCrystal):
    """A lateral point (Å) about which the projected crystal is centrosymmetric, or None.

    Candidates are the midpoints between one atom of the rarest element and every atom of
    that element (an inversion centre maps the element onto itself); a candidate is accepted
    when the structure factors about it are real for the low-order reflections.
    """
    atoms = crystal.atoms
    numbers = np.asarray(atoms.numbers)
    species, counts = np.unique(numbers, return_counts=True)
    rare = np.flatnonzero(numbers == species[np.argmin(counts)])
    xy = np.asarray(atoms.positions)[:, :2]
    Lx, Ly = crystal.extent
    n = np.arange(-3, 4)
    test = np.stack(np.meshgrid(n, n, indexing="ij"), -1).reshape(-1, 2) / np.array([Lx, Ly])
    v = structure_factors(crystal, test)
    scale = np.abs(v).max()
    for j in rare:
        centre = 0.5 * (xy[rare[0]] + xy[j])
        for offset in ((0, 0), (0.5 * Lx, 0), (0, 0.5 * Ly), (0.5 * Lx, 0.5 * Ly)):
            c = centre + np.asarray(offset)
            shifted = v * np.exp(2j * math.pi * (test @ c))
            if np.abs(shifted.imag).max() <= 1e-10 * scale:
                return c
    return None
