"""Structure intake: validate ``ase.Atoms``, bring them into a sliceable cell, add defects.

All helpers are pure ``Atoms → Atoms`` functions that never mutate their input: each one
validates and copies its argument first (:func:`as_atoms`). Lengths are in Å.

Conventions
-----------
* The beam travels along +z. A cell can be sliced when it is orthogonal with ``a ∥ x``,
  ``b ∥ y``, ``c ∥ z`` (:func:`is_orthogonal_cell`); :func:`orthogonalize_cell` and
  :func:`zone_axis` produce such cells.
* The cell is treated as periodic laterally (the multislice wave is periodic in x and y).
  Along the beam the period matters only for :func:`tile`; a slab with vacuum along z keeps
  its vacuum.
* Positions given to the defect helpers are Cartesian, in Å. A 2-component position
  ``(x, y)`` selects in projection (along the beam); ``(x, y, z)`` selects in 3-D. Lateral
  periodic images are taken into account.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers, chemical_symbols

from temsim.errors import InputError, StructureError

#: Largest atomic number with a shipped scattering-factor parametrization.
MAX_ATOMIC_NUMBER = 103

__all__ = [
    "MAX_ATOMIC_NUMBER",
    "as_atoms",
    "validate_atoms",
    "is_orthogonal_cell",
    "prepare_for_slicing",
    "wrap_laterally",
    "orthogonalize_cell",
    "zone_axis",
    "tile",
    "center_along_beam",
    "nearest_site",
    "substitute",
    "vacancy",
    "adatom",
    "graphene",
    "srtio3",
    "triazine_carbon_nitride",
]


# --------------------------------------------------------------------------------------------
# Intake and validation
# --------------------------------------------------------------------------------------------


def as_atoms(structure) -> Atoms:
    """Return a validated *copy* of ``structure`` (``ase.Atoms`` or a path ``ase.io.read`` reads).

    Parameters
    ----------
    structure : ase.Atoms or str or os.PathLike
        The structure, or a file in any format ``ase.io.read`` understands (CIF, XYZ with a
        cell, POSCAR, …). Multi-frame files give their last frame.

    Returns
    -------
    ase.Atoms
        A copy that passed :func:`validate_atoms`; the caller's object is never modified.

    Raises
    ------
    StructureError
        If the file is missing or unreadable, or the structure fails :func:`validate_atoms`.
    """
    if isinstance(structure, Atoms):
        atoms = structure.copy()
    elif isinstance(structure, (str, bytes)) or hasattr(structure, "__fspath__"):
        import ase.io
        from ase.io.formats import UnknownFileTypeError

        try:
            atoms = ase.io.read(structure)
        except FileNotFoundError:
            raise StructureError(f"structure file {structure!s} does not exist") from None
        except UnknownFileTypeError as error:
            raise StructureError(
                f"ase.io.read cannot tell the format of {structure!s} ({error}); read it yourself "
                "with ase.io.read(path, format=...) and pass the Atoms"
            ) from None
        if isinstance(atoms, list):  # pragma: no cover - ase.io.read with an index slice
            atoms = atoms[-1]
    else:
        raise StructureError(f"expected an ase.Atoms or a structure file path, got {type(structure).__name__}")
    validate_atoms(atoms)
    return atoms


def validate_atoms(atoms: Atoms) -> None:
    """Raise :class:`StructureError` if the cell, positions or elements are unusable.

    Checks: the cell exists (no zero-length vector), is finite and has a non-zero volume;
    positions are finite; every atomic number is between 1 and :data:`MAX_ATOMIC_NUMBER`.
    """
    cell = np.asarray(atoms.cell)
    lengths = atoms.cell.lengths()
    if not np.all(np.isfinite(cell)):
        raise StructureError("the cell contains NaN or infinite values")
    if np.any(lengths <= 0):
        missing = [ax for ax, length in zip("abc", lengths) if length <= 0]
        raise StructureError(
            f"cell vector(s) {', '.join(missing)} have zero length: set a periodic cell with "
            "atoms.set_cell(...) (add vacuum along the beam with atoms.center(vacuum=..., axis=2))"
        )
    if abs(np.linalg.det(cell)) < 1e-9 * np.prod(lengths):
        raise StructureError("the cell vectors are linearly dependent (zero cell volume)")
    if len(atoms) and not np.all(np.isfinite(atoms.positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(atoms.positions), axis=1))
        raise StructureError(f"atom positions contain NaN or infinite values (atoms {bad[:10].tolist()})")
    numbers = atoms.numbers
    if len(atoms) and (numbers.min() < 1 or numbers.max() > MAX_ATOMIC_NUMBER):
        bad = sorted(set(int(z) for z in numbers if z < 1 or z > MAX_ATOMIC_NUMBER))
        raise StructureError(
            f"atomic numbers {bad} have no scattering-factor parametrization (Z must be 1–{MAX_ATOMIC_NUMBER})"
        )


def is_orthogonal_cell(atoms: Atoms, tol: float = 1e-6) -> bool:
    """True if the cell is diagonal (a ∥ +x, b ∥ +y, c ∥ +z) to ``tol`` Å."""
    cell = np.asarray(atoms.cell)
    diagonal = np.diag(cell)
    return bool(np.all(np.abs(cell - np.diag(diagonal)) < tol) and np.all(diagonal > 0))


def wrap_laterally(atoms: Atoms) -> Atoms:
    """Copy of ``atoms`` with every atom moved into the cell along ``a`` and ``b`` (not ``c``).

    Fractional coordinates along ``a`` and ``b`` are reduced to [0, 1); the coordinate
    along ``c`` (the beam for sliceable cells) is kept so slabs stay where they are.
    """
    atoms = atoms.copy()
    if len(atoms):
        lateral = np.asarray(atoms.cell)[:2]
        positions = atoms.positions
        for _ in range(2):  # the second pass catches values that rounded onto 1.0
            shift = np.floor(atoms.cell.scaled_positions(positions)[:, :2])
            positions = positions - shift @ lateral
        atoms.positions = positions
    return atoms


def prepare_for_slicing(structure) -> Atoms:
    """Validated copy with an orthogonal cell and atoms wrapped into it laterally.

    Raises
    ------
    StructureError
        If the cell is not orthogonal with c along the beam (use
        :func:`orthogonalize_cell` first).
    """
    atoms = as_atoms(structure)
    if not is_orthogonal_cell(atoms):
        raise StructureError(
            "the cell is not orthogonal with c along the beam (z); make it so with "
            "temsim.structure.orthogonalize_cell(atoms) (or rotate a zone axis onto z with "
            "temsim.structure.zone_axis(atoms, (u, v, w)))"
        )
    cell = np.diag(atoms.cell)
    pos = atoms.positions.copy()
    pos[:, :2] = np.mod(pos[:, :2], cell[:2])
    atoms.positions = pos
    return atoms


# --------------------------------------------------------------------------------------------
# Orthogonal cells and zone axes
# --------------------------------------------------------------------------------------------

_AXES = np.eye(3)


def orthogonalize_cell(atoms: Atoms, max_repetitions: int = 10, tolerance: float = 0.01) -> Atoms:
    """Smallest orthogonal supercell (a ∥ x, b ∥ y, c ∥ z) of a periodic structure.

    For each axis the shortest lattice vector ``n₁a + n₂b + n₃c`` (``|nᵢ| ≤ max_repetitions``)
    that points along +x (+y, +z) to within ``tolerance`` is chosen; the three vectors span
    the supercell, which is then strained to be exactly orthogonal (fractional coordinates
    kept, so atoms stay inside). An already orthogonal cell is returned unchanged (a copy).

    Parameters
    ----------
    atoms : ase.Atoms
        Structure with a periodic cell (any shape).
    max_repetitions : int
        Largest coefficient ``|nᵢ|`` searched.
    tolerance : float
        Largest misalignment accepted, as the sine of the angle between a lattice vector
        and its axis. It equals the shear strain applied when the cell is squared up
        (0.01 → at most 1 % strain).

    Returns
    -------
    ase.Atoms
        Copy with a diagonal cell; atoms wrapped into the cell laterally. ``info
        ["orthogonalization"]`` records the integer supercell matrix (rows: new a, b, c in
        units of the old ones) and the largest strain component applied.

    Raises
    ------
    StructureError
        If no lattice vector within ``max_repetitions`` lies along an axis within
        ``tolerance``; the message gives the best misalignment found.

    Examples
    --------
    >>> from ase.build import graphene
    >>> rect = orthogonalize_cell(graphene(a=2.46, vacuum=2.0))
    >>> len(rect), rect.cell.lengths().round(3).tolist()
    (4, [2.46, 4.261, 4.0])
    """
    atoms = as_atoms(atoms)
    max_repetitions = _check_repetitions(max_repetitions)
    tolerance = _check_tolerance(tolerance)
    if is_orthogonal_cell(atoms):
        return atoms
    basis = np.asarray(atoms.cell)
    rows = [_vector_along(basis, axis, max_repetitions, tolerance) for axis in range(3)]
    return _build_orthogonal(atoms, np.array(rows), wrap_beam=False)


def zone_axis(
    atoms: Atoms,
    indices: Sequence[int],
    max_repetitions: int = 10,
    tolerance: float = 0.01,
    symprec: float = 1e-3,
) -> Atoms:
    """Rotate a crystal so the real-space direction [uvw] points along the beam (+z).

    The crystal's full translation lattice is found first (pure translations that map the
    structure onto itself, so centred cells such as the conventional cubic cell of silicon
    are reduced to their primitive lattice). The direction ``u a + v b + w c`` (in the basis
    of the *given* cell) is rotated onto +z; the shortest lattice vector perpendicular to it
    is put along +x and the shortest lattice vector along +y completes the smallest
    orthogonal cell. Along the beam the cell has the true period of [uvw].

    Parameters
    ----------
    atoms : ase.Atoms
        A bulk crystal, periodic in three dimensions (tile the result afterwards; defects
        go in after tiling).
    indices : sequence of 3 int
        Zone axis [uvw] in the basis of ``atoms.cell``; common factors are removed.
    max_repetitions, tolerance : int, float
        As in :func:`orthogonalize_cell`; they bound the search for the two lateral
        vectors (in units of the primitive lattice vectors).
    symprec : float
        Distance (Å) within which two atoms count as the same site when looking for pure
        translations.

    Returns
    -------
    ase.Atoms
        Copy with a diagonal cell, all atoms wrapped into it, ``info["zone_axis"]``
        recording the indices and ``info["zone_axis_rotation"]`` the rotation R (3×3) taking
        the given Cartesian frame to the new one (``r_new = R r`` up to a translation), from
        which Miller indices of the given cell follow.

    Raises
    ------
    StructureError
        If the indices are not three integers (not all zero), or no orthogonal cell is found
        within ``max_repetitions``/``tolerance`` (the message gives the best misalignment).

    Examples
    --------
    >>> from ase.build import bulk
    >>> si110 = zone_axis(bulk("Si", cubic=True), (1, 1, 0))
    >>> len(si110), si110.cell.lengths().round(3).tolist()
    (4, [3.84, 5.43, 3.84])
    """
    atoms = as_atoms(atoms)
    uvw = zone_axis_indices(indices)
    max_repetitions = _check_repetitions(max_repetitions)
    tolerance = _check_tolerance(tolerance)
    if not (isinstance(symprec, (int, float)) and math.isfinite(symprec) and symprec > 0):
        raise InputError(f"symprec must be a positive distance in Å, got {symprec!r}")

    direction = uvw @ np.asarray(atoms.cell)
    primitive = _primitive(atoms, symprec)
    basis = np.asarray(primitive.cell)
    # [uvw] as an integer vector of the primitive lattice, reduced to its shortest multiple
    coefficients = direction @ np.linalg.inv(basis)
    along_beam = np.round(coefficients).astype(np.int64)
    if not np.allclose(coefficients, along_beam, atol=1e-6):  # pragma: no cover - lattice bug
        raise StructureError(f"[uvw]={uvw.tolist()} is not a lattice vector of the primitive cell")
    along_beam //= math.gcd(*(abs(int(c)) for c in along_beam))

    rotation = _rotation_onto_z(direction)
    rotated_basis = basis @ rotation.T
    # shortest lattice vector perpendicular to the beam goes along +x
    n, vectors = _lattice_vectors(rotated_basis, max_repetitions)
    lengths = np.linalg.norm(vectors, axis=1)
    misfit = np.abs(vectors[:, 2]) / lengths
    ok = misfit <= tolerance
    if not np.any(ok):
        raise StructureError(
            f"no lattice vector within {max_repetitions} repetitions is perpendicular to "
            f"[{' '.join(map(str, uvw))}] within tolerance {tolerance:g} (best misalignment "
            f"{misfit.min():.3g}); increase max_repetitions or tolerance"
        )
    angle_to_x = np.abs(np.arctan2(vectors[:, 1], vectors[:, 0]))
    candidates = np.flatnonzero(ok)
    order = np.lexsort((angle_to_x[candidates], np.round(lengths[candidates], 6)))
    first = vectors[candidates[order[0]]]
    phi = math.atan2(first[1], first[0])
    spin = np.array([[math.cos(-phi), -math.sin(-phi), 0.0], [math.sin(-phi), math.cos(-phi), 0.0], [0, 0, 1.0]])
    rotation = spin @ rotation
    rotated_basis = basis @ rotation.T

    rotated = primitive.copy()
    rotated.set_cell(rotated_basis, scale_atoms=True)  # rotates positions with the cell
    x_row = n[candidates[order[0]]]
    y_row = _vector_along(rotated_basis, 1, max_repetitions, tolerance)
    rows = np.array([x_row, y_row, along_beam])
    result = _build_orthogonal(rotated, rows, wrap_beam=True)
    result.info["zone_axis"] = uvw.tolist()
    result.info["zone_axis_rotation"] = rotation.tolist()
    return result


def _check_repetitions(max_repetitions) -> int:
    if isinstance(max_repetitions, bool) or not isinstance(max_repetitions, (int, np.integer)) or max_repetitions < 1:
        raise InputError(f"max_repetitions must be a positive integer, got {max_repetitions!r}")
    return int(max_repetitions)


def _check_tolerance(tolerance) -> float:
    try:
        value = float(tolerance)
    except (TypeError, ValueError):
        raise InputError(f"tolerance must be a number between 0 and 0.5, got {tolerance!r}") from None
    if not (0 <= value < 0.5):
        raise InputError(
            f"tolerance {tolerance!r} is outside [0, 0.5): it is the sine of the largest "
            "misalignment (and the largest strain) accepted, e.g. 0.01"
        )
    return max(value, 1e-9)


def zone_axis_indices(indices) -> np.ndarray:
    """Validated zone-axis indices [u, v, w] as integers, reduced by their common divisor."""
    try:
        values = np.asarray(indices, dtype=float)
    except (TypeError, ValueError):
        raise StructureError(f"zone axis must be three integers [u, v, w], got {indices!r}") from None
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise StructureError(f"zone axis must be three integers [u, v, w], got {indices!r}")
    if not np.all(values == np.round(values)):
        raise StructureError(
            f"zone axis indices must be integers, got {list(values)}: multiply by a common "
            "factor (e.g. [0.5, 0.5, 0] → [1, 1, 0])"
        )
    uvw = values.astype(np.int64)
    if not np.any(uvw):
        raise StructureError("zone axis [0, 0, 0] has no direction; give e.g. (0, 0, 1)")
    return uvw // math.gcd(*(abs(int(u)) for u in uvw))


def _lattice_vectors(basis: np.ndarray, max_repetitions: int) -> tuple[np.ndarray, np.ndarray]:
    """All integer combinations (|nᵢ| ≤ max_repetitions, not all zero) and their vectors."""
    r = np.arange(-max_repetitions, max_repetitions + 1)
    n = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    n = n[np.any(n != 0, axis=1)]
    return n, n @ basis


def _vector_along(basis: np.ndarray, axis: int, max_repetitions: int, tolerance: float) -> np.ndarray:
    """Integer row n (in ``basis``) of the shortest lattice vector along +axis within tolerance."""
    n, vectors = _lattice_vectors(basis, max_repetitions)
    lengths = np.linalg.norm(vectors, axis=1)
    along = vectors[:, axis]
    misfit = np.sqrt(np.maximum(lengths**2 - along**2, 0.0)) / lengths
    forward = along > 0
    ok = forward & (misfit <= tolerance)
    if not np.any(ok):
        best = int(np.argmin(np.where(forward, misfit, np.inf)))
        raise StructureError(
            f"no lattice vector with coefficients up to ±{max_repetitions} points along "
            f"{'xyz'[axis]} within tolerance {tolerance:g}: the best, {n[best].tolist()} "
            f"({lengths[best]:.3f} Å), is misaligned by {misfit[best]:.3g} (it would need "
            f"{misfit[best]:.2%} strain); increase max_repetitions or tolerance"
        )
    candidates = np.flatnonzero(ok)
    order = np.lexsort((misfit[candidates], np.round(lengths[candidates], 6)))
    return n[candidates[order[0]]]


def _build_orthogonal(atoms: Atoms, rows: np.ndarray, wrap_beam: bool) -> Atoms:
    """Supercell spanned by integer ``rows`` of ``atoms.cell``, squared up to a diagonal cell."""
    from ase.build import make_supercell

    rows = np.asarray(rows, dtype=np.int64)
    determinant = int(round(np.linalg.det(rows)))
    if determinant == 0:
        raise StructureError(f"the lattice vectors found ({rows.tolist()}) are not independent; lower the tolerance")
    info = dict(atoms.info)
    supercell = make_supercell(atoms, rows, wrap=False)
    vectors = np.asarray(supercell.cell)
    target = np.diag(np.linalg.norm(vectors, axis=1))
    deformation = np.linalg.solve(vectors, target)  # new rows = old rows @ deformation
    strain = 0.5 * (deformation + deformation.T) - np.eye(3)
    supercell.set_cell(target, scale_atoms=True)
    scaled = supercell.get_scaled_positions(wrap=False)
    columns = slice(None) if wrap_beam else slice(0, 2)
    scaled[:, columns] = _unit_interval(scaled[:, columns])
    supercell.positions = scaled @ target
    supercell.info = info
    supercell.info["orthogonalization"] = {
        "supercell_matrix": rows.tolist(),
        "max_strain": float(np.abs(strain).max()),
    }
    return supercell


def _unit_interval(values: np.ndarray) -> np.ndarray:
    wrapped = np.mod(values, 1.0)
    wrapped[wrapped >= 1.0 - 1e-12] = 0.0
    return wrapped


def _rotation_onto_z(direction: np.ndarray) -> np.ndarray:
    """Rotation matrix R (acting on column vectors) with R @ d̂ = +ẑ."""
    d = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    z = _AXES[2]
    axis = np.cross(d, z)
    sine = np.linalg.norm(axis)
    cosine = float(d @ z)
    if sine < 1e-12:
        return np.eye(3) if cosine > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / sine
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sine * kx + (1 - cosine) * (kx @ kx)


def _translation_lattice(atoms: Atoms, symprec: float) -> np.ndarray:
    """Basis (rows, in fractional coordinates of ``atoms.cell``) of the full translation lattice.

    Candidate translations are the vectors between atoms of the rarest element; a candidate
    already in the lattice found so far is skipped, so only a few (≤ 3) need the full check
    that every atom lands on an atom of the same element within ``symprec`` Å.
    """
    from scipy.spatial import cKDTree

    cell = np.asarray(atoms.cell)
    scaled = _unit_interval(atoms.get_scaled_positions(wrap=False))
    numbers = atoms.numbers
    species, counts = np.unique(numbers, return_counts=True)
    reference = np.flatnonzero(numbers == species[np.argmin(counts)])
    trees = {z: (np.flatnonzero(numbers == z), cKDTree(scaled[numbers == z], boxsize=1.0)) for z in species}

    def maps_onto_itself(t: np.ndarray, subset: np.ndarray) -> bool:
        moved = _unit_interval(scaled[subset] + t)
        for z in species:
            pick = numbers[subset] == z
            if not np.any(pick):
                continue
            indices, tree = trees[z]
            _, nearest = tree.query(moved[pick])
            delta = moved[pick] - scaled[indices[nearest]]
            delta -= np.round(delta)
            if np.any(np.linalg.norm(delta @ cell, axis=1) > symprec):
                return False
        return True

    # the translation group modulo the cell lattice has an order dividing len(reference)
    denominator = len(reference)
    generators = [row for row in denominator * np.eye(3, dtype=np.int64)]
    basis = np.eye(3)
    probe = np.arange(min(len(atoms), 16))
    everything = np.arange(len(atoms))
    candidates = scaled[reference[1:]] - scaled[reference[0]]
    candidates -= np.round(candidates)
    order = np.argsort(np.linalg.norm(candidates @ cell, axis=1))
    for t in candidates[order]:
        coefficients = t @ np.linalg.inv(basis)
        remainder = (coefficients - np.round(coefficients)) @ basis @ cell
        if np.linalg.norm(remainder) < symprec:
            continue  # already a lattice translation
        integer = np.round(t * denominator)
        if np.linalg.norm((t * denominator - integer) @ cell) > symprec * denominator:
            continue  # pragma: no cover - not a rational translation of this cell
        if maps_onto_itself(t, probe) and maps_onto_itself(t, everything):
            generators = list(_integer_lattice_basis(np.vstack([*generators, integer.astype(np.int64)])))
            basis = np.array(generators, dtype=float) / denominator
    return basis


def _integer_lattice_basis(generators: np.ndarray) -> np.ndarray:
    """Basis (3 integer rows, upper triangular) of the lattice spanned by integer generators."""
    rows = [list(map(int, r)) for r in generators if any(r)]
    basis = []
    for column in range(3):
        while True:
            nonzero = [r for r in rows if r[column] != 0]
            if len(nonzero) <= 1:
                break
            pivot = min(nonzero, key=lambda r: abs(r[column]))
            reduced = [pivot]
            for r in rows:
                if r is pivot:
                    continue
                if r[column] != 0:
                    q = r[column] // pivot[column]
                    r = [a - q * b for a, b in zip(r, pivot)]
                if any(r):
                    reduced.append(r)
            rows = reduced
        pivot = next(r for r in rows if r[column] != 0)
        basis.append(pivot)
        rows = [r for r in rows if r is not pivot]
    return np.array(basis, dtype=np.int64)


def _primitive(atoms: Atoms, symprec: float) -> Atoms:
    """The structure in a (Minkowski-reduced) cell of its full translation lattice."""
    from ase.geometry.minkowski_reduction import minkowski_reduce

    fractional_basis = _translation_lattice(atoms, symprec)
    cell = np.asarray(atoms.cell)
    basis = fractional_basis @ cell
    reduced_lattice = abs(np.linalg.det(fractional_basis)) < 1 - 1e-9
    reduced, _ = minkowski_reduce(basis)
    if np.linalg.det(reduced) < 0:
        reduced = -reduced
    scaled = _unit_interval(np.linalg.solve(reduced.T, atoms.positions.T).T)
    keep = _first_of_duplicates(scaled, reduced, symprec) if reduced_lattice else np.arange(len(atoms))
    primitive = Atoms(numbers=atoms.numbers[keep], positions=scaled[keep] @ reduced, cell=reduced, pbc=True)
    if "masses" in atoms.arrays:
        primitive.set_masses(atoms.get_masses()[keep])
    if len(primitive) * round(abs(np.linalg.det(cell) / np.linalg.det(reduced))) != len(atoms):
        return atoms.copy()  # pragma: no cover - fall back to the given lattice
    primitive.info = dict(atoms.info)
    return primitive


def _first_of_duplicates(scaled: np.ndarray, cell: np.ndarray, symprec: float) -> np.ndarray:
    """Indices of atoms that are not periodic copies (within symprec Å) of an earlier atom."""
    kept: list[int] = []
    for i, position in enumerate(scaled):
        if kept:
            delta = scaled[kept] - position
            delta -= np.round(delta)
            if np.min(np.linalg.norm(delta @ cell, axis=1)) < symprec:
                continue
        kept.append(i)
    return np.array(kept, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Tiling and vacuum
# --------------------------------------------------------------------------------------------


def tile(atoms: Atoms, repetitions: Sequence[int]) -> Atoms:
    """Repeat the cell ``(nx, ny, nz)`` times along a, b, c.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure to repeat.
    repetitions : sequence of 3 int
        Positive repetition counts along a, b and c.

    Returns
    -------
    ase.Atoms
        New structure with ``nx·ny·nz`` times as many atoms and a cell ``nx a, ny b, nz c``.
    """
    atoms = as_atoms(atoms)
    try:
        reps = tuple(repetitions)
    except TypeError:
        reps = ()
    if len(reps) != 3 or not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 1 for r in reps):
        raise StructureError(f"repetitions must be three positive integers (nx, ny, nz), got {repetitions!r}")
    return atoms.repeat(tuple(int(r) for r in reps))


def center_along_beam(atoms: Atoms, vacuum: float) -> Atoms:
    """Set the cell height so there is ``vacuum`` Å above and below the atoms along z.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure whose ``c`` vector is along z and whose ``a``, ``b`` lie in the xy plane.
    vacuum : float
        Empty space in Å on each side (entrance and exit surface) along the beam.

    Returns
    -------
    ase.Atoms
        Copy with ``c = thickness + 2·vacuum`` and the atoms centred along z.
    """
    atoms = as_atoms(atoms)
    try:
        vacuum = float(vacuum)
    except (TypeError, ValueError):
        raise InputError(f"vacuum must be a distance in Å, got {vacuum!r}") from None
    if not math.isfinite(vacuum) or vacuum < 0:
        raise InputError(f"vacuum must be a non-negative distance in Å, got {vacuum!r}")
    cell = np.asarray(atoms.cell)
    if abs(cell[0, 2]) > 1e-6 or abs(cell[1, 2]) > 1e-6 or np.linalg.norm(cell[2, :2]) > 1e-6:
        raise StructureError(
            "center_along_beam needs c along z and a, b in the xy plane; make the cell "
            "orthogonal first with orthogonalize_cell(atoms)"
        )
    thickness = np.ptp(atoms.positions[:, 2]) if len(atoms) else 0.0
    if thickness + 2 * vacuum <= 0:
        raise InputError("vacuum must be positive for a structure with all atoms at one height")
    atoms.center(vacuum=vacuum, axis=2)
    return atoms


# --------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------


def _atomic_number(element) -> int:
    if isinstance(element, (int, np.integer)) and not isinstance(element, bool):
        z = int(element)
    elif isinstance(element, str) and element in atomic_numbers:
        z = atomic_numbers[element]
    else:
        raise StructureError(f"unknown element {element!r}: give a symbol such as 'Si' or an atomic number")
    if not 1 <= z <= MAX_ATOMIC_NUMBER:
        raise StructureError(f"element {element!r} (Z={z}) is outside Z = 1–{MAX_ATOMIC_NUMBER}")
    return z


def _lateral_mic(vectors: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image vectors under the lateral (a, b) periodicity."""
    from ase.geometry import find_mic

    if len(vectors) == 0:
        return vectors
    mic, _ = find_mic(vectors, cell, pbc=(True, True, False))
    return mic


