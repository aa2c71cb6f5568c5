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
    study = load_study(write(tmp_path, GOOD.replace("outer = 150.0", 'outer = 150.0\ncamera = "ideal"')))
    assert study.modes[0].camera == study.modes[0].camera_name == "ideal"
    old = GOOD.replace("outer = 150.0", 'outer = 150.0\ndetector = "ideal"')
    with pytest.warns(DeprecationWarning, match="camera"):
        study = load_study(write(tmp_path, old))
    assert study.modes[0].camera == "ideal"
    with pytest.warns(DeprecationWarning, match="camera"):
        assert Mode("HAADF", detector="ideal").camera == "ideal"
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


# ----------------------------------------------------------------------------- settings as study keys
NAMED = GOOD.replace(
    '[[modes]]\nname = "HAADF"\ninner = 50.0\nouter = 150.0\n',
    '[[modes]]\nname = "MAADF"\nkind = "annular"\ninner = 40.0\nouter = 100.0\n'
    '[[modes]]\nname = "LAADF"\nkind = "annular"\ninner = 25.0\nouter = 50.0\n'
    '[[modes]]\nname = "DPC8"\nkind = "segmented"\nsegments = 8\ninner = 5.0\nouter = 25.0\nrotation = 22.5\n'
    '[[modes]]\nname = "ADF"\n',
)


def test_named_modes_of_one_kind_and_segmented_layouts(tmp_path):
    study = load_study(write(tmp_path, NAMED))
    maadf, laadf, dpc8, adf = study.modes
    assert [m.label for m in study.modes] == ["MAADF", "LAADF", "DPC8", "ADF"]
    assert maadf.kind == laadf.kind == adf.kind == "annular" and dpc8.kind == "segmented"
    assert maadf.angles(25.0) == (40.0, 100.0) and laadf.angles(25.0) == (25.0, 50.0)
    assert adf.angles(25.0) == (25.0, 75.0)  # a registered mode keeps its default angles
    assert dpc8.nsegments == 8 and dpc8.rotation == 22.5 and dpc8.spec.display == "idpc"
    assert Mode("iDPC").nsegments == 4 and maadf.camera_name == "annular-pmt"
    # the detector the planner builds carries the layout (rotation in rad)
    detector = dpc8.spec.mode_kind.detector(dpc8, *dpc8.angles(25.0), 100.0)
    assert detector.nsegments == 8 and detector.rotation == pytest.approx(np.pi / 8)


@pytest.mark.parametrize(
    "bad, message",
    [
        (NAMED.replace('kind = "annular"\ninner = 40.0', 'kind = "ring"\ninner = 40.0'), "kind 'ring' is not one of"),
        (NAMED.replace('name = "MAADF"\nkind = "annular"\n', 'name = "MAADF"\n'), "unknown mode 'MAADF'.*kind"),
        (NAMED.replace("inner = 40.0\nouter = 100.0\n", ""), "give its inner and outer"),
        (NAMED.replace('name = "LAADF"', 'name = "MAADF"'), "modes repeat: 'MAADF'"),
        (NAMED.replace("segments = 8", "segments = 1"), r"modes\[2\].segments"),
        (NAMED.replace("segments = 8", "segments = 2.5"), r"modes\[2\].segments"),
        (NAMED.replace('name = "ADF"\n', 'name = "ADF"\nsegments = 4\n'), "segments does not apply to a annular"),
        (NAMED.replace('name = "ADF"\n', 'name = "ADF"\nrotation = 45\n'), "rotation does not apply"),
        (NAMED.replace('name = "ADF"\n', 'name = "HRTEM"\ninner = 4.0\n'), "inner does not apply to a image"),
        (NAMED.replace('name = "ADF"\n', 'name = "HAADF"\ndefocus = -50.0\n'), "defocus does not apply"),
        (NAMED.replace('name = "ADF"\n', 'name = "ADF"\nkind = "segmented"\n'), "registered annular mode"),
        (NAMED.replace("inner = 40.0\nouter = 100.0", "inner = 100.0\nouter = 40.0"), "below outer"),
        (
            NAMED.replace('kind = "annular"\ninner = 40.0', "kind = 3\ninner = 40.0"),
            r"modes\[0\].kind must be a string",
        ),
        (NAMED.replace("rotation = 22.5", 'rotation = "north"'), r"modes\[2\].rotation"),
    ],
)
def test_bad_mode_keys_are_refused(tmp_path, bad, message):
    with pytest.raises(StudyError, match=message):
        load_study(write(tmp_path, bad))


