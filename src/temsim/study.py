"""Planning studies: what to simulate, which modes to compare, what "detected" means.

A :class:`Study` is built in Python or read from a TOML file (:func:`load_study`) whose keys
are checked with messages that name the offending key. Built-in examples are in
:data:`EXAMPLES` (``temsim plan --example NAME``).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from temsim import structure as st
from temsim.detection import DecisionTarget
from temsim.errors import StudyError
from temsim.optics import Aberrations

__all__ = ["Study", "Mode", "Feature", "load_study", "example_study", "EXAMPLES", "MODE_KINDS"]

#: Imaging modes and the raw data each one's decision is based on.
MODE_KINDS = {
    "HAADF": "annular",
    "ADF": "annular",
    "ABF": "annular",
    "BF": "annular",
    "DPC": "segmented",
    "iDPC": "segmented",
    "CoM": "pixelated",
    "iCoM": "pixelated",
    "4D-STEM": "pixelated",
    "HRTEM": "image",
}

_DEFAULT_DETECTORS = {"annular": "annular-pmt", "segmented": "annular-pmt", "pixelated": "hybrid-pixel",
                      "image": "counting-ded"}


@dataclass(frozen=True)
class Mode:
    """One imaging mode: ``name`` (a key of :data:`MODE_KINDS`), angles (mrad), detector preset.

    ``inner``/``outer`` set annular and segmented ranges (defaults from the convergence
    angle α: HAADF max(3α, 50)–200, ADF α–3α, ABF α/2–α, BF 0–α, DPC/iDPC 0.2α–α);
    ``defocus`` (Å) applies to HRTEM; ``max_angle``/``binning`` to pixelated modes.
    """

    name: str
    inner: float | None = None
    outer: float | None = None
    detector: str | None = None
    defocus: float = 0.0
    max_angle: float | None = None
    binning: int = 1

    def __post_init__(self):
        if self.name not in MODE_KINDS:
            raise StudyError(f"unknown mode {self.name!r}; valid modes are {', '.join(MODE_KINDS)}")

    @property
    def kind(self) -> str:
        return MODE_KINDS[self.name]

    @property
    def detector_name(self) -> str:
        return self.detector or _DEFAULT_DETECTORS[self.kind]

    @property
    def label(self) -> str:
        if self.kind == "image":
            return f"HRTEM Δf={self.defocus:g}Å"
        return self.name

    def angles(self, alpha: float) -> tuple[float, float]:
        defaults = {"HAADF": (max(3 * alpha, 50.0), 200.0), "ADF": (alpha, 3 * alpha), "ABF": (alpha / 2, alpha),
                    "BF": (0.0, alpha), "DPC": (0.2 * alpha, alpha), "iDPC": (0.2 * alpha, alpha)}
        inner, outer = defaults.get(self.name, (0.0, 0.0))
        return (self.inner if self.inner is not None else inner, self.outer if self.outer is not None else outer)


@dataclass(frozen=True)
class Feature:
    """What distinguishes H1 from H0.

    ``kind``: ``"substitution"`` (``element`` replaces the atom at ``site``), ``"vacancy"``
    (removes it), ``"adatom"`` (adds ``element`` ``height`` Å above ``position``), or
    ``"structure"`` (H1 is the structure in ``file``). ``site`` is an atom index, an (x, y)
    position in Å, or ``"center"`` (the atom nearest the cell centre, optionally of
    ``host_element``).
    """

    kind: str
    element: str | None = None
    site: Any = "center"
    host_element: str | None = None
    position: tuple[float, float] | None = None
    height: float = 2.0
    file: str | None = None

    def __post_init__(self):
        kinds = ("substitution", "vacancy", "adatom", "structure")
        if self.kind not in kinds:
            raise StudyError(f"feature.kind {self.kind!r} is not one of {', '.join(kinds)}")
        if self.kind in ("substitution", "adatom") and not self.element:
            raise StudyError(f"feature.element is required for a {self.kind}")
        if self.kind == "structure" and not self.file:
            raise StudyError("feature.file (the alternative structure) is required for kind 'structure'")

    def _site_index(self, atoms: Atoms) -> int:
        if isinstance(self.site, (int, np.integer)) and not isinstance(self.site, bool):
            if not 0 <= int(self.site) < len(atoms):
                raise StudyError(f"feature.site {self.site} does not exist: the specimen has {len(atoms)} atoms "
                                 f"(indices 0–{len(atoms) - 1})")
            return int(self.site)
        if isinstance(self.site, str) and self.site == "center":
            centre = np.diag(atoms.cell)[:2] / 2
            candidates = np.arange(len(atoms))
            if self.host_element:
                candidates = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == self.host_element)
                if not len(candidates):
                    raise StudyError(f"feature.host_element {self.host_element!r} is not in the specimen "
                                     f"({sorted(set(atoms.get_chemical_symbols()))})")
            d = np.linalg.norm(atoms.positions[candidates, :2] - centre, axis=1)
            return int(candidates[np.argmin(d)])
        try:
            return st.nearest_site(atoms, tuple(self.site), element=self.host_element)
        except Exception as err:
            raise StudyError(f"feature.site {self.site!r}: {err}") from None

    def apply(self, atoms: Atoms) -> tuple[Atoms, tuple[float, float]]:
        """H1 structure and the feature's lateral position (Å)."""
        if self.kind == "structure":
            other = st.as_atoms(self.file)
            return other, tuple(np.diag(other.cell)[:2] / 2)
        if self.kind == "adatom":
            position = self.position or tuple(np.diag(atoms.cell)[:2] / 2)
            return st.adatom(atoms, self.element, position, height=self.height), tuple(position)
        index = self._site_index(atoms)
        position = tuple(atoms.positions[index, :2])
        if self.kind == "substitution":
            return st.substitute(atoms, index, self.element), position
        return st.vacancy(atoms, index), position

    def describe(self) -> str:
        if self.kind == "substitution":
            return f"{self.element} substituting {self.host_element or 'the central atom'}"
        if self.kind == "vacancy":
            return f"{self.host_element or 'atom'} vacancy"
        if self.kind == "adatom":
            return f"{self.element} adatom"
        return f"alternative structure {os.path.basename(self.file)}"


