"""temsim: electron scattering simulation for (S)TEM and dose-limited experiment planning."""

from __future__ import annotations

import os as _os

# pyFFTW threads and numba's default threading layer in one process can run 30x slower
# (DESIGN.md); workqueue avoids it. Only a default: a user's own setting wins.
_os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from temsim._version import __version__  # noqa: E402
from temsim.constants import interaction_parameter, wavelength  # noqa: E402
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

__all__ = [
    "__version__",
    "wavelength",
    "interaction_parameter",
    "Grid",
    "TemsimError",
    "InputError",
    "SamplingError",
    "StructureError",
    "GridMismatchError",
    "MemoryLimitError",
    "TemsimWarning",
    "AccuracyWarning",
]
