"""The built-in study ``mof-missing-linker``: a missing linker in MFM-300(In) at its measured critical dose.

The structure is checked against the published crystal structure (Savage et al., Adv. Mater.
28, 8705 (2016), doi:10.1002/adma.201602338: cell, formula, bond lengths of its CIF bond
table), the removed atoms are recomputed from the covalent bonds, and a reduced plan is checked
for verdicts that agree with its own doses, budget and the fading model.
"""

from dataclasses import replace

import numpy as np
import pytest
from ase.neighborlist import neighbor_list
from scipy import optimize, stats
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from temsim import structure as st
from temsim.errors import StudyError
from temsim.study import Feature, Mode, example_study, study_from_dict

NAME = "mof-missing-linker"
#: MFM-300(In), desolvated, I4122 (Savage et al. 2016, CIF cell): a, c in Å.
A, C = 15.4886, 12.3439
#: Bond lengths (Å) of the CIF's bond table (Savage et al. 2016).
PUBLISHED_BONDS = {
    ("In", "O"): (2.100, 2.132, 2.176),
    ("C", "O"): (1.246, 1.265),
    ("C", "C"): (1.395, 1.401, 1.494, 1.501),
    ("C", "H"): (0.93,),
    ("O", "H"): (0.79,),
}
#: Critical dose of MFM-300(In), e/Å² (Tien et al., J. Mater. Chem. A 12, 24165 (2024), abstract).
CRITICAL_DOSE = 147.0
LINKER = {"C": 16, "H": 6, "O": 8}  # biphenyl-3,3',5,5'-tetracarboxylate


@pytest.fixture(scope="module")
def study():
    return example_study(NAME)


def _bonds(atoms, pair, cutoff):
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    symbols = np.array(atoms.get_chemical_symbols())
    return d[(symbols[i] == pair[0]) & (symbols[j] == pair[1])]


def test_unit_cell_is_the_published_structure():
    """One cell: C64H32In8O40 (Z = 4), the CIF's lattice, its bond table within 0.01 Å, no overlaps."""
    from importlib import resources

    with resources.as_file(resources.files("temsim.examples") / "mfm-300-in.cif") as path:
        cell = st.as_atoms(path)
    assert cell.get_chemical_formula(mode="hill") == "C64H32In8O40"
    assert np.allclose(cell.cell.cellpar(), [A, A, C, 90, 90, 90])
    for pair, published in PUBLISHED_BONDS.items():
        d = _bonds(cell, pair, 2.3 if pair[0] == "In" else 1.6)
        assert d.size, pair
        # every bond of the structure is one of the published lengths, and every published length occurs
        nearest = np.min(np.abs(d[:, None] - np.array(published)[None, :]), axis=1)
        assert nearest.max() < 0.01, (pair, np.unique(d.round(3)))
        assert all(np.min(np.abs(d - p)) < 0.01 for p in published), (pair, np.unique(d.round(3)))
    # octahedral In: six O each, 2.10–2.18 Å
    i, j, d = neighbor_list("ijd", cell, 2.3)
    symbols = np.array(cell.get_chemical_symbols())
    indium = np.flatnonzero(symbols == "In")
    assert all(np.sum((i == k) & (symbols[j] == "O")) == 6 for k in indium)
    assert neighbor_list("d", cell, 0.75).size == 0  # no overlapping atoms (shortest bond O–H 0.79 Å)


def test_specimen_is_two_cells_down_the_channels(study):
    atoms = study.atoms
    assert st.is_orthogonal_cell(atoms) and len(atoms) == 2 * 144
    assert np.allclose(np.diag(atoms.cell), [A, A, 2 * C])
    assert study.critical_dose == "mfm-300-in" and study.energies == (300e3,)
    from temsim.planning import check_study

    check_study(study, study.hypotheses()[0])  # every detector and aperture representable on the grid


def _linkers(atoms):
    """Index sets of the C/O/H molecules bonded covalently (C–C, C–O, C–H), not across the slab's faces."""
    slab = atoms.copy()
    slab.pbc = [True, True, False]
    i, j = neighbor_list("ij", slab, {("C", "C"): 1.7, ("C", "O"): 1.5, ("C", "H"): 1.2})
    n = len(atoms)
    _, label = connected_components(coo_matrix((np.ones(i.size), (i, j)), shape=(n, n)))
    groups = [np.flatnonzero(label == k) for k in np.unique(label)]
    return [g for g in groups if len(g) == sum(LINKER.values())]