def _describe(atoms: Atoms, indices, distances) -> str:
    parts = []
    for i, d in zip(indices, distances):
        x, y, z = atoms.positions[i]
        parts.append(f"{atoms[i].symbol} #{i} at ({x:.2f}, {y:.2f}, {z:.2f}) Å, {d:.2f} Å away")
    return "; ".join(parts) if parts else "no atoms"


def _query_position(position) -> np.ndarray:
    try:
        p = np.asarray(position, dtype=float)
    except (TypeError, ValueError):
        raise StructureError(f"position must be (x, y) or (x, y, z) in Å, got {position!r}") from None
    if p.shape not in ((2,), (3,)) or not np.all(np.isfinite(p)):
        raise StructureError(f"position must be (x, y) or (x, y, z) in Å, got {position!r}")
    return p


def nearest_site(atoms: Atoms, position, element=None, tolerance: float = 0.5) -> int:
    """Index of the atom at ``position`` (within ``tolerance`` Å), optionally of one element.

    Parameters
    ----------
    atoms : ase.Atoms
        Structure to search.
    position : (2,) or (3,) array_like
        ``(x, y)`` in Å selects in projection along the beam (the nearest column; among
        atoms equally near, within 1e-3 Å, the topmost, i.e. largest z); ``(x, y, z)``
        selects in 3-D. Lateral periodic images count.
    element : str or int, optional
        Only atoms of this element are considered.
    tolerance : float
        Largest accepted distance in Å.

    Returns
    -------
    int
        Index into ``atoms``.

    Raises
    ------
    StructureError
        If no (matching) atom is within ``tolerance``; the message lists the nearest atoms.
    """
    validate_atoms(atoms)
    p = _query_position(position)
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise InputError(f"tolerance must be a positive distance in Å, got {tolerance!r}")
    if len(atoms) == 0:
        raise StructureError("the structure has no atoms")
    vectors = atoms.positions.copy()
    vectors[:, : len(p)] -= p
    if len(p) == 2:
        vectors[:, 2] = 0.0
    vectors = _lateral_mic(vectors, np.asarray(atoms.cell))
    distances = np.linalg.norm(vectors[:, : len(p)], axis=1)
    allowed = np.ones(len(atoms), dtype=bool)
    label = "atom"
    if element is not None:
        z = _atomic_number(element)
        allowed = atoms.numbers == z
        label = f"{chemical_symbols[z]} atom"
    candidates = np.flatnonzero(allowed & (distances <= tolerance))
    if len(candidates) == 0:
        nearest = np.argsort(distances)[:5]
        where = "(x, y)" if len(p) == 2 else "(x, y, z)"
        raise StructureError(
            f"no {label} within {tolerance:g} Å of {where} = ({', '.join(f'{v:.3f}' for v in p)}); "
            f"nearest atoms: {_describe(atoms, nearest, distances[nearest])}. Give a position "
            "closer to a site, another element, or a larger tolerance"
        )
    best = distances[candidates].min()
    tied = candidates[distances[candidates] <= best + 1e-3]
    return int(tied[np.argmax(atoms.positions[tied, 2])])


