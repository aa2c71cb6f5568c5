"""The solver-engine protocol: what a solver offers the STEM scan driver.

A STEM calculation is the same loop for every solver: cut the probe positions into batches,
propagate each batch under each frozen-phonon configuration and focal-spread defocus, hand
the diffraction intensities to every detector, average, and write. Only the propagation
differs. An *engine* is that propagation, behind this small interface;
:func:`temsim.solvers.driver.run_scan` is the loop. So streaming to disk, resume after a
kill, phonon averaging, the elastic/diffuse split, progress and thickness series work the
same for every solver.

Engines shipped with temsim:

* :class:`temsim.solvers.multislice.MultisliceEngine` — each probe propagated slice by slice;
* :class:`temsim.solvers.prism.PrismEngine` — probes assembled from a plane-wave S-matrix;
* :class:`temsim.solvers.bloch_probe.BlochEngine` — probes as sums of Bloch-wave solutions.

Writing a new engine
--------------------
Subclass :class:`Engine` and implement what it lists; then build it in a public function
(as :func:`temsim.scan` builds multislice and PRISM engines, :func:`temsim.bloch_scan` the
Bloch one) and call :func:`~temsim.solvers.driver.run_scan`. The driver never looks inside
an engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from temsim.backend import array_namespace

__all__ = ["Engine", "MEAN_CONFIGURATION", "diffraction_intensity"]

#: ``config_index`` that asks an engine for the configuration-averaged wave ⟨ψ⟩ (engines
#: whose :attr:`Engine.config_outer` is True and that can form it, such as PRISM).
MEAN_CONFIGURATION = -1


class Engine:
    """Base class of solver engines (the contract the scan driver relies on).

    Attributes an engine shall set
    ------------------------------
    name : str
        Solver name recorded in results (``attrs["solver"]``).
    detector_grid : Grid
        Grid of the diffraction intensities handed to detectors (FFT order, fractions of
        the incident beam per pixel).
    thicknesses : (T,) ndarray
        Exit planes (Å) at which intensities are produced, ascending.
    series : bool
        Whether the user asked for a thickness series (results get a ``thickness`` dim) or a
        single exit plane (``thickness`` is then a scalar coordinate).
    num_configurations : int
        Frozen-phonon configurations averaged over (1 for a static specimen).
    config_outer : bool
        True when the engine holds one configuration at a time and configurations must be the
        outermost loop (PRISM builds one S-matrix per configuration). The driver then makes
        one work unit per configuration and batch, and one more per batch for the elastic part
        (from :data:`MEAN_CONFIGURATION`).
    dtype : str
        ``"complex64"`` or ``"complex128"``.

    Methods an engine shall implement
    ---------------------------------
    intensities(config_index, positions, defocus)
    amplitudes(config_index, positions, defocus)
    attrs()
    check()
    """

    name: str = ""
    config_outer: bool = False
    #: Most probes per batch (the driver also limits batches by the memory limit).
    batch_cap: int = 256
    series: bool = False
    num_configurations: int = 1
    dtype: str = "complex64"

    def intensities(self, config_index: int, positions: np.ndarray, defocus: float) -> Iterator[tuple[int, object]]:
        """Yield ``(thickness index, intensity)`` for every exit plane, in order.

        ``intensity`` has shape ``(n, *detector_grid.gpts)`` (FFT order, float32 for complex64
        engines): the fractions of the incident beam per diffraction pixel of the probes at
        ``positions`` (``(n, 2)`` Å) with defocus offset ``defocus`` (Å) through configuration
        ``config_index``.
        """
        raise NotImplementedError

    def amplitudes(self, config_index: int, positions: np.ndarray, defocus: float) -> Iterator[tuple[int, object]]:
        """Yield ``(thickness index, amplitude)``: ``F[ψ]/√N``, so that ``|amplitude|²`` is :meth:`intensities`.

        Used for the elastic part ⟨ψ⟩ (averaged over configurations before squaring).
        """
        raise NotImplementedError

    def attrs(self) -> dict:
        """Provenance attributes specific to this solver (merged into the result's attrs)."""
        return {"solver": self.name}

    def check(self) -> None:
        """Emit accuracy warnings about this set-up (e.g. a probe wrapping around the cell)."""


def diffraction_intensity(spectrum, n_pixels: int = 1):
    """``|spectrum|² / n_pixels`` (float32 for complex64 input).

    With ``n_pixels`` = N, unnormalized FFT spectra become fractions of the beam per pixel;
    amplitudes already scaled as ``F[ψ]/√N`` need ``n_pixels=1``.
    """
    xp = array_namespace(spectrum)
    real = xp.real(spectrum)
    imag = xp.imag(spectrum)
    return (real * real + imag * imag) * (1.0 / n_pixels)
