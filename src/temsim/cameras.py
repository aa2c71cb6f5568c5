"""Camera models: the response of a recording device (DQE, MTF, noise, gain), not its geometry.

A *detector* (:mod:`temsim.detectors`) is geometry: which scattering angles or pixels form a
channel. A *camera model* is response: how the expected electrons ``λ`` arriving at a channel
or pixel become recorded counts. :func:`temsim.apply_noise` computes ``λ = D · a · I`` (dose
``D`` in e/Å², area ``a`` in Å² per pixel or probe position, simulated fraction of the beam
``I``) and hands it to :meth:`CameraModel.sample`:

========================  ====================================================================
model                     what :meth:`~CameraModel.sample` does
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
satisfy ``DQE(f) = DQE(0)·MTF(f)²/NNPS(f)`` with ``NNPS(0) = 1``. Named presets are in
:data:`CAMERA_PRESETS`; their numbers, with unit, source and status (measured, fitted,
representative), are in the data table ``temsim/data/cameras.toml``
(:mod:`temsim.camera_data`). :func:`camera_model` builds one at a beam energy (interpolated
between characterised energies, refused outside them) with overrides.

:func:`dqe_whitening` and :func:`whiten_contrast` carry a camera's DQE(f) into pixel-wise
Poisson statistics of an image (the planner's HRTEM statistics).

Randomness comes only from the :class:`numpy.random.Generator` passed to ``sample``; arrays
from other array-API libraries (``array_api_strict``, cupy) are copied to numpy for the random
draws and converted back (deterministic filtering runs in their own namespace).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from temsim.backend import array_namespace, fft2, ifft2, is_numpy_namespace, to_numpy
from temsim.camera_data import CameraNumber, camera_table, characterised_range, resolve_preset
from temsim.checks import as_number
from temsim.errors import AccuracyWarning, InputError

__all__ = [
    "CameraModel",
    "IdealCounting",
    "CountingCamera",
    "IntegratingCamera",
    "HybridPixel",
    "AnnularPMT",
    "CAMERA_PRESETS",
    "camera_model",
    "frequency_grid",
    "dqe_whitening",
    "whiten_contrast",
    "SIGNAL_KINDS",
]

#: Raw signal kinds (``attrs["signal"]``) that camera models can turn into counts.
SIGNAL_KINDS = ("image", "diffraction", "stem", "4dstem")

_CAMERA_SIGNALS = ("image", "diffraction", "4dstem")

#: Negative expected counts down to this fraction of the largest |value| are round-off (clipped to 0).
_ROUND_OFF = 1e-3


# --------------------------------------------------------------------------- helpers
def _check_fraction(name: str, value: float, *, allow_zero: bool = False) -> float:
    v = as_number(name, value)
    if not ((v >= 0 if allow_zero else v > 0) and v <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise InputError(f"{name} must lie in {interval}, got {value!r}")
    return v


def _check_nonneg(name: str, value: float, unit: str = "") -> float:
    return as_number(name, value, unit, minimum=0)


def _check_expected(expected) -> None:
    """Expected electron counts must be finite and ≥ 0 (up to round-off)."""
    v = to_numpy(expected)
    if not np.all(np.isfinite(v)):
        raise InputError("expected electron counts contain NaN or inf values")
    if v.size and np.min(v) < -_ROUND_OFF * max(float(np.max(np.abs(v))), 1e-30):
        raise InputError(f"expected electron counts must be ≥ 0, got a minimum of {float(np.min(v)):.3g}")


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


class CameraModel:
    """Base of the camera models: the response of a recording device to expected electrons.

    Subclasses (frozen dataclasses, built by name with :func:`camera_model`):
    :class:`IdealCounting`, :class:`CountingCamera`, :class:`IntegratingCamera`,
    :class:`HybridPixel`, :class:`AnnularPMT`.

    Public checks, private hooks: :meth:`sample` validates its arguments and calls
    :meth:`_sample`, which a subclass overrides to draw the recorded signal. Subclasses may
    override :meth:`mtf`, :meth:`nnps` and :meth:`dqe`; they define ``dqe0`` (field or
    property), ``name`` and ``signals`` (the raw signal kinds they apply to).
    """

    signals: tuple[str, ...] = SIGNAL_KINDS

    def accepts(self, kind: str) -> bool:
        """True when this model makes sense for signals of ``kind``."""
        return kind in self.signals

    def sample(self, expected, rng: np.random.Generator, *, readout_frames: int | None = None, fast_axis: int = -2):
        """Recorded signal (float32, in ``expected``'s array namespace) for ``expected`` electrons.

        Parameters
        ----------
        expected : array
            Expected electrons per pixel / probe position (finite, ≥ 0 up to round-off of
            1e-3 of the maximum); for imaging models the last two axes are detector pixels.
        rng : numpy.random.Generator
            Source of all randomness.
        readout_frames : int, optional
            Sensor readout frames the exposure spans (coincidence loss, read noise,
            saturation); ``None``: one, without coincidence loss.
        fast_axis : int
            Axis of ``expected`` scanned fastest (afterglow of :class:`AnnularPMT`).
        """
        if not isinstance(rng, np.random.Generator):
            raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        _check_expected(expected)
        if readout_frames is not None:
            readout_frames = as_number("readout_frames", readout_frames, integer=True, minimum=1)
        ndim = len(expected.shape)
        fast_axis = as_number("fast_axis", fast_axis, integer=True, minimum=-max(ndim, 1), maximum=max(ndim - 1, 0))
        return self._sample(expected, rng, readout_frames, fast_axis)

    def _sample(self, expected, rng: np.random.Generator, readout_frames: int | None = None, fast_axis: int = -2):
        """Hook: the recorded signal for checked arguments (see :meth:`sample`)."""
        raise NotImplementedError  # pragma: no cover - interface

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
    def poisson_efficiency(self) -> float:
        """Poisson-equivalent efficiency for the planner: expected *useful* counts per electron.

        The planner's Poisson model uses ``λ = D·a·η·I`` with ``η = dqe0`` (the zero-frequency
        DQE): a Poisson process with that mean has the same low-frequency SNR as the detector.
        Features narrower than a few pixels lose a further ``MTF²/NNPS`` (:meth:`dqe`).

        >>> round(camera_model("annular-pmt").poisson_efficiency, 4)  # 1 / (1 + 0.6²)
        0.7353
        """
        return float(self.dqe0)

    @property
    def efficiency(self) -> float:
        """Same as :attr:`poisson_efficiency` (models with an ``efficiency`` parameter, such as
        :class:`AnnularPMT`, use that name for their own parameter instead)."""
        return self.poisson_efficiency

    def parameters(self) -> dict:
        """The model's parameters as a JSON-serializable dict (with its class name)."""
        d = {
            k: (None if isinstance(v, float) and math.isinf(v) else v)
            for k, v in asdict(self).items()
            if k != "provenance"
        }
        d["model"] = type(self).__name__
        return d


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class IdealCounting(CameraModel):
    """Ideal counting detector: each electron is counted with probability ``dqe0`` (default 1).

    Works on every raw signal kind. ``DQE(f) = dqe0`` at every frequency (no blur, white noise).
    """

    dqe0: float = 1.0
    name: str = "ideal"
    source: str = "definition"
    signals: tuple[str, ...] = field(default=SIGNAL_KINDS, repr=False)
    provenance: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "dqe0", _check_fraction("dqe0 (DQE at zero frequency)", self.dqe0))

    def _sample(self, expected, rng: np.random.Generator, readout_frames: int | None = None, fast_axis: int = -2):
        """Counts for ``expected`` electrons (any array-API array), as float32 in its namespace."""
        xp = array_namespace(expected)
        lam = np.clip(to_numpy(expected).astype(np.float64), 0.0, None) * self.dqe0
        return xp.asarray(rng.poisson(lam).astype(np.float32))