def _site_index(atoms: Atoms, site, element=None) -> int:
    if isinstance(site, (int, np.integer)) and not isinstance(site, bool):
        if not 0 <= site < len(atoms):
            raise StructureError(
                f"atom index {site} is out of range: the structure has {len(atoms)} atoms (0–{len(atoms) - 1})"
            )
        return int(site)
    return nearest_site(atoms, site, element=element)


def substitute(atoms: Atoms, site, element, *, replaces=None) -> Atoms:
    """Replace one atom by another element.

    Parameters
    ----------
    atoms : ase.Atoms
        Host structure.
    site : int or (2,) or (3,) array_like
        Atom index, or a position in Å (see :func:`nearest_site`).
    element : str or int
        New element.
    replaces : str or int, optional
        With a position: only an atom of this element may be replaced.

    Returns
    -------
    ase.Atoms
        Copy with the atom's element (and mass) changed.
    """
    atoms = as_atoms(atoms)
    z = _atomic_number(element)
    index = _site_index(atoms, site, replaces)
    numbers = atoms.numbers.copy()
    numbers[index] = z
    masses = atoms.get_masses() if "masses" in atoms.arrays else None
    atoms.numbers = numbers
    if masses is not None:
        masses[index] = atomic_masses[z]
        atoms.set_masses(masses)
    return atoms