def test_grid_and_optics_keys(tmp_path):
    from temsim.planning import grid_description, simulation_grid

    study = load_study(
        write(
            tmp_path,
            GOOD + "[simulation]\ngpts = [96, 80]\n",
        )
    )
    assert study.gpts == (96, 80) and study.sampling is None and study.grid_keys() == {"gpts": (96, 80)}
    grid = simulation_grid(study)
    assert grid.gpts == (96, 80) and "gpts as given" in grid_description(study, grid)
    rounded = load_study(write(tmp_path, GOOD + "[simulation]\nsampling = 0.07\n"))
    grid = simulation_grid(rounded)
    assert all(d <= 0.07 for d in grid.sampling) and grid.gpts == tuple(
        int(round(e / d)) for e, d in zip(grid.extent, grid.sampling)
    )
    text = grid_description(rounded, grid)
    assert f"{grid.gpts[0]}×{grid.gpts[1]} points" in text and "rounded" in text and "%" in text
    optics = load_study(
        write(
            tmp_path,
            GOOD.replace(
                "aberrations = {C30 = 1000.0}",
                "aberrations = {C30 = 1000.0}\naperture_edge = 0.5\nsource_size = 0.6\n"
                "energy_spread = 0.7\nchromatic_aberration = 1.4e7",
            ),
        )
    )
    assert optics.aperture_edge == 0.5 and optics.source_size == 0.6
    assert optics.focal_spread_at(200e3) == pytest.approx(24.214, rel=1e-4)  # 0.7 eV, Cc 1.4 mm, 200 kV


def test_microscope_presets_and_explicit_keys_override_them(tmp_path):
    from temsim.microscopes import microscope_preset

    text = GOOD.replace("[microscope]\n", '[microscope]\npreset = "corrected-stem-cfeg"\n')
    study = load_study(write(tmp_path, text))
    preset = microscope_preset("corrected-stem-cfeg")
    assert study.microscope == "corrected-stem-cfeg" and study.energy_spread == preset["energy_spread"]
    assert study.source_size == preset["source_size"] and study.chromatic_aberration == preset["chromatic_aberration"]
    assert study.aberrations.C30 == 1000.0  # the study's own Cs overrides the preset's
    bare = load_study(write(tmp_path, text.replace("aberrations = {C30 = 1000.0}", "aberrations = {C10 = -20.0}")))
    assert bare.aberrations.C30 == preset["aberrations"]["C30"] and bare.aberrations.C10 == -20.0
    own = load_study(
        write(tmp_path, text.replace("semiangle_cutoff", "source_size = 0.0\nfocal_spread = 30.0\nsemiangle_cutoff"))
    )
    assert own.source_size == 0.0 and own.focal_spread_at(80e3) == 30.0 and own.energy_spread == 0.0
    assert 10 < study.focal_spread_at(80e3) < 60  # σ_f of a cold FEG with Cc 1.5 mm at 80 kV (Å)


@pytest.mark.parametrize(
    "bad, message",
    [
        (GOOD.replace("[microscope]\n", '[microscope]\npreset = "titan"\n'), "valid presets are"),
        (GOOD.replace("[microscope]\n", "[microscope]\npreset = 3\n"), "microscope.preset 3"),
        (
            GOOD.replace("[microscope]\n", '[microscope]\npreset = "uncorrected-tem-schottky-200kv"\n').replace(
                "energies = [80e3]", "energies = [300e3]"
            ),
            "describes 80–200 kV",
        ),
        (GOOD + "[simulation]\ngpts = [96, 80]\nsampling = 0.05\n", "sampling and simulation.gpts"),
        (GOOD + "[simulation]\ngpts = [96]\n", "simulation.gpts"),
        (GOOD + "[simulation]\ngpts = [96.5, 80]\n", r"simulation.gpts\[0\]"),
        (GOOD + "[simulation]\ngpts = [1, 80]\n", r"simulation.gpts\[0\]"),
        (GOOD.replace("[microscope]\n", "[microscope]\nsource_size = -0.5\n"), "microscope.source_size"),
        (GOOD.replace("[microscope]\n", '[microscope]\nsource_size = "small"\n'), "microscope.source_size"),
        (GOOD.replace("[microscope]\n", "[microscope]\naperture_edge = -1\n"), "microscope.aperture_edge"),
        (GOOD.replace("[microscope]\n", "[microscope]\nenergy_spread = -0.3\n"), "microscope.energy_spread"),
        (GOOD.replace("[microscope]\n", "[microscope]\nenergy_spread = 0.3\n"), "needs microscope.chromatic"),
        (
            GOOD.replace("[microscope]\n", "[microscope]\nenergy_spread = 0.3\nfocal_spread = 20\n"),
            "both set the focal spread",
        ),
        (GOOD.replace("[microscope]\n", "[microscope]\nbrightness = 1e8\n"), "unknown key 'microscope.brightness'"),
    ],
)
def test_bad_grid_and_optics_keys_are_refused(tmp_path, bad, message):
    with pytest.raises(StudyError, match=message):
        load_study(write(tmp_path, bad))


