import numpy as np
import pytest

from temsim.errors import StudyError
from temsim.study import Mode, example_study, load_study


def write(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


GOOD = """
name = "dopant"
[specimen]
example = "graphene"
supercell = [4, 2, 1]
[feature]
kind = "substitution"
element = "Si"
host_element = "C"
[microscope]
energies = [80e3]
semiangle_cutoff = 25.0
aberrations = {C30 = 1000.0}
[[modes]]
name = "HAADF"
inner = 50.0
outer = 150.0
[decision]
false_alarm = 0.01
power = 0.9
"""


def test_good_study_parses(tmp_path):
    study = load_study(write(tmp_path, GOOD))
    assert study.energies == (80e3,) and study.modes[0].angles(25.0) == (50.0, 150.0)
    assert study.aberrations.C30 == 1000.0 and study.target.false_alarm == 0.01
    h0, h1, position = study.hypotheses()
    assert sorted(set(h1.get_chemical_symbols())) == ["C", "Si"] and len(h0) == len(h1) == 32


@pytest.mark.parametrize(
    "bad, message",
    [
        (GOOD.replace("semiangle_cutoff", "semiangle"), "microscope.semiangle"),
        (GOOD.replace('name = "HAADF"', 'name = "HAADFX"'), "valid modes"),
        (GOOD.replace('kind = "substitution"', 'kind = "swap"'), "feature.kind"),
        (GOOD.replace("[decision]", "[dose]\nrange = [10.0, 1.0]\n[decision]"), "dose.range"),
        (GOOD.replace('host_element = "C"', 'host_element = "Au"'), "host_element"),
        (GOOD.replace("energies = [80e3]", "energies = [80]"), "energies"),
    ],
)
def test_bad_studies_name_the_offending_key(tmp_path, bad, message):
    with pytest.raises(StudyError, match=message):
        study = load_study(write(tmp_path, bad))
        study.hypotheses()


def test_missing_site_and_unknown_example():
    from dataclasses import replace

    from temsim.study import Feature

    study = example_study("graphene-si")
    with pytest.raises(StudyError, match="does not exist"):
        replace(study, feature=Feature("vacancy", site=10_000)).hypotheses()
    with pytest.raises(StudyError, match="built-in examples"):
        example_study("nope")
    with pytest.raises(StudyError, match="valid modes"):
        Mode("XYZ")


@pytest.mark.parametrize("name", ["graphene-si", "srtio3-oxygen-vacancy", "cof-missing-linker"])
def test_built_in_examples_fit_their_grids_at_every_energy(name):
    """Every example's detectors and apertures are representable at all its energies."""
    from temsim.planning import check_study

    study = example_study(name)
    h0, h1, position = study.hypotheses()
    check_study(study, h0)
    assert len(h1) != len(h0) or sorted(h1.get_chemical_symbols()) != sorted(h0.get_chemical_symbols())


def test_plan_refuses_an_unrepresentable_detector_before_simulating():
    from dataclasses import replace

    from temsim.errors import SamplingError
    from temsim.planning import plan

    study = replace(example_study("graphene-si"), modes=(Mode("HAADF", 60.0, 400.0),))
    with pytest.raises(SamplingError, match="use sampling"):
        plan(study, progress=False)


@pytest.mark.parametrize(
    "bad, message",
    [
        (GOOD.replace("energies = [80e3]", 'energies = "80kV"'), "microscope.energies"),
        (GOOD.replace("energies = [80e3]", "energies = 80e3"), "microscope.energies"),
        (GOOD.replace("energies = [80e3]", 'energies = ["80kV"]'), r"microscope.energies\[0\]"),
        (GOOD.replace("supercell = [4, 2, 1]", 'supercell = "4x3"'), "specimen.supercell"),
        (GOOD.replace("supercell = [4, 2, 1]", "supercell = [4.5, 2, 1]"), r"specimen.supercell\[0\]"),
        (GOOD.replace("supercell = [4, 2, 1]", "supercell = [4, 2]"), "specimen.supercell"),
        (GOOD + '[simulation]\nsampling = "fine"\n', "simulation.sampling"),
        (GOOD + "[simulation]\nseed = 1.5\n", "simulation.seed"),
        (GOOD + "[phonons]\nnum_configs = 2.5\n", "phonons.num_configs"),
        (GOOD.replace("outer = 150.0", 'outer = "wide"'), r"modes\[0\].outer"),
        (GOOD.replace("semiangle_cutoff = 25.0", "semiangle_cutoff = true"), "microscope.semiangle_cutoff"),
        (GOOD.replace("power = 0.9", 'power = "high"'), "decision.power"),
        (GOOD.replace("power = 0.9", "power = 1.5"), "decision"),
        (
            GOOD.replace('example = "graphene"', 'example = "graphene"\narguments = {vacuum = "big"}'),
            "specimen.arguments.vacuum",
        ),
        (GOOD.replace('example = "graphene"', 'example = "graphene"\narguments = {size = 3.0}'), "specimen.arguments"),
    ],
)
def test_wrong_value_types_name_the_key(tmp_path, bad, message):
    with pytest.raises(StudyError, match=message):
        load_study(write(tmp_path, bad))


def test_mode_camera_key_and_deprecated_detector_spelling(tmp_path):
    study = load_study(write(tmp_path, GOOD.replace("outer = 150.0", 'outer = 150.0\ncamera = "counting-ded"')))
    assert study.modes[0].camera == study.modes[0].camera_name == "counting-ded"
    old = GOOD.replace("outer = 150.0", 'outer = 150.0\ndetector = "counting-ded"')
    with pytest.warns(DeprecationWarning, match="camera"):
        study = load_study(write(tmp_path, old))
    assert study.modes[0].camera == "counting-ded"
    with pytest.warns(DeprecationWarning, match="camera"):
        assert Mode("HAADF", detector="counting-ded").camera == "counting-ded"
    assert Mode("HRTEM").camera_name == "counting-ded" and Mode("iDPC").camera_name == "annular-pmt"


def test_specimen_builder_arguments(tmp_path):
    study = load_study(
        write(
            tmp_path, GOOD.replace('example = "graphene"', 'example = "graphene"\narguments = {a = 2.5, vacuum = 3.0}')
        )
    )
    assert study.atoms.cell[0, 0] == pytest.approx(4 * 2.5) and study.atoms.cell[2, 2] == pytest.approx(6.0)


def test_mode_kinds_follow_the_registry():
    from temsim.modes import MODES
    from temsim.study import MODE_KINDS

    assert dict(MODE_KINDS) == {name: spec.kind for name, spec in MODES.items()}
    assert MODE_KINDS["iDPC"] == "segmented" and MODE_KINDS["HRTEM"] == "image"
    assert Mode("HAADF").angles(30.0) == (90.0, 200.0) and Mode("ABF").angles(30.0) == (15.0, 30.0)
    assert Mode("DPC").angles(30.0) == (6.0, 30.0) and Mode("HRTEM", defocus=-60).label == "HRTEM Δf=-60Å"


# ----------------------------------------------------------------------------- built-in TOML examples
def _oxygen_column_site(atoms):
    """SrTiO3: the O atom of a pure-O column nearest the centre (middle layer breaks ties)."""
    cell = np.diag(atoms.cell)
    symbols = np.array(atoms.get_chemical_symbols())
    pos = atoms.positions
    o_only = [
        i
        for i in np.flatnonzero(symbols == "O")
        if set(symbols[np.linalg.norm(pos[:, :2] - pos[i, :2], axis=1) < 0.1]) == {"O"}
    ]
    o_only = np.array(o_only)
    d = np.linalg.norm(pos[o_only, :2] - cell[:2] / 2, axis=1) + 0.01 * np.abs(pos[o_only, 2] - cell[2] / 2)
    return int(o_only[np.argmin(d)])


def _central_linker_site(atoms):
    """COF: the linker N (three C neighbours within 1.6 Å) nearest the centre."""
    symbols = np.array(atoms.get_chemical_symbols())
    carbons = np.flatnonzero(symbols == "C")
    linker = [i for i in np.flatnonzero(symbols == "N") if np.sum(atoms.get_distances(i, carbons, mic=True) < 1.6) == 3]
    centre = np.diag(atoms.cell)[:2] / 2
    return int(min(linker, key=lambda i: np.linalg.norm(atoms.positions[i, :2] - centre)))


def _previous_examples():
    """The built-in studies as they were built in Python before they became TOML files."""
    from temsim import structure as st
    from temsim.detection import DecisionTarget
    from temsim.optics import Aberrations
    from temsim.study import Feature, Study

    graphene = st.tile(st.graphene(vacuum=2.0), (5, 3, 1))
    srtio3 = st.tile(st.srtio3(), (4, 4, 5))
    cof = st.tile(st.triazine_carbon_nitride(), (3, 2, 1))
    hrtem = Mode("HRTEM", defocus=-60.0)
    return {
        "graphene-si": Study(
            name="graphene-si",
            atoms=graphene,
            description="A single Si substitution in graphene, 60 and 80 kV, Cs-corrected, ideal annular detectors "
            "and a counting camera. Graphene is knock-on limited (no radiolysis); the budget is the "
            "knock-on dose.",
            feature=Feature("substitution", element="Si", site="center", host_element="C"),
            energies=(60e3, 80e3),
            modes=(Mode("HAADF", 60.0, 200.0), Mode("ABF"), Mode("iDPC"), hrtem),
            semiangle_cutoff=30.0,
            aberrations=Aberrations(),
            sampling=0.06,
            scan_step=0.3,
            window=4.8,
            slice_thickness=4.0,
            phonons={"num_configs": 2, "sigma": {"C": 0.07, "Si": 0.08}, "seed": 1},
            knock_on={"element": "C", "material": "graphene", "temperature": 300.0},
            dose_range=(1.0, 1e6),
            target=DecisionTarget(),
        ),
        "srtio3-oxygen-vacancy": Study(
            name="srtio3-oxygen-vacancy",
            atoms=srtio3,
            description="One oxygen vacancy in a pure-O column of SrTiO3 [001], 5 unit cells (2 nm) thick, 200 and "
            "300 kV.",
            feature=Feature("vacancy", site=_oxygen_column_site(srtio3), host_element="O"),
            energies=(200e3, 300e3),
            modes=(Mode("HAADF", 70.0, 160.0), Mode("ABF"), Mode("iDPC")),
            semiangle_cutoff=20.0,
            sampling=0.04,
            scan_step=0.3,
            window=3.0,
            slice_thickness=3.905 / 2,
            knock_on={"element": "O", "material": "srtio3"},
            dose_range=(1.0, 1e8),
        ),
        "cof-missing-linker": Study(
            name="cof-missing-linker",
            atoms=cof,
            description="A missing bridging-N linker in a covalent triazine framework layer (planar triazine-based "
            "C3N4), 80 and 300 kV. Critical dose 20 e/Å²: a representative value for organic frameworks, "
            "which lose crystallinity at tens of e/Å² at room temperature (replace it by a measured Dc).",
            feature=Feature("vacancy", site=_central_linker_site(cof), host_element="N"),
            energies=(80e3, 300e3),
            modes=(Mode("HAADF", 60.0, 160.0), Mode("ABF"), Mode("iDPC"), hrtem),
            semiangle_cutoff=25.0,
            sampling=0.04,
            scan_step=0.3,
            window=4.8,
            slice_thickness=4.0,
            critical_dose=20.0,
            knock_on={"element": "C", "material": "organic-framework"},
            dose_range=(0.1, 1e5),
        ),
    }


@pytest.mark.parametrize("name", ["graphene-si", "srtio3-oxygen-vacancy", "cof-missing-linker"])
def test_toml_examples_equal_the_previous_python_studies(name):
    """Same atoms (exactly), same feature site, same parameters as the Python builders they replace."""
    from dataclasses import fields

    from temsim.study import EXAMPLES

    assert name in EXAMPLES
    new, old = example_study(name), _previous_examples()[name]
    for f in fields(old):
        assert getattr(new, f.name) == getattr(old, f.name), f.name
    h0_new, h1_new, position_new = new.hypotheses()
    h0_old, h1_old, position_old = old.hypotheses()
    assert h1_new == h1_old and position_new == position_old


def test_example_sites_are_the_ones_the_comments_describe():
    srtio3 = example_study("srtio3-oxygen-vacancy")
    assert srtio3.feature.site == _oxygen_column_site(srtio3.atoms) == 163
    cof = example_study("cof-missing-linker")
    assert cof.feature.site == _central_linker_site(cof.atoms) == 48


def test_crystal_builders_moved_but_still_importable():
    from temsim import crystals, structure

    assert structure.graphene is crystals.graphene and structure.srtio3 is crystals.srtio3
    assert structure.triazine_carbon_nitride is crystals.triazine_carbon_nitride
    layer = crystals.triazine_carbon_nitride()
    assert sorted(layer.get_chemical_symbols()).count("N") == 8 and len(layer) == 14


def test_triazine_layer_is_the_orthogonalized_hexagonal_cell():
    """The builder's own rectangular cell equals what orthogonalize_cell makes of the hexagonal layer."""
    import math

    from ase import Atoms

    from temsim import crystals, structure

    a, bond, vacuum = 4.79, 1.33, 2.0
    angles = ((30, "C"), (90, "N"), (150, "C"), (210, "N"), (270, "C"), (330, "N"))
    positions = [[bond * math.cos(math.radians(t)), bond * math.sin(math.radians(t)), vacuum] for t, _ in angles]
    positions.append([a / 2, a * math.sqrt(3) / 6, vacuum])
    cell = [[a, 0, 0], [a / 2, a * math.sqrt(3) / 2, 0], [0, 0, 2 * vacuum]]
    layer = Atoms([s for _, s in angles] + ["N"], positions=positions, cell=cell, pbc=[True, True, False])
    layer.wrap()
    assert crystals.triazine_carbon_nitride() == structure.orthogonalize_cell(layer)