@dataclass(frozen=True)
class Study:
    """A detection-limit study (lengths Å, energies eV, angles mrad, doses e/Å²).

    Parameters
    ----------
    name : str
        Label used in reports.
    atoms : ase.Atoms
        H0 specimen (orthogonal cell, beam along z).
    feature : Feature
        What H1 adds or changes.
    energies : tuple of float
        Beam energies (eV) to compare.
    modes : tuple of Mode
        Imaging modes to compare.
    semiangle_cutoff : float
        STEM convergence semiangle (mrad); also the HRTEM objective aperture.
    aberrations : Aberrations
        Lens aberrations (probe-forming for STEM, objective for HRTEM; HRTEM adds each mode's
        defocus).
    focal_spread : float
        Focal-spread standard deviation (Å).
    sampling : float
        Simulation sampling (Å).
    scan_step : float
        STEM probe step (Å).
    window : float
        Side (Å) of the square scanned around the feature (the channels that carry its
        information; far channels add nothing).
    slice_thickness : float
        Multislice slice thickness (Å).
    phonons : dict or None
        ``{"num_configs": n, "sigma": {...} or float, "seed": s}`` frozen-phonon settings.
    critical_dose : float or str or None
        Radiolysis critical dose (e/Å²) or a preset name (see ``temsim.damage``).
    knock_on : dict or None
        ``{"element": "C", "displacement_energy": 21.5}``: displacement check at each energy.
    target : DecisionTarget
        Decision target (false alarm / power, or probability of error; search sites).
    dose_range : (float, float)
        Doses (e/Å²) for the power-vs-dose figure.
    seed : int
        Seed for Monte-Carlo checks and noisy images.
    """

    name: str
    atoms: Atoms
    feature: Feature
    energies: tuple[float, ...] = (200e3,)
    modes: tuple[Mode, ...] = (Mode("HAADF"), Mode("ABF"), Mode("iDPC"))
    semiangle_cutoff: float = 25.0
    aberrations: Aberrations = field(default_factory=Aberrations)
    focal_spread: float = 0.0
    sampling: float = 0.05
    scan_step: float = 0.25
    window: float = 5.0
    slice_thickness: float = 2.0
    phonons: dict | None = None
    critical_dose: Any = None
    knock_on: dict | None = None
    target: DecisionTarget = field(default_factory=DecisionTarget)
    dose_range: tuple[float, float] = (0.1, 1e7)
    seed: int = 0
    description: str = ""

    def __post_init__(self):
        if not self.energies:
            raise StudyError("microscope.energies is empty: give at least one energy in eV")
        for e in self.energies:
            if not 1e3 <= float(e) <= 10e6:
                raise StudyError(f"microscope.energies: {e!r} is not an energy in eV (e.g. 80e3 for 80 keV)")
        if not self.modes:
            raise StudyError("modes is empty: list at least one of " + ", ".join(MODE_KINDS))
        lo, hi = self.dose_range
        if not (0 < lo < hi):
            raise StudyError(f"dose.range must satisfy 0 < min < max (e/Å²), got {self.dose_range!r}")
        for name in ("sampling", "scan_step", "window", "slice_thickness", "semiangle_cutoff"):
            if not getattr(self, name) > 0:
                raise StudyError(f"{name} must be positive, got {getattr(self, name)!r}")
        labels = [m.label for m in self.modes]
        if len(set(labels)) != len(labels):
            raise StudyError(f"modes repeat: {labels}")

    def hypotheses(self) -> tuple[Atoms, Atoms, tuple[float, float]]:
        """(H0 atoms, H1 atoms, feature position (Å))."""
        h0 = st.prepare_for_slicing(self.atoms)
        h1, position = self.feature.apply(h0)
        if not np.allclose(np.diag(h1.cell), np.diag(h0.cell)):
            raise StudyError("the feature's structure has a different cell from the specimen; both hypotheses must "
                             "share the cell")
        return h0, st.prepare_for_slicing(h1), position


