"""The study model: imaging modes, the feature, and the study (frozen dataclasses, units in their docs).

A :class:`Study` names a specimen (H0), a :class:`Feature` that makes H1, beam energies,
imaging :class:`Mode` s (from the registry in :mod:`temsim.modes`), optics, damage and the
decision target. Studies are read from TOML files by :mod:`temsim.study`, which re-exports
these classes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from temsim import damage_channels
from temsim import structure as st
from temsim.acquisitions import Acquisition, check_acquisition
from temsim.beam_damage import critical_dose as _critical_dose
from temsim.checks import as_number
from temsim.detection import DecisionTarget
from temsim.errors import InputError, StudyError
from temsim.microscopes import PRESET_NAMES, focal_spread_from_energy_spread, microscope_preset
from temsim.modes import MODES, named_spec
from temsim.optics import Aberrations

__all__ = ["Study", "Mode", "Feature", "MODE_KINDS"]


def _microscope_preset(name) -> dict:
    """The preset's study keys (:func:`temsim.microscopes.microscope_preset`); unknown names are refused."""
    if not isinstance(name, str) or name not in PRESET_NAMES:
        raise StudyError(
            f"microscope.preset {name!r} is not a known preset; valid presets are {', '.join(PRESET_NAMES)}"
        )
    return microscope_preset(name)


class _ModeKinds(Mapping):
    """Read-only view ``{mode name: kind}`` of the registry in :mod:`temsim.modes`."""

    def __getitem__(self, name):
        return MODES[name].kind

    def __iter__(self):
        return iter(MODES)

    def __len__(self):
        return len(MODES)

    def __repr__(self):
        return repr(dict(self))


#: Imaging modes and the kind of raw data each one's decision is based on (from the registry).
MODE_KINDS: Mapping[str, str] = _ModeKinds()


