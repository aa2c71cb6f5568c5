"""Electron dose bookkeeping: dose (e/Å²) ↔ current, dwell time, scan step, pixel size, frames.

One number, the areal dose ``D`` in e/Å², connects every acquisition mode:

* STEM: a probe current ``I`` (pA) dwelling ``t`` (s) per position on a scan grid of step ``s``
  (Å) delivers ``N = I·t/e`` electrons per position and ``D = N / s²``; conversely the number of
  electrons per probe position is ``D·s²``.
* HRTEM / diffraction: a dose rate ``Ḋ`` (e/Å²/s) for an exposure ``t`` gives ``D = Ḋ·t``; a
  camera pixel of side ``p`` (Å, referred to the specimen) receives ``D·p²`` electrons.
* Multi-frame acquisitions (movies, repeated scans) split the total dose evenly over frames.

``1 C/cm² = 624.15 e/Å²``; ``1 pA = 6.2415e6 e/s``.

Examples
--------
>>> d = Dose.from_current(50, 10e-6, 0.2)          # 50 pA, 10 µs, 0.2 Å step
>>> round(d.value)                                  # 50e-12·10e-6/e / 0.2² e/Å²
78019
>>> round(d.electrons_per_probe(0.2))
3121
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from temsim.checks import as_number
from temsim.constants import COULOMB_PER_CM2_TO_E_PER_A2, ELEMENTARY_CHARGE
from temsim.errors import InputError, TemsimWarning

__all__ = ["Dose", "DoseWarning", "ELECTRONS_PER_PICOCOULOMB", "MAX_PLAUSIBLE_CURRENT_PA"]

#: Electrons per pC (1e-12 C / e).
ELECTRONS_PER_PICOCOULOMB = 1e-12 / ELEMENTARY_CHARGE

#: Beam currents above this (pA, i.e. 100 nA) are flagged as implausible for (S)TEM.
MAX_PLAUSIBLE_CURRENT_PA = 1e5


class DoseWarning(TemsimWarning):
    """A dose, current or time is allowed but implausible (the message says why)."""


def _positive(name: str, value, unit: str, *, allow_zero: bool = False) -> float:
    return as_number(name, value, unit, minimum=0, exclusive_minimum=not allow_zero)


def _check_current(current_pA: float, context: str) -> None:
    if current_pA > MAX_PLAUSIBLE_CURRENT_PA:
        warnings.warn(
            f"{context} implies a beam current of {current_pA:.3g} pA (> {MAX_PLAUSIBLE_CURRENT_PA:.0g} pA = "
            "100 nA), far above any (S)TEM probe; check the units (current in pA, dwell time in s, "
            "step in Å)",
            DoseWarning,
            stacklevel=3,
        )


def _area(size) -> float:
    """Area (Å²) of a square pixel of side ``size`` or a rectangle ``(sx, sy)``."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise InputError(f"a pixel/step size is one length or (x, y) in Å, got {size!r}")
        return _positive("step/pixel size x", size[0], "Å") * _positive("step/pixel size y", size[1], "Å")
    s = _positive("step/pixel size", size, "Å")
    return s * s


