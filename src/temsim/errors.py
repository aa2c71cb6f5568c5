"""Exceptions and warnings raised by temsim.

Every error subclasses both :class:`TemsimError` and the builtin a caller would expect, so
``except ValueError`` keeps working. Messages carry the value, the bound and the fix.
"""

from __future__ import annotations


class TemsimError(Exception):
    """Base class of all temsim errors."""


class InputError(TemsimError, ValueError):
    """A parameter has a value that makes no physical sense or is out of range."""


class SamplingError(TemsimError, ValueError):
    """The real- or reciprocal-space sampling cannot represent what was asked for."""


class StructureError(TemsimError, ValueError):
    """The atomic structure is invalid (cell, positions or elements)."""


class GridMismatchError(TemsimError, ValueError):
    """Two objects that must share a grid (wave and potential, say) do not."""


class MemoryLimitError(TemsimError, MemoryError):
    """A calculation would need more memory than allowed."""


class StudyError(TemsimError, ValueError):
    """A planning study description is invalid (names the offending key)."""


class TemsimWarning(UserWarning):
    """Base class of temsim's warnings (turned into errors in temsim's own tests)."""


class AccuracyWarning(TemsimWarning):
    """A setting is allowed but will cost accuracy (the message says how much and why)."""