def test_removed_atoms_are_one_whole_linker_at_the_centre(study):
    """The listed sites are recomputed: the linker on the central column, in the second cell."""
    h0, h1, position = study.hypotheses()
    centre = np.diag(h0.cell)[:2] / 2
    central = [g for g in _linkers(h0) if np.allclose(h0.positions[g, :2].mean(axis=0), centre, atol=0.05)]
    assert len(central) == 2  # one per unit cell along the beam
    second = [g for g in central if C < h0.positions[g, 2].mean() < 2 * C]
    assert len(second) == 1 and sorted(study.feature.sites) == sorted(second[0].tolist())
    removed = h0[list(study.feature.sites)]
    assert {s: removed.get_chemical_symbols().count(s) for s in LINKER} == LINKER
    # H1 is H0 without exactly these atoms
    keep = np.setdiff1d(np.arange(len(h0)), study.feature.sites)
    assert len(h1) == len(h0) - 30 and np.allclose(h1.positions, h0.positions[keep])
    assert h1.get_chemical_symbols() == [h0.get_chemical_symbols()[k] for k in keep]
    assert np.allclose(position, centre, atol=0.05)
    # the linker's eight carboxylate O leave eight In–O bonds open; nothing else changes
    assert _bonds(h0, ("In", "O"), 2.3).size - _bonds(h1, ("In", "O"), 2.3).size == 8
    site = study.feature_site()
    assert site["kind"] == "remove" and site["element"] == "C16H6O8" and site["indices"] == list(study.feature.sites)
    assert Feature.describe_site(site) == "C16H6O8 removed, centred at x = 7.74 Å, y = 7.74 Å"


def _fading_j(j1, dose, dc):
    return j1 * dc**2 * (1 - np.exp(-dose / dc)) ** 2 / dose


def test_small_plan_verdicts_follow_dose_and_budget(study):
    """A reduced plan (coarse grid, two modes): each verdict agrees with its doses, the budget
    (the measured critical dose) and the fading model, recomputed here."""
    from temsim.planning import plan

    small = replace(study, modes=(Mode("iDPC"), Mode("HRTEM", defocus=-100.0)), sampling=0.1, scan_step=0.8, window=3.2)
    result = plan(small, progress=False, monte_carlo_trials=200, limits_of_any_detector=False)
    required_j = small.target.required_j
    z = stats.norm.isf(small.target.effective_false_alarm)
    assert {row["mode"] for row in result.table} >= {"iDPC", "HRTEM Δf=-100Å"}
    for row in result.table:
        j1, dose, verdict = row["j_per_dose"], row["required_dose"], row["verdict"]
        assert row["budget"] == pytest.approx(CRITICAL_DOSE)  # C knock-on at 300 kV is far above it
        assert row["undamaged_dose"] == pytest.approx(required_j / j1, rel=1e-9)
        peak = _fading_j(j1, 1.2564 * CRITICAL_DOSE, CRITICAL_DOSE)
        if peak < required_j:
            assert not np.isfinite(dose) and verdict.startswith("not detectable before damage")
            best = stats.norm.cdf(np.sqrt(_fading_j(j1, CRITICAL_DOSE, CRITICAL_DOSE)) - z)
            assert f"best power {best:.2f} at 147 e/Å²" in verdict
            continue
        expected = optimize.brentq(
            lambda d, j1=j1: _fading_j(j1, d, CRITICAL_DOSE) - required_j, 1e-9, 1.2564 * CRITICAL_DOSE
        )
        assert dose == pytest.approx(expected, rel=1e-6)
        words = "detectable within budget" if dose <= CRITICAL_DOSE else "exceeds budget"
        assert verdict.startswith(words), (row["mode"], dose, verdict)


@pytest.mark.parametrize(
    "feature, message",
    [
        ({"kind": "remove"}, "feature.sites"),
        ({"kind": "remove", "sites": []}, "feature.sites"),
        ({"kind": "remove", "sites": 5}, "feature.sites must be a list"),
        ({"kind": "remove", "sites": [1, 1]}, "more than once"),
        ({"kind": "remove", "sites": [1.5]}, r"feature.sites\[0\]"),
        ({"kind": "remove", "sites": [10_000]}, "does not exist"),
        ({"kind": "remove", "sites": [1], "element": "C"}, "feature.element does not apply"),
        ({"kind": "remove", "sites": [1], "site": 3}, "feature.site does not apply"),
        ({"kind": "vacancy", "sites": [1, 2]}, "feature.sites does not apply"),
    ],
)
def test_bad_removals_are_refused(feature, message):
    document = {
        "specimen": {"example": "graphene", "supercell": [2, 2, 1]},
        "feature": feature,
        "modes": ["HAADF"],
    }
    with pytest.raises(StudyError, match=message):
        study_from_dict(document)
