"""Detector models and noise: from ideal intensities to what a real detector records.

A simulated signal ``I`` (fraction of the incident beam per pixel / probe position) becomes
expected electrons ``λ = D · a · I`` (dose ``D`` in e/Å², area ``a`` in Å² per pixel or probe
position) and then recorded counts through a detector model:

========================  ====================================================================
model                     what :meth:`sample` does
========================  ====================================================================
``IdealCounting``         ``Poisson(η λ)``; no blur, white noise (``DQE(f) = η``).
``CountingCamera``        blur ``λ`` by the MTF, thin by ``DQE(0)``, Poisson; optional
                          coincidence loss (≤ 1 count per pixel per sensor readout frame).
                          Noise stays white, so ``DQE(f) = DQE(0)·MTF(f)²``.
``IntegratingCamera``     blur by ``MTF/√NNPS``, Poisson at ``DQE(0)``, shape the noise by
                          ``√NNPS``, multiply by the conversion gain, add Gaussian read noise.
``HybridPixel``           counting with near-ideal DQE, a wide-pixel MTF and a saturation
                          count per frame (dynamic range).
``AnnularPMT``            compound Poisson: ``Poisson(η λ)`` electrons, each a Gamma-distributed
                          pulse of mean 1 and CV ``c`` (``DQE = η/(1+c²)``), plus Gaussian
                          electronic noise and optional afterglow along the fast scan axis.
========================  ====================================================================

Frequencies ``f`` are in cycles per detector pixel (Nyquist = 0.5); one signal pixel is one
detector pixel (resample the simulation to the detector's pixel size first). All models
satisfy ``DQE(f) = DQE(0)·MTF(f)²/NNPS(f)`` with ``NNPS(0) = 1``.

Randomness comes only from a :class:`numpy.random.Generator` built from ``seed``; arrays from
other array-API libraries (``array_api_strict``, cupy) are copied to numpy for the random
draws and converted back (deterministic filtering runs in their own namespace).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from temsim.backend import array_namespace, fft2, ifft2, is_numpy_namespace, to_numpy
from temsim.dose import Dose
from temsim.errors import AccuracyWarning, InputError

__all__ = [
    "IdealCounting",
    "CountingCamera",
    "IntegratingCamera",
    "HybridPixel",
    "AnnularPMT",
    "DETECTOR_PRESETS",
    "detector_model",
    "apply_noise",
    "expected_electrons",
    "frequency_grid",
    "SIGNAL_KINDS",
    "DERIVED_SIGNALS",
]

#: Raw signal kinds (``attrs["signal"]``) that detector models can turn into counts.
SIGNAL_KINDS = ("image", "diffraction", "stem", "4dstem")
#: Derived STEM signals (not raw counts): noise must be added to their inputs instead.
DERIVED_SIGNALS = ("center_of_mass", "com", "icom", "idpc", "dpc", "com_x", "com_y", "phase", "ptychography")

_CAMERA_SIGNALS = ("image", "diffraction", "4dstem")


# --------------------------------------------------------------------------- helpers
def _check_fraction(name: str, value: float, *, allow_zero: bool = False) -> float:
    v = float(value)
    low_ok = v >= 0 if allow_zero else v > 0
    if not (math.isfinite(v) and low_ok and v <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise InputError(f"{name} must lie in {interval}, got {value!r}")
    return v


def _check_nonneg(name: str, value: float, unit: str = "") -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise InputError(f"{name} must be finite and ≥ 0 {unit}, got {value!r}".rstrip())
    return v


def frequency_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """FFT-ordered spatial frequencies ``(fx[:, None], fy[None, :])`` in cycles/pixel."""
    nx, ny = int(shape[0]), int(shape[1])
    return np.fft.fftfreq(nx)[:, None], np.fft.fftfreq(ny)[None, :]


def _lorentzian_mtf(fx, fy, weight: float, f1: float, f2: float, pixel_aperture: bool):
    """The parametric MTF shared by the camera models (see the module docs)."""
    fx = np.asarray(fx, dtype=float)
    fy = np.asarray(fy, dtype=float)
    f2_sq = fx**2 + fy**2
    shape = weight / (1.0 + f2_sq / f1**2) + (1.0 - weight) / (1.0 + f2_sq / f2**2)
    if pixel_aperture:
        shape = shape * np.sinc(fx) * np.sinc(fy)
    return shape


def _filter(x, transfer: np.ndarray):
    """Real part of ``ifft2(fft2(x) · transfer)`` over the last two axes, in x's namespace."""
    xp = array_namespace(x)
    ctype = xp.complex128 if x.dtype == xp.float64 else xp.complex64
    h = xp.asarray(transfer.astype(np.complex128 if ctype == xp.complex128 else np.complex64))
    if not is_numpy_namespace(xp):
        # array_api_strict and friends only transform complex input
        x = xp.astype(x, ctype)
    out = xp.real(ifft2(fft2(x) * h))
    return xp.astype(out, xp.float64 if ctype == xp.complex128 else xp.float32)