def vacancy(atoms: Atoms, site, *, element=None) -> Atoms:
    """Remove one atom (by index or nearest to a position, see :func:`nearest_site`)."""
    atoms = as_atoms(atoms)
    index = _site_index(atoms, site, element)
    del atoms[index]
    return atoms


def adatom(atoms: Atoms, element, position, height: float = 2.0, radius: float = 3.0) -> Atoms:
    """Add an atom ``height`` Å above the topmost atom near a lateral position.

    Parameters
    ----------
    atoms : ase.Atoms
        Host structure (a slab with vacuum along z).
    element : str or int
        Element of the new atom.
    position : (2,) array_like
        Lateral position ``(x, y)`` in Å.
    height : float
        Height in Å above the largest z among atoms within ``radius`` (laterally) of
        ``position``.
    radius : float
        Lateral search radius in Å.

    Returns
    -------
    ase.Atoms
        Copy with one more atom, appended last.

    Raises
    ------
    StructureError
        If no atom lies within ``radius`` of ``position``, or the new atom would lie above
        the cell (add vacuum with :func:`center_along_beam`).
    """
    atoms = as_atoms(atoms)
    z = _atomic_number(element)
    p = _query_position(position)
    if p.shape != (2,):
        raise StructureError(f"adatom position must be lateral (x, y) in Å, got {position!r}")
    for name, value in (("height", height), ("radius", radius)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive distance in Å, got {value!r}")
    vectors = atoms.positions.copy()
    vectors[:, :2] -= p
    vectors[:, 2] = 0.0
    lateral = np.linalg.norm(_lateral_mic(vectors, np.asarray(atoms.cell))[:, :2], axis=1)
    near = np.flatnonzero(lateral <= radius)
    if len(near) == 0:
        raise StructureError(
            f"no atom within {radius:g} Å of (x, y) = ({p[0]:.3f}, {p[1]:.3f}) to stand on; give a larger radius"
        )
    new = np.array([p[0], p[1], atoms.positions[near, 2].max() + height])
    fractional = atoms.cell.scaled_positions(new[None])[0]
    if fractional[2] >= 1.0 or fractional[2] < 0.0:
        raise StructureError(
            f"the adatom at z = {new[2]:.2f} Å lies outside the cell along the beam; add "
            "vacuum first, e.g. center_along_beam(atoms, vacuum=5.0)"
        )
    extra = Atoms(numbers=[z], positions=[new])
    if "masses" in atoms.arrays:
        extra.set_masses([atomic_masses[z]])
    atoms.extend(extra)
    return wrap_laterally(atoms)


# Built-in crystals live in temsim.crystals; re-exported here for existing code.
from temsim.crystals import graphene, srtio3, triazine_carbon_nitride  # noqa: E402