@dataclass(frozen=True)
class Mode:
    """One imaging mode: its ``name``, angles (mrad), camera preset and detector layout.

    ``name`` is a mode registered in :mod:`temsim.modes` (HAADF, iDPC, HRTEM…) or, with
    ``kind`` (``"annular"``, ``"segmented"``, ``"pixelated"``, ``"image"``), a mode of your
    own: ``Mode("MAADF", 40, 100, kind="annular")``; a user-named annular or segmented mode
    must give ``inner`` and ``outer``. Any number of modes of one kind may be planned side by
    side as long as their labels differ.

    ``inner``/``outer`` set annular and segmented ranges (defaults from the convergence
    angle α: HAADF max(3α, 50)–200, ADF α–3α, ABF α/2–α, BF 0–α, DPC/iDPC 0.2α–α);
    ``camera`` is a ``temsim.camera_model`` preset (default: the mode's);
    ``defocus`` (Å) applies to image modes; ``max_angle``/``binning`` to pixelated modes;
    ``segments`` (default 4) and ``rotation`` (deg, counter-clockwise from +kx; segment j
    spans ``rotation + 360° j/N … rotation + 360° (j+1)/N``) to segmented modes.
    ``pixel_size`` (Å, the camera pixel referred to the specimen; default the simulation
    sampling) sets the frequencies at which an image mode's camera DQE(f) is read;
    ``camera_parameters`` (a table: the camera's own numbers such as ``dqe0``, and
    ``allow_extrapolation``) is passed to :func:`temsim.camera_model` at each beam energy.
    ``detector=`` is the old spelling of ``camera`` (deprecated).
    """

    name: str
    inner: float | None = None
    outer: float | None = None
    camera: str | None = None
    defocus: float = 0.0
    max_angle: float | None = None
    binning: int = 1
    detector: str | None = field(default=None, repr=False, compare=False)
    kind: str | None = None
    segments: int | None = None
    rotation: float = 0.0
    pixel_size: float | None = None
    camera_parameters: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise StudyError(f"a mode's name must be a non-empty string, got {self.name!r}")
        spec = named_spec(self.name, self.kind)  # unknown names without a kind are refused with the valid ones
        object.__setattr__(self, "kind", spec.kind)
        if self.detector is not None:
            warnings.warn("Mode(detector=...) is deprecated; use camera=...", DeprecationWarning, stacklevel=3)
            if self.camera is None:
                object.__setattr__(self, "camera", self.detector)
            object.__setattr__(self, "detector", None)
        self._check_keys_apply()
        self._check_camera()
        if self.name not in MODES and self.kind in ("annular", "segmented") and None in (self.inner, self.outer):
            raise StudyError(
                f"mode {self.name!r} is not a registered mode: give its inner and outer angles (mrad), "
                f"e.g. {{name = {self.name!r}, kind = {self.kind!r}, inner = 40, outer = 100}}"
            )
        if self.inner is not None and self.outer is not None and not 0 <= self.inner < self.outer:
            raise StudyError(
                f"mode {self.name!r}: inner ({self.inner:g}) must be ≥ 0 and below outer ({self.outer:g}) mrad"
            )

    def _check_keys_apply(self) -> None:
        """Refuse keys this kind of mode would ignore, and segment counts below two."""
        given = {
            "inner": self.inner is not None,
            "outer": self.outer is not None,
            "defocus": self.defocus != 0.0,
            "max_angle": self.max_angle is not None,
            "binning": self.binning != 1,
            "segments": self.segments is not None,
            "rotation": self.rotation != 0.0,
            "pixel_size": self.pixel_size is not None,
        }
        applies = {
            "annular": {"inner", "outer"},
            "segmented": {"inner", "outer", "segments", "rotation"},
            "pixelated": {"inner", "outer", "max_angle", "binning"},
            "image": {"defocus", "pixel_size"},
        }[self.kind]
        unused = [key for key, value in given.items() if value and key not in applies]
        if unused:
            keys = ", ".join(unused)
            raise StudyError(
                f"mode {self.name!r} ({self.kind}): {keys} does not apply to a {self.kind} mode; remove it"
            )
        if self.segments is not None:
            as_number(f"mode {self.name!r}: segments", self.segments, integer=True, minimum=2, error=StudyError)
        as_number(f"mode {self.name!r}: rotation", self.rotation, "deg", error=StudyError)

    def _check_camera(self) -> None:
        """``camera_parameters`` (a table of the camera's own numbers and ``allow_extrapolation``),
        stored as sorted pairs; ``pixel_size`` (Å at the specimen) > 0. Unknown parameters are refused."""
        from temsim.cameras import camera_model

        params = self.camera_parameters
        if isinstance(params, dict):
            params = tuple(sorted(params.items()))
        if not isinstance(params, tuple) or not all(isinstance(p, tuple) and len(p) == 2 for p in params):
            raise StudyError(
                f"mode {self.name!r}: camera_parameters must be a table, "
                "e.g. {dqe0 = 0.7, allow_extrapolation = true}"
            )
        object.__setattr__(self, "camera_parameters", params)
        if self.pixel_size is not None:
            as_number(
                f"mode {self.name!r}: pixel_size",
                self.pixel_size,
                "Å",
                minimum=0,
                exclusive_minimum=True,
                error=StudyError,
            )
        try:
            model = camera_model(self.camera_name, **dict(params))
        except InputError as err:
            raise StudyError(f"mode {self.name!r}: camera {self.camera_name!r}: {err}") from None
        signal = {"annular": "stem", "segmented": "stem", "pixelated": "4dstem", "image": "image"}[self.kind]
        if not model.accepts(signal):
            from temsim.cameras import CAMERA_PRESETS

            fits = [n for n in CAMERA_PRESETS if camera_model(n).accepts(signal)]
            raise StudyError(
                f"mode {self.name!r} ({self.kind}): camera {self.camera_name!r} does not record {signal!r} "
                f"signals; cameras that do: {', '.join(fits)}"
            )

    @property
    def spec(self):
        """The registry entry (:class:`temsim.modes.ModeSpec`), or the spec of a user-named mode."""
        return named_spec(self.name, self.kind)

    @property
    def nsegments(self) -> int:
        """Number of segments of a segmented mode (default 4)."""
        return int(self.segments) if self.segments is not None else 4

    @property
    def camera_name(self) -> str:
        return self.camera or self.spec.default_camera

    @property
    def detector_name(self) -> str:
        """Deprecated alias of :attr:`camera_name`."""
        return self.camera_name

    @property
    def label(self) -> str:
        return self.spec.label(self)

    def angles(self, alpha: float) -> tuple[float, float]:
        if self.inner is not None and self.outer is not None:
            return (self.inner, self.outer)
        inner, outer = self.spec.default_angles(alpha)
        return (self.inner if self.inner is not None else inner, self.outer if self.outer is not None else outer)