@dataclass(frozen=True)
class CountingCamera(CameraModel):
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
        Beam energy (eV) the numbers describe (set by :func:`camera_model` from ``energy``).
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
    provenance: tuple = field(default=(), repr=False, compare=False)

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

    def _sample(self, expected, rng: np.random.Generator, readout_frames: int | None = None, fast_axis: int = -2):
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
class IntegratingCamera(CameraModel):
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
    provenance: tuple = field(default=(), repr=False, compare=False)

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

    def _sample(self, expected, rng: np.random.Generator, readout_frames: int | None = None, fast_axis: int = -2):
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
class HybridPixel(CameraModel):
    """Hybrid pixel array detector for diffraction, 4D-STEM and images (EMPAD, Medipix/Timepix-class).

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
    signals: tuple[str, ...] = field(default=("image", "diffraction", "4dstem"), repr=False)
    provenance: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "dqe0", _check_fraction("dqe0 (DQE at zero frequency)", self.dqe0))
        if not self.max_counts >= 1:
            raise InputError(f"max_counts (dynamic range per pixel per frame) must be ≥ 1, got {self.max_counts!r}")

    def mtf(self, fx, fy=0.0):
        return _lorentzian_mtf(fx, fy, self.mtf_weight, self.mtf_f1, self.mtf_f2, True)

    def _sample(self, expected, rng: np.random.Generator, readout_frames: int | None = None, fast_axis: int = -2):
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
                "use more frames",
                AccuracyWarning,
                stacklevel=4,
            )
            counts = np.minimum(counts, ceiling)
        return xp.asarray(counts.astype(np.float32))


@dataclass(frozen=True)
class AnnularPMT(CameraModel):
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

    # the fraction of electrons that make a pulse; the planner uses poisson_efficiency (DQE(0))
    efficiency: float = 1.0
    pulse_height_cv: float = 0.6
    electronic_noise: float = 0.5
    afterglow: float = 0.0
    name: str = "annular-pmt"
    source: str = ""
    signals: tuple[str, ...] = field(default=("stem",), repr=False)
    provenance: tuple = field(default=(), repr=False, compare=False)

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

    def _sample(self, expected, rng: np.random.Generator, readout_frames: int | None = None, fast_axis: int = -2):
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
        # a pulse count is never negative: the electronic noise of an empty position reads as zero
        return xp.asarray(np.maximum(out, 0.0).astype(np.float32))


# --------------------------------------------------------------------------- presets
_MODEL_CLASSES = {
    cls.__name__: cls for cls in (IdealCounting, CountingCamera, IntegratingCamera, HybridPixel, AnnularPMT)
}


def _presets() -> dict[str, tuple[type, dict]]:
    out = {}
    for name, entry in camera_table().items():
        model, params, _ = resolve_preset(name)
        out[name] = (_MODEL_CLASSES[model], dict(params, source=entry["summary"]))
    return out


#: Named presets: ``(class, parameters)`` at each preset's highest characterised energy, from
#: the camera table ``temsim/data/cameras.toml`` (values, units, sources and statuses there;
#: :func:`temsim.camera_data.resolve_preset` resolves them at other energies).
CAMERA_PRESETS: dict[str, tuple[type, dict]] = _presets()


def _override_rows(overrides: dict) -> tuple:
    return tuple(
        CameraNumber(k, v, "", "override", "given by the user", "user", "", "").row()
        for k, v in overrides.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )


def camera_model(name: str = "ideal", energy: float | None = None, *, allow_extrapolation: bool = False, **overrides):
    """A camera model (detector response) from a named preset at a beam energy, with overrides.

    Parameters
    ----------
    name : str
        Preset name, a key of :data:`CAMERA_PRESETS` (``"ideal"``, ``"counting-ded"``, ``"ccd"``,
        ``"hybrid-pixel"``, ``"timepix4"``, ``"annular-pmt"``): numbers, units, statuses and
        sources in ``temsim/data/cameras.toml`` and docs/dose-detectors-damage.md.
    energy : float, optional
        Beam energy (eV) the camera is used at. Between characterised energies the numbers are
        interpolated linearly in energy; outside the characterised range the preset is refused
        (:class:`~temsim.errors.InputError`, naming the range). ``None``: the preset at its
        highest characterised energy.
    allow_extrapolation : bool
        Outside the characterised range, use the nearest characterised energy's numbers,
        marked ``extrapolated`` in the model's ``provenance`` (and the plan report).
    **overrides
        Any field of the model (e.g. ``dqe0=0.7``), validated like the preset itself; an
        override replaces the table's number (status ``override``) and needs no energy.

    Examples
    --------
    >>> camera_model("counting-ded", dqe0=0.7).dqe0
    0.7
    >>> round(camera_model("timepix4", energy=150e3).mtf_f1, 4)  # halfway between 100 and 200 keV
    0.1662
    """
    if isinstance(name, CameraModel):
        return replace(name, **overrides) if overrides else name
    key = str(name).lower()
    if key not in CAMERA_PRESETS:
        raise InputError(f"unknown camera preset {name!r}; valid presets: {', '.join(CAMERA_PRESETS)}")
    cls = CAMERA_PRESETS[key][0]
    valid = {f for f in cls.__dataclass_fields__ if f not in ("signals", "provenance")}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise InputError(f"{cls.__name__} has no parameter(s) {bad}; valid: {sorted(valid)}")
    if energy is not None:
        from temsim.constants import check_energy

        energy = check_energy(energy)
    _, params, numbers = resolve_preset(key, energy, allow_extrapolation=allow_extrapolation, overridden=overrides)
    params = dict(params, name=key, source=CAMERA_PRESETS[key][1]["source"])
    if "reference_energy" in valid:
        span = characterised_range(key)
        params["reference_energy"] = float(energy) if energy is not None else (span[1] if span else 300e3)
    params.update(overrides)
    provenance = tuple(n.row() for n in numbers) + _override_rows(overrides)
    return cls(**params, provenance=provenance)


# --------------------------------------------------------------------------- image statistics
def dqe_whitening(model: CameraModel, shape: tuple[int, int], sampling, pixel_size=None) -> np.ndarray:
    """``√(DQE(f)/DQE(0))`` on the FFT grid of a simulated image (zero beyond the camera's Nyquist).

    Parameters
    ----------
    model : CameraModel
        The camera (its :meth:`~CameraModel.dqe` at high dose).
    shape : (int, int)
        Simulated image pixels ``(nx, ny)``.
    sampling : (float, float)
        Simulated pixel size (Å) along x and y.
    pixel_size : float or (float, float), optional
        The camera's pixel size referred to the specimen (Å); default: ``sampling`` (one
        simulated pixel per camera pixel). A frequency ``k`` (1/Å) is ``k·pixel_size`` cycles
        per camera pixel; contrast beyond the camera's Nyquist frequency (0.5 cycles/pixel) is
        not recorded (factor 0).

    Notes
    -----
    A camera with zero-frequency DQE ``η`` and ``DQE(f)`` records a weak contrast ``ΔN(f)`` on a
    background of ``N̄`` electrons per pixel with the Fisher information ``Σ_f DQE(f)|ΔN(f)|²/N̄``
    (the noise-equivalent quanta per frequency are ``N̄·DQE(f)``). A Poisson process with mean
    ``η·N̄`` and contrast ``η·W(f)ΔN(f)``, ``W = √(DQE(f)/η)``, has the same information, pixel by
    pixel: so the planner filters each image's contrast by ``W`` and keeps the pixel-wise Poisson
    likelihood ratio with efficiency ``η``. docs/dose-detectors-damage.md derives it.
    """
    nx, ny = (int(n) for n in shape)
    sx, sy = (float(v) for v in np.broadcast_to(np.asarray(sampling, float), (2,)))
    px, py = (
        float(v) for v in np.broadcast_to(np.asarray(sampling if pixel_size is None else pixel_size, float), (2,))
    )
    if not (px > 0 and py > 0):
        raise InputError(f"pixel_size must be > 0 Å, got {pixel_size!r}")
    fx = np.fft.fftfreq(nx, d=sx)[:, None] * px
    fy = np.fft.fftfreq(ny, d=sy)[None, :] * py
    ratio = np.broadcast_to(np.asarray(model.dqe(fx, fy), float) / float(model.dqe0), (nx, ny))
    recorded = (np.abs(fx) <= 0.5 + 1e-12) & (np.abs(fy) <= 0.5 + 1e-12)
    return np.sqrt(np.clip(np.where(recorded, ratio, 0.0), 0.0, None))


def whiten_contrast(rate0: np.ndarray, rate1: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    """``r⁰ + F⁻¹[W · F(r¹ − r⁰)]`` over the last two axes, clipped at 0 (see :func:`dqe_whitening`).

    With ``W = 1`` (a camera whose DQE does not depend on frequency) it returns ``rate1``.
    """
    r0 = np.asarray(rate0, float)
    r1 = np.asarray(rate1, float)
    if np.all(whitening == 1.0):
        return r1.copy()
    diff = np.fft.ifft2(np.fft.fft2(r1 - r0, axes=(-2, -1)) * whitening, axes=(-2, -1)).real
    return np.clip(r0 + diff, 0.0, None)
