"""Simultaneous acquisitions: modes recorded from the same electrons, and their joint dose.

An *acquisition* is a set of STEM modes recorded in one scan from the same electrons: the
rings of a multi-ring annular detector, the segments of a DPC detector, an annular detector
outside a segmented one, or virtual detectors formed from one camera's diffraction patterns.
Its joint dose is the likelihood ratio over all its channels.

Overlapping detectors (BF 0–α and ABF α/2–α) cannot both be physical detectors; they are
virtual detectors of one camera, whose pixels can equally be summed into the *cells* of the
detectors' disjoint refinement (diffraction space partitioned by which detectors cover each
pixel). The joint counts are computed on these cells (:func:`refinement`): independent
Poisson channels that never count an electron twice. For disjoint detectors the cells are
the detectors themselves.

Rules (each refused with an :class:`AcquisitionError` that says what to change):

* only STEM detector modes (annular, segmented) form an acquisition; an image mode (HRTEM)
  records other electrons; a pixelated mode already is the bound of all its virtual detectors;
* overlapping detectors must share their camera (one efficiency per electron).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from temsim.errors import StudyError

__all__ = [
    "Acquisition",
    "AcquisitionError",
    "JOINT_KINDS",
    "check_acquisition",
    "default_acquisitions",
    "refinement",
    "cell_efficiencies",
    "cell_rates",
]

#: Mode kinds whose channels can be recorded together (detectors of one scan).
JOINT_KINDS = ("annular", "segmented")


class AcquisitionError(StudyError):
    """An acquisition that mixes incompatible detectors or names unknown modes."""


@dataclass(frozen=True)
class Acquisition:
    """Modes recorded from the same electrons.

    Attributes
    ----------
    name : str
        Row label in the report (``"joint: HAADF+ABF+iDPC"`` by default).
    modes : tuple of str
        Mode labels of the study.
    """

    modes: tuple
    name: str = ""

    def __post_init__(self):
        modes = tuple(str(m) for m in self.modes)
        if len(modes) < 2:
            raise AcquisitionError(f"an acquisition joins at least two modes, got {list(modes)}")
        if len(set(modes)) != len(modes):
            raise AcquisitionError(f"an acquisition names a mode twice: {list(modes)}")
        object.__setattr__(self, "modes", modes)
        if not self.name:
            object.__setattr__(self, "name", "joint: " + "+".join(modes))


def check_acquisition(acquisition: Acquisition, kinds: dict) -> None:
    """Refuse an acquisition whose modes are not in the study or cannot be recorded together.

    Parameters
    ----------
    acquisition : Acquisition
    kinds : dict
        ``{mode label: kind}`` of the study's modes.
    """
    unknown = [m for m in acquisition.modes if m not in kinds]
    if unknown:
        raise AcquisitionError(
            f"acquisition {acquisition.name!r} names {unknown}, which are not modes of the study ({', '.join(kinds)})"
        )
    images = [m for m in acquisition.modes if kinds[m] == "image"]
    if images:
        raise AcquisitionError(
            f"acquisition {acquisition.name!r} mixes {images} (a plane-wave image) with STEM detectors: an image and a "
            "STEM scan record different electrons; list only annular and segmented STEM modes"
        )
    other = [m for m in acquisition.modes if kinds[m] not in JOINT_KINDS]
    if other:
        raise AcquisitionError(
            f"acquisition {acquisition.name!r} includes {other} ({', '.join(kinds[m] for m in other)}): a pixelated "
            "camera records every pixel, so its own row already is the bound of all its virtual detectors; list only "
            "annular and segmented modes"
        )


def default_acquisitions(kinds: dict) -> list:
    """One acquisition of all annular and segmented modes (when there are at least two)."""
    modes = [label for label, kind in kinds.items() if kind in JOINT_KINDS]
    return [Acquisition(tuple(modes))] if len(modes) >= 2 else []


def refinement(masks) -> tuple[np.ndarray, np.ndarray]:
    """The disjoint refinement of overlapping detector channels.

    Parameters
    ----------
    masks : bool array, shape (channels, pixels)
        Which pixels each detector channel (a ring, a segment) collects.

    Returns
    -------
    cells : bool array, shape (cells, pixels)
        One cell per distinct set of covering channels (pixels no channel covers belong to
        none); the cells are disjoint and their union is the union of the channels.
    membership : bool array, shape (channels, cells)
        Which cells make up each channel: channel counts are sums of cell counts.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2:
        raise AcquisitionError(f"masks must be (channels, pixels), got shape {masks.shape}")
    covered = masks.any(axis=0)
    patterns, inverse = np.unique(masks[:, covered].T, axis=0, return_inverse=True)
    cells = np.zeros((len(patterns), masks.shape[1]), dtype=bool)
    cells[inverse.reshape(-1), np.flatnonzero(covered)] = True
    return cells, patterns.T.copy()


def cell_efficiencies(membership, efficiencies, labels) -> np.ndarray:
    """Efficiency of each cell: that of the detectors covering it (they must agree).

    Parameters
    ----------
    membership : bool array (channels, cells)
    efficiencies : array (channels,)
        Each channel's camera efficiency (DQE(0)).
    labels : sequence of str (channels,)
        Mode label of each channel (for the error message).
    """
    membership = np.asarray(membership, dtype=bool)
    eff = np.asarray(efficiencies, dtype=float)
    out = np.empty(membership.shape[1])
    for cell in range(membership.shape[1]):
        values = eff[membership[:, cell]]
        if np.ptp(values) > 1e-12:
            names = sorted({labels[i] for i in np.flatnonzero(membership[:, cell])})
            raise AcquisitionError(
                f"detectors {names} overlap but have different efficiencies {sorted(set(values.round(4)))}: "
                "overlapping detectors are virtual detectors of one camera; give them the same camera"
            )
        out[cell] = values[0]
    return out


def cell_rates(intensity, cells, efficiency, area: float) -> np.ndarray:
    """Expected counts per e/Å² of each cell: ``a · η_cell · Σ_{pixels in cell} I``.

    ``intensity`` has the pixels as its last axis; the result has the cells there.
    """
    weights = np.asarray(cells, dtype=np.float64).T * np.asarray(efficiency, dtype=float)[None, :]
    return float(area) * (np.asarray(intensity, dtype=np.float64) @ weights)