def _rng(seed) -> tuple[np.random.Generator, Any]:
    """A Generator from ``seed`` (int, SeedSequence, Generator or None) and what to record."""
    if isinstance(seed, np.random.Generator):
        return seed, "generator"
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed), seed.entropy
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise InputError(f"seed must be an int, numpy SeedSequence/Generator or None, got {seed!r}")
    ss = np.random.SeedSequence(None if seed is None else int(seed))
    return np.random.default_rng(ss), ss.entropy


class _DetectorBase:
    """Shared behaviour: signal compatibility, DQE from MTF/NNPS, JSON parameters."""

    signals: tuple[str, ...] = SIGNAL_KINDS

    def accepts(self, kind: str) -> bool:
        """True when this model makes sense for signals of ``kind``."""
        return kind in self.signals

    def mtf(self, fx, fy=0.0):
        """Modulation transfer function at ``(fx, fy)`` cycles/pixel (1 for non-imaging models)."""
        return np.ones(np.broadcast_shapes(np.shape(fx), np.shape(fy)))

    def nnps(self, fx, fy=0.0):
        """Normalized noise power spectrum (``NNPS(0) = 1``) at high dose."""
        return np.ones(np.broadcast_shapes(np.shape(fx), np.shape(fy)))

    def dqe(self, fx, fy=0.0, electrons_per_pixel=None):
        """``DQE(f) = DQE(0)·MTF²/NNPS`` (read noise included when ``electrons_per_pixel`` is given)."""
        return self.dqe0 * self.mtf(fx, fy) ** 2 / self.nnps(fx, fy)

    @property
    def efficiency(self) -> float:
        """Poisson-equivalent efficiency for the planner: expected *useful* counts per electron.

        The planner's Poisson model should use ``λ = D·a·η·I`` with ``η = dqe0`` (the
        zero-frequency DQE): a Poisson process with that mean has the same low-frequency SNR as
        the detector. Features narrower than a few pixels lose a further ``MTF²/NNPS``
        (:meth:`dqe`).
        """
        return float(self.dqe0)

    def parameters(self) -> dict:
        """The model's parameters as a JSON-serializable dict (with its class name)."""
        d = {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}
        d["model"] = type(self).__name__
        return d


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class IdealCounting(_DetectorBase):
    """Ideal counting detector: each electron is counted with probability ``dqe0`` (default 1).

    Works on every raw signal kind. ``DQE(f) = dqe0`` at every frequency (no blur, white noise).
    """

    dqe0: float = 1.0
    name: str = "ideal"
    source: str = "definition"
    signals: tuple[str, ...] = field(default=SIGNAL_KINDS, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "dqe0", _check_fraction("dqe0 (DQE at zero frequency)", self.dqe0))

    def sample(self, expected, rng: np.random.Generator, **_):
        """Counts for ``expected`` electrons (any array-API array), as float32 in its namespace."""
        xp = array_namespace(expected)
        lam = np.clip(to_numpy(expected).astype(np.float64), 0.0, None) * self.dqe0
        return xp.asarray(rng.poisson(lam).astype(np.float32))