@dataclass(frozen=True)
class Feature:
    """What distinguishes H1 from H0.

    ``kind``: ``"substitution"`` (``element`` replaces the atom at ``site``), ``"vacancy"``
    (removes it), ``"adatom"`` (adds ``element`` ``height`` Å above ``position``), or
    ``"structure"`` (H1 is the structure in ``file``), or ``"remove"`` (removes the atoms
    ``sites``, indices into the specimen after its supercell: a missing molecule or linker).
    ``site`` is an atom index, an (x, y) position in Å, or ``"center"`` (the atom nearest the
    cell centre, optionally of ``host_element``).
    """

    kind: str
    element: str | None = None
    site: Any = "center"
    host_element: str | None = None
    position: tuple[float, float] | None = None
    height: float = 2.0
    file: str | None = None
    sites: tuple[int, ...] | None = None

    def __post_init__(self):
        kinds = ("substitution", "vacancy", "adatom", "structure", "remove")
        if self.kind not in kinds:
            raise StudyError(f"feature.kind {self.kind!r} is not one of {', '.join(kinds)}")
        if self.kind == "remove":
            self._check_sites()
        if self.kind in ("substitution", "adatom") and not self.element:
            raise StudyError(f"feature.element is required for a {self.kind}")
        if self.kind == "structure" and not self.file:
            raise StudyError("feature.file (the alternative structure) is required for kind 'structure'")
        for key in ("element", "host_element"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or value not in chemical_symbols[1:]):
                raise StudyError(f"feature.{key} {value!r} is not a chemical element symbol (e.g. 'C', 'Si')")
        self._check_keys_apply()

    def _unused_keys(self) -> list[str]:
        """Keys given that this kind of feature would ignore."""
        kind = self.kind
        unused = []
        if kind == "structure":
            unused += [k for k in ("element", "host_element") if getattr(self, k) is not None]
        if kind != "adatom":
            unused += ["position"] if self.position is not None else []
            unused += ["height"] if self.height != 2.0 else []
        else:
            unused += ["host_element"] if self.host_element is not None else []
        if kind in ("adatom", "structure") and not (isinstance(self.site, str) and self.site == "center"):
            unused.append("site")
        if kind != "structure" and self.file is not None:
            unused.append("file")
        if kind == "remove":
            unused += [k for k in ("element", "host_element") if getattr(self, k) is not None]
            unused += [] if isinstance(self.site, str) and self.site == "center" else ["site"]
        elif self.sites is not None:
            unused.append("sites")
        return unused

    def _check_sites(self) -> None:
        """``sites`` of a removal: a non-empty list of distinct atom indices (stored as a tuple)."""
        sites = self.sites
        if isinstance(sites, (str, bytes)) or not hasattr(sites, "__len__") or not len(sites):
            raise StudyError(
                "feature.sites (the indices of the atoms removed, e.g. sites = [12, 13, 40]) is required "
                f"for kind 'remove', got {sites!r}"
            )
        sites = tuple(
            as_number(f"feature.sites[{i}]", s, integer=True, minimum=0, error=StudyError) for i, s in enumerate(sites)
        )
        if len(set(sites)) != len(sites):
            raise StudyError(f"feature.sites lists an atom more than once: {sorted(sites)}")
        object.__setattr__(self, "sites", sites)

    def _check_keys_apply(self) -> None:
        """Refuse keys this kind of feature would ignore, and contradictory ones."""
        kind = self.kind
        unused = self._unused_keys()
        if unused:
            keys = ", ".join(f"feature.{k}" for k in unused)
            raise StudyError(f"{keys} does not apply to a feature of kind {kind!r}; remove it")
        if kind == "vacancy" and self.element and self.host_element and self.element != self.host_element:
            raise StudyError(
                f"feature.element {self.element!r} and feature.host_element {self.host_element!r} disagree: "
                "for a vacancy both name the element removed; give one"
            )
        if kind == "substitution" and self.element == self.host_element:
            raise StudyError(f"feature.element {self.element!r} replaces an atom of the same element: nothing changes")

    @property
    def _site_element(self) -> tuple[str, str | None]:
        """(key, element) that the site must hold: what a vacancy removes or a substitution replaces."""
        if self.kind == "vacancy" and self.element:
            return "feature.element", self.element
        return "feature.host_element", self.host_element

    def check_specimen(self, atoms: Atoms) -> None:
        """Refuse an element that names an atom to remove or replace but is not in ``atoms``, and
        removal sites that do not exist."""
        if self.kind == "remove" and max(self.sites) >= len(atoms):
            raise StudyError(
                f"feature.sites: atom {max(self.sites)} does not exist; the specimen has {len(atoms)} atoms "
                f"(indices 0–{len(atoms) - 1}, counted after the supercell)"
            )
        key, element = self._site_element
        if self.kind in ("substitution", "vacancy") and element is not None:
            present = sorted(set(atoms.get_chemical_symbols()))
            if element not in present:
                raise StudyError(f"{key} {element!r} is not in the specimen (it holds {', '.join(present)})")

    def _site_index(self, atoms: Atoms) -> int:
        self.check_specimen(atoms)
        key, element = self._site_element
        symbols = np.array(atoms.get_chemical_symbols())
        if isinstance(self.site, (int, np.integer)) and not isinstance(self.site, bool):
            if not 0 <= int(self.site) < len(atoms):
                raise StudyError(
                    f"feature.site {self.site} does not exist: the specimen has {len(atoms)} atoms "
                    f"(indices 0–{len(atoms) - 1})"
                )
            if element is not None and symbols[int(self.site)] != element:
                raise StudyError(
                    f"feature.site {self.site} is a {symbols[int(self.site)]} atom, not {element} ({key}); "
                    'give the index of an atom of that element or site = "center"'
                )
            index = int(self.site)
        elif isinstance(self.site, str) and self.site == "center":
            centre = np.diag(atoms.cell)[:2] / 2
            candidates = np.arange(len(atoms)) if element is None else np.flatnonzero(symbols == element)
            d = np.linalg.norm(atoms.positions[candidates, :2] - centre, axis=1)
            index = int(candidates[np.argmin(d)])
        else:
            try:
                index = st.nearest_site(atoms, tuple(self.site), element=element)
            except (TypeError, ValueError) as err:  # not a position; InputError/StructureError are ValueErrors
                raise StudyError(f"feature.site {self.site!r}: {err}") from None
        if self.kind == "substitution" and symbols[index] == self.element:
            raise StudyError(
                f"feature.site {self.site!r} is already a {self.element} atom (feature.element): nothing changes"
            )
        return index

    def apply(self, atoms: Atoms) -> tuple[Atoms, tuple[float, float]]:
        """H1 structure and the feature's lateral position (Å)."""
        if self.kind == "structure":
            other = st.as_atoms(self.file)
            return other, tuple(np.diag(other.cell)[:2] / 2)
        if self.kind == "adatom":
            position = self.position or tuple(np.diag(atoms.cell)[:2] / 2)
            return st.adatom(atoms, self.element, position, height=self.height), tuple(position)
        if self.kind == "remove":
            self.check_specimen(atoms)
            keep = np.ones(len(atoms), dtype=bool)
            keep[list(self.sites)] = False
            return atoms[keep], self._removed_centre(atoms)
        index = self._site_index(atoms)
        position = tuple(atoms.positions[index, :2])
        if self.kind == "substitution":
            return st.substitute(atoms, index, self.element), position
        return st.vacancy(atoms, index), position

    def locate(self, atoms: Atoms) -> dict:
        """Where the feature acts on ``atoms`` (the H0 structure), for reports and ``plan.nc``.

        ``{"kind", "element", "index", "x", "y"}``: for a substitution or vacancy the atom
        replaced or removed (its element, index in ``atoms`` and lateral position in Å), plus
        ``"new_element"`` for a substitution; an adatom's element and position (index ``-1``);
        for an alternative structure only its file.
        """
        if self.kind == "structure":
            return {"kind": self.kind, "file": os.path.basename(self.file)}
        if self.kind == "adatom":
            x, y = self.position or tuple(np.diag(atoms.cell)[:2] / 2)
            return {"kind": self.kind, "element": self.element, "index": -1, "x": float(x), "y": float(y)}
        if self.kind == "remove":
            self.check_specimen(atoms)
            x, y = self._removed_centre(atoms)
            formula = atoms[list(self.sites)].get_chemical_formula(mode="hill")
            return {"kind": self.kind, "element": formula, "indices": list(self.sites), "x": x, "y": y}
        index = self._site_index(atoms)
        x, y = (float(v) for v in atoms.positions[index, :2])
        site = {"kind": self.kind, "element": atoms.get_chemical_symbols()[index], "index": index, "x": x, "y": y}
        if self.kind == "substitution":
            site["new_element"] = self.element
        return site

    def _removed_centre(self, atoms: Atoms) -> tuple[float, float]:
        """Lateral centroid (Å) of the removed atoms, taken across the periodic cell edges."""
        cell = np.diag(atoms.cell)[:2]
        xy = atoms.positions[list(self.sites), :2]
        offsets = xy - xy[0]
        offsets -= cell * np.round(offsets / cell)  # nearest periodic image of each atom
        x, y = np.mod(xy[0] + offsets.mean(axis=0), cell)
        return float(x), float(y)

    @staticmethod
    def describe_site(site: dict) -> str:
        """:meth:`locate`'s answer in words."""
        where = f"at x = {site.get('x', 0):.2f} Å, y = {site.get('y', 0):.2f} Å"
        if site["kind"] == "remove":
            return f"{site['element']} removed, centred {where}"
        if site["kind"] == "vacancy":
            return f"{site['element']} atom {site['index']} removed, {where}"
        if site["kind"] == "substitution":
            return f"{site['element']} atom {site['index']} replaced by {site['new_element']}, {where}"
        if site["kind"] == "adatom":
            return f"{site['element']} adatom added {where}"
        return f"H1 is the structure in {site['file']}"

    def describe(self) -> str:
        if self.kind == "substitution":
            return f"{self.element} substituting {self.host_element or 'the central atom'}"
        if self.kind == "vacancy":
            return f"{self.element or self.host_element or 'atom'} vacancy"
        if self.kind == "adatom":
            return f"{self.element} adatom"
        if self.kind == "remove":
            return f"missing group of {len(self.sites)} atoms"
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
        Focal-spread standard deviation (Å); or give ``energy_spread`` and
        ``chromatic_aberration``, from which it follows at each energy.
    sampling : float or None
        Simulation sampling (Å; the grid takes FFT-friendly point counts, so the sampling used
        is this or slightly finer). Default 0.05 Å unless ``gpts`` is given.
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
        ``{"element": "C" or ["C", "N"], "material": "graphene", "temperature": 300}`` (optional
        ``displacement_energy`` eV, ``debye_temperature`` K, ``mean_square_displacement`` Å²,
        otherwise from the damage table): knock-on and feature survival at each energy.
    target : DecisionTarget
        Decision target (false alarm / power, or probability of error; search sites).
    dose_range : (float, float)
        Doses (e/Å²) for the power-vs-dose figure.
    seed : int
        Seed for Monte-Carlo checks and noisy images.
    gpts : (int, int) or None
        Simulation grid points (x, y) over the cell, instead of ``sampling`` (give one).
    aperture_edge : float or None
        Width (mrad) of the soft edge of the probe-forming and objective apertures; ``None``:
        one reciprocal pixel for the probe and a hard objective aperture.
    source_size : float
        FWHM (Å) of the Gaussian effective source: STEM signals are blurred over probe
        positions by it (partial spatial coherence); 0 is a point source.
    energy_spread : float
        FWHM (eV) of the beam's energy spread; with ``chromatic_aberration`` it sets the focal
        spread at each energy (:func:`temsim.microscopes.focal_spread_from_energy_spread`).
    chromatic_aberration : float
        Chromatic aberration coefficient Cc (Å).
    microscope : str or None
        Name of the microscope preset the optics came from (:mod:`temsim.microscopes`), for
        reports; its energy range is checked.
    acquisitions : tuple of temsim.acquisitions.Acquisition (or of tuples of mode labels)
        STEM modes recorded together from the same electrons; the plan reports each one's joint
        dose. Default: one acquisition of all annular and segmented modes.
    """

    name: str
    atoms: Atoms
    feature: Feature
    energies: tuple[float, ...] = (200e3,)
    modes: tuple[Mode, ...] = (Mode("HAADF"), Mode("ABF"), Mode("iDPC"))
    semiangle_cutoff: float = 25.0
    aberrations: Aberrations = field(default_factory=Aberrations)
    focal_spread: float = 0.0
    sampling: float | None = None
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
    gpts: tuple[int, int] | None = None
    aperture_edge: float | None = None
    source_size: float = 0.0
    energy_spread: float = 0.0
    chromatic_aberration: float = 0.0
    microscope: str | None = None
    acquisitions: tuple = ()

    def __post_init__(self):
        self._check_types()
        self._check_grid()
        self._check_optics()
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
        for name in ("scan_step", "window", "slice_thickness", "semiangle_cutoff"):
            if not getattr(self, name) > 0:
                raise StudyError(f"{name} must be positive, got {getattr(self, name)!r}")
        labels = [m.label for m in self.modes]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise StudyError(
                f"modes repeat: {', '.join(map(repr, repeated))} appear(s) more than once ({labels}); give each "
                'mode its own name, e.g. {name = "MAADF", kind = "annular", inner = 40, outer = 100}'
            )
        object.__setattr__(self, "seed", as_number("seed", self.seed, integer=True, minimum=0, error=StudyError))
        self._check_acquisitions()
        self._check_phonons()
        self._check_damage()
        self.feature.check_specimen(self.atoms)
        if self.feature.kind in ("substitution", "vacancy"):
            self.feature_site()  # a site that does not exist or holds another element is refused now

    def _check_acquisitions(self) -> None:
        """Acquisitions (:mod:`temsim.acquisitions`): tuples of mode labels recorded together."""
        if not isinstance(self.acquisitions, (tuple, list)):
            raise StudyError(f"acquisitions must be a list of acquisitions, got {self.acquisitions!r}")
        items = [a if isinstance(a, Acquisition) else Acquisition(tuple(a)) for a in self.acquisitions]
        kinds = {m.label: m.kind for m in self.modes}
        for acquisition in items:
            check_acquisition(acquisition, kinds)
        object.__setattr__(self, "acquisitions", tuple(items))

    def _check_grid(self) -> None:
        """``sampling`` or ``gpts``, not both (default sampling 0.05 Å)."""
        if self.gpts is not None:
            if self.sampling is not None:
                raise StudyError(
                    "simulation.sampling and simulation.gpts both set the grid; give one (gpts = [nx, ny] "
                    "points over the cell, or sampling in Å)"
                )
            gpts = self.gpts
            if isinstance(gpts, (str, bytes)) or not hasattr(gpts, "__len__") or len(gpts) != 2:
                raise StudyError(f"simulation.gpts must be two integers [nx, ny], got {gpts!r}")
            gpts = tuple(
                as_number(f"simulation.gpts[{i}]", g, integer=True, minimum=2, error=StudyError)
                for i, g in enumerate(gpts)
            )
            object.__setattr__(self, "gpts", gpts)
            return
        if self.sampling is None:
            object.__setattr__(self, "sampling", 0.05)
        as_number("simulation.sampling", self.sampling, "Å", minimum=0, exclusive_minimum=True, error=StudyError)

    def _check_optics(self) -> None:
        """Aperture edge, source size, energy spread and Cc: finite, ≥ 0 and not contradictory."""
        for key, unit in (
            ("source_size", "Å"),
            ("energy_spread", "eV"),
            ("chromatic_aberration", "Å"),
            ("focal_spread", "Å"),
        ):
            as_number(f"microscope.{key}", getattr(self, key), unit, minimum=0, error=StudyError)
        if self.aperture_edge is not None:
            as_number("microscope.aperture_edge", self.aperture_edge, "mrad", minimum=0, error=StudyError)
        if self.energy_spread > 0 and self.focal_spread > 0:
            raise StudyError(
                "microscope.focal_spread and microscope.energy_spread both set the focal spread; give one "
                "(energy_spread with chromatic_aberration gives it at each energy)"
            )
        if self.energy_spread > 0 and not self.chromatic_aberration > 0:
            raise StudyError(
                "microscope.energy_spread needs microscope.chromatic_aberration (Cc, Å) to set a focal spread"
            )
        if self.microscope is not None:
            low, high = _microscope_preset(self.microscope)["energies"]
            outside = [e for e in self.energies if not low <= float(e) <= high]
            if outside:
                raise StudyError(
                    f"microscope preset {self.microscope!r} describes {low / 1e3:g}–{high / 1e3:g} kV; energies "
                    f"{[float(e) for e in outside]} eV are outside it (choose another preset or give the optics keys)"
                )

    def grid_keys(self) -> dict:
        """``{"sampling": Å}`` or ``{"gpts": (nx, ny)}``: the grid keys for :class:`temsim.Potential`."""
        return {"gpts": self.gpts} if self.gpts is not None else {"sampling": self.sampling}

    def focal_spread_at(self, energy: float) -> float:
        """Focal-spread standard deviation (Å) at ``energy`` (eV): ``focal_spread``, or the one
        that ``energy_spread`` and ``chromatic_aberration`` give there."""
        if self.energy_spread > 0:
            return focal_spread_from_energy_spread(energy, self.energy_spread, self.chromatic_aberration)
        return float(self.focal_spread)

    def _check_types(self) -> None:
        if not isinstance(self.name, str):
            raise StudyError(f"name must be a string, got {self.name!r}")
        if not isinstance(self.atoms, Atoms) or not len(self.atoms):
            raise StudyError(f"atoms must be a non-empty ase.Atoms, got {type(self.atoms).__name__}")
        if not isinstance(self.feature, Feature):
            raise StudyError(f"feature must be a temsim.study.Feature, got {self.feature!r}")
        if not isinstance(self.energies, (tuple, list)) or not all(
            isinstance(e, (int, float, np.number)) and not isinstance(e, bool) for e in self.energies
        ):
            raise StudyError(f"microscope.energies must be a sequence of energies in eV, got {self.energies!r}")
        if not isinstance(self.modes, (tuple, list)):
            raise StudyError(f"modes must be a sequence of temsim.study.Mode, got {self.modes!r}")
        bad = [m for m in self.modes if not isinstance(m, Mode)]
        if bad:
            raise StudyError(f"modes must be temsim.study.Mode objects, got {bad[0]!r}")
        if not isinstance(self.target, DecisionTarget):
            raise StudyError(f"target must be a temsim.detection.DecisionTarget, got {self.target!r}")

    def _check_phonons(self) -> None:
        if self.phonons is None:
            return
        if not isinstance(self.phonons, dict):
            raise StudyError(f"phonons must be a dict {{num_configs, sigma, seed}}, got {self.phonons!r}")
        unknown = set(self.phonons) - {"num_configs", "sigma", "seed"}
        if unknown:
            raise StudyError(f"unknown phonons key(s) {sorted(unknown)}; valid keys are num_configs, sigma, seed")
        for key in ("num_configs", "seed"):
            if key in self.phonons:
                as_number(
                    f"phonons.{key}",
                    self.phonons[key],
                    integer=True,
                    minimum=int(key == "num_configs"),
                    error=StudyError,
                )

    def _check_damage(self) -> None:
        if self.critical_dose is not None:
            try:
                _critical_dose(self.critical_dose)
            except (InputError, TypeError) as err:
                raise StudyError(f"damage.critical_dose: {err}") from None
        if self.knock_on is None:
            return
        if not isinstance(self.knock_on, dict) or "element" not in self.knock_on:
            raise StudyError(f"knock_on must be a dict with an element (and its damage data), got {self.knock_on!r}")
        unknown = set(self.knock_on) - set(_KNOCK_ON_KEYS)
        if unknown:
            raise StudyError(f"unknown knock_on key(s) {sorted(unknown)}; valid keys are {', '.join(_KNOCK_ON_KEYS)}")
        _check_knock_on(self.knock_on, self.energies, set(self.atoms.get_chemical_symbols()) | {self.feature.element})

    def feature_site(self) -> dict:
        """Where the feature acts (see :meth:`Feature.locate`), on the prepared H0 structure."""
        return self.feature.locate(st.prepare_for_slicing(self.atoms))

    def hypotheses(self) -> tuple[Atoms, Atoms, tuple[float, float]]:
        """(H0 atoms, H1 atoms, feature position (Å))."""
        h0 = st.prepare_for_slicing(self.atoms)
        h1, position = self.feature.apply(h0)
        if not np.allclose(np.diag(h1.cell), np.diag(h0.cell)):
            raise StudyError(
                "the feature's structure has a different cell from the specimen; both hypotheses must share the cell"
            )
        return h0, st.prepare_for_slicing(h1), position


_KNOCK_ON_KEYS = (
    "element",
    "material",
    "displacement_energy",
    "temperature",
    "debye_temperature",
    "mean_square_displacement",
)


def _check_knock_on(spec: dict, energies, present: set) -> None:
    """Every knock-on element is in the specimen and has its damage data (table or study keys)."""
    elements = spec["element"]
    elements = [elements] if isinstance(elements, str) else elements
    if not isinstance(elements, (list, tuple)) or not elements or not all(isinstance(e, str) for e in elements):
        raise StudyError(f"damage.knock_on_element must be an element symbol or a list of them, got {elements!r}")
    if "displacement_energy" in spec and len(elements) > 1:
        raise StudyError(
            "damage.displacement_energy applies to one element; with several knock_on_element values "
            "give damage.material and let the damage table supply each E_d"
        )
    for element in elements:
        if element not in present - {None}:
            raise StudyError(
                f"damage.knock_on_element {element!r} is not in the specimen or the feature "
                f"(elements: {', '.join(sorted(present - {None}))})"
            )
        try:
            damage_channels.knock_on_channel(element, float(energies[0]), spec, 0.1)
        except InputError as err:
            raise StudyError(f"damage: {err}") from None
