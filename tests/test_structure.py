"""Structure intake: validation, orthogonal cells, zone axes, tiling and defects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.build import graphene as ase_graphene
from ase.neighborlist import neighbor_list

from temsim.errors import InputError, StructureError
from temsim.structure import (
    adatom,
    as_atoms,
    center_along_beam,
    graphene,
    is_orthogonal_cell,
    nearest_site,
    orthogonalize_cell,
    prepare_for_slicing,
    srtio3,
    substitute,
    tile,
    vacancy,
    validate_atoms,
    wrap_laterally,
    zone_axis,
)

SI_A = 5.431
CC_BOND = 2.46 / math.sqrt(3)


def density(atoms: Atoms) -> float:
    return len(atoms) / abs(atoms.get_volume())


def neighbour_shells(atoms: Atoms, cutoff: float, pbc=(True, True, True)) -> np.ndarray:
    """Sorted distances from every atom to its neighbours within ``cutoff`` (periodic)."""
    atoms = atoms.copy()
    atoms.pbc = pbc
    return np.sort(neighbor_list("d", atoms, cutoff))


def frozen_copy(atoms: Atoms) -> tuple:
    return atoms.positions.copy(), atoms.cell.array.copy(), atoms.numbers.copy()


def assert_unchanged(atoms: Atoms, snapshot: tuple) -> None:
    positions, cell, numbers = snapshot
    assert np.array_equal(atoms.positions, positions)
    assert np.array_equal(atoms.cell.array, cell)
    assert np.array_equal(atoms.numbers, numbers)


def fractional_xy(atoms: Atoms) -> np.ndarray:
    return atoms.get_scaled_positions(wrap=False)[:, :2]


# --- intake and validation ------------------------------------------------------------------


def test_as_atoms_copies_and_reads_files(tmp_path):
    import ase.io

    atoms = srtio3()
    copy = as_atoms(atoms)
    copy.positions += 1.0
    assert np.array_equal(atoms.positions, srtio3().positions)

    path = tmp_path / "sto.cif"
    ase.io.write(path, atoms)
    read = as_atoms(path)
    assert sorted(read.get_chemical_symbols()) == sorted(atoms.get_chemical_symbols())
    assert np.allclose(read.cell.lengths(), 3.905)
    assert as_atoms(str(path)).get_chemical_formula() == atoms.get_chemical_formula()


def test_as_atoms_file_errors(tmp_path):
    with pytest.raises(StructureError, match="does not exist"):
        as_atoms(tmp_path / "missing.cif")
    odd = tmp_path / "structure.unknownformat"
    odd.write_text("nothing here")
    with pytest.raises(StructureError, match="format"):
        as_atoms(odd)
    with pytest.raises(StructureError, match="expected an ase.Atoms"):
        as_atoms(42)


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms("C", positions=[[0, 0, 0]]), "zero length"),
        (Atoms("C", positions=[[0, 0, 0]], cell=[2.0, 0.0, 2.0]), r"cell vector\(s\) b"),
        (Atoms("C", positions=[[np.nan, 0, 0]], cell=[2, 2, 2]), "NaN"),
        (Atoms("X", positions=[[0, 0, 0]], cell=[2, 2, 2]), "no scattering-factor"),
        (Atoms("C", positions=[[0, 0, 0]], cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1]]), "linearly dependent"),
    ],
)
def test_validation_errors_say_what_is_wrong(atoms, message):
    with pytest.raises(StructureError, match=message):
        validate_atoms(atoms)
    with pytest.raises(StructureError):
        as_atoms(atoms)


def test_missing_cell_message_says_how_to_fix():
    with pytest.raises(StructureError, match=r"set_cell|center"):
        as_atoms(Atoms("C2", positions=[[0, 0, 0], [1.4, 0, 0]]))


def test_is_orthogonal_cell():
    assert is_orthogonal_cell(srtio3())
    assert not is_orthogonal_cell(ase_graphene(a=2.46, vacuum=2.0))
    mirrored = srtio3()
    mirrored.set_cell(np.diag([-3.905, 3.905, 3.905]))
    assert not is_orthogonal_cell(mirrored)  # a antiparallel to x is not a ∥ +x


def test_prepare_for_slicing_wraps_laterally_only():
    atoms = graphene(vacuum=3.0)
    atoms.positions += [-1.0, 5.0, 0.7]
    prepared = prepare_for_slicing(atoms)
    frac = fractional_xy(prepared)
    assert np.all((frac >= 0) & (frac < 1))
    assert np.allclose(prepared.positions[:, 2], atoms.positions[:, 2])
    with pytest.raises(StructureError, match="orthogonalize_cell"):
        prepare_for_slicing(ase_graphene(a=2.46, vacuum=2.0))


def test_wrap_laterally_keeps_beam_coordinate():
    atoms = srtio3()
    atoms.positions += [4.0, -1.0, -2.0]
    wrapped = wrap_laterally(atoms)
    frac = wrapped.get_scaled_positions(wrap=False)
    assert np.all((frac[:, :2] >= 0) & (frac[:, :2] < 1))
    assert np.array_equal(wrapped.positions[:, 2], atoms.positions[:, 2])


# --- orthogonal cells -------------------------------------------------------------------------


def test_orthogonalize_hexagonal_graphene():
    hexagonal = ase_graphene(a=2.46, vacuum=2.0)
    snapshot = frozen_copy(hexagonal)
    rect = orthogonalize_cell(hexagonal)
    assert_unchanged(hexagonal, snapshot)
    assert is_orthogonal_cell(rect)
    assert len(rect) == 4
    assert np.allclose(rect.cell.lengths(), [2.46, 2.46 * math.sqrt(3), 4.0])
    assert density(rect) == pytest.approx(density(hexagonal), rel=1e-12)
    assert rect.info["orthogonalization"]["max_strain"] < 1e-12
    # the honeycomb survives: every atom has exactly three neighbours at a/√3
    shells = neighbour_shells(rect, 1.6, pbc=(True, True, False))
    assert len(shells) == 4 * 3
    assert np.allclose(shells, CC_BOND)
    # and it is the same crystal as the built-in rectangular cell
    assert np.allclose(
        neighbour_shells(rect, 5.0, (True, True, False)), neighbour_shells(graphene(), 5.0, (True, True, False))
    )
    frac = fractional_xy(rect)
    assert np.all((frac >= 0) & (frac < 1))


def test_orthogonal_cell_is_returned_unchanged():
    atoms = srtio3()
    result = orthogonalize_cell(atoms)
    assert result is not atoms
    assert np.array_equal(result.positions, atoms.positions)
    assert np.array_equal(result.cell.array, atoms.cell.array)


@pytest.mark.parametrize(
    "unimodular",
    [
        [[1, 0, 0], [1, 1, 0], [0, 0, 1]],
        [[1, 2, 0], [0, 1, 0], [1, 1, 1]],
        [[2, 1, 1], [1, 1, 1], [1, 0, 1]],
        [[0, 1, 0], [1, 0, 0], [0, -1, -1]],  # left-handed skewed basis of the same lattice
    ],
)
def test_orthogonalize_recovers_the_cubic_cell_from_a_skewed_basis(unimodular):
    """A skewed basis of the SrTiO3 lattice must come back as the 3.905 Å cube, 5 atoms."""
    unimodular = np.array(unimodular)
    assert abs(round(np.linalg.det(unimodular))) == 1
    cube = srtio3()
    skewed = cube.copy()
    skewed.set_cell(unimodular @ cube.cell.array, scale_atoms=False)
    skewed.wrap()
    result = orthogonalize_cell(skewed)
    assert is_orthogonal_cell(result)
    assert np.allclose(result.cell.lengths(), 3.905)
    assert result.get_chemical_formula() == cube.get_chemical_formula()
    assert np.allclose(neighbour_shells(result, 4.0), neighbour_shells(cube, 4.0))


def test_orthogonalize_hcp_gives_orthohexagonal_cell():
    mg = bulk("Mg")
    result = orthogonalize_cell(mg)
    a, c = mg.cell.lengths()[0], mg.cell.lengths()[2]
    assert np.allclose(result.cell.lengths(), [a, a * math.sqrt(3), c])
    assert len(result) == 4
    assert density(result) == pytest.approx(density(mg), rel=1e-12)
    # twice the atoms, each with the same neighbour shells
    assert np.allclose(neighbour_shells(result, 3.3), np.repeat(neighbour_shells(mg, 3.3), 2))


def test_orthogonalize_within_tolerance_strains_and_records_it():
    atoms = srtio3()
    sheared = atoms.cell.array.copy()
    sheared[1, 0] = 0.02  # b tilted by 0.02/3.905 = 0.5 %
    atoms.set_cell(sheared, scale_atoms=True)
    result = orthogonalize_cell(atoms, tolerance=0.01)
    assert len(result) == 5
    strain = result.info["orthogonalization"]["max_strain"]
    assert 0 < strain <= 0.01
    assert np.allclose(result.get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-12)


def test_orthogonalize_failure_reports_best_strain():
    oblique = Atoms(
        "C", positions=[[0, 0, 0]], cell=[[3.0, 0, 0], [3.0 * math.cos(1.3), 3.0 * math.sin(1.3), 0], [0, 0, 4.0]]
    )
    with pytest.raises(StructureError, match=r"misaligned by .* increase max_repetitions or tolerance"):
        orthogonalize_cell(oblique, max_repetitions=3, tolerance=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"max_repetitions": 0}, "max_repetitions"), ({"tolerance": 0.7}, "tolerance")]
)
def test_orthogonalize_rejects_bad_parameters(kwargs, match):
    with pytest.raises(InputError, match=match):
        orthogonalize_cell(ase_graphene(a=2.46, vacuum=2.0), **kwargs)


# --- zone axes --------------------------------------------------------------------------------


def test_silicon_110_zone_axis():
    si = bulk("Si", cubic=True, a=SI_A)
    snapshot = frozen_copy(si)
    result = zone_axis(si, (1, 1, 0))
    assert_unchanged(si, snapshot)
    assert is_orthogonal_cell(result)
    # period along [110] of the fcc lattice is a/√2; lateral cell a/√2 × a; 4 atoms
    assert result.cell.lengths()[2] == pytest.approx(SI_A / math.sqrt(2))
    assert sorted(result.cell.lengths()[:2]) == pytest.approx(sorted([SI_A / math.sqrt(2), SI_A]))
    assert len(result) == 4
    assert density(result) == pytest.approx(density(si), rel=1e-12)
    # rigid rotation: every Si keeps its four neighbours at a√3/4 and 12 at a/√2
    shells = neighbour_shells(result, 3.9)
    assert np.allclose(np.repeat(shells, 2), neighbour_shells(si, 3.9))  # 8 atoms vs 4
    assert np.sum(np.isclose(shells, SI_A * math.sqrt(3) / 4)) == 4 * 4
    # the famous [110] dumbbells: column pairs a/4 apart in projection
    xy = result.positions[:, :2]
    lateral = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert np.any(np.isclose(lateral, SI_A / 4, atol=1e-6))


@pytest.mark.parametrize(
    ("uvw", "period", "count"),
    [((0, 0, 1), SI_A, 4), ((1, 1, 1), SI_A * math.sqrt(3), 12), ((2, 2, 0), SI_A / math.sqrt(2), 4)],
)
def test_silicon_zone_axis_periods(uvw, period, count):
    result = zone_axis(bulk("Si", cubic=True, a=SI_A), uvw)
    assert result.cell.lengths()[2] == pytest.approx(period)
    assert len(result) == count
    assert density(result) == pytest.approx(8 / SI_A**3, rel=1e-12)
    assert result.info["zone_axis"] == list(np.array(uvw) // math.gcd(*uvw))


@pytest.mark.parametrize("uvw", [(1, 1, 0), (1, 1, 2), (1, 0, 0), (1, 2, 3)])
def test_zone_axis_direction_ends_up_along_the_beam(uvw):
    """After the rotation, the z component of every bond is its projection on [uvw]."""
    si = bulk("Si", cubic=True, a=SI_A)
    result = zone_axis(si, uvw, max_repetitions=12)
    direction = np.array(uvw, dtype=float) / np.linalg.norm(uvw)
    bonds_before = neighbor_list("D", si, 2.5)
    bonds_after = neighbor_list("D", result, 2.5)
    assert len(bonds_after) == 4 * len(result)
    expected = np.sort(np.round(bonds_before @ direction, 9))
    got = np.sort(np.round(bonds_after[:, 2], 9))
    # same set of projected bond lengths (the crystal holds more atoms than 8 in general)
    assert np.allclose(np.unique(got), np.unique(expected), atol=1e-6)
    lateral_before = np.sort(
        np.round(np.linalg.norm(bonds_before - np.outer(bonds_before @ direction, direction), axis=1), 9)
    )
    lateral_after = np.sort(np.round(np.linalg.norm(bonds_after[:, :2], axis=1), 9))
    assert np.allclose(np.unique(lateral_after), np.unique(lateral_before), atol=1e-6)


def test_srtio3_zone_axes():
    sto = srtio3()
    same = zone_axis(sto, (0, 0, 1))
    assert np.allclose(same.cell.array, sto.cell.array)
    order = np.lexsort(same.positions.T)
    assert np.allclose(same.positions[order], sto.positions[np.lexsort(sto.positions.T)])

    result = zone_axis(sto, (1, 1, 0))
    assert result.cell.lengths()[2] == pytest.approx(3.905 * math.sqrt(2))
    assert sorted(result.get_chemical_symbols()) == sorted(["Sr"] * 2 + ["Ti"] * 2 + ["O"] * 6)
    assert density(result) == pytest.approx(density(sto), rel=1e-12)
    # Ti–O octahedra survive the rotation: each Ti has 6 O at a/2
    ti = [i for i, s in enumerate(result.get_chemical_symbols()) if s == "Ti"]
    i, j, d = neighbor_list("ijd", result, 2.0)
    for t in ti:
        assert np.sum(i == t) == 6
        assert np.allclose(d[i == t], 3.905 / 2)


def test_hcp_zone_axes():
    mg = bulk("Mg")
    a, c = mg.cell.lengths()[0], mg.cell.lengths()[2]
    basal = zone_axis(mg, (0, 0, 1))
    assert basal.cell.lengths() == pytest.approx([a, a * math.sqrt(3), c])
    prism = zone_axis(mg, (1, 0, 0))
    assert prism.cell.lengths()[2] == pytest.approx(a)
    assert len(prism) == 4


@pytest.mark.parametrize("uvw", [(0.5, 0.5, 0), (0, 0, 0), (1, 1), ("a", 0, 1)])
def test_zone_axis_rejects_bad_indices(uvw):
    with pytest.raises(StructureError):
        zone_axis(bulk("Si", cubic=True), uvw)


def test_zone_axis_accepts_integral_floats():
    result = zone_axis(bulk("Si", cubic=True, a=SI_A), (1.0, 1.0, 0.0))
    assert result.cell.lengths()[2] == pytest.approx(SI_A / math.sqrt(2))


# --- tiling and vacuum -------------------------------------------------------------------------


def test_tile():
    atoms = srtio3()
    tiled = tile(atoms, (2, 3, 4))
    assert len(tiled) == 5 * 24
    assert np.allclose(tiled.cell.lengths(), [2 * 3.905, 3 * 3.905, 4 * 3.905])
    assert density(tiled) == pytest.approx(density(atoms))
    assert len(atoms) == 5
    for bad in [(0, 1, 1), (1, 1), (1.5, 1, 1), 2]:
        with pytest.raises(StructureError, match="three positive integers"):
            tile(atoms, bad)


def test_center_along_beam():
    sheet = graphene(vacuum=1.0)
    centred = center_along_beam(sheet, 6.0)
    assert centred.cell.lengths()[2] == pytest.approx(12.0)
    assert np.allclose(centred.positions[:, 2], 6.0)
    assert np.allclose(centred.positions[:, :2], sheet.positions[:, :2])
    with pytest.raises(InputError):
        center_along_beam(sheet, -1.0)
    with pytest.raises(StructureError, match="orthogonalize_cell"):
        center_along_beam(bulk("Si"), 5.0)


# --- defects ------------------------------------------------------------------------------------


def test_substitute_by_position_and_index():
    host = tile(graphene(vacuum=4.0), (3, 2, 1))
    snapshot = frozen_copy(host)
    site = np.array([2.46 * 1.5, 2.46 * math.sqrt(3) / 2])  # the (1/2, 1/2) atom of cell (1, 0)
    doped = substitute(host, site + [0.1, -0.1], "Si")
    assert_unchanged(host, snapshot)
    assert doped.get_chemical_symbols().count("Si") == 1
    si = doped.get_chemical_symbols().index("Si")
    assert np.allclose(doped.positions[si, :2], site)
    assert np.array_equal(doped.positions, host.positions)
    by_index = substitute(host, si, 14)
    assert np.array_equal(by_index.numbers, doped.numbers)


def test_substitute_updates_explicit_masses():
    host = graphene()
    host.set_masses([13.0] * 4)  # a 13C-enriched sheet
    doped = substitute(host, 0, "Si")
    assert doped.get_masses()[0] == pytest.approx(28.085, abs=0.01)
    assert np.allclose(doped.get_masses()[1:], 13.0)


def test_site_errors_list_what_is_there():
    host = graphene()
    with pytest.raises(StructureError, match=r"out of range.*4 atoms"):
        substitute(host, 7, "Si")
    with pytest.raises(StructureError, match=r"no atom within 0.5 Å.*nearest atoms: C #"):
        vacancy(host, (0.0, 0.7))  # middle of a C–C bond region, 0.71 Å from both atoms
    with pytest.raises(StructureError, match=r"no N atom"):
        nearest_site(host, (0.0, 0.0), element="N")
    with pytest.raises(StructureError, match="unknown element"):
        substitute(host, 0, "Xx")
    with pytest.raises(StructureError, match="position"):
        vacancy(host, (1.0, 2.0, 3.0, 4.0))


def test_nearest_site_uses_periodic_images_and_prefers_topmost():
    sheet = graphene(vacuum=4.0)
    corner = nearest_site(sheet, (-0.05, -0.05))
    assert np.allclose(sheet.positions[corner, :2], [0.0, 0.0])
    bilayer = sheet.copy()
    top = sheet.copy()
    top.positions += [0, 0, 3.35]
    bilayer.extend(top)
    index = nearest_site(bilayer, (0.0, 0.0))
    assert bilayer.positions[index, 2] == pytest.approx(4.0 + 3.35)
    lower = nearest_site(bilayer, (0.0, 0.0, 4.1))
    assert bilayer.positions[lower, 2] == pytest.approx(4.0)


def test_vacancy_removes_the_selected_atom():
    host = tile(graphene(vacuum=4.0), (2, 2, 1))
    target = host.positions[5].copy()
    result = vacancy(host, target[:2])
    assert len(result) == len(host) - 1
    remaining = np.linalg.norm(result.positions - target, axis=1)
    assert remaining.min() > 1.0
    with pytest.raises(StructureError, match="no Si atom"):
        vacancy(host, target[:2], element="Si")


def test_adatom_sits_height_above_the_local_top():
    sheet = graphene(vacuum=4.0)
    hollow = (2.46 / 2, 2.46 * math.sqrt(3) / 6)  # centre of a hexagon, a/√3 from six atoms
    result = adatom(sheet, "Au", hollow, height=2.2)
    assert len(result) == 5
    assert result[-1].symbol == "Au"
    assert result.positions[-1, 2] == pytest.approx(4.0 + 2.2)
    assert np.allclose(result.positions[-1, :2], hollow)
    with pytest.raises(StructureError, match="add vacuum"):
        adatom(sheet, "Au", hollow, height=5.0)
    with pytest.raises(StructureError, match="lateral"):
        adatom(sheet, "Au", (1.0, 1.0, 1.0))


# --- built-in structures ---------------------------------------------------------------------------


def test_builtin_graphene():
    sheet = graphene(a=2.46, vacuum=3.0)
    assert is_orthogonal_cell(sheet)
    assert np.allclose(sheet.cell.lengths(), [2.46, 2.46 * math.sqrt(3), 6.0])
    shells = neighbour_shells(sheet, 1.6, pbc=(True, True, False))
    assert len(shells) == 12 and np.allclose(shells, CC_BOND)
    # areal density of graphene: 2 atoms per hexagonal cell of area (√3/2) a²
    assert len(sheet) / (sheet.cell[0, 0] * sheet.cell[1, 1]) == pytest.approx(2 / (math.sqrt(3) / 2 * 2.46**2))
    with pytest.raises(InputError):
        graphene(vacuum=0)


def test_builtin_srtio3():
    sto = srtio3()
    symbols = sto.get_chemical_symbols()
    assert (symbols.count("Sr"), symbols.count("Ti"), symbols.count("O")) == (1, 1, 3)
    i, j, d = neighbor_list("ijd", sto, 2.0)
    ti = symbols.index("Ti")
    assert np.sum(i == ti) == 6 and np.allclose(d[i == ti], 3.905 / 2)  # TiO6 octahedron
    sr = symbols.index("Sr")
    i, j, d = neighbor_list("ijd", sto, 2.8)
    assert np.sum(i == sr) == 12 and np.allclose(d[i == sr], 3.905 / math.sqrt(2))  # 12-fold Sr–O


def test_zone_axis_reduces_a_tiled_crystal_but_keeps_a_defect_cell():
    si = bulk("Si", cubic=True, a=SI_A)
    assert len(zone_axis(tile(si, (2, 2, 1)), (1, 1, 0))) == 4  # pure translations found
    defective = vacancy(tile(si, (2, 1, 1)), 0)
    result = zone_axis(defective, (0, 0, 1))
    assert len(result) == 15  # the vacancy's period is the whole 2a × a × a cell
    assert density(result) == pytest.approx(density(defective), rel=1e-12)


def test_documentation_examples_run():
    """Every python block of docs/structures-and-phonons.md runs as written."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "structures-and-phonons.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        exec(compile(block, "structures-and-phonons.md", "exec"), {})