# ----------------------------------------------------------------------------- examples
def _graphene_si() -> Study:
    atoms = st.tile(st.graphene(vacuum=2.0), (5, 3, 1))
    return Study(
        name="graphene-si",
        description="A single Si substitution in graphene, 60 and 80 kV, Cs-corrected, ideal annular detectors and a "
                    "counting camera. Graphene is knock-on limited (no radiolysis); the budget is the knock-on dose.",
        atoms=atoms,
        feature=Feature("substitution", element="Si", site="center", host_element="C"),
        energies=(60e3, 80e3),
        modes=(Mode("HAADF", 60.0, 200.0), Mode("ABF"), Mode("iDPC"), Mode("HRTEM", defocus=-60.0)),
        semiangle_cutoff=30.0,
        aberrations=Aberrations(),
        sampling=0.06,
        scan_step=0.3,
        window=4.8,
        slice_thickness=4.0,
        phonons={"num_configs": 2, "sigma": {"C": 0.07, "Si": 0.08}, "seed": 1},
        knock_on={"element": "C", "displacement_energy": 21.14, "temperature": 300.0, "debye_temperature": 2000.0},
        dose_range=(1.0, 1e6),
    )


def _srtio3_vacancy() -> Study:
    atoms = st.tile(st.srtio3(), (4, 4, 5))
    cell = np.diag(atoms.cell)
    # an oxygen-only column near the centre, vacancy in the middle layer
    symbols = np.array(atoms.get_chemical_symbols())
    pos = atoms.positions
    o_only = []
    for i in np.flatnonzero(symbols == "O"):
        same_column = np.linalg.norm(pos[:, :2] - pos[i, :2], axis=1) < 0.1
        if set(symbols[same_column]) == {"O"}:
            o_only.append(i)
    o_only = np.array(o_only)
    d = np.linalg.norm(pos[o_only, :2] - cell[:2] / 2, axis=1) + 0.01 * np.abs(pos[o_only, 2] - cell[2] / 2)
    index = int(o_only[np.argmin(d)])
    return Study(
        name="srtio3-oxygen-vacancy",
        description="One oxygen vacancy in a pure-O column of SrTiO3 [001], 5 unit cells (2 nm) thick, 200 and 300 kV.",
        atoms=atoms,
        feature=Feature("vacancy", site=index, host_element="O"),
        energies=(200e3, 300e3),
        modes=(Mode("HAADF", 70.0, 160.0), Mode("ABF"), Mode("iDPC")),
        semiangle_cutoff=20.0,
        sampling=0.04,
        scan_step=0.3,
        window=3.0,
        slice_thickness=3.905 / 2,
        dose_range=(1.0, 1e8),
    )


def triazine_carbon_nitride(a: float = 4.79, ring_bond: float = 1.33, vacuum: float = 2.0) -> Atoms:
    """Planar triazine-based graphitic carbon nitride (C3N4, a covalent triazine framework).

    Hexagonal cell ``a`` (Å; 4.79 Å is the planar DFT value commonly quoted for this layer, cf.
    Algara-Siller et al., Angew. Chem. Int. Ed. 53, 7450 (2014), who made it crystalline):
    one triazine ring (C3N3, ring C–N bond ``ring_bond`` Å) per cell, its three C atoms bonded to
    bridging (linker) N atoms that join three rings; the bridge bond follows from ``a``
    (a/√3 − ring_bond ≈ 1.44 Å). Returned as an orthogonal cell, beam along z.
    """
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
    return st.orthogonalize_cell(layer)


