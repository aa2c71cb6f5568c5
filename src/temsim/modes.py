"""The registry of imaging modes the planner compares.

Each mode (``HAADF``, ``iDPC``, ``HRTEM``…) is one :class:`ModeSpec` entry: its kind, its
default angles from the convergence semiangle α, its default camera preset and how the
report displays it. What is common to a kind — how its detector is built, how its raw
channels are taken from the scan output, which area one channel covers — lives in one
:class:`ModeKind` per kind. :mod:`temsim.study`, :mod:`temsim.planning` and
:mod:`temsim.report` ask this registry instead of testing names, so adding a mode is one
call::

    from temsim.modes import ModeSpec, register_mode
    register_mode(ModeSpec("MAADF", kind="annular", default_angles=lambda alpha: (2 * alpha, 4 * alpha)))

Angles are in mrad, lengths in Å.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from temsim.errors import StudyError

__all__ = [
    "ModeSpec",
    "ModeKind",
    "MODES",
    "KINDS",
    "register_mode",
    "mode_spec",
    "mode_kind",
    "named_spec",
    "DISPLAYS",
]


# ----------------------------------------------------------------------------- displays
def _step(signal: dict) -> tuple[float, float]:
    return (np.diff(signal["scan_x"][:2]).item(), np.diff(signal["scan_y"][:2]).item())


def display_raw(counts: np.ndarray, signal: dict) -> np.ndarray:
    """The counts as recorded (annular image, HRTEM image)."""
    return counts


def display_idpc(counts: np.ndarray, signal: dict) -> np.ndarray:
    """Segment counts (x, y, segment) → iDPC: integrate the segments' gradient."""
    from temsim.detectors import integrate_gradient

    azimuth = signal.get("rotation", 0.0) + (np.arange(counts.shape[-1]) + 0.5) * 2 * np.pi / counts.shape[-1]
    gx = (counts * np.cos(azimuth)).sum(-1)
    gy = (counts * np.sin(azimuth)).sum(-1)
    return integrate_gradient(gx, gy, _step(signal), regularization=0.05)


def display_icom(counts: np.ndarray, signal: dict) -> np.ndarray:
    """Diffraction counts (x, y, kx, ky) → iCoM: integrate the centre of mass."""
    from temsim.detectors import integrate_gradient

    nkx, nky = counts.shape[-2:]
    kx = np.arange(nkx) - (nkx - 1) / 2
    ky = np.arange(nky) - (nky - 1) / 2
    total = np.maximum(counts.sum((-2, -1)), 1)
    gx = (counts * kx[:, None]).sum((-2, -1)) / total
    gy = (counts * ky[None, :]).sum((-2, -1)) / total
    return integrate_gradient(gx, gy, _step(signal), regularization=0.05)


#: How the report turns a noisy realization of a mode's channels into an image.
DISPLAYS: dict[str, Callable] = {"raw": display_raw, "idpc": display_idpc, "icom": display_icom}


# ----------------------------------------------------------------------------- kinds
def _strip(da: xr.DataArray, label: str) -> xr.DataArray:
    """Undo the scan's ``<detector>_<dim>`` renaming of clashing detector dims."""
    prefix = f"{label}_"
    renames = {name: name[len(prefix) :] for name in list(da.dims) + list(da.coords) if name.startswith(prefix)}
    return da.rename(renames) if renames else da


@dataclass(frozen=True)
class ModeKind:
    """What every mode of one kind shares.

    Attributes
    ----------
    name : str
        ``"annular"``, ``"segmented"``, ``"pixelated"`` or ``"image"``.
    stem : bool
        Recorded in the STEM scan (``True``) or as a plane-wave image (``False``).
    detector : callable or None
        ``detector(mode, inner, outer, limit) -> detector`` for :func:`temsim.scan`;
        ``limit`` is the band limit of the grid (mrad) at that energy.
    channels : callable
        ``channels(da, label) -> DataArray`` of the mode's raw channels from the scan
        output (scan dims first), or from the HRTEM image.
    default_camera : str
        Camera preset when a mode names none.
    label : callable
        ``label(name, mode) -> str``: the row label of a configured mode.
    display : str
        Key of :data:`DISPLAYS` for a user-named mode of this kind (not in :data:`MODES`).
    default_angles : callable or None
        ``alpha -> (inner, outer)`` for a user-named mode of this kind; ``None``: the study
        must give ``inner`` and ``outer``.
    """

    name: str
    stem: bool
    detector: Callable | None
    channels: Callable
    default_camera: str
    label: Callable = lambda name, mode: name
    display: str = "raw"
    default_angles: Callable | None = None


def _annular(mode, inner, outer, limit):
    from temsim.detectors import AnnularDetector

    return AnnularDetector(inner, outer)


def _segmented(mode, inner, outer, limit):
    from temsim.detectors import SegmentedDetector

    return SegmentedDetector(inner, outer, nsegments=mode.nsegments, rotation=float(np.deg2rad(mode.rotation)))


def _pixelated(mode, inner, outer, limit):
    from temsim.detectors import PixelatedDetector

    return PixelatedDetector(max_angle=mode.max_angle or min(outer, limit), binning=mode.binning)


def _one_ring(da: xr.DataArray, label: str) -> xr.DataArray:
    return _strip(da, label).isel(ring=0, drop=True)


def _reach(alpha: float) -> tuple[float, float]:
    return (0.0, 2.5 * alpha)


def _no_angles(alpha: float) -> tuple[float, float]:
    return (0.0, 0.0)


