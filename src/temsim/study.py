"""Planning studies: what to simulate, which modes to compare, what "detected" means.

A :class:`Study` (:mod:`temsim.study_model`, re-exported here) is built in Python or read from
a TOML file (:func:`load_study`) whose keys are checked with messages that name the offending
key. The built-in examples are TOML files
shipped in ``temsim/examples`` (:data:`EXAMPLES`, ``temsim plan --example NAME``). Imaging
modes come from the registry in :mod:`temsim.modes`.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from importlib import resources
from typing import Any

from ase import Atoms

from temsim import structure as st
from temsim.acquisitions import Acquisition
from temsim.checks import as_number
from temsim.crystals import BUILDERS
from temsim.detection import DecisionTarget
from temsim.errors import InputError, StudyError
from temsim.modes import MODES
from temsim.optics import Aberrations
from temsim.study_model import MODE_KINDS, Feature, Mode, Study, _microscope_preset

__all__ = ["Study", "Mode", "Feature", "load_study", "study_from_dict", "example_study", "EXAMPLES", "MODE_KINDS"]


# ----------------------------------------------------------------------------- examples
def _example_names() -> list[str]:
    files = resources.files("temsim.examples").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def _read_example(name: str) -> Study:
    resource = resources.files("temsim.examples") / f"{name}.toml"
    with resources.as_file(resource) as path:
        return load_study(path)


#: Built-in studies: ``{name: function returning the Study}``, read from ``temsim/examples/*.toml``.
EXAMPLES = {name: functools.partial(_read_example, name) for name in _example_names()}


def example_study(name: str) -> Study:
    """One of the built-in studies (see :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise StudyError(f"unknown example {name!r}; built-in examples are {', '.join(EXAMPLES)}")
    return EXAMPLES[name]()


# ----------------------------------------------------------------------------- TOML
_SCHEMA = {
    "name": None,
    "description": None,
    "specimen": {
        "example": None,
        "arguments": None,
        "file": None,
        "supercell": None,
        "zone_axis": None,
        "vacuum": None,
    },
    "feature": {
        "kind": None,
        "element": None,
        "site": None,
        "host_element": None,
        "position": None,
        "height": None,
        "file": None,
        "sites": None,
    },
    "microscope": {
        "preset": None,
        "energies": None,
        "semiangle_cutoff": None,
        "aberrations": None,
        "focal_spread": None,
        "energy_spread": None,
        "chromatic_aberration": None,
        "source_size": None,
        "aperture_edge": None,
    },
    "modes": None,
    "acquisitions": None,
    "phonons": {"num_configs": None, "sigma": None, "seed": None},
    "dose": {"range": None},
    "damage": {
        "critical_dose": None,
        "material": None,
        "knock_on_element": None,
        "displacement_energy": None,
        "temperature": None,
        "debye_temperature": None,
        "mean_square_displacement": None,
    },
    "decision": {"false_alarm": None, "power": None, "probability_of_error": None, "search_sites": None},
    "simulation": {
        "sampling": None,
        "gpts": None,
        "scan_step": None,
        "window": None,
        "slice_thickness": None,
        "seed": None,
    },
}

_MODE_KEYS = {
    "name",
    "kind",
    "inner",
    "outer",
    "camera",
    "detector",
    "defocus",
    "max_angle",
    "binning",
    "segments",
    "rotation",
    "pixel_size",
    "camera_parameters",
}
#: Numeric mode keys: (unit, as_number bounds).
_MODE_NUMBERS = {
    "inner": ("mrad", {"minimum": 0}),
    "outer": ("mrad", {"minimum": 0}),
    "defocus": ("Å", {}),
    "max_angle": ("mrad", {"minimum": 0, "exclusive_minimum": True}),
    "binning": ("", {"integer": True, "minimum": 1}),
    "segments": ("", {"integer": True, "minimum": 2}),
    "rotation": ("deg", {}),
    "pixel_size": ("Å", {"minimum": 0, "exclusive_minimum": True}),
}
#: Optics keys of [microscope] that are single numbers ≥ 0, and their units.
_OPTICS_NUMBERS = {
    "focal_spread": "Å",
    "energy_spread": "eV",
    "chromatic_aberration": "Å",
    "source_size": "Å",
    "aperture_edge": "mrad",
}
_SIMULATION_NUMBERS = {"sampling": "Å", "scan_step": "Å", "window": "Å", "slice_thickness": "Å"}


def _number(key: str, value, unit: str = "", **bounds):
    return as_number(key, value, unit, error=StudyError, **bounds)


def _numbers(key: str, value, unit: str = "", length: int | None = None, **bounds) -> tuple:
    """A TOML array of numbers (``length`` of them if given); a scalar or a string is refused."""
    if not isinstance(value, list) or (length is not None and len(value) != length):
        what = f"a list of {length} numbers" if length is not None else "a list of numbers"
        raise StudyError(f"{key} must be {what}{' in ' + unit if unit else ''}, got {value!r}")
    return tuple(_number(f"{key}[{i}]", v, unit, **bounds) for i, v in enumerate(value))


def _check_keys(data: dict, schema: dict, prefix: str = "") -> None:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in schema:
            raise StudyError(f"unknown key {path!r}; valid keys here are {', '.join(sorted(schema))}")
        if isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise StudyError(f"{path!r} must be a table ([{path}])")
            _check_keys(value, schema[key], path + ".")


def _table(key: str, value) -> dict:
    if not isinstance(value, dict):
        raise StudyError(f"{key} must be a table, e.g. {key} = {{vacuum = 2.0}}, got {value!r}")
    return value


def _built_in_specimen(spec: dict) -> Atoms:
    name = spec["example"]
    if name not in BUILDERS:
        raise StudyError(f"specimen.example {name!r} is not one of {', '.join(BUILDERS)}")
    arguments = {
        k: _number(f"specimen.arguments.{k}", v, "Å", minimum=0, exclusive_minimum=True)
        for k, v in _table("specimen.arguments", spec.get("arguments", {})).items()
    }
    try:
        return BUILDERS[name](**arguments)
    except TypeError as err:  # an argument the builder does not take
        raise StudyError(f"specimen.arguments for {name!r}: {err}") from None


def _specimen(spec: dict, base: str) -> Atoms:
    if ("example" in spec) == ("file" in spec):
        raise StudyError(f"specimen needs exactly one of 'example' ({', '.join(BUILDERS)}) or 'file'")
    if "arguments" in spec and "example" not in spec:
        raise StudyError("specimen.arguments applies to specimen.example only")
    if "example" in spec:
        atoms = _built_in_specimen(spec)
    else:
        path = spec["file"] if os.path.isabs(spec["file"]) else os.path.join(base, spec["file"])
        try:
            atoms = st.as_atoms(path)
        except (OSError, ValueError) as err:  # StructureError is a ValueError; ase parsers raise ValueErrors
            raise StudyError(f"specimen.file {spec['file']!r}: {err}") from None
    if "zone_axis" in spec:
        axis = _numbers("specimen.zone_axis", spec["zone_axis"], length=3, integer=True)
        atoms = st.zone_axis(atoms, axis)
    elif not st.is_orthogonal_cell(atoms):
        atoms = st.orthogonalize_cell(atoms)
    if "supercell" in spec:
        atoms = st.tile(atoms, _numbers("specimen.supercell", spec["supercell"], length=3, integer=True, minimum=1))
    if "vacuum" in spec:
        atoms = st.center_along_beam(atoms, _number("specimen.vacuum", spec["vacuum"], "Å", minimum=0))
    return atoms


def _feature(data: dict, base: str) -> Feature:
    feature = dict(data)
    if "kind" not in feature:
        raise StudyError("feature.kind is required (substitution, vacancy, adatom, structure or remove)")
    if "position" in feature:
        feature["position"] = _numbers("feature.position", feature["position"], "Å", length=2)
    if "height" in feature:
        feature["height"] = _number("feature.height", feature["height"], "Å")
    if "sites" in feature and not isinstance(feature["sites"], list):
        raise StudyError(f"feature.sites must be a list of atom indices, e.g. [12, 13, 40], got {feature['sites']!r}")
    if feature.get("file") and not os.path.isabs(feature["file"]):
        feature["file"] = os.path.join(base, feature["file"])
    site = feature.get("site")
    if isinstance(site, list):
        feature["site"] = _numbers("feature.site", site, "Å", length=2)
    elif site is not None and not isinstance(site, (int, str)) or isinstance(site, bool):
        raise StudyError(f'feature.site must be an atom index, [x, y] in Å or "center", got {site!r}')
    return Feature(**feature)


def _mode(i: int, item) -> Mode:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise StudyError(f"modes[{i}] must be a mode name or a table")
    item = dict(item)
    unknown = set(item) - _MODE_KEYS
    if unknown:
        raise StudyError(
            f"unknown key(s) {sorted(unknown)} in modes[{i}]; valid keys are {sorted(_MODE_KEYS - {'detector'})}"
        )
    if "name" not in item:
        raise StudyError(f"modes[{i}] needs a name (one of {', '.join(MODES)}, or your own with a kind)")
    for key in ("name", "kind", "camera"):
        if key in item and not isinstance(item[key], str):
            raise StudyError(f"modes[{i}].{key} must be a string, got {item[key]!r}")
    if "detector" in item:
        warnings.warn(
            f"modes[{i}].detector is deprecated; write camera = {item['detector']!r}", DeprecationWarning, stacklevel=4
        )
        item.setdefault("camera", item.pop("detector"))
        item.pop("detector", None)
    for key, (unit, bounds) in _MODE_NUMBERS.items():
        if key in item:
            item[key] = _number(f"modes[{i}].{key}", item[key], unit, **bounds)
    try:
        return Mode(**item)
    except StudyError as err:
        raise StudyError(f"modes[{i}]: {err}") from None


def _modes(raw) -> tuple[Mode, ...]:
    if not isinstance(raw, list):
        raise StudyError('modes must be a list, e.g. modes = ["HAADF", {name = "HRTEM", defocus = -50}]')
    return tuple(_mode(i, item) for i, item in enumerate(raw))


def _microscope(micro: dict) -> dict:
    out: dict[str, Any] = {}
    if "energies" in micro:
        out["energies"] = _numbers("microscope.energies", micro["energies"], "eV", minimum=1e3, maximum=10e6)
    if "semiangle_cutoff" in micro:
        out["semiangle_cutoff"] = _number(
            "microscope.semiangle_cutoff", micro["semiangle_cutoff"], "mrad", minimum=0, exclusive_minimum=True
        )
    preset = _microscope_preset(micro["preset"]) if "preset" in micro else None
    coefficients = dict(preset["aberrations"]) if preset else {}
    if "aberrations" in micro:  # explicit coefficients override the preset's, one by one
        table = _table("microscope.aberrations", micro["aberrations"])
        coefficients.update({k: _number(f"microscope.aberrations.{k}", v, "Å") for k, v in table.items()})
    if coefficients:
        try:
            out["aberrations"] = Aberrations(**coefficients)
        except TypeError as err:
            raise StudyError(f"microscope.aberrations: {err}") from None
    if preset:
        out["microscope"] = micro["preset"]
        if "focal_spread" not in micro:  # an explicit focal spread replaces the preset's energy spread
            out.update(energy_spread=preset["energy_spread"], chromatic_aberration=preset["chromatic_aberration"])
        out["source_size"] = preset["source_size"]
    for key, unit in _OPTICS_NUMBERS.items():
        if key in micro:
            out[key] = _number(f"microscope.{key}", micro[key], unit, minimum=0)
    return out


def _phonons(data: dict) -> dict:
    out = dict(data)
    if "num_configs" in out:
        out["num_configs"] = _number("phonons.num_configs", out["num_configs"], integer=True, minimum=1)
    if "seed" in out:
        out["seed"] = _number("phonons.seed", out["seed"], integer=True, minimum=0)
    sigma = out.get("sigma")
    if isinstance(sigma, dict):
        out["sigma"] = {k: _number(f"phonons.sigma.{k}", v, "Å", minimum=0) for k, v in sigma.items()}
    elif sigma is not None:
        out["sigma"] = _number("phonons.sigma", sigma, "Å", minimum=0)
    return out


def _damage(damage: dict) -> dict:
    out: dict[str, Any] = {}
    if "critical_dose" in damage:
        dc = damage["critical_dose"]  # a number (e/Å²) or a preset name
        out["critical_dose"] = (
            dc
            if isinstance(dc, str)
            else _number("damage.critical_dose", dc, "e/Å²", minimum=0, exclusive_minimum=True)
        )
    knock_keys = set(damage) - {"critical_dose"}
    if knock_keys and "knock_on_element" not in damage:
        raise StudyError(f"damage.{sorted(knock_keys)[0]} needs damage.knock_on_element (the host element(s) at risk)")
    if "knock_on_element" in damage:
        out["knock_on"] = {"element": damage["knock_on_element"]}
        if "material" in damage:
            out["knock_on"]["material"] = damage["material"]
        units = {"displacement_energy": "eV", "temperature": "K", "debye_temperature": "K"}
        units["mean_square_displacement"] = "Å²"
        for key, unit in units.items():
            if key in damage:
                strict = key != "temperature"
                out["knock_on"][key] = _number(f"damage.{key}", damage[key], unit, minimum=0, exclusive_minimum=strict)
    return out


def _decision(decision: dict) -> DecisionTarget:
    if "probability_of_error" in decision and "power" in decision:
        raise StudyError(
            "decision.power and decision.probability_of_error are two different targets; give one "
            "(probability_of_error sets the threshold at equal priors and ignores power)"
        )
    values = {}
    for key, value in decision.items():
        integer = key == "search_sites"
        values[key] = _number(f"decision.{key}", value, integer=integer, minimum=1 if integer else 0)
    try:
        return DecisionTarget(**values)
    except InputError as err:
        raise StudyError(f"decision: {err}") from None


def _simulation(simulation: dict) -> dict:
    out: dict[str, Any] = {}
    for key, value in simulation.items():
        if key == "seed":
            out[key] = _number("simulation.seed", value, integer=True, minimum=0)
        elif key == "gpts":
            out[key] = _numbers("simulation.gpts", value, length=2, integer=True, minimum=2)
        else:
            out[key] = _number(f"simulation.{key}", value, _SIMULATION_NUMBERS[key], minimum=0, exclusive_minimum=True)
    return out


def _acquisitions(raw) -> tuple:
    """``[[acquisitions]]`` tables: ``modes = [labels]`` and an optional ``name``."""
    example = '[[acquisitions]] modes = ["HAADF", "iDPC"]'
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise StudyError(f"acquisitions must be a list of tables ({example}), got {raw!r}")
    out = []
    for i, item in enumerate(raw):
        unknown = set(item) - {"modes", "name"}
        if unknown or not isinstance(item.get("modes"), list):
            raise StudyError(f"acquisitions[{i}] needs modes = [mode labels] (and optionally name), got {item!r}")
        try:
            out.append(Acquisition(tuple(item["modes"]), str(item.get("name", ""))))
        except StudyError as err:
            raise type(err)(f"acquisitions[{i}]: {err}") from None
    return tuple(out)


def study_from_dict(data: dict, base: str = ".") -> Study:
    """A :class:`Study` from a parsed TOML document (see docs/planning.md for the keys)."""
    data = copy.deepcopy(data)
    if "sweep" in data:
        raise StudyError(
            "this study has a [sweep] table: run it with `temsim plan` (which runs sweeps) or "
            "temsim.sweeps.sweep(...), or remove the table to plan one point"
        )
    _check_keys(data, _SCHEMA)
    for required in ("specimen", "feature", "modes"):
        if required not in data:
            raise StudyError(f"missing table [{required}]")
    kwargs: dict[str, Any] = {
        "name": str(data.get("name", "study")),
        "description": str(data.get("description", "")),
        "atoms": _specimen(data["specimen"], base),
        "feature": _feature(data["feature"], base),
        "modes": _modes(data["modes"]),
    }
    kwargs.update(_microscope(data.get("microscope", {})))
    if "acquisitions" in data:
        kwargs["acquisitions"] = _acquisitions(data["acquisitions"])
    if "phonons" in data:
        kwargs["phonons"] = _phonons(data["phonons"])
    if "range" in data.get("dose", {}):
        kwargs["dose_range"] = _numbers("dose.range", data["dose"]["range"], "e/Å²", length=2)
    kwargs.update(_damage(data.get("damage", {})))
    if "decision" in data:
        kwargs["target"] = _decision(data["decision"])
    kwargs.update(_simulation(data.get("simulation", {})))
    return Study(**kwargs)


def load_study(path) -> Study:
    """Read a study from a TOML file (keys validated; errors name the offending key)."""
    data = read_study_document(path)
    return study_from_dict(data, base=os.path.dirname(os.path.abspath(os.fspath(path))))


def read_study_document(path) -> dict:
    """The parsed TOML document of a study file (unreadable or invalid files give a StudyError)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = os.fspath(path)
    if not os.path.exists(path):
        raise StudyError(f"study file {path} does not exist")
    try:
        with open(path, "rb") as f:
            data = tomllib.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise StudyError(f"study file {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise StudyError(f"cannot read study file {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{path} is not valid TOML: {err}") from None
    return data