def _cof_missing_linker() -> Study:
    atoms = st.tile(triazine_carbon_nitride(), (3, 2, 1))
    symbols = np.array(atoms.get_chemical_symbols())
    # linker N: the N atoms bonded to three C atoms (ring N have two C neighbours)
    linker = []
    for i in np.flatnonzero(symbols == "N"):
        d = atoms.get_distances(i, np.flatnonzero(symbols == "C"), mic=True)
        if np.sum(d < 1.6) == 3:
            linker.append(i)
    centre = np.diag(atoms.cell)[:2] / 2
    index = int(min(linker, key=lambda i: np.linalg.norm(atoms.positions[i, :2] - centre)))
    return Study(
        name="cof-missing-linker",
        description="A missing bridging-N linker in a covalent triazine framework layer (planar triazine-based "
                    "C3N4), 80 and 300 kV. Critical dose 20 e/Å²: a representative value for organic frameworks, "
                    "which lose crystallinity at tens of e/Å² at room temperature (replace it by a measured Dc).",
        atoms=atoms,
        feature=Feature("vacancy", site=index, host_element="N"),
        energies=(80e3, 300e3),
        modes=(Mode("HAADF", 60.0, 160.0), Mode("ABF"), Mode("iDPC"), Mode("HRTEM", defocus=-60.0)),
        semiangle_cutoff=25.0,
        sampling=0.04,
        scan_step=0.3,
        window=4.8,
        slice_thickness=4.0,
        critical_dose=20.0,
        dose_range=(0.1, 1e5),
    )


EXAMPLES = {"graphene-si": _graphene_si, "srtio3-oxygen-vacancy": _srtio3_vacancy,
            "cof-missing-linker": _cof_missing_linker}


