"""Structure intake: validate ``ase.Atoms`` and prepare them for slicing.

All helpers are pure ``Atoms → Atoms`` functions that never mutate their input.
The beam travels along +z; a cell must be orthogonal with ``c`` along z to be sliced.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from temsim.errors import StructureError

#: Largest atomic number with a shipped scattering-factor parametrization.
MAX_ATOMIC_NUMBER = 103


def as_atoms(structure) -> Atoms:
    """Return a validated *copy* of ``structure`` (``ase.Atoms`` or a path ``ase.io.read`` reads)."""
    if isinstance(structure, Atoms):
        atoms = structure.copy()
    elif isinstance(structure, (str, bytes)) or hasattr(structure, "__fspath__"):
        import ase.io

        try:
            atoms = ase.io.read(structure)
        except FileNotFoundError:
            raise StructureError(f"structure file {structure!s} does not exist") from None
    else:
        raise StructureError(
            f"expected an ase.Atoms or a structure file path, got {type(structure).__name__}"
        )
    validate_atoms(atoms)
    return atoms


def validate_atoms(atoms: Atoms) -> None:
    """Raise :class:`StructureError` if the cell, positions or elements are unusable."""
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
    """True if the cell is diagonal (a ∥ x, b ∥ y, c ∥ z) to ``tol`` Å."""
    cell = np.asarray(atoms.cell)
    return bool(np.all(np.abs(cell - np.diag(np.diag(cell))) < tol))


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