@dataclass(frozen=True)
class CountingCamera(_DetectorBase):
    """Counting direct-electron camera (K2/K3/Falcon-class), cameras and 4D-STEM.

    Parameters
    ----------
    dqe0 : float
        Zero-frequency DQE, modelled as a counting efficiency (binomial thinning), in (0, 1].
    mtf_weight, mtf_f1, mtf_f2 : float
        Parametric MTF ``sinc(fx)·sinc(fy)·[w/(1+f²/f1²) + (1−w)/(1+f²/f2²)]``, f1, f2 in
        cycles/pixel (``inf`` removes a term).
    frame_rate : float or None
        Sensor readout rate (frames/s) for coincidence loss; ``None`` disables it.
    coincidence_area : float
        Area (pixels) within which two electrons in one readout frame merge into one event.
    reference_energy : float
        Beam energy (eV) at which the preset's numbers were measured.
    """

    dqe0: float = 0.8
    mtf_weight: float = 1.0
    mtf_f1: float = 1.2
    mtf_f2: float = math.inf
    frame_rate: float | None = 400.0
    coincidence_area: float = 1.0
    reference_energy: float = 300e3
    name: str = "counting-ded"
    source: str = ""
    signals: tuple[str, ...] = field(default=_CAMERA_SIGNALS, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "dqe0", _check_fraction("dqe0 (DQE at zero frequency)", self.dqe0))
        _check_fraction("mtf_weight", self.mtf_weight, allow_zero=True)
        for n in ("mtf_f1", "mtf_f2"):
            if not getattr(self, n) > 0:
                raise InputError(f"{n} must be > 0 cycles/pixel (inf to switch the term off), got {getattr(self, n)!r}")
        if self.frame_rate is not None and not (math.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise InputError(f"frame_rate must be > 0 frames/s or None, got {self.frame_rate!r}")
        if not self.coincidence_area >= 1:
            raise InputError(f"coincidence_area must be ≥ 1 pixel, got {self.coincidence_area!r}")

    def mtf(self, fx, fy=0.0):
        return _lorentzian_mtf(fx, fy, self.mtf_weight, self.mtf_f1, self.mtf_f2, True)

    def recorded_fraction(self, electrons_per_pixel_per_second: float) -> float:
        """Fraction of detected electrons that survive coincidence loss at a given count rate."""
        if self.frame_rate is None:
            return 1.0
        mu = self.dqe0 * _check_nonneg("rate", electrons_per_pixel_per_second, "e/pixel/s") / self.frame_rate
        a_mu = self.coincidence_area * mu
        return 1.0 if a_mu == 0 else float(-np.expm1(-a_mu) / a_mu)

    def dqe0_at_rate(self, electrons_per_pixel_per_second: float) -> float:
        """Zero-frequency DQE including coincidence loss (binomial per readout frame).

        For ``coincidence_area = 1``: ``DQE(0) = η·μ·e^{−μ}/(1 − e^{−μ})`` with ``μ`` the detected
        electrons per pixel per readout frame.
        """
        if self.frame_rate is None:
            return self.dqe0
        mu = self.dqe0 * _check_nonneg("rate", electrons_per_pixel_per_second, "e/pixel/s") / self.frame_rate
        a = self.coincidence_area
        if mu == 0:
            return self.dqe0
        p = -np.expm1(-a * mu) / a  # recorded counts per pixel per frame
        slope = self.dqe0 * np.exp(-a * mu)  # d(counts)/d(electrons) per frame
        return float(slope**2 * (mu / self.dqe0) / (p * (1 - p)))

    def sample(self, expected, rng: np.random.Generator, *, readout_frames: int | None = None, **_):
        """Counts for ``expected`` electrons per pixel; the last two axes are detector pixels.

        ``readout_frames``: sensor frames the exposure spans (coincidence loss); ``None`` off.
        """
        xp = array_namespace(expected)
        fx, fy = frequency_grid(expected.shape[-2:])
        blurred = _filter(expected, self.mtf(fx, fy))
        lam = np.clip(to_numpy(blurred).astype(np.float64), 0.0, None) * self.dqe0
        if readout_frames is None or self.frame_rate is None:
            counts = rng.poisson(lam)
        else:
            n = max(int(readout_frames), 1)
            a = self.coincidence_area
            p = -np.expm1(-a * lam / n) / a
            counts = rng.binomial(n, p)
        return xp.asarray(counts.astype(np.float32))


@dataclass(frozen=True)
class IntegratingCamera(_DetectorBase):
    """Scintillator-coupled CCD/CMOS camera (integrating).

    Parameters
    ----------
    dqe0 : float
        Zero-frequency DQE at high dose, in (0, 1].
    gain : float
        Conversion gain, counts (ADU) per incident electron.
    read_noise : float
        Gaussian read noise, counts (ADU) rms per pixel per readout.
    mtf_weight, mtf_f1, mtf_f2 : float
        MTF as for :class:`CountingCamera` (scintillators have a long low-frequency tail).
    white_noise_fraction : float
        ``w`` in ``NNPS(f) = w + (1 − w)·MTF(f)²``: 0 means noise blurred like the signal
        (flat DQE), 1 white noise (counting-like DQE ∝ MTF²).
    """

    dqe0: float = 0.5
    gain: float = 10.0
    read_noise: float = 5.0
    mtf_weight: float = 0.7
    mtf_f1: float = 0.1
    mtf_f2: float = 1.0
    white_noise_fraction: float = 0.3
    reference_energy: float = 300e3
    name: str = "ccd"
    source: str = ""
    signals: tuple[str, ...] = field(default=_CAMERA_SIGNALS, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "dqe0", _check_fraction("dqe0 (DQE at zero frequency)", self.dqe0))
        if not (math.isfinite(self.gain) and self.gain > 0):
            raise InputError(f"gain must be > 0 counts per electron, got {self.gain!r}")
        _check_nonneg("read_noise", self.read_noise, "counts rms")
        _check_fraction("mtf_weight", self.mtf_weight, allow_zero=True)
        _check_fraction("white_noise_fraction", self.white_noise_fraction, allow_zero=True)
        for n in ("mtf_f1", "mtf_f2"):
            if not getattr(self, n) > 0:
                raise InputError(f"{n} must be > 0 cycles/pixel, got {getattr(self, n)!r}")

    def mtf(self, fx, fy=0.0):
        return _lorentzian_mtf(fx, fy, self.mtf_weight, self.mtf_f1, self.mtf_f2, True)

    def nnps(self, fx, fy=0.0):
        w = self.white_noise_fraction
        return w + (1.0 - w) * self.mtf(fx, fy) ** 2

    def dqe(self, fx, fy=0.0, electrons_per_pixel=None, readout_frames: int = 1):
        """DQE(f); with ``electrons_per_pixel`` the read noise lowers it:
        ``dqe0·MTF²/(NNPS + dqe0·n·σ_r²/(g²·N))``."""
        extra = 0.0
        if electrons_per_pixel is not None:
            n_e = _check_nonneg("electrons_per_pixel", electrons_per_pixel)
            extra = self.dqe0 * readout_frames * self.read_noise**2 / (self.gain**2 * n_e) if n_e > 0 else math.inf
        return self.dqe0 * self.mtf(fx, fy) ** 2 / (self.nnps(fx, fy) + extra)

    def sample(self, expected, rng: np.random.Generator, *, readout_frames: int | None = None, **_):
        """Counts (ADU, float32) for ``expected`` electrons; the last two axes are pixels."""
        xp = array_namespace(expected)
        fx, fy = frequency_grid(expected.shape[-2:])
        mtf = self.mtf(fx, fy)
        root_nnps = np.sqrt(self.nnps(fx, fy))
        pre = _filter(expected, mtf / root_nnps)
        lam = np.clip(to_numpy(pre).astype(np.float64), 0.0, None) * self.dqe0
        quanta = xp.asarray((rng.poisson(lam) / self.dqe0).astype(np.float32))
        shaped = to_numpy(_filter(quanta, root_nnps)).astype(np.float64)
        n_read = 1 if readout_frames is None else max(int(readout_frames), 1)
        out = self.gain * shaped + rng.normal(0.0, self.read_noise * math.sqrt(n_read), size=shaped.shape)
        return xp.asarray(out.astype(np.float32))


@dataclass(frozen=True)
class HybridPixel(_DetectorBase):
    """Hybrid pixel array detector for diffraction / 4D-STEM (EMPAD, Medipix/Timepix-class).

    Counting with near-ideal ``dqe0``, a wide-pixel MTF (sinc times a weak charge-sharing term)
    and a dynamic range of ``max_counts`` per pixel per frame (counts above it saturate and an
    :class:`~temsim.errors.AccuracyWarning` is emitted).
    """

    dqe0: float = 0.95
    mtf_weight: float = 1.0
    mtf_f1: float = 3.0
    mtf_f2: float = math.inf
    max_counts: float = 1e6
    reference_energy: float = 200e3
    name: str = "hybrid-pixel"
    source: str = ""
    signals: tuple[str, ...] = field(default=("diffraction", "4dstem"), repr=False)

    def __post_init__(self):
        object.__setattr__(self, "dqe0", _check_fraction("dqe0 (DQE at zero frequency)", self.dqe0))
        if not self.max_counts >= 1:
            raise InputError(f"max_counts (dynamic range per pixel per frame) must be ≥ 1, got {self.max_counts!r}")

    def mtf(self, fx, fy=0.0):
        return _lorentzian_mtf(fx, fy, self.mtf_weight, self.mtf_f1, self.mtf_f2, True)

    def sample(self, expected, rng: np.random.Generator, *, readout_frames: int | None = None, **_):
        """Counts for ``expected`` electrons per pixel and frame; the last two axes are pixels."""
        xp = array_namespace(expected)
        fx, fy = frequency_grid(expected.shape[-2:])
        lam = np.clip(to_numpy(_filter(expected, self.mtf(fx, fy))).astype(np.float64), 0.0, None) * self.dqe0
        counts = rng.poisson(lam).astype(np.float64)
        ceiling = self.max_counts * (1 if readout_frames is None else max(int(readout_frames), 1))
        if counts.max(initial=0.0) > ceiling:
            warnings.warn(
                f"{self.name}: {int((counts > ceiling).sum())} pixels exceeded the dynamic range of "
                f"{self.max_counts:g} counts per frame and were clipped; lower the dose per frame or "
                "use more frames", AccuracyWarning, stacklevel=3,
            )
            counts = np.minimum(counts, ceiling)
        return xp.asarray(counts.astype(np.float32))


@dataclass(frozen=True)
class AnnularPMT(_DetectorBase):
    """Annular (or segmented) STEM detector: scintillator + photomultiplier.

    Parameters
    ----------
    efficiency : float
        Fraction of electrons reaching the detector that produce a pulse, in (0, 1].
    pulse_height_cv : float
        Coefficient of variation of the single-electron pulse height (compound Poisson,
        ``DQE(0) = efficiency/(1 + cv²)``).
    electronic_noise : float
        Gaussian noise per probe position, in units of the mean single-electron pulse.
    afterglow : float
        Exponential afterglow decay time in dwell times along the fast scan axis (0: none).

    Output is in single-electron pulse units (a detector scan calibrates to these).
    """

    efficiency: float = 1.0
    pulse_height_cv: float = 0.6
    electronic_noise: float = 0.5
    afterglow: float = 0.0
    name: str = "annular-pmt"
    source: str = ""
    signals: tuple[str, ...] = field(default=("stem",), repr=False)

    def __post_init__(self):
        _check_fraction("efficiency", self.efficiency)
        _check_nonneg("pulse_height_cv", self.pulse_height_cv)
        _check_nonneg("electronic_noise", self.electronic_noise, "single-electron units")
        _check_nonneg("afterglow", self.afterglow, "dwell times")

    @property
    def dqe0(self) -> float:
        """``efficiency / (1 + cv²)`` (compound-Poisson pulse-height loss)."""
        return self.efficiency / (1.0 + self.pulse_height_cv**2)

    def dqe(self, fx=0.0, fy=0.0, electrons_per_pixel=None):
        """DQE per probe position; with ``electrons_per_pixel`` the electronic noise is included."""
        extra = 0.0
        if electrons_per_pixel is not None:
            n_e = _check_nonneg("electrons_per_pixel", electrons_per_pixel)
            extra = self.dqe0 * self.electronic_noise**2 / (self.efficiency**2 * n_e) if n_e > 0 else math.inf
        return self.dqe0 / (1.0 + extra) * np.ones(np.broadcast_shapes(np.shape(fx), np.shape(fy)))

    def sample(self, expected, rng: np.random.Generator, *, fast_axis: int = -2, **_):
        """Detector signal (single-electron units) for ``expected`` electrons per probe position."""
        xp = array_namespace(expected)
        lam = np.clip(to_numpy(expected).astype(np.float64), 0.0, None) * self.efficiency
        n = rng.poisson(lam)
        cv2 = self.pulse_height_cv**2
        if cv2 > 0:
            # sum of n Gamma(1/cv², cv²) pulses is Gamma(n/cv², cv²)
            shape = n / cv2
            pulses = np.where(n > 0, rng.gamma(np.where(n > 0, shape, 1.0), cv2), 0.0)
        else:
            pulses = n.astype(np.float64)
        out = pulses + rng.normal(0.0, self.electronic_noise, size=pulses.shape)
        if self.afterglow > 0:
            from scipy.signal import lfilter, lfilter_zi

            r = math.exp(-1.0 / self.afterglow)
            b, a = [1.0 - r], [1.0, -r]
            # start each line in steady state at its first value (no dark start-up transient)
            first = np.take(out, [0], axis=fast_axis)
            out, _ = lfilter(b, a, out, axis=fast_axis, zi=lfilter_zi(b, a)[0] * first)
        return xp.asarray(out.astype(np.float32))


# --------------------------------------------------------------------------- presets
#: Named presets: (class, parameters). Sources and caveats are tabulated in
#: docs/dose-detectors-damage.md.
DETECTOR_PRESETS: dict[str, tuple[type, dict]] = {
    "ideal": (IdealCounting, dict(dqe0=1.0, source="definition")),
    "counting-ded": (CountingCamera, dict(
        dqe0=0.8, mtf_weight=1.0, mtf_f1=1.2, mtf_f2=math.inf, frame_rate=400.0, coincidence_area=1.0,
        reference_energy=300e3,
        source="representative counting DED at 300 keV (K2-class): DQE(0)≈0.8, 400 frames/s; "
               "McMullan et al. 2014 doi:10.1016/j.ultramic.2014.08.002; Li et al. 2013 "
               "doi:10.1038/nmeth.2472")),
    "ccd": (IntegratingCamera, dict(
        dqe0=0.5, gain=10.0, read_noise=5.0, mtf_weight=0.7, mtf_f1=0.1, mtf_f2=1.0,
        white_noise_fraction=0.3, reference_energy=300e3,
        source="representative scintillator-coupled CCD: McMullan et al. 2009 "
               "doi:10.1016/j.ultramic.2009.04.002; Meyer & Kirkland 2000 "
               "doi:10.1002/(SICI)1097-0029(20000515)49:3<269::AID-JEMT5>3.0.CO;2-B")),
    "hybrid-pixel": (HybridPixel, dict(
        dqe0=0.95, mtf_weight=1.0, mtf_f1=3.0, mtf_f2=math.inf, max_counts=1e6, reference_energy=200e3,
        source="EMPAD-class hybrid pixel array (dynamic range 1 to 1e6 e per pixel per frame): "
               "Tate et al. 2016 doi:10.1017/S1431927615015664")),
    "annular-pmt": (AnnularPMT, dict(
        efficiency=1.0, pulse_height_cv=0.6, electronic_noise=0.5, afterglow=0.0,
        source="scintillator/PMT ADF detector, single-electron pulse heights: Sang & LeBeau 2016 "
               "doi:10.1016/j.ultramic.2015.11.008")),
}


def detector_model(name: str = "ideal", energy: float | None = None, **overrides):
    """A detector model from a named preset, with optional parameter overrides.

    Parameters
    ----------
    name : {"ideal", "counting-ded", "ccd", "hybrid-pixel", "annular-pmt"}
        Preset name (parameters and sources in ``DETECTOR_PRESETS`` and the docs).
    energy : float, optional
        Beam energy (eV) the detector will be used at. Presets are characterized at
        ``reference_energy``; DQE depends on energy, so a difference of more than 50 % warns
        (:class:`~temsim.errors.AccuracyWarning`).
    **overrides
        Any field of the model (e.g. ``dqe0=0.7``), validated like the preset itself.

    Examples
    --------
    >>> detector_model("counting-ded", dqe0=0.7).dqe0
    0.7
    """
    if isinstance(name, _DetectorBase):
        return replace(name, **overrides) if overrides else name
    key = str(name).lower()
    if key not in DETECTOR_PRESETS:
        raise InputError(f"unknown detector preset {name!r}; valid presets: {', '.join(DETECTOR_PRESETS)}")
    cls, params = DETECTOR_PRESETS[key]
    params = dict(params, name=key)
    valid = {f for f in cls.__dataclass_fields__ if f != "signals"}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise InputError(f"{cls.__name__} has no parameter(s) {bad}; valid: {sorted(valid)}")
    params.update(overrides)
    model = cls(**params)
    if energy is not None:
        from temsim.constants import check_energy

        e = check_energy(energy)
        ref = getattr(model, "reference_energy", None)
        if ref is not None and abs(e / ref - 1) > 0.5:
            warnings.warn(
                f"preset {key!r} is characterized at {ref / 1e3:g} keV but used at {e / 1e3:g} keV; "
                "its DQE/MTF change with energy: pass measured values as overrides (dqe0=..., mtf_f1=...)",
                AccuracyWarning, stacklevel=2,
            )
    return model


# --------------------------------------------------------------------------- signals
def _signal_kind(obj, signal_kind: str | None) -> str:
    attrs = getattr(obj, "attrs", {}) or {}
    kind = signal_kind if signal_kind is not None else attrs.get("signal")
    det = str(attrs.get("detector", "")).lower()
    if kind is not None and str(kind).lower() in DERIVED_SIGNALS or det in DERIVED_SIGNALS:
        raise InputError(
            f"this is a derived signal ({kind or det!r}), not raw counts: noise cannot be added to it "
            "directly. Apply noise to the raw detector data it is computed from (the DPC segments or "
            "the 4D-STEM data) and recompute the derived signal from the noisy counts"
        )
    if kind is None:
        raise InputError(
            "cannot tell what kind of signal this is: pass signal_kind= one of "
            f"{SIGNAL_KINDS} (DataArrays from temsim carry attrs['signal'])"
        )
    kind = str(kind).lower()
    if kind not in SIGNAL_KINDS:
        raise InputError(f"unknown signal kind {kind!r}; valid kinds: {SIGNAL_KINDS}")
    return kind


def _check_compatible(detector, kind: str) -> None:
    if not detector.accepts(kind):
        fits = [n for n, (cls, p) in DETECTOR_PRESETS.items() if kind in cls.__dataclass_fields__["signals"].default]
        raise InputError(
            f"detector {detector.name!r} ({type(detector).__name__}) does not apply to {kind!r} signals; "
            f"models that fit {kind!r}: {', '.join(fits)}"
        )


def _spacing(da, dim: str) -> float:
    c = np.asarray(da.coords[dim].values, dtype=float) if dim in da.coords else None
    if c is None or c.size < 2:
        raise InputError(f"cannot get the {dim} spacing: the DataArray needs a '{dim}' coordinate with ≥ 2 values")
    return float(abs(c[1] - c[0]))


def _area_from_dataarray(da, kind: str) -> float:
    """Å² per unit of signal value (pixel area, probe step², or illuminated area)."""
    attrs = da.attrs
    if kind == "image":
        return _spacing(da, "x") * _spacing(da, "y")
    if kind == "diffraction":
        if "illuminated_area" not in attrs:
            raise InputError("a diffraction pattern needs attrs['illuminated_area'] (Å²) to turn a dose into electrons")
        return _check_nonneg("illuminated_area", attrs["illuminated_area"], "Å²")
    step = attrs.get("scan_step")
    if step is not None:
        step = np.broadcast_to(np.asarray(step, dtype=float), (2,))
        return float(step[0] * step[1])
    return _spacing(da, "scan_x") * _spacing(da, "scan_y")


def _doses(dose) -> tuple[np.ndarray, bool]:
    """Dose values (float64, 1-D) and whether the output needs a ``dose`` dimension."""
    if isinstance(dose, Dose):
        return np.array([dose.value]), False
    arr = np.asarray(to_numpy(dose) if not isinstance(dose, (list, tuple)) else dose, dtype=float)
    if arr.ndim > 1:
        raise InputError(f"dose must be a number or a 1-D sequence of doses (e/Å²), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError(f"doses must be finite and ≥ 0 e/Å², got {arr.tolist()}")
    return arr.reshape(-1), arr.ndim == 1


def expected_electrons(signal, dose, area: float):
    """``λ = D·a·I`` with a leading dose axis when ``dose`` is 1-D (any array-API ``signal``)."""
    xp = array_namespace(signal)
    doses, has_axis = _doses(dose)
    sig = signal if signal.dtype in (xp.float32, xp.float64) else xp.astype(signal, xp.float32)
    if has_axis:
        scale = xp.asarray((doses * area).astype(np.float64 if sig.dtype == xp.float64 else np.float32))
        return xp.reshape(scale, (-1,) + (1,) * sig.ndim) * sig[None, ...]
    return sig * float(doses[0] * area)


def _check_signal_values(values) -> None:
    v = to_numpy(values)
    if v.size and np.nanmin(v) < -1e-3 * max(float(np.nanmax(np.abs(v))), 1e-30):
        raise InputError(
            f"the signal has negative values (min {float(np.nanmin(v)):.3g}): noise needs intensities "
            "(fractions of the beam), not phases, differences or centre-of-mass shifts"
        )
    if not np.all(np.isfinite(v)):
        raise InputError("the signal contains NaN or inf values")


def _sample(detector, expected, rng, kind: str, readout_frames, fast_axis: int):
    return detector.sample(expected, rng, readout_frames=readout_frames, fast_axis=fast_axis)


def apply_noise(signal, dose=None, detector="ideal", seed=None, *, signal_kind: str | None = None,
                area: float | None = None, exposure_time: float | None = None, n_frames: int = 1,
                fast_axis: str = "scan_x", energy: float | None = None):
    """Turn a noise-free simulated signal into recorded counts at one or several doses.

    Parameters
    ----------
    signal : DataArray, Dataset or array
        Simulated signal (fraction of the incident beam per pixel / probe position). A
        DataArray states its kind in ``attrs["signal"]`` (``"image"``, ``"diffraction"``,
        ``"stem"``, ``"4dstem"``); a Dataset is processed variable by variable. A plain
        array (numpy, ``array_api_strict``, cupy) needs ``signal_kind`` and ``area``.
    dose : float, Dose or 1-D sequence
        Dose(s) in e/Å². Several doses add a leading ``dose`` dimension (no re-simulation:
        the expected counts are linear in dose). ``None`` uses the signal's own ``dose``
        coordinate (e.g. after :func:`temsim.damage`).
    detector : str or detector model
        Preset name (see :func:`detector_model`) or a model instance.
    seed : int, SeedSequence, Generator or None
        Randomness; the entropy used is recorded in ``attrs["seed"]``.
    signal_kind : str, optional
        Overrides ``attrs["signal"]``; required for plain arrays.
    area : float, optional
        Å² per unit of signal for plain arrays: pixel area (image), probe step² (stem,
        4dstem) or illuminated area (diffraction).
    exposure_time : float, optional
        Exposure (s) per frame/probe position, used for coincidence loss (counting cameras).
    n_frames : int
        Number of readout frames the dose is recorded in (read noise per frame, saturation).
    fast_axis : str
        Fast scan dimension for detector afterglow (``"scan_x"`` or ``"scan_y"``).
    energy : float, optional
        Beam energy (eV) passed to :func:`detector_model` for presets.

    Returns
    -------
    DataArray, Dataset or array
        Counts (float32): counting models in counts, integrating cameras in ADU, annular PMT in
        single-electron pulse units. Dims ``("dose", *signal.dims)`` when several doses.

    Raises
    ------
    InputError
        Negative doses, an unknown or derived signal kind (CoM, iDPC), or a detector that does
        not apply to the signal kind (e.g. a camera model on an annular STEM signal).
    """
    model = detector_model(detector, energy=energy) if not isinstance(detector, _DetectorBase) else detector
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise InputError(f"n_frames must be an integer ≥ 1, got {n_frames!r}")
    readout_frames = None
    if exposure_time is not None:
        t = _check_nonneg("exposure_time", exposure_time, "s")
        rate = getattr(model, "frame_rate", None)
        if rate is not None:
            readout_frames = max(int(round(t * rate)), 1) * int(n_frames)
    elif n_frames > 1:
        readout_frames = int(n_frames)

    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a dependency
        xr = None

    if xr is not None and isinstance(signal, xr.Dataset):
        ss = np.random.SeedSequence(seed) if not isinstance(seed, (np.random.Generator, np.random.SeedSequence)) else seed
        children = ss.spawn(len(signal.data_vars)) if isinstance(ss, np.random.SeedSequence) else [ss] * len(signal.data_vars)
        out = {
            name: apply_noise(var, dose, model, child, signal_kind=signal_kind, area=area,
                              exposure_time=exposure_time, n_frames=n_frames, fast_axis=fast_axis)
            for (name, var), child in zip(signal.data_vars.items(), children)
        }
        return xr.Dataset(out, attrs=dict(signal.attrs))

    rng, recorded_seed = _rng(seed)

    if xr is not None and isinstance(signal, xr.DataArray):
        kind = _signal_kind(signal, signal_kind)
        _check_compatible(model, kind)
        a = float(area) if area is not None else _area_from_dataarray(signal, kind)
        da = signal
        if dose is None:
            if "dose" not in da.dims:
                raise InputError("dose is required (e/Å²) unless the signal already has a 'dose' dimension")
            doses = np.asarray(da.coords["dose"].values, dtype=float)
            da = da.transpose("dose", ...)
            values = da.data
            xp = array_namespace(values)
            expected = values * xp.asarray(
                (doses * a).reshape((-1,) + (1,) * (values.ndim - 1)).astype(np.float32))
            has_axis, core = True, da.isel(dose=0, drop=True)
        else:
            if "dose" in da.dims:
                raise InputError("the signal already has a 'dose' dimension: pass dose=None to use it")
            pix = {"image": ("x", "y"), "diffraction": ("kx", "ky"), "4dstem": ("kx", "ky"),
                   "stem": ("scan_x", "scan_y")}[kind]
            missing = [d for d in pix if d not in da.dims]
            if missing:
                raise InputError(f"a {kind!r} signal needs dims {pix}; missing {missing} (dims are {da.dims})")
            da = da.transpose(..., *pix)
            core = da
            doses, has_axis = _doses(dose)
            expected = expected_electrons(da.data, dose, a)
        _check_signal_values(core.data)
        fast = -2 if fast_axis == "scan_x" else -1
        if fast_axis not in ("scan_x", "scan_y"):
            raise InputError(f"fast_axis must be 'scan_x' or 'scan_y', got {fast_axis!r}")
        counts = _sample(model, expected, rng, kind, readout_frames, fast)
        dims = (("dose",) if has_axis else ()) + core.dims
        coords = {k: v for k, v in core.coords.items()}
        if has_axis:
            coords["dose"] = ("dose", doses, {"units": "e/Å²", "long_name": "electron dose"})
        attrs = dict(signal.attrs)
        attrs.update(
            signal=kind,
            units={"IntegratingCamera": "ADU", "AnnularPMT": "single-electron pulses"}.get(type(model).__name__, "counts"),
            detector_model=model.name,
            detector_parameters=json.dumps(model.parameters()),
            seed=str(recorded_seed),
            area_per_unit_signal=a,
            n_frames=int(n_frames),
        )
        if not has_axis:
            attrs["dose"] = float(doses[0])
        return xr.DataArray(counts, dims=dims, coords=coords, attrs=attrs, name=signal.name)

    # plain array path
    if signal_kind is None or area is None:
        raise InputError("plain arrays need signal_kind= (image/diffraction/stem/4dstem) and area= (Å² per unit of signal)")
    kind = _signal_kind(signal, signal_kind)
    _check_compatible(model, kind)
    if dose is None:
        raise InputError("dose is required (e/Å²) for plain arrays")
    _check_signal_values(signal)
    expected = expected_electrons(signal, dose, _check_nonneg("area", area, "Å²"))
    fast = -2 if fast_axis == "scan_x" else -1
    return _sample(model, expected, rng, kind, readout_frames, fast)
