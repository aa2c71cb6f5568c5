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


@pytest.mark.parametrize("bad, message", [
    (GOOD.replace("semiangle_cutoff", "semiangle"), "microscope.semiangle"),
    (GOOD.replace('name = "HAADF"', 'name = "HAADFX"'), "valid modes"),
    (GOOD.replace("kind = \"substitution\"", "kind = \"swap\""), "feature.kind"),
    (GOOD.replace("[decision]", "[dose]\nrange = [10.0, 1.0]\n[decision]"), "dose.range"),
    (GOOD.replace('host_element = "C"', 'host_element = "Au"'), "host_element"),
    (GOOD.replace("energies = [80e3]", "energies = [80]"), "energies"),
])
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