@dataclass(frozen=True)
class Dose:
    """An areal electron dose, optionally split evenly over ``n_frames`` frames.

    Parameters
    ----------
    value : float
        Total dose in e/Å² (≥ 0).
    n_frames : int
        Number of equal frames (movie frames or repeated scans) the total is split over.

    Notes
    -----
    Conversions are closed-form products/quotients, so a round trip (e.g.
    ``Dose.from_current(I, t, s).current(t, s)``) returns the input to floating-point rounding
    (a few ulp).
    """

    value: float
    n_frames: int = 1

    def __post_init__(self):
        object.__setattr__(self, "value", _positive("dose", self.value, "e/Å²", allow_zero=True))
        if isinstance(self.n_frames, bool) or not isinstance(self.n_frames, int) or self.n_frames < 1:
            raise InputError(f"n_frames must be an integer ≥ 1, got {self.n_frames!r}")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_current(cls, current_pA: float, dwell_time_s: float, step_A, *, n_frames: int = 1) -> Dose:
        """STEM dose from probe current (pA), dwell time per position (s) and scan step (Å).

        ``D = I·t / (e·s²)``; ``step_A`` may be ``(step_x, step_y)``. With ``n_frames`` > 1 the
        dwell time is per frame and the total dose is ``n_frames`` times the single-pass dose.
        """
        current = _positive("current", current_pA, "pA", allow_zero=True)
        dwell = _positive("dwell time", dwell_time_s, "s")
        _check_current(current, "the given current")
        electrons = current * ELECTRONS_PER_PICOCOULOMB * dwell
        return cls(electrons / _area(step_A) * n_frames, n_frames)

    @classmethod
    def from_dose_rate(cls, dose_rate: float, exposure_time_s: float, *, n_frames: int = 1) -> Dose:
        """Dose from a dose rate (e/Å²/s) and the total exposure time (s)."""
        rate = _positive("dose rate", dose_rate, "e/Å²/s", allow_zero=True)
        return cls(rate * _positive("exposure time", exposure_time_s, "s"), n_frames)

    @classmethod
    def from_beam(
        cls, current_pA: float, exposure_time_s: float, illuminated_area_A2: float, *, n_frames: int = 1
    ) -> Dose:
        """Parallel-beam dose: current (pA) spread uniformly over ``illuminated_area_A2`` (Å²)."""
        current = _positive("current", current_pA, "pA", allow_zero=True)
        _check_current(current, "the given current")
        area = _positive("illuminated area", illuminated_area_A2, "Å²")
        t = _positive("exposure time", exposure_time_s, "s")
        return cls(current * ELECTRONS_PER_PICOCOULOMB * t / area, n_frames)

    @classmethod
    def from_electrons_per_pixel(cls, electrons: float, pixel_size, *, n_frames: int = 1) -> Dose:
        """Dose from electrons per pixel (or per probe position) and its size (Å)."""
        return cls(_positive("electrons per pixel", electrons, "e", allow_zero=True) / _area(pixel_size), n_frames)

    @classmethod
    def from_coulomb_per_cm2(cls, value: float, *, n_frames: int = 1) -> Dose:
        """Dose from C/cm² (1 C/cm² = 624.15 e/Å²)."""
        return cls(_positive("dose", value, "C/cm²", allow_zero=True) * COULOMB_PER_CM2_TO_E_PER_A2, n_frames)

    # ----------------------------------------------------------------- conversions
    @property
    def coulomb_per_cm2(self) -> float:
        """The total dose in C/cm²."""
        return self.value / COULOMB_PER_CM2_TO_E_PER_A2

    @property
    def frame_dose(self) -> float:
        """Dose per frame (e/Å²): ``value / n_frames``."""
        return self.value / self.n_frames

    def per_frame(self) -> Dose:
        """The dose of one frame as a single-frame :class:`Dose`."""
        return Dose(self.frame_dose, 1)

    def split(self, n_frames: int) -> Dose:
        """The same total dose split over ``n_frames`` frames."""
        return Dose(self.value, n_frames)

    def electrons_per_probe(self, step_A) -> float:
        """Electrons per probe position (all frames together), ``D·step²``; step in Å or (sx, sy)."""
        return self.value * _area(step_A)

    def electrons_per_pixel(self, pixel_size_A) -> float:
        """Electrons per camera pixel (all frames), ``D·p²``; pixel size in Å at the specimen."""
        return self.value * _area(pixel_size_A)

    def dose_rate(self, exposure_time_s: float) -> float:
        """Dose rate (e/Å²/s) if the total dose is delivered in ``exposure_time_s`` seconds.

        For a movie, pass the total time (``n_frames ×`` frame time).
        """
        return self.value / _positive("exposure time", exposure_time_s, "s")

    def frame_time(self, dose_rate: float) -> float:
        """Time per frame (s) at ``dose_rate`` (e/Å²/s)."""
        return self.frame_dose / _positive("dose rate", dose_rate, "e/Å²/s")

    def current(self, dwell_time_s: float, step_A) -> float:
        """Probe current (pA) that delivers this dose with the given dwell time per frame and step.

        Warns (:class:`DoseWarning`) when the implied current exceeds 100 nA.
        """
        dwell = _positive("dwell time", dwell_time_s, "s")
        electrons = self.frame_dose * _area(step_A)
        current = electrons / (ELECTRONS_PER_PICOCOULOMB * dwell)
        _check_current(current, f"a dose of {self.value:g} e/Å² with dwell time {dwell:g} s")
        return current

    def dwell_time(self, current_pA: float, step_A) -> float:
        """Dwell time per position and frame (s) for this dose at ``current_pA`` and ``step_A``."""
        current = _positive("current", current_pA, "pA")
        _check_current(current, "the given current")
        return self.frame_dose * _area(step_A) / (current * ELECTRONS_PER_PICOCOULOMB)

    def scaled(self, factor: float) -> Dose:
        """This dose multiplied by ``factor`` (≥ 0), same number of frames."""
        return Dose(self.value * _positive("factor", factor, "", allow_zero=True), self.n_frames)

    def __float__(self) -> float:
        return self.value
