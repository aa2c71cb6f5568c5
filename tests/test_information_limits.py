"""Joint acquisitions, the pixelated bound, optimal detectors and the quantum limit."""

from __future__ import annotations

import numpy as np
import pytest

from temsim import acquisitions, detection, optimal_detector, quantum_limit, structure
from temsim.acquisitions import Acquisition, AcquisitionError
from temsim.errors import StudyError
from temsim.optimal_detector import OptimalDetectorError
from temsim.study import Feature, Mode, Study

rng = np.random.default_rng(3)


def _random_states(n=64, shape=(3,)):
    psi = rng.normal(size=shape + (n,)) + 1j * rng.normal(size=shape + (n,))
    return psi / np.linalg.norm(psi, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- quantum limit
def test_state_distance_is_one_minus_fidelity_for_normalized_states():
    psi0, psi1 = _random_states(), _random_states()
    h = quantum_limit.state_distance(psi0, psi1, axes=(-1,))
    np.testing.assert_allclose(h, 1 - quantum_limit.fidelity(psi0, psi1, axes=(-1,)), rtol=1e-12)
    # invariant under a global phase of either state, zero for equal states
    np.testing.assert_allclose(quantum_limit.state_distance(psi0, 1j * psi1, axes=(-1,)), h, rtol=1e-12)
    assert np.all(quantum_limit.state_distance(psi0, psi0, axes=(-1,)) < 1e-15)


def test_state_distance_keeps_digits_for_nearly_equal_waves():
    psi0 = _random_states(shape=())
    eps = 1e-7
    psi1 = psi0 * np.exp(1j * eps * rng.normal(size=psi0.shape))
    h = quantum_limit.state_distance(psi0, psi1, axes=(-1,))
    # weak phase: 1 − |⟨ψ0|ψ1⟩| ≈ ε²/2 Var_ψ(V)
    v = np.angle(psi1 / psi0) / eps
    p = np.abs(psi0) ** 2
    expected = 0.5 * eps**2 * (np.sum(p * v**2) - np.sum(p * v) ** 2)
    assert h == pytest.approx(expected, rel=1e-5)


def test_no_measurement_beats_the_quantum_bound():
    """For random states and random POVMs (unitary then pixel detection), j₁ ≤ j_Q and b₁ ≤ b_Q."""
    for _ in range(20):
        n = 16
        psi0, psi1 = _random_states(n, ()), _random_states(n, ())
        psi1 = psi0 + 0.2 * (psi1 - psi0)
        psi1 /= np.linalg.norm(psi1)
        q, _ = np.linalg.qr(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
        p0, p1 = np.abs(q @ psi0) ** 2, np.abs(q @ psi1) ** 2
        area = 0.09
        stat = detection.detection_statistics(area * p0, area * p1)
        bound = quantum_limit.quantum_statistics([quantum_limit.state_distance(psi0, psi1, axes=(-1,))], area)
        assert stat.j_per_dose <= bound.j_per_dose
        assert stat.bhattacharyya_per_dose <= bound.bhattacharyya_per_dose * (1 + 1e-12)


def test_the_optimal_measurement_reaches_the_bound_for_a_weak_feature():
    """A basis containing ψ0 and the part of ψ1 orthogonal to it: j₁ / j_Q → 1 as ψ1 → ψ0."""
    psi0 = np.zeros(4, complex)
    psi0[0] = 1
    psi1 = np.array([np.sqrt(1 - 1e-6), 1e-3, 0, 0], complex)
    # measure in the basis (ψ0 + ψ⊥)/√2, (ψ0 − ψ⊥)/√2: the difference appears as intensity
    basis = np.array([[1, 1, 0, 0], [1, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], complex) / np.array(
        [[np.sqrt(2)], [np.sqrt(2)], [1], [1]]
    )
    p0, p1 = np.abs(basis @ psi0) ** 2, np.abs(basis @ psi1) ** 2
    j = detection.detection_statistics(p0, p1).j_per_dose
    jq = quantum_limit.quantum_statistics([quantum_limit.state_distance(psi0, psi1, axes=(-1,))], 1.0).j_per_dose
    assert j / jq == pytest.approx(1.0, rel=2e-3)


def test_helstrom_error_limits():
    assert quantum_limit.helstrom_error(1.0, 10) == 0.5  # identical states cannot be told apart
    assert quantum_limit.helstrom_error(0.0, 1) == 0.0  # orthogonal states: one electron suffices
    c, n = 0.9, np.arange(1, 50)
    pe = quantum_limit.helstrom_error(c, n)
    assert np.all(pe <= 0.5 * c ** (2 * n)) and np.all(pe >= 0.25 * c ** (2 * n))
    with pytest.raises(Exception, match=r"\[0, 1\]"):
        quantum_limit.helstrom_error(1.5, 1)


# ----------------------------------------------------------------------------- acquisitions
def test_refinement_of_overlapping_rings_counts_each_pixel_once():
    alpha = np.linspace(0, 100, 201)
    bf, abf, adf = alpha < 30, (alpha >= 15) & (alpha < 30), (alpha >= 30) & (alpha < 90)
    cells, membership = acquisitions.refinement(np.stack([bf, abf, adf]))
    assert cells.shape[0] == 3  # [0,15), [15,30), [30,90)
    assert np.all(cells.sum(axis=0) <= 1)  # disjoint
    np.testing.assert_array_equal(cells.any(axis=0), bf | abf | adf)
    # every detector is the union of its cells
    for channel, mask in enumerate((bf, abf, adf)):
        np.testing.assert_array_equal(cells[membership[channel]].any(axis=0), mask)


def test_joint_information_is_between_the_best_single_detector_and_all_pixels():
    pixels = 40
    r0 = rng.uniform(1, 2, size=(30, pixels))
    r1 = r0 * (1 + 0.05 * rng.normal(size=r0.shape))
    masks = np.zeros((3, pixels), bool)
    masks[0, :20], masks[1, 10:30], masks[2, 25:] = True, True, True
    cells, _ = acquisitions.refinement(masks)
    joint = detection.detection_statistics(r0 @ cells.T, r1 @ cells.T).j_per_dose
    singles = [detection.detection_statistics(r0 @ m, r1 @ m).j_per_dose for m in masks]
    every = detection.detection_statistics(r0, r1).j_per_dose
    assert max(singles) <= joint <= every


def test_acquisition_errors():
    kinds = {"HAADF": "annular", "ABF": "annular", "HRTEM Δf=-60Å": "image", "4D-STEM": "pixelated"}
    with pytest.raises(AcquisitionError, match="different electrons"):
        acquisitions.check_acquisition(Acquisition(("HAADF", "HRTEM Δf=-60Å")), kinds)
    with pytest.raises(AcquisitionError, match="pixelated"):
        acquisitions.check_acquisition(Acquisition(("HAADF", "4D-STEM")), kinds)
    with pytest.raises(AcquisitionError, match="not modes of the study"):
        acquisitions.check_acquisition(Acquisition(("HAADF", "MAADF")), kinds)
    with pytest.raises(AcquisitionError, match="at least two"):
        Acquisition(("HAADF",))
    membership = np.array([[True, True], [False, True]])
    with pytest.raises(AcquisitionError, match="same camera"):
        acquisitions.cell_efficiencies(membership, [0.7, 0.9], ["BF", "ABF"])
    assert acquisitions.default_acquisitions(kinds)[0].modes == ("HAADF", "ABF")


# ----------------------------------------------------------------------------- optimal detector
def _pattern(n=33):
    k = np.arange(n) - n // 2
    kx, ky = np.meshgrid(k, k, indexing="ij")
    alpha, phi = 4.0 * np.hypot(kx, ky).ravel(), np.arctan2(ky, kx).ravel()
    r0 = np.exp(-((alpha / 40) ** 2))[None, :] * np.ones((9, 1)) + 1e-3
    bump = np.exp(-(((alpha - 50) / 8) ** 2)) * (1 + 0.5 * np.cos(phi))
    r1 = r0 * (1 + 0.2 * bump[None, :] * rng.uniform(0.5, 1.5, size=(9, 1)))
    return alpha, phi, r0, r1


def test_optimal_annulus_agrees_with_a_brute_force_scan():
    alpha, phi, r0, r1 = _pattern()
    edges = np.arange(0, 80.1, 8.0)
    choice = optimal_detector.optimal_annulus(r0, r1, alpha, edges)
    best = 0.0
    for i, inner in enumerate(edges):
        for outer in edges[i + 1 :]:
            mask = (alpha >= inner) & (alpha < outer)  # an independent mask per candidate
            best = max(best, detection.detection_statistics(r0 @ mask, r1 @ mask).j_per_dose)
            assert detection.detection_statistics(r0 @ mask, r1 @ mask).j_per_dose <= choice.j_per_dose * (1 + 1e-12)
    assert choice.j_per_dose == pytest.approx(best, rel=1e-12)
    assert 30 <= choice.inner < 50 < choice.outer <= 72  # around the bump at 50 mrad


def test_optimal_segmented_search_matches_its_masks():
    alpha, phi, r0, r1 = _pattern()
    edges = np.arange(0, 80.1, 16.0)
    choice = optimal_detector.optimal_segmented(r0, r1, alpha, phi, edges, n_azimuth=12, segment_counts=(2, 4))
    masks = optimal_detector.segment_masks(alpha, phi, choice, 12)
    assert masks.shape[0] == choice.nsegments and not np.any(masks.sum(axis=0) > 1)
    j = detection.detection_statistics(r0 @ masks.T, r1 @ masks.T).j_per_dose
    assert j == pytest.approx(choice.j_per_dose, rel=1e-12)
    ring = (alpha >= choice.inner) & (alpha < choice.outer)
    # segments of the ring carry at least the ring's information (data processing)
    assert j >= detection.detection_statistics(r0 @ ring, r1 @ ring).j_per_dose


def test_optimal_segmented_agrees_with_a_brute_force_scan():
    alpha, phi, r0, r1 = _pattern()
    edges, naz = np.arange(0, 80.1, 16.0), 12
    choice = optimal_detector.optimal_segmented(r0, r1, alpha, phi, edges, n_azimuth=naz, segment_counts=(2, 3, 4))
    azimuth = np.minimum((np.mod(phi, 2 * np.pi) // (2 * np.pi / naz)).astype(int), naz - 1)
    best = 0.0
    for i, inner in enumerate(edges):
        for outer in edges[i + 1 :]:
            ring = (alpha >= inner) & (alpha < outer)
            for n in (2, 3, 4):
                for shift in range(naz // n):
                    segment = np.mod(azimuth - shift, naz) // (naz // n)
                    masks = np.stack([ring & (segment == k) for k in range(n)])
                    best = max(best, detection.detection_statistics(r0 @ masks.T, r1 @ masks.T).j_per_dose)
    assert choice.j_per_dose == pytest.approx(best, rel=1e-12)


def test_searches_without_candidates_are_refused():
    alpha, phi, r0, r1 = _pattern()
    with pytest.raises(OptimalDetectorError, match="two radial edges"):
        optimal_detector.optimal_annulus(r0, r1, alpha, [30.0])
    with pytest.raises(OptimalDetectorError, match="divides"):
        optimal_detector.optimal_segmented(r0, r1, alpha, phi, [0, 30], n_azimuth=10, segment_counts=(3, 4))


# ----------------------------------------------------------------------------- in a plan
def _tiny_study(modes, acquisitions=()):
    atoms = structure.tile(structure.graphene(), (3, 2, 1))
    return Study(
        name="tiny",
        atoms=atoms,
        feature=Feature("substitution", element="Si", host_element="C"),
        energies=(60e3,),
        modes=modes,
        semiangle_cutoff=30.0,
        sampling=0.1,
        scan_step=0.5,
        window=2.0,
        slice_thickness=4.0,
        acquisitions=acquisitions,
    )


@pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")
def test_plan_rows_obey_the_data_processing_inequality():
    from temsim.planning import FOUR_D_ROW, OPTIMAL_ANNULUS_ROW, PLANE_WAVE_QUANTUM_ROW, QUANTUM_ROW, plan

    modes = (Mode("HAADF", 60, 120), Mode("ADF"), Mode("ABF"), Mode("BF"), Mode("iDPC"))
    labels = tuple(m.label for m in modes)
    study = _tiny_study(modes + (Mode("HRTEM", defocus=-60),), acquisitions=(labels, ("HAADF", "iDPC")))
    result = plan(study, monte_carlo_trials=50, progress=False)
    dose = {r["mode"]: r["required_dose"] for r in result.table}
    joint = dose["joint: HAADF+ADF+ABF+BF+iDPC"]
    singles = [dose[m.label] for m in modes]
    assert dose[QUANTUM_ROW] <= dose[FOUR_D_ROW] <= joint <= min(singles)
    assert joint <= dose["joint: HAADF+iDPC"] <= min(dose["HAADF"], dose["iDPC"])
    assert dose[OPTIMAL_ANNULUS_ROW] <= min(dose[m] for m in ("HAADF", "ADF", "ABF", "BF"))
    # the added rows leave the modes' own rows unchanged
    plain = plan(_tiny_study(modes), monte_carlo_trials=50, progress=False, limits_of_any_detector=False)
    for m in modes:
        assert plain.row(m.label, 60e3)["required_dose"] == pytest.approx(dose[m.label], rel=1e-4)
    multiples = {r["mode"]: r["quantum_multiple"] for r in result.table}
    assert multiples[QUANTUM_ROW] == 1.0 and all(multiples[m.label] >= 1 for m in modes)
    # HRTEM against the quantum limit of its own (plane-wave) illumination
    assert dose[PLANE_WAVE_QUANTUM_ROW] <= dose["HRTEM Δf=-60Å"] and multiples["HRTEM Δf=-60Å"] >= 1


def test_study_acquisitions_are_checked_when_the_study_is_made():
    from temsim.study import study_from_dict

    doc = {
        "specimen": {"example": "graphene", "supercell": [3, 2, 1]},
        "feature": {"kind": "substitution", "element": "Si", "host_element": "C"},
        "modes": ["HAADF", "iDPC", {"name": "HRTEM", "defocus": -60}],
        "acquisitions": [{"modes": ["HAADF", "iDPC"], "name": "ring and segments"}],
    }
    study = study_from_dict(doc)
    assert study.acquisitions == (Acquisition(("HAADF", "iDPC"), "ring and segments"),)
    doc["acquisitions"] = [{"modes": ["HAADF", "HRTEM Δf=-60Å"]}]
    with pytest.raises(AcquisitionError, match="different electrons"):
        study_from_dict(doc)
    doc["acquisitions"] = [{"modes": ["HAADF"], "rings": 2}]
    with pytest.raises(StudyError, match=r"acquisitions\[0\] needs modes"):
        study_from_dict(doc)
    doc["acquisitions"] = [{"modes": ["HAADF"]}]
    with pytest.raises(AcquisitionError, match="at least two"):
        study_from_dict(doc)


@pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")
def test_command_line_modes_only(tmp_path):
    from temsim.cli import main

    study = tmp_path / "tiny.toml"
    study.write_text(
        'name = "tiny"\n[specimen]\nexample = "graphene"\nsupercell = [3, 2, 1]\n'
        '[feature]\nkind = "substitution"\nelement = "Si"\nhost_element = "C"\n'
        "[microscope]\nenergies = [60e3]\nsemiangle_cutoff = 30.0\n"
        '[[modes]]\nname = "HAADF"\ninner = 60.0\nouter = 120.0\n'
        "[simulation]\nsampling = 0.1\nscan_step = 0.5\nwindow = 2.0\nslice_thickness = 4.0\n",
        encoding="utf-8",
    )
    assert main(["plan", str(study), "-o", str(tmp_path / "out"), "--quiet", "--modes-only"]) == 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "| HAADF |" in report and "| 4D bound |" not in report and "| quantum limit |" not in report
