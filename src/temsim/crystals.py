"""Built-in crystals: small orthogonal cells, beam along z, ready to tile.

:func:`graphene`, :func:`srtio3` and :func:`triazine_carbon_nitride` are the specimens of
the built-in planning studies (``specimen.example`` in a study file names them, see
:data:`BUILDERS`). They are also available as ``temsim.structure.graphene`` etc.
Lengths are in Å.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

from temsim.errors import InputError

__all__ = ["graphene", "srtio3", "triazine_carbon_nitride", "BUILDERS"]


def graphene(a: float = 2.46, vacuum: float = 2.0) -> Atoms:
    """Graphene in its 4-atom orthogonal cell ``a × √3 a``, the sheet in the middle along z.

    Parameters
    ----------
    a : float
        Lattice constant in Å (C–C bond ``a/√3``).
    vacuum : float
        Vacuum in Å on each side of the sheet (cell height ``2·vacuum``).

    Returns
    -------
    ase.Atoms
        4 carbon atoms, cell ``diag(a, √3 a, 2·vacuum)``, pbc ``(True, True, False)``.
    """
    for name, value in (("a", a), ("vacuum", vacuum)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive distance in Å, got {value!r}")
    fractional = np.array([[0.0, 0.0], [0.0, 1 / 3], [0.5, 0.5], [0.5, 5 / 6]])
    b = math.sqrt(3) * a
    positions = np.column_stack([fractional[:, 0] * a, fractional[:, 1] * b, np.full(4, float(vacuum))])
    return Atoms("C4", positions=positions, cell=[a, b, 2 * vacuum], pbc=(True, True, False))


def srtio3(a: float = 3.905) -> Atoms:
    """Cubic perovskite SrTiO₃: Sr at the corner, Ti at the body centre, O at the face centres.

    Parameters
    ----------
    a : float
        Lattice constant in Å (3.905 Å at room temperature).

    Returns
    -------
    ase.Atoms
        5 atoms (Sr, Ti, 3 O) in the cubic cell ``a × a × a``, periodic.
    """
    if not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0):
        raise InputError(f"a must be a positive distance in Å, got {a!r}")
    fractional = [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    return Atoms("SrTiO3", scaled_positions=fractional, cell=[a, a, a], pbc=True)


def triazine_carbon_nitride(a: float = 4.79, ring_bond: float = 1.33, vacuum: float = 2.0) -> Atoms:
    """Planar triazine-based graphitic carbon nitride (C3N4, a covalent triazine framework).

    Hexagonal cell ``a`` (Å; 4.79 Å is the planar DFT value commonly quoted for this layer, cf.
    Algara-Siller et al., Angew. Chem. Int. Ed. 53, 7450 (2014), who made it crystalline):
    one triazine ring (C3N3, ring C–N bond ``ring_bond`` Å) per cell, its three C atoms bonded to
    bridging (linker) N atoms that join three rings; the bridge bond follows from ``a``
    (a/√3 − ring_bond ≈ 1.44 Å). Returned as an orthogonal cell ``a × √3 a`` (two hexagonal
    cells, 14 atoms; the same cell :func:`temsim.structure.orthogonalize_cell` finds), beam along z.
    """
    for name, value in (("a", a), ("ring_bond", ring_bond), ("vacuum", vacuum)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive distance in Å, got {value!r}")
    cell = [[a, 0, 0], [a / 2, a * math.sqrt(3) / 2, 0], [0, 0, 2 * vacuum]]
    positions, symbols = [], []
    for angle, symbol in ((30, "C"), (90, "N"), (150, "C"), (210, "N"), (270, "C"), (330, "N")):
        t = math.radians(angle)
        positions.append([ring_bond * math.cos(t), ring_bond * math.sin(t), vacuum])
        symbols.append(symbol)
    positions.append([a / 2, a * math.sqrt(3) / 6, vacuum])  # bridging (linker) N at (1/3, 1/3)
    symbols.append("N")
    layer = Atoms(symbols, positions=positions, cell=cell, pbc=[True, True, False])
    layer.wrap()
    return _orthogonal_hexagonal(layer)


def _orthogonal_hexagonal(layer: Atoms) -> Atoms:
    """The rectangular cell (a, 2b − a, c) of a hexagonal layer, atoms wrapped laterally."""
    from ase.build import make_supercell

    supercell = make_supercell(layer, np.array([[1, 0, 0], [-1, 2, 0], [0, 0, 1]]), wrap=False)
    target = np.diag(np.linalg.norm(np.asarray(supercell.cell), axis=1))  # squares up rounding only
    supercell.set_cell(target, scale_atoms=True)
    scaled = supercell.get_scaled_positions(wrap=False)
    lateral = np.mod(scaled[:, :2], 1.0)
    lateral[lateral >= 1.0 - 1e-12] = 0.0
    scaled[:, :2] = lateral
    supercell.positions = scaled @ target
    return supercell


#: Builders a study file may name as ``specimen.example``.
BUILDERS = {"graphene": graphene, "srtio3": srtio3, "triazine-carbon-nitride": triazine_carbon_nitride}
