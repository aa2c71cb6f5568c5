"""Validation of user-given numbers: one helper instead of a ``try: float(...)`` block per key.

Every public entry point (dataclass ``__post_init__``, study loader, CLI) checks its numbers
with :func:`as_number`, so each message has the same shape: the name of the argument or key,
its unit, the bound it broke and the value it got.

>>> as_number("sampling", "0.05", "Å", minimum=0, exclusive_minimum=True)
0.05
>>> as_number("binning", 2.0, integer=True, minimum=1)
2
>>> as_number("sampling", -1, "Å", minimum=0, exclusive_minimum=True)
Traceback (most recent call last):
...
temsim.errors.InputError: sampling must be > 0 Å, got -1
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from temsim.errors import InputError

__all__ = ["as_number", "as_pair", "as_choice"]


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def as_number(
    name: str,
    value: Any,
    unit: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    integer: bool = False,
    error: type[Exception] = InputError,
) -> float | int:
    """``value`` as a finite float (or int with ``integer=True``) within the given bounds.

    Parameters
    ----------
    name : str
        Argument or key name used in the message (``"microscope.energies[0]"``).
    value : object
        A number or a string holding one. Booleans are refused (``True`` is not a sampling).
    unit : str
        Unit shown in the message (``"Å"``, ``"eV"``, ``"mrad"``).
    minimum, maximum : float, optional
        Bounds, inclusive unless ``exclusive_minimum``/``exclusive_maximum``.
    integer : bool
        Require an integral value (``2.0`` is accepted as 2; ``2.5`` is refused).
    error : exception class
        Raised on failure (default :class:`~temsim.errors.InputError`; the study loader passes
        :class:`~temsim.errors.StudyError`).

    Raises
    ------
    InputError (or ``error``)
        Not a number, not finite, not integral when required, or out of bounds.
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or value is None:
        raise error(f"{name} must be {kind}{_unit(unit)}, got {value!r}")
    try:
        number = float(value) if not isinstance(value, numbers.Integral) else int(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be {kind}{_unit(unit)}, got {value!r}") from None
    if not math.isfinite(number):
        raise error(f"{name} must be finite, got {value!r}")
    if integer:
        if float(number) != math.floor(float(number)):
            raise error(f"{name} must be {kind}{_unit(unit)}, got {value!r}")
        number = int(number)
    else:
        number = float(number)
    if minimum is not None and (number < minimum or (exclusive_minimum and number == minimum)):
        sign = ">" if exclusive_minimum else "≥"
        raise error(f"{name} must be {sign} {minimum:g}{_unit(unit)}, got {value!r}")
    if maximum is not None and (number > maximum or (exclusive_maximum and number == maximum)):
        sign = "<" if exclusive_maximum else "≤"
        raise error(f"{name} must be {sign} {maximum:g}{_unit(unit)}, got {value!r}")
    return number


def as_pair(name: str, value: Any, unit: str = "", **bounds) -> tuple[float, float]:
    """Two numbers ``(x, y)`` checked like :func:`as_number` (the same bounds for both).

    >>> as_pair("scan start", [0, 1.5], "Å")
    (0.0, 1.5)
    """
    error = bounds.get("error", InputError)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise error(f"{name} must be two numbers (x, y){_unit(unit)}, got {value!r}")
    return tuple(as_number(f"{name}[{i}]", v, unit, **bounds) for i, v in enumerate(value))  # type: ignore[return-value]


def as_choice(name: str, value: Any, choices, error: type[Exception] = InputError):
    """``value`` if it is one of ``choices``, else an error listing them.

    >>> as_choice("dtype", "complex64", ("complex64", "complex128"))
    'complex64'
    """
    if value not in tuple(choices):
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