KINDS: dict[str, ModeKind] = {
    "annular": ModeKind("annular", True, _annular, _strip, "annular-pmt"),
    "segmented": ModeKind("segmented", True, _segmented, _one_ring, "annular-pmt", display="idpc"),
    "pixelated": ModeKind("pixelated", True, _pixelated, _strip, "hybrid-pixel", display="icom", default_angles=_reach),
    "image": ModeKind(
        "image",
        False,
        None,
        _strip,
        "counting-ded",
        label=lambda name, mode: f"{name} Δf={mode.defocus:g}Å",
        default_angles=_no_angles,
    ),
}


# ----------------------------------------------------------------------------- modes
@dataclass(frozen=True)
class ModeSpec:
    """One imaging mode.

    Parameters
    ----------
    name : str
        Name used in studies (``Mode("HAADF")``, ``modes = ["HAADF"]``).
    kind : str
        A key of :data:`KINDS`.
    default_angles : callable
        ``alpha (mrad) -> (inner, outer)`` detector range (mrad) when the study gives none.
    camera : str, optional
        Default camera preset (``temsim.camera_model`` name); default: the kind's.
    display : str
        Key of :data:`DISPLAYS`: how the report shows a noisy realization.
    """

    name: str
    kind: str
    default_angles: Callable[[float], tuple[float, float]] = _no_angles
    camera: str | None = None
    display: str = "raw"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise StudyError(f"mode {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.display not in DISPLAYS:
            raise StudyError(f"mode {self.name!r}: display {self.display!r} is not one of {', '.join(DISPLAYS)}")

    @property
    def mode_kind(self) -> ModeKind:
        return KINDS[self.kind]

    @property
    def default_camera(self) -> str:
        return self.camera or KINDS[self.kind].default_camera

    def label(self, mode) -> str:
        """Row label of a configured mode: the name, or ``"HRTEM Δf=-60Å"`` for images."""
        return KINDS[self.kind].label(self.name, mode)


MODES: dict[str, ModeSpec] = {}


def register_mode(spec: ModeSpec, *, replace: bool = False) -> ModeSpec:
    """Add ``spec`` to :data:`MODES` (refused if the name exists, unless ``replace``)."""
    if not isinstance(spec, ModeSpec):
        raise StudyError(f"register_mode needs a ModeSpec, got {type(spec).__name__}")
    if spec.name in MODES and not replace:
        raise StudyError(f"mode {spec.name!r} is already registered; pass replace=True to redefine it")
    MODES[spec.name] = spec
    return spec


def unregister_mode(name: str) -> None:
    """Remove a mode added with :func:`register_mode` (tests, plug-ins)."""
    MODES.pop(name, None)


def mode_spec(name: str) -> ModeSpec:
    """The registry entry of mode ``name`` (a :class:`~temsim.errors.StudyError` lists the valid ones)."""
    try:
        return MODES[name]
    except KeyError:
        raise StudyError(f"unknown mode {name!r}; valid modes are {', '.join(MODES)}") from None


def mode_kind(name: str) -> ModeKind:
    return KINDS[mode_spec(name).kind]


def _no_default_angles(name: str, kind: str) -> Callable:
    def angles(alpha: float) -> tuple[float, float]:
        raise StudyError(
            f"mode {name!r} (kind {kind!r}) is not a registered mode: give its inner and outer angles (mrad)"
        )

    return angles


def named_spec(name: str, kind: str | None = None) -> ModeSpec:
    """The spec of a mode a study names: the registered one, or a new mode ``name`` of ``kind``.

    A registered ``name`` with another ``kind`` is refused; an unregistered ``name`` needs a
    ``kind`` (one of :data:`KINDS`). A user-named annular or segmented mode has no default
    angles (the study gives them); a pixelated one reaches 2.5α, an image mode needs none.
    """
    if name in MODES:
        spec = MODES[name]
        if kind is not None and kind != spec.kind:
            raise StudyError(
                f"mode {name!r} is a registered {spec.kind} mode, not {kind!r}; drop kind or give the mode another name"
            )
        return spec
    if kind is None:
        raise StudyError(
            f"unknown mode {name!r}; valid modes are {', '.join(MODES)}, or name a mode of your own with "
            f'kind = one of {", ".join(KINDS)} (e.g. name = "MAADF", kind = "annular", inner = 40, outer = 100)'
        )
    if kind not in KINDS:
        raise StudyError(f"mode {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    mode_kind = KINDS[kind]
    angles = mode_kind.default_angles or _no_default_angles(name, kind)
    return ModeSpec(name, kind, angles, display=mode_kind.display)


for _spec in (
    ModeSpec("HAADF", "annular", lambda a: (max(3 * a, 50.0), 200.0)),
    ModeSpec("ADF", "annular", lambda a: (a, 3 * a)),
    ModeSpec("ABF", "annular", lambda a: (a / 2, a)),
    ModeSpec("BF", "annular", lambda a: (0.0, a)),
    ModeSpec("DPC", "segmented", lambda a: (0.2 * a, a), display="idpc"),
    ModeSpec("iDPC", "segmented", lambda a: (0.2 * a, a), display="idpc"),
    # pixelated: the outer angle is the detector's reach (2.5α, capped at the band limit)
    ModeSpec("CoM", "pixelated", lambda a: (0.0, 2.5 * a), display="icom"),
    ModeSpec("iCoM", "pixelated", lambda a: (0.0, 2.5 * a), display="icom"),
    ModeSpec("4D-STEM", "pixelated", lambda a: (0.0, 2.5 * a), display="icom"),
    ModeSpec("HRTEM", "image"),
):
    register_mode(_spec)
del _spec
