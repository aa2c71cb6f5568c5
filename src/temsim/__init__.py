"""temsim: electron scattering simulation for (S)TEM and dose-limited experiment planning."""

from __future__ import annotations

import os as _os

# pyFFTW threads and numba's default threading layer in one process can run 30x slower
# (docs/design.md); workqueue avoids it. Only a default: a user's own setting wins.
_os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from temsim import structure  # noqa: E402
from temsim._version import __version__  # noqa: E402
from temsim.beam_damage import critical_dose, damage, knock_on  # noqa: E402
from temsim.cameras import CameraModel, camera_model  # noqa: E402
from temsim.comparison import compare  # noqa: E402
from temsim.constants import interaction_parameter, wavelength  # noqa: E402
from temsim.convergence import phonon_convergence  # noqa: E402
from temsim.detectors import (  # noqa: E402
    AnnularDetector,
    CenterOfMass,
    FlexibleAnnularDetector,
    IntegratedCenterOfMass,
    IntegratedDPC,
    PixelatedDetector,
    SegmentedDetector,
    annular_preset,
    dpc_signal,
    integrate_annular,
    integrate_gradient,
)
from temsim.dose import Dose  # noqa: E402
from temsim.errors import (  # noqa: E402
    AccuracyWarning,
    GridMismatchError,
    InputError,
    MemoryLimitError,
    SamplingError,
    StructureError,
    TemsimError,
    TemsimWarning,
)
from temsim.grid import Grid  # noqa: E402
from temsim.imaging import diffraction_pattern, hrtem_image  # noqa: E402
from temsim.noise import apply_noise, detector_model  # noqa: E402  (detector_model: deprecated alias)
from temsim.optics import Aberrations, contrast_transfer_function, scherzer_defocus  # noqa: E402
from temsim.phonons import FrozenPhonons  # noqa: E402
from temsim.positions import CustomScan, GridScan, LineScan  # noqa: E402
from temsim.potentials import ArrayPotential, Potential, load_parametrization  # noqa: E402
from temsim.readers import load_image  # noqa: E402
from temsim.settings import ExecutionSettings  # noqa: E402
from temsim.solvers.bloch import beam_convergence, bloch, solve_bloch  # noqa: E402
from temsim.solvers.bloch_probe import bloch_cbed, bloch_scan  # noqa: E402
from temsim.solvers.multislice import multislice  # noqa: E402
from temsim.solvers.stem import scan  # noqa: E402
from temsim.waves import PlaneWave, Probe  # noqa: E402

__all__ = [
    "__version__",
    "wavelength",
    "interaction_parameter",
    "Grid",
    "ExecutionSettings",
    "Aberrations",
    "contrast_transfer_function",
    "scherzer_defocus",
    "PlaneWave",
    "Probe",
    "Potential",
    "ArrayPotential",
    "load_parametrization",
    "FrozenPhonons",
    "multislice",
    "scan",
    "phonon_convergence",
    "hrtem_image",
    "bloch",
    "solve_bloch",
    "beam_convergence",
    "bloch_cbed",
    "bloch_scan",
    "diffraction_pattern",
    "GridScan",
    "LineScan",
    "CustomScan",
    "AnnularDetector",
    "FlexibleAnnularDetector",
    "SegmentedDetector",
    "IntegratedDPC",
    "CenterOfMass",
    "IntegratedCenterOfMass",
    "PixelatedDetector",
    "annular_preset",
    "dpc_signal",
    "integrate_annular",
    "integrate_gradient",
    "Dose",
    "apply_noise",
    "CameraModel",
    "camera_model",
    "detector_model",
    "damage",
    "critical_dose",
    "knock_on",
    "structure",
    "load_image",
    "compare",
    "TemsimError",
    "InputError",
    "SamplingError",
    "StructureError",
    "GridMismatchError",
    "MemoryLimitError",
    "TemsimWarning",
    "AccuracyWarning",
]