def example_study(name: str) -> Study:
    """One of the built-in studies (see :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise StudyError(f"unknown example {name!r}; built-in examples are {', '.join(EXAMPLES)}")
    return EXAMPLES[name]()


# ----------------------------------------------------------------------------- TOML
_SCHEMA = {
    "name": None,
    "description": None,
    "specimen": {"example": None, "file": None, "supercell": None, "zone_axis": None, "vacuum": None},
    "feature": {"kind": None, "element": None, "site": None, "host_element": None, "position": None,
                "height": None, "file": None},
    "microscope": {"energies": None, "semiangle_cutoff": None, "aberrations": None, "focal_spread": None},
    "modes": None,
    "phonons": {"num_configs": None, "sigma": None, "seed": None},
    "dose": {"range": None},
    "damage": {"critical_dose": None, "knock_on_element": None, "displacement_energy": None, "temperature": None,
               "debye_temperature": None},
    "decision": {"false_alarm": None, "power": None, "probability_of_error": None, "search_sites": None},
    "simulation": {"sampling": None, "scan_step": None, "window": None, "slice_thickness": None, "seed": None},
}

_MODE_KEYS = {"name", "inner", "outer", "detector", "defocus", "max_angle", "binning"}


def _check_keys(data: dict, schema: dict, prefix: str = "") -> None:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in schema:
            raise StudyError(f"unknown key {path!r}; valid keys here are {', '.join(sorted(schema))}")
        if isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise StudyError(f"{path!r} must be a table ([{path}])")
            _check_keys(value, schema[key], path + ".")


def _specimen(spec: dict, base: str) -> Atoms:
    if ("example" in spec) == ("file" in spec):
        raise StudyError("specimen needs exactly one of 'example' (graphene, srtio3) or 'file'")
    if "example" in spec:
        builders = {"graphene": st.graphene, "srtio3": st.srtio3}
        if spec["example"] not in builders:
            raise StudyError(f"specimen.example {spec['example']!r} is not one of {', '.join(builders)}")
        atoms = builders[spec["example"]]()
    else:
        path = spec["file"] if os.path.isabs(spec["file"]) else os.path.join(base, spec["file"])
        try:
            atoms = st.as_atoms(path)
        except Exception as err:
            raise StudyError(f"specimen.file {spec['file']!r}: {err}") from None
    if "zone_axis" in spec:
        atoms = st.zone_axis(atoms, tuple(spec["zone_axis"]))
    elif not st.is_orthogonal_cell(atoms):
        atoms = st.orthogonalize_cell(atoms)
    if "supercell" in spec:
        reps = spec["supercell"]
        if len(reps) != 3 or any(int(r) < 1 for r in reps):
            raise StudyError(f"specimen.supercell must be three positive integers, got {reps!r}")
        atoms = st.tile(atoms, tuple(int(r) for r in reps))
    if "vacuum" in spec:
        atoms = st.center_along_beam(atoms, float(spec["vacuum"]))
    return atoms


def study_from_dict(data: dict, base: str = ".") -> Study:
    """A :class:`Study` from a parsed TOML document (see docs/planning.md for the keys)."""
    data = copy.deepcopy(data)
    _check_keys(data, _SCHEMA)
    for required in ("specimen", "feature", "modes"):
        if required not in data:
            raise StudyError(f"missing table [{required}]")
    atoms = _specimen(data["specimen"], base)
    feature_data = dict(data["feature"])
    if "kind" not in feature_data:
        raise StudyError("feature.kind is required (substitution, vacancy, adatom or structure)")
    if "position" in feature_data:
        feature_data["position"] = tuple(feature_data["position"])
    if feature_data.get("file") and not os.path.isabs(feature_data["file"]):
        feature_data["file"] = os.path.join(base, feature_data["file"])
    if isinstance(feature_data.get("site"), list):
        feature_data["site"] = tuple(feature_data["site"])
    feature = Feature(**feature_data)
    modes = []
    raw_modes = data["modes"]
    if not isinstance(raw_modes, list):
        raise StudyError("modes must be a list, e.g. modes = [\"HAADF\", {name = \"HRTEM\", defocus = -50}]")
    for i, item in enumerate(raw_modes):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise StudyError(f"modes[{i}] must be a mode name or a table")
        unknown = set(item) - _MODE_KEYS
        if unknown:
            raise StudyError(f"unknown key(s) {sorted(unknown)} in modes[{i}]; valid keys are {sorted(_MODE_KEYS)}")
        if "name" not in item:
            raise StudyError(f"modes[{i}] needs a name (one of {', '.join(MODE_KINDS)})")
        try:
            modes.append(Mode(**item))
        except StudyError as err:
            raise StudyError(f"modes[{i}]: {err}") from None
    kwargs: dict[str, Any] = {"name": data.get("name", "study"), "atoms": atoms, "feature": feature,
                              "modes": tuple(modes), "description": data.get("description", "")}
    micro = data.get("microscope", {})
    if "energies" in micro:
        kwargs["energies"] = tuple(float(e) for e in micro["energies"])
    if "semiangle_cutoff" in micro:
        kwargs["semiangle_cutoff"] = float(micro["semiangle_cutoff"])
    if "aberrations" in micro:
        try:
            kwargs["aberrations"] = Aberrations(**micro["aberrations"])
        except TypeError as err:
            raise StudyError(f"microscope.aberrations: {err}") from None
    if "focal_spread" in micro:
        kwargs["focal_spread"] = float(micro["focal_spread"])
    if "phonons" in data:
        kwargs["phonons"] = dict(data["phonons"])
    if "range" in data.get("dose", {}):
        rng = data["dose"]["range"]
        if len(rng) != 2:
            raise StudyError(f"dose.range must be [min, max] in e/Å², got {rng!r}")
        kwargs["dose_range"] = (float(rng[0]), float(rng[1]))
    damage = data.get("damage", {})
    if "critical_dose" in damage:
        kwargs["critical_dose"] = damage["critical_dose"]
    if "knock_on_element" in damage:
        if "displacement_energy" not in damage:
            raise StudyError("damage.displacement_energy (eV) is required with damage.knock_on_element")
        kwargs["knock_on"] = {"element": damage["knock_on_element"],
                              "displacement_energy": float(damage["displacement_energy"])}
        for key in ("temperature", "debye_temperature"):
            if key in damage:
                kwargs["knock_on"][key] = float(damage[key])
    if "decision" in data:
        try:
            kwargs["target"] = DecisionTarget(**data["decision"])
        except Exception as err:
            raise StudyError(f"decision: {err}") from None
    for key, value in data.get("simulation", {}).items():
        kwargs[key] = int(value) if key == "seed" else float(value)
    try:
        return Study(**kwargs)
    except StudyError:
        raise
    except Exception as err:
        raise StudyError(str(err)) from None


def load_study(path) -> Study:
    """Read a study from a TOML file (keys validated; errors name the offending key)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = os.fspath(path)
    if not os.path.exists(path):
        raise StudyError(f"study file {path} does not exist")
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise StudyError(f"{path} is not valid TOML: {err}") from None
    return study_from_dict(data, base=os.path.dirname(os.path.abspath(path)))