def test_python_studies_refuse_both_grid_keys():
    from dataclasses import replace

    study = example_study("graphene-si")
    with pytest.raises(StudyError, match="give one"):
        replace(study, gpts=(64, 64))
    assert replace(study, gpts=(64, 64), sampling=None).gpts == (64, 64)
    with pytest.raises(StudyError, match="microscope.source_size"):
        replace(study, source_size=-1.0)
    with pytest.raises(StudyError, match="valid presets"):
        replace(study, microscope="titan")


# ----------------------------------------------------------------------------- the keys reach the plan
def _tiny(modes, **kwargs):
    from temsim import structure
    from temsim.study import Feature, Study

    options = dict(
        name="tiny",
        atoms=structure.tile(structure.graphene(vacuum=2.0), (5, 3, 1)),
        feature=Feature("substitution", element="Si", host_element="C"),
        energies=(80e3,),
        modes=modes,
        semiangle_cutoff=25.0,
        sampling=0.1,
        scan_step=0.4,
        window=2.0,
        slice_thickness=4.0,
    )
    options.update(kwargs)
    return Study(**options)


def test_named_modes_are_planned_side_by_side_and_rotation_permutes_segments():
    """Two annular modes of one kind are both planned (the same angles as a registered mode give its
    numbers exactly); a quadrant detector turned by 90° records the same counts, permuted, and so
    needs the same dose; an 8-segment layout records more than the 4 quadrants it refines."""
    from temsim.planning import evaluate, simulate

    modes = (
        Mode("ADF"),
        Mode("MAADF", 25.0, 75.0, kind="annular"),
        Mode("LAADF", 15.0, 40.0, kind="annular"),
        Mode("DPC"),
        Mode("DPC90", 5.0, 25.0, kind="segmented", rotation=90.0),
        Mode("DPC8", 5.0, 25.0, kind="segmented", segments=8),
    )
    study = _tiny(modes)
    rates = simulate(study, progress=False)
    limits = evaluate(rates, study.target)
    labels = [m.label for m in modes]
    assert set(labels) <= set(limits.mode.values)
    dose = {label: float(limits.required_dose.sel(mode=label, energy=80e3)) for label in labels}
    assert all(np.isfinite(list(dose.values())))
    assert dose["MAADF"] == dose["ADF"] and dose["LAADF"] != dose["MAADF"]
    dpc, turned = rates["DPC"], rates["DPC90"]
    np.testing.assert_allclose(turned.values, np.roll(dpc.values, -1, axis=-1), rtol=1e-5)
    assert dose["DPC90"] == pytest.approx(dose["DPC"], rel=1e-5)
    # splitting each quadrant in two can only add information (data-processing inequality)
    assert dose["DPC8"] <= dose["DPC"] * (1 + 1e-9)
    assert rates["DPC8"].attrs["segments"] == 8 and np.isfinite(rates["DPC8"].values).all()


def test_source_size_blurs_the_stem_rates_and_gpts_reproduce_the_rounded_grid():
    """A finite source keeps each channel's total counts, lowers the feature's contrast and so
    raises the dose; gpts equal to the grid a sampling rounds to give the same rates."""
    from dataclasses import replace

    from temsim.planning import simulate, simulation_grid

    point = _tiny((Mode("HAADF", 50.0, 120.0),), sampling=0.1)
    rates = simulate(point, progress=False)["HAADF"]
    blurred = simulate(replace(point, source_size=1.0), progress=False)["HAADF"]
    np.testing.assert_allclose(blurred.sum(("scan_x", "scan_y")), rates.sum(("scan_x", "scan_y")), rtol=1e-10)
    contrast = (rates.sel(hypothesis="H1") - rates.sel(hypothesis="H0")).max()
    assert float((blurred.sel(hypothesis="H1") - blurred.sel(hypothesis="H0")).max()) < 0.8 * float(contrast)
    gpts = simulation_grid(point).gpts
    same = simulate(replace(point, sampling=None, gpts=gpts), progress=False)["HAADF"]
    np.testing.assert_array_equal(same.values, rates.values)


def test_the_new_keys_enter_the_study_fingerprint():
    """A rerun with other optics or another grid must not resume a report of the first settings."""
    from dataclasses import replace

    from temsim.checkpoints import study_fingerprint

    study = example_study("graphene-si")
    changed = [
        replace(study, source_size=0.5),
        replace(study, aperture_edge=1.0),
        replace(study, energy_spread=0.35, chromatic_aberration=1.5e7),
        replace(study, sampling=None, gpts=(216, 224)),
        replace(study, modes=study.modes[:2] + (Mode("DPC8", 5.0, 25.0, kind="segmented", segments=8),)),
    ]
    prints = {study_fingerprint(s) for s in [study, *changed]}
    assert len(prints) == len(changed) + 1
