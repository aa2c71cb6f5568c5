"""Table-driven bad inputs: every case is refused with a temsim error that names the key.

Three tables — the Python API, the study file (TOML written to a temporary file) and the
command line (``temsim.cli.main`` return code and stderr) — cover wrong types, values out of
range, keys that would be silently ignored, conflicting keys, elements absent from the
specimen, unwritable outputs and oversized requests. Each case asserts a ``TemsimError``
subclass (or the CLI's exit code) and a fragment of the message that names what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

import temsim
from temsim import detection, structure
from temsim.errors import MemoryLimitError, StudyError, TemsimError
from temsim.planning import damage_budget, plan
from temsim.report import OutputError, ReportExistsError, prepare_output, write_report
from temsim.study import Feature, Mode, Study, load_study

# ----------------------------------------------------------------------------- API


def _graphene():
    return structure.tile(structure.graphene(vacuum=2.0), (5, 3, 1))


def _study(**changes):
    base = Study(
        name="t",
        atoms=_graphene(),
        feature=Feature("substitution", element="Si", host_element="C"),
        energies=(80e3,),
        modes=(Mode("HAADF", 60, 150),),
        semiangle_cutoff=30.0,
        sampling=0.08,
        scan_step=0.5,
        window=2.0,
        slice_thickness=4.0,
    )
    return replace(base, **changes)


def _srtio3(feature):
    return Study(name="s", atoms=structure.tile(structure.srtio3(), (2, 2, 1)), feature=feature)


def _noise(dose=1.0, **kwargs):
    kwargs.setdefault("signal_kind", "image")
    kwargs.setdefault("area", 1.0)
    return temsim.apply_noise(np.full((4, 4), 0.5), dose=dose, seed=0, **kwargs)


API_CASES = {
    # the feature: elements, sites, keys a kind would ignore, contradictions
    "vacancy element absent": (lambda: _study(feature=Feature("vacancy", element="S")), StudyError, "feature.element"),
    "host element absent": (
        lambda: _study(feature=Feature("substitution", element="Si", host_element="N")),
        StudyError,
        "feature.host_element",
    ),
    "vacancy host absent": (lambda: _study(feature=Feature("vacancy", host_element="O")), StudyError, "host_element"),
    "element not an element": (lambda: Feature("substitution", element="Xx"), StudyError, "feature.element"),
    "element not a string": (lambda: Feature("substitution", element=14), StudyError, "feature.element"),
    "adatom without element": (lambda: Feature("adatom"), StudyError, "feature.element"),
    "unknown kind": (lambda: Feature("dislocation"), StudyError, "feature.kind"),
    "structure without file": (lambda: Feature("structure"), StudyError, "feature.file"),
    "vacancy element and host disagree": (
        lambda: Feature("vacancy", element="O", host_element="Sr"),
        StudyError,
        "feature.element",
    ),
    "substitution by itself": (
        lambda: Feature("substitution", element="C", host_element="C"),
        StudyError,
        "feature.element",
    ),
    "vacancy with position": (lambda: Feature("vacancy", position=(1.0, 2.0)), StudyError, "feature.position"),
    "substitution with height": (
        lambda: Feature("substitution", element="Si", height=3.0),
        StudyError,
        "feature.height",
    ),
    "adatom with site": (lambda: Feature("adatom", element="Si", site=3), StudyError, "feature.site"),
    "vacancy with file": (lambda: Feature("vacancy", file="other.cif"), StudyError, "feature.file"),
    "structure with element": (lambda: Feature("structure", file="x.cif", element="C"), StudyError, "feature.element"),
    "adatom with host": (lambda: Feature("adatom", element="Si", host_element="C"), StudyError, "host_element"),
    "vacancy site of another element": (
        lambda: _srtio3(Feature("vacancy", element="O", site=0)).hypotheses(),
        StudyError,
        "feature.site",
    ),
    "substitution site already that element": (
        lambda: _study(feature=Feature("substitution", element="C", site=0)).hypotheses(),
        StudyError,
        "feature.element",
    ),
    "site beyond the atoms": (lambda: _study(feature=Feature("vacancy", site=10_000)).hypotheses(), StudyError, "site"),
    "site not a position": (lambda: _study(feature=Feature("vacancy", site="edge")).hypotheses(), StudyError, "site"),
    # the study
    "fractional seed": (lambda: _study(seed=1.5), StudyError, "seed"),
    "negative seed": (lambda: _study(seed=-1), StudyError, "seed"),
    "boolean seed": (lambda: _study(seed=True), StudyError, "seed"),
    "fractional phonon configs": (lambda: _study(phonons={"num_configs": 2.5}), StudyError, "phonons.num_configs"),
    "negative phonon seed": (lambda: _study(phonons={"seed": -1}), StudyError, "phonons.seed"),
    "unknown phonon key": (lambda: _study(phonons={"temperature": 300}), StudyError, "temperature"),
    "phonons not a dict": (lambda: _study(phonons=4), StudyError, "phonons"),
    "knock-on element absent": (
        lambda: _study(knock_on={"element": "N", "displacement_energy": 20.0}),
        StudyError,
        "knock_on_element",
    ),
    "knock-on without energy": (lambda: _study(knock_on={"element": "C"}), StudyError, "displacement_energy"),
    "knock-on unknown key": (
        lambda: _study(knock_on={"element": "C", "displacement_energy": 20.0, "dose": 1}),
        StudyError,
        "dose",
    ),
    "unknown critical dose preset": (lambda: _study(critical_dose="unobtainium"), StudyError, "critical_dose"),
    "negative critical dose": (lambda: _study(critical_dose=-5.0), StudyError, "critical_dose"),
    "no energies": (lambda: _study(energies=()), StudyError, "energies"),
    "energy in kV": (lambda: _study(energies=(80,)), StudyError, "energies"),
    "no modes": (lambda: _study(modes=()), StudyError, "modes"),
    "modes as strings": (lambda: _study(modes=("HAADF",)), StudyError, "modes"),
    "repeated modes": (lambda: _study(modes=(Mode("BF"), Mode("BF"))), StudyError, "modes"),
    "empty dose range": (lambda: _study(dose_range=(10.0, 1.0)), StudyError, "dose.range"),
    "zero sampling": (lambda: _study(sampling=0.0), StudyError, "sampling"),
    "negative scan step": (lambda: _study(scan_step=-0.1), StudyError, "scan_step"),
    "zero window": (lambda: _study(window=0.0), StudyError, "window"),
    "name not a string": (lambda: _study(name=3), StudyError, "name"),
    "atoms not atoms": (lambda: _study(atoms="graphene"), StudyError, "atoms"),
    "target not a target": (lambda: _study(target=0.95), StudyError, "target"),
    "unknown mode": (lambda: Mode("XYZ"), TemsimError, "XYZ"),
    # the decision target
    "power with probability of error": (
        lambda: detection.DecisionTarget(power=0.9, probability_of_error=0.05),
        TemsimError,
        "power",
    ),
    "false alarm too large": (lambda: detection.DecisionTarget(false_alarm=0.7), TemsimError, "false_alarm"),
    "power below chance": (lambda: detection.DecisionTarget(power=0.3), TemsimError, "power"),
    "probability of error too large": (
        lambda: detection.DecisionTarget(probability_of_error=0.6),
        TemsimError,
        "probability_of_error",
    ),
    "no search sites": (lambda: detection.DecisionTarget(search_sites=0), TemsimError, "search_sites"),
    # the planner's memory estimate, before anything is simulated
    "scan window too fine": (lambda: plan(_study(scan_step=1e-4, window=5.0)), MemoryLimitError, "scan_step"),
    "damage preset unknown": (lambda: damage_budget(80e3, critical_dose="unobtainium"), TemsimError, "unobtainium"),
    # noise
    "dose beyond Poisson range": (lambda: _noise(dose=1e30), TemsimError, "dose"),
    "negative dose": (lambda: _noise(dose=-1.0), TemsimError, "dose"),
    "2-D doses": (lambda: _noise(dose=[[1.0, 2.0]]), TemsimError, "dose"),
    "plain array without kind": (lambda: _noise(signal_kind=None), TemsimError, "signal_kind"),
    "unknown camera": (lambda: _noise(camera="polaroid"), TemsimError, "polaroid"),
    "fractional seed for noise": (
        lambda: temsim.apply_noise(np.ones((4, 4)), 1.0, seed=1.5, signal_kind="image", area=1.0),
        TemsimError,
        "seed",
    ),
    "camera efficiency above one": (
        lambda: temsim.camera_model("annular-pmt", efficiency=2.0),
        TemsimError,
        "efficiency",
    ),
    # simulation objects
    "negative energy": (lambda: temsim.Probe(energy=-1.0, semiangle_cutoff=20.0), TemsimError, "energy"),
    "negative convergence": (
        lambda: temsim.Probe(energy=80e3, semiangle_cutoff=-5.0),
        TemsimError,
        "semiangle_cutoff",
    ),
    "annular detector inverted": (lambda: temsim.AnnularDetector(50.0, 30.0), TemsimError, "inner"),
    "scan with sampling and gpts": (lambda: temsim.GridScan(sampling=0.1, gpts=(2, 2)), TemsimError, "gpts"),
    "negative potential sampling": (lambda: temsim.Potential(_graphene(), sampling=-0.1), TemsimError, "sampling"),
    "zero slice thickness": (
        lambda: temsim.Potential(_graphene(), sampling=0.1, slice_thickness=0.0),
        TemsimError,
        "slice_thickness",
    ),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_refuses_with_the_key_named(case):
    call, error, fragment = API_CASES[case]
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, TemsimError)
    assert fragment in str(info.value), str(info.value)


def test_vacancy_removes_an_atom_of_the_named_element():
    study = _srtio3(Feature("vacancy", element="Ti"))
    h0, h1, _ = study.hypotheses()
    removed = sorted(set(range(len(h0))) - set(range(len(h1))))
    assert len(h1) == len(h0) - 1 and removed
    before, after = h0.get_chemical_symbols(), h1.get_chemical_symbols()
    assert before.count("Ti") - after.count("Ti") == 1 and before.count("O") == after.count("O")
    site = study.feature_site()
    assert site["element"] == "Ti" and h0.get_chemical_symbols()[site["index"]] == "Ti"
    assert "Ti atom" in Feature.describe_site(site) and "x =" in Feature.describe_site(site)


# ----------------------------------------------------------------------------- study files
BASE = """
name = "bad"
[specimen]
example = "graphene"
arguments = {vacuum = 2.0}
supercell = [5, 3, 1]
[feature]
kind = "substitution"
element = "Si"
host_element = "C"
[microscope]
energies = [80e3]
semiangle_cutoff = 30.0
[[modes]]
name = "HAADF"
inner = 60.0
outer = 150.0
[damage]
knock_on_element = "C"
displacement_energy = 21.14
[decision]
false_alarm = 0.05
[dose]
range = [1.0, 1e6]
[simulation]
sampling = 0.08
scan_step = 0.5
window = 2.0
slice_thickness = 4.0
seed = 0
"""


def _edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


FILE_CASES = {
    "vacancy of an absent element": (
        _edit('kind = "substitution"\nelement = "Si"\nhost_element = "C"', 'kind = "vacancy"\nelement = "S"'),
        "feature.element",
    ),
    "host element absent": (_edit('host_element = "C"', 'host_element = "N"'), "feature.host_element"),
    "vacancy element and host disagree": (
        _edit('kind = "substitution"\nelement = "Si"', 'kind = "vacancy"\nelement = "Si"'),
        "feature.element",
    ),
    "power with probability of error": (
        _edit("false_alarm = 0.05", "power = 0.9\nprobability_of_error = 0.05"),
        "decision.power",
    ),
    "fractional supercell": (_edit("supercell = [5, 3, 1]", "supercell = [4.5, 3, 1]"), "specimen.supercell"),
    "supercell as text": (_edit("supercell = [5, 3, 1]", 'supercell = "4x3"'), "specimen.supercell"),
    "fractional seed": (_edit("seed = 0", "seed = 1.5"), "simulation.seed"),
    "negative seed": (_edit("seed = 0", "seed = -1"), "simulation.seed"),
    "fractional phonon seed": (BASE + "[phonons]\nnum_configs = 2\nseed = 2.5\n", "phonons.seed"),
    "no phonon configurations": (BASE + "[phonons]\nnum_configs = 0\n", "phonons.num_configs"),
    "knock-on element absent": (_edit('knock_on_element = "C"', 'knock_on_element = "N"'), "knock_on_element"),
    "knock-on without energy": (_edit("displacement_energy = 21.14", ""), "displacement_energy"),
    "energies as text": (_edit("energies = [80e3]", 'energies = "80kV"'), "microscope.energies"),
    "energies as a number": (_edit("energies = [80e3]", "energies = 80e3"), "microscope.energies"),
    "energies in kV": (_edit("energies = [80e3]", "energies = [80]"), "microscope.energies"),
    "sampling as text": (_edit("sampling = 0.08", 'sampling = "fine"'), "simulation.sampling"),
    "zero scan step": (_edit("scan_step = 0.5", "scan_step = 0"), "simulation.scan_step"),
    "unknown feature key": (_edit('host_element = "C"', 'host_element = "C"\ncolour = "red"'), "colour"),
    "unknown table": (BASE + "[optics]\ncs = 1\n", "optics"),
    "modes not a list": (
        'modes = "HAADF"\n' + _edit('[[modes]]\nname = "HAADF"\ninner = 60.0\nouter = 150.0', ""),
        "modes",
    ),
    "unknown mode": (_edit('name = "HAADF"', 'name = "XYZ"'), "modes[0]"),
    "mode angle as text": (_edit("inner = 60.0", 'inner = "wide"'), "modes[0].inner"),
    "fractional binning": (_edit("outer = 150.0", "outer = 150.0\nbinning = 1.5"), "modes[0].binning"),
    "unknown mode key": (_edit("outer = 150.0", "outer = 150.0\ngain = 3"), "gain"),
    "site beyond the atoms": (_edit('host_element = "C"', 'host_element = "C"\nsite = 10000'), "feature.site"),
    "site of one number": (_edit('host_element = "C"', 'host_element = "C"\nsite = [1.0]'), "feature.site"),
    "site as a boolean": (_edit('host_element = "C"', 'host_element = "C"\nsite = true'), "feature.site"),
    "unknown specimen": (_edit('example = "graphene"', 'example = "mos2"'), "specimen.example"),
    "example and file": (_edit('example = "graphene"', 'example = "graphene"\nfile = "x.cif"'), "specimen"),
    "missing structure file": (
        _edit('example = "graphene"\narguments = {vacuum = 2.0}', 'file = "missing.cif"'),
        "specimen.file",
    ),
    "unknown critical dose": (_edit("[damage]", '[damage]\ncritical_dose = "unobtainium"'), "critical_dose"),
    "negative critical dose": (_edit("[damage]", "[damage]\ncritical_dose = -1"), "damage.critical_dose"),
    "empty dose range": (_edit("range = [1.0, 1e6]", "range = [10.0, 1.0]"), "dose.range"),
    "false alarm too large": (_edit("false_alarm = 0.05", "false_alarm = 0.7"), "false_alarm"),
    "fractional search sites": (_edit("false_alarm = 0.05", "search_sites = 1.5"), "decision.search_sites"),
    "missing feature kind": (_edit('kind = "substitution"\n', ""), "feature.kind"),
    "vacancy with a position": (
        _edit('kind = "substitution"\nelement = "Si"', 'kind = "vacancy"\nposition = [1.0, 2.0]'),
        "feature.position",
    ),
    "unknown aberration": (
        _edit("semiangle_cutoff = 30.0", "semiangle_cutoff = 30.0\naberrations = {C99 = 1.0}"),
        "C99",
    ),
    "zone axis of two": (_edit("supercell = [5, 3, 1]", "zone_axis = [1, 1]"), "specimen.zone_axis"),
    "vacuum as text": (_edit("supercell = [5, 3, 1]", 'supercell = [5, 3, 1]\nvacuum = "lots"'), "specimen.vacuum"),
    "missing feature table": (
        _edit('[feature]\nkind = "substitution"\nelement = "Si"\nhost_element = "C"\n', ""),
        "[feature]",
    ),
    "invalid TOML": (BASE + "this is = = not toml\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_study_file_refuses_with_the_key_named(tmp_path, case):
    text, fragment = FILE_CASES[case]
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyError) as info:
        load_study(path)
    assert fragment in str(info.value), str(info.value)


def test_study_file_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.replace('name = "bad"', 'name = "caf\xe9"').encode("latin-1"))
    with pytest.raises(StudyError, match="not UTF-8") as info:
        load_study(path)
    assert str(path) in str(info.value)


def test_study_file_that_is_a_folder_or_missing_names_the_path(tmp_path):
    with pytest.raises(StudyError, match="cannot read") as info:
        load_study(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(StudyError, match="does not exist"):
        load_study(tmp_path / "nope.toml")


# ----------------------------------------------------------------------------- outputs (API)
def test_output_paths_are_refused_with_the_path_named(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad in (afile, afile / "sub"):
        with pytest.raises(OutputError) as info:
            prepare_output(bad, "fingerprint")
        assert str(afile) in str(info.value)
    with pytest.raises(OutputError, match=str(afile)):
        write_report(object(), afile)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "report.md").write_text("old")
    with pytest.raises(ReportExistsError, match="report.md"):
        prepare_output(folder, "fingerprint")
    assert prepare_output(folder, "fingerprint", overwrite=True) == str(folder)


# ----------------------------------------------------------------------------- CLI
def _cli_cases(tmp: str) -> dict:
    good = os.path.join(tmp, "good.toml")
    with open(good, "w", encoding="utf-8") as f:
        f.write(BASE)
    afile = os.path.join(tmp, "afile")
    with open(afile, "w") as f:
        f.write("x")
    done = os.path.join(tmp, "done")
    os.makedirs(done, exist_ok=True)
    with open(os.path.join(done, "plan.nc"), "w") as f:
        f.write("an earlier report")
    bad_key = os.path.join(tmp, "badkey.toml")
    with open(bad_key, "w", encoding="utf-8") as f:
        f.write(BASE.replace("seed = 0", "seed = 1.5"))
    latin = os.path.join(tmp, "latin.toml")
    with open(latin, "wb") as f:
        f.write(BASE.replace('name = "bad"', 'name = "caf\xe9"').encode("latin-1"))
    fine = os.path.join(tmp, "fine.toml")
    with open(fine, "w", encoding="utf-8") as f:
        f.write(BASE.replace("scan_step = 0.5", "scan_step = 0.0001").replace("window = 2.0", "window = 5.0"))
    return {
        "no study": (["plan"], 2, "give a study file"),
        "study and example": (["plan", good, "--example", "graphene-si"], 2, "give a study file"),
        "unknown example": (["plan", "--example", "nope"], 1, "unknown example"),
        "negative jobs": (["plan", good, "--jobs", "-1"], 2, "--jobs"),
        "fractional jobs": (["plan", good, "--jobs", "1.5"], 2, "--jobs"),
        "unknown scheduler": (["plan", good, "--scheduler", "dask"], 1, "scheduler must be"),
        "workers without a local cluster": (["plan", good, "--workers", "2"], 1, "workers applies to"),
        "zero workers": (["plan", good, "--scheduler", "local", "--workers", "0"], 2, "--workers"),
        "output is a file": (["plan", good, "-o", afile], 1, afile),
        "output under a file": (["plan", good, "-o", os.path.join(afile, "sub")], 1, afile),
        "existing report": (["plan", good, "-o", done], 1, os.path.join(done, "plan.nc")),
        "missing study": (["plan", os.path.join(tmp, "missing.toml")], 1, "missing.toml"),
        "study not UTF-8": (["plan", latin], 1, latin),
        "fractional seed": (["plan", bad_key, "-o", os.path.join(tmp, "o1")], 1, "simulation.seed"),
        "scan too fine for memory": (["plan", fine, "-o", os.path.join(tmp, "o2")], 1, "scan_step"),
        "unknown command": (["simulate"], 2, "invalid choice"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no study",
        "study and example",
        "unknown example",
        "negative jobs",
        "fractional jobs",
        "unknown scheduler",
        "workers without a local cluster",
        "zero workers",
        "output is a file",
        "output under a file",
        "existing report",
        "missing study",
        "study not UTF-8",
        "fractional seed",
        "scan too fine for memory",
        "unknown command",
    ],
)
def test_cli_refuses_with_a_message_naming_the_argument(tmp_path, capsys, case):
    from temsim.cli import main

    argv, code, fragment = _cli_cases(str(tmp_path))[case]
    try:
        rc = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        rc = exit_.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert fragment in err, err
    assert "Traceback" not in err
    # refused before any simulation: no checkpoint was written anywhere
    assert not [p for p, _, files in os.walk(tmp_path) if p.endswith("checkpoints") and files]
