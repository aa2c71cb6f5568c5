"""Fitting a simulation to an experiment: coarse search, local least squares, Fisher uncertainties.

The model of the recorded image is ``scale · (G_blur ⊗ I_sim(thickness, defocus))(x − shift) +
offset``: the simulated image (one period, from :mod:`temsim.comparison.model`) blurred by a
Gaussian (source size, vibration, camera MTF), shifted, evaluated on the experiment's pixels
and put on the detector's scale. The noise model is Poisson with a gain: ``var = gain ·
(model − offset)`` in the data's units, so ``(data − offset) / gain`` counts electrons and the
dose is ``scale / (gain · pixel area · efficiency)`` (e/Å²). Signed signals (a DPC or CoM
component) have white noise of one variance instead; integrated ones (iDPC, iCoM) are fitted on
residuals whitened by :func:`~temsim.comparison.prepare.whiten_integrated`. A STEM image may
also drift: the geometry is affine (rotation, magnification, drift over the frame).

1. **Coarse search** over the thickness series × a defocus grid fine enough not to step over a
   contrast reversal at the highest transferred frequency (HRTEM) or the members of a STEM
   probe defocus series; each candidate is registered by cross-correlation (integer pixels).
2. **Registration** of the best candidates by phase correlation (sub-pixel).
3. **Local fit** of the continuous parameters by ``scipy.optimize.least_squares``: Gaussian
   likelihood (unweighted, then weighted by the noise model with the gain estimated from the
   residuals) or Poisson likelihood (deviance residuals, gain known).
4. **Thickness** is profiled over the series (no re-simulation): neighbouring thicknesses are
   refitted, and the profile's curvature gives its uncertainty.
5. **Uncertainties** from the Fisher information ``Jᵀ diag(1/var) J`` at the optimum (central
   differences). A parameter on a bound makes the fit *not converged*, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from temsim.comparison.prepare import (
    correlation_peaks,
    cross_correlation_peak,
    integrated_modes_lost,
    phase_correlation,
    whiten_integrated,
)
from temsim.errors import InputError

__all__ = ["FitOutcome", "Fitter", "CONTINUOUS", "UNITS"]

#: Continuous parameters of the local fit, in their order.
CONTINUOUS = (
    "defocus",
    "Cs",
    "blur",
    "shift_x",
    "shift_y",
    "rotation_deg",
    "magnification",
    "drift_x",
    "drift_y",
    "scale",
    "offset",
)

#: Units of every reported parameter.
UNITS = {
    "defocus": "Å",
    "Cs": "Å",
    "thickness": "Å",
    "blur": "Å",
    "shift_x": "Å",
    "shift_y": "Å",
    "rotation_deg": "degrees (experiment relative to the simulation cell)",
    "magnification": "experiment pixel size / nominal",
    "drift_x": "Å (specimen displacement from the first to the last scan line)",
    "drift_y": "Å (specimen displacement from the first to the last scan line)",
    "scale": "data units per fraction of the beam",
    "offset": "data units",
    "dose": "e/Å²",
    "gain": "data units per electron",
    "noise_sigma": "data units (signed signals) or data units/Å (iDPC, iCoM: per gradient component)",
}

_DEFAULT_BOUNDS = {
    "blur": (0.0, 5.0),
    "scale": (0.0, np.inf),
    "offset": (-np.inf, np.inf),
    "rotation_deg": (-5.0, 5.0),
    "magnification": (0.9, 1.1),
}


@dataclass
class FitOutcome:
    """Everything the fit found (see :class:`temsim.comparison.CompareResult` for the public view)."""

    parameters: dict
    uncertainties: dict
    at_bound: list
    converged: bool
    message: str
    prediction: np.ndarray
    variance: np.ndarray
    chi2: float
    dof: int
    thickness_index: int
    thickness_profile: np.ndarray
    covariance: np.ndarray
    covariance_names: tuple
    evaluations: int = 0
    notes: list = field(default_factory=list)
    row_shifts: tuple | None = None


class Fitter:
    """Fit of one forward model to one experimental image.

    Parameters
    ----------
    model : ExitWaveModel or ImageModel
        The simulation (one thickness series).
    data : (nx, ny) array
        The experimental image (``[x, y]``), in its own units.
    pixel_size : (float, float)
        Experimental pixel size, Å.
    free : sequence of str
        Fitted parameters among ``defocus``, ``Cs``, ``thickness``, ``blur``, ``shift``, ``scale``,
        ``offset``, ``dose`` (``dose``: estimated from the noise; ``shift``: both axes).
    initial : dict
        Starting or fixed values (Å; ``thickness`` in Å picks the nearest of the series).
    bounds : dict
        ``{name: (low, high)}``; defocus defaults to ``initial ± 200 Å``.
    likelihood : {"gaussian", "poisson"}
        Least squares with the Poisson-with-gain noise model (gain fitted from the residuals)
        or the Poisson likelihood of counts (``gain`` known).
    gain : float, optional
        Data units per electron (counting camera: 1). ``None`` with ``"gaussian"``: estimated.
    efficiency : float
        Detective efficiency DQE(0) of the camera (fraction of electrons recorded).
    regularization : float, optional
        iDPC/iCoM: the ε (1/Å²) the experiment was integrated with (default: the model's).
    """

    def __init__(
        self,
        model,
        data,
        pixel_size,
        free,
        initial=None,
        bounds=None,
        likelihood="gaussian",
        gain=None,
        efficiency=1.0,
        regularization=None,
    ):
        self.model = model
        self.data = np.asarray(data, dtype=float)
        self.pixel = tuple(float(p) for p in pixel_size)
        self.u = np.arange(self.data.shape[0]) * self.pixel[0]
        self.v = np.arange(self.data.shape[1]) * self.pixel[1]
        self.likelihood = likelihood
        self.gain = gain
        self.efficiency = float(efficiency)
        self.initial = dict(initial or {})
        self.signal = getattr(model, "signal", "counts")
        _check_signal(self.signal, free, likelihood, gain)
        if regularization is not None:
            model.integrated_with(regularization)
        self.regularization = float(getattr(model, "regularization", 0.0))
        self.free_all = _expand(free, model)
        self.names = tuple(n for n in CONTINUOUS if n in self.free_all)
        if likelihood == "poisson" and "offset" in self.names:
            raise InputError(
                "the Poisson likelihood needs the black level fixed: drop 'offset' from fit and give "
                "initial={'offset': black_level} (data units)"
            )
        self.bounds = self._bounds(bounds or {})
        #: Per-scan-line shifts along x (Å), or None when line jitter is not corrected.
        self.row_shifts = None
        self._cache: dict = {}
        self._last = None  # the last evaluated unit image and its geometry
        self.evaluations = 0

    # ------------------------------------------------------------------ set-up
    def _bounds(self, given: dict) -> dict:
        out = dict(_DEFAULT_BOUNDS)
        centre = float(self.initial.get("defocus", 0.0))
        defoci = getattr(self.model, "defoci", None)
        out["defocus"] = (centre - 200.0, centre + 200.0) if defoci is None else (defoci[0], defoci[-1])
        if self.signal != "counts":
            out["scale"] = (-np.inf, np.inf)  # a signed signal's sign depends on the detector's orientation
        height = self.pixel[1] * max(self.data.shape[1] - 1, 1)
        out["drift_x"] = out["drift_y"] = (-0.25 * height, 0.25 * height)
        cs = float(self.initial.get("Cs", getattr(getattr(self.model, "aberrations", None), "C30", 0.0)))
        out["Cs"] = (cs - 5e5, cs + 5e5)  # ± 50 µm
        for name, pair in given.items():
            if name not in (*CONTINUOUS, "thickness"):
                raise InputError(f"bounds for unknown parameter {name!r}; parameters are {', '.join(CONTINUOUS)}")
            lo, hi = (float(p) for p in pair)
            if name == "defocus" and defoci is not None and (lo < defoci[0] or hi > defoci[-1]):
                raise InputError(
                    f"bounds['defocus'] = ({lo:g}, {hi:g}) Å reach outside the simulated defocus series "
                    f"{defoci[0]:g}–{defoci[-1]:g} Å; simulate a wider series or narrow the bounds"
                )
            if not lo < hi:
                raise InputError(f"bounds[{name!r}] must be (low, high) with low < high, got {pair!r}")
            out[name] = (lo, hi)
        return out

    def _thickness_indices(self) -> list[int]:
        thicknesses = self.model.thicknesses
        lo, hi = self.bounds.get("thickness", (-np.inf, np.inf))
        allowed = [i for i, t in enumerate(thicknesses) if lo <= t <= hi or np.isnan(t)]
        if not allowed:
            raise InputError(f"no simulated thickness within bounds {lo:g}–{hi:g} Å (series: {thicknesses})")
        if "thickness" in self.free_all:
            return allowed
        if "thickness" in self.initial:
            return [int(np.argmin(np.abs(thicknesses - float(self.initial["thickness"]))))]
        return [len(thicknesses) - 1]

    # ------------------------------------------------------------------ the forward model
    def unit_image(self, index: int, values: dict) -> np.ndarray:
        """Blurred, shifted simulated image on the experiment's pixels (before scale/offset)."""
        defocus = values.get("defocus") if "defocus" in self.model.fittable else None
        cs = values.get("Cs") if "Cs" in self.model.fittable else None
        key = (
            index,
            None if defocus is None else round(float(defocus), 9),
            None if cs is None else round(float(cs), 6),
        )
        periodic = self._cache.get(key)
        if periodic is None:
            periodic = self.model.image(index, defocus) if cs is None else self.model.image(index, defocus, cs)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = periodic
        self.evaluations += 1
        shift = (values.get("shift_x", 0.0), values.get("shift_y", 0.0))
        rotation, magnification = values.get("rotation_deg", 0.0), values.get("magnification", 1.0)
        drift = (values.get("drift_x", 0.0), values.get("drift_y", 0.0))
        rows = None if self.row_shifts is None else self.row_shifts.tobytes()
        geometry = (key, values.get("blur", 0.0), shift, rotation, magnification, drift, rows)
        if self._last is not None and self._last[0] == geometry:  # only scale/offset changed
            return self._last[1]
        blurred = periodic.blurred(values.get("blur", 0.0))
        if rotation == 0.0 and magnification == 1.0 and drift == (0.0, 0.0):
            image = blurred.evaluate(self.u, self.v, shift, self.row_shifts)
        else:
            image = blurred.evaluate_affine(self.u, self.v, shift, rotation, magnification, drift, self.row_shifts)
        self._last = (geometry, image)
        return image

    def predict(self, index: int, values: dict) -> np.ndarray:
        return values.get("scale", 1.0) * self.unit_image(index, values) + values.get("offset", 0.0)

    # ------------------------------------------------------------------ coarse search
    def _defocus_grid(self) -> np.ndarray:
        if "defocus" not in self.names:
            return np.array([self.initial.get("defocus", np.nan)])
        lo, hi = self.bounds["defocus"]
        defoci = getattr(self.model, "defoci", None)
        if defoci is not None:  # the simulated members (no contrast reversal between them to step over)
            return defoci[(defoci >= lo - 1e-9) & (defoci <= hi + 1e-9)]
        k = self.model.max_frequency()
        step = 0.25 / (_wavelength(self.model.energy) * k**2)
        n = int(min(121, max(3, math.ceil((hi - lo) / step) + 1)))
        return np.linspace(lo, hi, n)

    def _start(self, index: int, defocus: float) -> dict:
        values = {name: float(self.initial[name]) for name in CONTINUOUS if name in self.initial}
        values.setdefault("blur", 0.1 if "blur" in self.names else 0.0)
        if "Cs" in self.names:
            values.setdefault("Cs", float(self.model.aberrations.C30))
        if not np.isnan(defocus):
            values["defocus"] = float(defocus)
        return values

    def coarse(self, keep: int = 2) -> list[tuple[float, int, dict]]:
        """The ``keep`` best (NCC, thickness index, start values) of the grid search."""
        scored = []
        for index in self._thickness_indices():
            for defocus in self._defocus_grid():
                values = self._start(index, defocus)
                values.pop("shift_x", None)
                values.pop("shift_y", None)
                image = self.unit_image(index, values)
                ncc = max(cross_correlation_peak(sign * image, self.data)[0] for sign in self._signs())
                scored.append((ncc, index, values))
        scored.sort(key=lambda item: -item[0])
        return scored[:keep]

    def registrations(self, index: int, values: dict, count: int = 4) -> list[tuple[dict, float]]:
        """Distinct candidate registrations with their residuals, best first.

        The highest correlation peaks are refined sub-pixel and given their scale/offset by
        regression; peaks that are lattice translations of each other (same residual) count
        once. Near-symmetric images (SrTiO₃ [001] at some defoci) have distinct peaks of similar
        height: which is right is decided by the fit's χ², not by the correlation.
        """
        image = self.unit_image(index, {**values, "shift_x": 0.0, "shift_y": 0.0})
        out: list[tuple[dict, float]] = []
        for sign in self._signs():  # a signed signal may be inverted (the detector's orientation)
            found = 0
            for peak in correlation_peaks(sign * image, self.data, 6 * count) or [(0, 0)]:
                sx, sy = phase_correlation(sign * image, self.data, whiten=False, near=peak)
                shifted = {**values, "shift_x": sx * self.pixel[0], "shift_y": sy * self.pixel[1]}
                trial = self._linear(index, shifted)
                if all(abs(trial[1] - other[1]) > 1e-6 * other[1] for other in out):
                    out.append(trial)
                    found += 1
                if found == count:
                    break
        return sorted(out, key=lambda item: item[1])[:count]

    def _signs(self) -> tuple[float, ...]:
        return (1.0,) if self.signal == "counts" else (1.0, -1.0)

    def register(self, index: int, values: dict) -> dict:
        """Shift by sub-pixel correlation (the candidate of least residual) and scale/offset by regression."""
        if "shift_x" not in self.names and "shift_y" not in self.names:
            return self._linear(index, values)[0]
        return self.registrations(index, values)[0][0]

    def _linear(self, index: int, values: dict) -> tuple[dict, float]:
        """Scale and offset by linear least squares (those that are fitted), and the residual."""
        values = dict(values)
        image = self.unit_image(index, values).ravel()
        design = np.stack([image, np.ones_like(image)], axis=1)
        (scale, offset), *_ = np.linalg.lstsq(design, self.data.ravel(), rcond=None)
        if "scale" in self.names:
            fallback = float(np.std(self.data) / max(np.std(image), 1e-12))
            values["scale"] = float(scale) if scale > 0 or self.signal != "counts" else fallback
        if "offset" in self.names:
            values["offset"] = float(offset)
        residual = self.data.ravel() - values.get("scale", 1.0) * image - values.get("offset", 0.0)
        return values, float(residual @ residual)

    # ------------------------------------------------------------------ local fit
    def _residuals(self, index: int, fixed: dict, variance):
        def residuals(x):
            values = {**fixed, **dict(zip(self.names, x))}
            prediction = self.predict(index, values)
            if self.likelihood == "poisson":
                return _deviance(self.data, prediction, values.get("offset", 0.0), self.gain or 1.0).ravel()
            if variance is None:
                return self.whiten(self.data - prediction).ravel()
            return (self.whiten(self.data - prediction) / np.sqrt(variance)).ravel()

        return residuals

    def local(self, index: int, start: dict, variance=None) -> tuple[dict, float, bool]:
        """Least-squares optimum from ``start`` at thickness ``index``: (values, cost, success)."""
        fixed = {k: v for k, v in start.items() if k not in self.names}
        x0, lower, upper, scales = [], [], [], []
        for name in self.names:
            lo, hi = self.bounds.get(name, (-np.inf, np.inf))
            value = float(np.clip(start.get(name, 1.0 if name in ("magnification", "scale") else 0.0), lo, hi))
            x0.append(value)
            lower.append(lo)
            upper.append(hi)
            scales.append(self._typical(name, start))
        if not self.names:
            values = dict(start)
            return values, 0.5 * float(np.sum(self._residuals(index, fixed, variance)(np.array([])) ** 2)), True
        result = optimize.least_squares(
            self._residuals(index, fixed, variance),
            np.array(x0),
            bounds=(np.array(lower), np.array(upper)),
            x_scale=np.array(scales),
            method="trf",
            xtol=1e-8,
            ftol=1e-9,
            max_nfev=200,
        )
        values = {**fixed, **dict(zip(self.names, map(float, result.x)))}
        return values, float(result.cost), bool(result.success)

    def whiten(self, image: np.ndarray) -> np.ndarray:
        """The residual (or a derivative) in the space where the noise is white: iDPC/iCoM
        whitened (:func:`~temsim.comparison.prepare.whiten_integrated`), else unchanged."""
        if self.signal != "integrated":
            return image
        return whiten_integrated(image, self.pixel, self.regularization)

    def _typical(self, name: str, start: dict) -> float:
        return {
            "defocus": 10.0,
            "Cs": 1000.0,
            "rotation_deg": 0.1,
            "magnification": 1e-3,
            "drift_x": self.pixel[0],
            "drift_y": self.pixel[1],
            "blur": 0.1,
            "shift_x": self.pixel[0],
            "shift_y": self.pixel[1],
            "scale": max(abs(start.get("scale", 1.0)), 1e-12),
            "offset": max(float(np.std(self.data)), 1e-12),
        }[name]

    # ------------------------------------------------------------------ STEM line jitter
    def estimate_row_shifts(self, index: int, values: dict, variance=None, steps: int = 3) -> np.ndarray:
        """Gauss–Newton steps for one shift along *x* per scan line (Å), mean folded into ``shift_x``.

        Each line's shift has a Gaussian prior of one pixel standard deviation, so a line with no
        structure along *x* (between atom rows) stays put instead of wandering. Returns the
        standard error of each line's shift (its Fisher information plus the prior's).
        """
        prior = 1.0 / self.pixel[0] ** 2
        h = 0.01 * self.pixel[0]
        weights = 1.0 / variance if variance is not None else np.ones_like(self.data)
        sigma = np.full(self.data.shape[1], np.inf)
        for _ in range(steps):
            base = self.row_shifts.copy()
            self.row_shifts = base + h
            up = self.predict(index, values)
            self.row_shifts = base - h
            down = self.predict(index, values)
            self.row_shifts = base
            derivative = (up - down) / (2 * h)
            residual = self.data - self.predict(index, values)
            information = np.sum(weights * derivative**2, axis=0) + prior
            step = (np.sum(weights * residual * derivative, axis=0) - prior * base) / information
            shifts = base + np.clip(step, -self.pixel[0], self.pixel[0])
            mean = float(shifts.mean())
            self.row_shifts = shifts - mean
            values["shift_x"] = values.get("shift_x", 0.0) + mean
            sigma = 1.0 / np.sqrt(information)
        return sigma

    # ------------------------------------------------------------------ noise model
    def noise_gain(self, index: int, values: dict) -> tuple[float, float]:
        """Gain (data units per electron) from the residuals, and its standard error.

        The mean of ``(data − model)² / (model − offset)`` over the pixels (the efficient
        estimator under Poisson noise), with the signal floored at one electron (a first
        estimate from ``Σ (data − model)² / Σ (model − offset)``) so that pixels where the model
        is near zero (STEM background, Fourier ringing) cannot dominate. Its standard error is
        measured from the spread of the ratios.
        """
        if self.signal != "counts":
            return self._white_variance(index, values)
        if self.gain is not None:
            return float(self.gain), 0.0
        prediction = self.predict(index, values)
        signal = prediction - values.get("offset", 0.0)
        lines = 0 if self.row_shifts is None else len(self.row_shifts)
        dof = max(self.data.size - len(self.names) - lines, 1)
        squares = (self.data - prediction) ** 2
        first = float(squares.sum() / max(float(np.maximum(signal, 0.0).sum()), 1e-300))
        ratios = squares / np.maximum(signal, max(first, 1e-300))
        return float(ratios.sum() / dof), float(np.std(ratios) / math.sqrt(dof))

    def _dof(self) -> int:
        lines = 0 if self.row_shifts is None else len(self.row_shifts)
        lost = integrated_modes_lost(self.data.shape) if self.signal == "integrated" else 0
        return max(self.data.size - lost - len(self.names) - lines - ("thickness" in self.free_all), 1)

    def _white_variance(self, index: int, values: dict) -> tuple[float, float]:
        """Signed and integrated signals: one noise variance for every (whitened) pixel, and its standard error."""
        dof = self._dof()
        variance = float(np.sum(self.whiten(self.data - self.predict(index, values)) ** 2) / dof)
        return variance, variance * math.sqrt(2.0 / dof)

    def variance(self, index: int, values: dict, gain: float) -> np.ndarray:
        """Noise variance per pixel (data units²): ``gain · (model − offset)``, at least one electron's.

        Signed and integrated signals: ``gain`` is the (whitened) noise variance itself, the same
        for every pixel.
        """
        if self.signal != "counts":
            return np.full(self.data.shape, max(float(gain), 1e-300))
        signal = self.predict(index, values) - values.get("offset", 0.0)
        floor = max(1e-3 * float(np.mean(np.abs(signal))), gain, 1e-300)
        return gain * np.maximum(signal, floor)

    # ------------------------------------------------------------------ uncertainties
    def fisher(self, index: int, values: dict, variance: np.ndarray) -> np.ndarray:
        """Fisher information of the continuous parameters (central differences)."""
        columns = []
        for name in self.names:
            step = 1e-3 * self._typical(name, values)
            up = self.predict(index, {**values, name: values[name] + step})
            down_value = values[name] - step
            if name == "blur" and down_value < 0:  # one-sided at the blur's lower bound
                columns.append(self.whiten(up - self.predict(index, values)).ravel() / step)
                continue
            down = self.predict(index, {**values, name: down_value})
            columns.append(self.whiten(up - down).ravel() / (2 * step))
        jac = np.stack(columns, axis=1) if columns else np.zeros((self.data.size, 0))
        return jac.T @ (jac / variance.ravel()[:, None])


def _wavelength(energy: float) -> float:
    from temsim.constants import wavelength

    return wavelength(energy)


def _deviance(data, prediction, offset: float, gain: float) -> np.ndarray:
    """Poisson deviance residuals of counts ``(data − offset)/gain`` under means ``(prediction − offset)/gain``."""
    n = np.maximum((data - offset) / gain, 0.0)
    lam = np.maximum((prediction - offset) / gain, 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(n / lam), 0.0)
    return np.sign(n - lam) * np.sqrt(np.maximum(2 * (lam - n + term), 0.0))


def _check_signal(signal: str, free, likelihood: str, gain) -> None:
    """Refuse what a signed (DPC, CoM) or integrated (iDPC, iCoM) signal cannot give."""
    if signal == "counts":
        return
    what = "an iDPC/iCoM image" if signal == "integrated" else "a signed image (DPC, CoM)"
    if "dose" in free:
        raise InputError(
            f"the dose cannot be read from the noise of {what}: its pixels are differences of detector "
            "channels, not counts; drop 'dose' from fit and compare the segment (or annular) images for it"
        )
    if likelihood != "gaussian" or gain is not None:
        raise InputError(f"{what} is fitted with the Gaussian likelihood only: drop likelihood= and gain=")
    if signal == "integrated" and "offset" in free:
        raise InputError(f"{what} has lost its mean in the integration: drop 'offset' from fit")


def _expand(free, model) -> tuple[str, ...]:
    names = []
    for name in free:
        if name not in model.fittable:
            raise InputError(f"cannot fit {name!r} with this simulation; fittable: {', '.join(model.fittable)}")
        pairs = {"shift": ("shift_x", "shift_y"), "drift": ("drift_x", "drift_y")}
        names.extend(pairs.get(name, (name,)))
    return tuple(names)


# ---------------------------------------------------------------------- the whole fit
def _best_local(fitter: Fitter, candidates, variance=None) -> tuple[int, dict, float]:
    """Local fits from every candidate of the coarse search and each of its distinct registrations."""
    best = None
    for _, index, start in candidates:
        starts = [s for s, _ in fitter.registrations(index, start, 3)] if "shift_x" in fitter.names else [start]
        for trial in starts:
            values, cost, _ = fitter.local(index, fitter._linear(index, trial)[0], variance)
            if best is None or cost < best[2]:
                best = (index, values, cost)
    return best


def _rotation_search(fitter: Fitter, index: int, values: dict, step: float = 0.5) -> tuple[int, dict]:
    """Scan the rotation over its bounds (``step`` degrees) by correlation, then register and refit."""
    lo, hi = fitter.bounds["rotation_deg"]
    scores = []
    for angle in np.arange(lo, hi + step / 2, step):
        trial = {**values, "rotation_deg": float(angle), "shift_x": 0.0, "shift_y": 0.0}
        scores.append((cross_correlation_peak(fitter.unit_image(index, trial), fitter.data)[0], float(angle)))
    angle = max(scores)[1]
    best = fitter.local(index, fitter._linear(index, values)[0])
    for start, _ in fitter.registrations(index, {**values, "rotation_deg": angle}):
        candidate = fitter.local(index, start)
        if candidate[1] < best[1]:
            best = candidate
    return index, best[0]


def _other_registrations(fitter: Fitter, index: int, values: dict, variance) -> tuple[dict, float, bool]:
    """The weighted local fit from the current optimum and from every other correlation peak; the best."""
    best = fitter.local(index, values, variance)
    if "shift_x" not in fitter.names:
        return best
    for start, _ in fitter.registrations(index, best[0]):
        candidate = fitter.local(index, start, variance)
        if candidate[1] < best[1]:
            best = candidate
    return best


def _profile_thickness(fitter: Fitter, index: int, values: dict, variance) -> tuple[int, dict, np.ndarray]:
    """Refit neighbouring thicknesses (weights fixed) until the best has lower cost than both neighbours."""
    n = len(fitter.model.thicknesses)
    allowed = set(fitter._thickness_indices())
    profile = np.full(n, np.nan)
    fits: dict[int, dict] = {}
    _, profile[index], _ = fitter.local(index, values, variance)
    fits[index] = values
    for _ in range(n):
        for j in (index - 2, index - 1, index + 1, index + 2):
            if j in allowed and np.isnan(profile[j]):
                fits[j], profile[j], _ = fitter.local(j, values, variance)
        best = int(np.nanargmin(profile))
        if best == index:
            break
        index = best
        fits[index], cost, _ = _other_registrations(fitter, index, fits[index], variance)
        profile[index] = min(profile[index], cost)
        values = fits[index]
    return index, fits[index], 2 * profile  # χ² = 2 · cost


def _thickness_sigma(thicknesses: np.ndarray, chi2: np.ndarray, index: int) -> float:
    """Standard error of the thickness from the χ² profile's curvature, with the series' step."""
    step = float(np.median(np.diff(thicknesses))) if len(thicknesses) > 1 else 0.0
    discrete = step / math.sqrt(12.0)
    if 0 < index < len(thicknesses) - 1 and not np.isnan(chi2[[index - 1, index + 1]]).any():
        curvature = (chi2[index - 1] - 2 * chi2[index] + chi2[index + 1]) / step**2
        if curvature > 0:
            return math.sqrt(2.0 / curvature + discrete**2)
    return math.sqrt(step**2 + discrete**2)


def _bound_hits(fitter: Fitter, values: dict, index: int) -> list[str]:
    hits = []
    for name in fitter.names:
        lo, hi = fitter.bounds.get(name, (-np.inf, np.inf))
        width = (hi - lo) if np.isfinite(hi - lo) else max(abs(values[name]), 1.0)
        tolerance = 1e-6 * width
        if (np.isfinite(lo) and values[name] - lo <= tolerance) or (np.isfinite(hi) and hi - values[name] <= tolerance):
            hits.append(name)
    allowed = fitter._thickness_indices()
    if "thickness" in fitter.free_all and len(allowed) > 1 and index in (allowed[0], allowed[-1]):
        hits.append("thickness")
    return hits


def run_fit(fitter: Fitter) -> FitOutcome:
    """Coarse search, registration, local fits with the noise model, thickness profile, Fisher errors."""
    candidates = fitter.coarse()
    index, values, _ = _best_local(fitter, candidates)
    if "rotation_deg" in fitter.names:
        index, values = _rotation_search(fitter, index, values)
    if fitter.row_shifts is not None:
        for _ in range(3):
            fitter.estimate_row_shifts(index, values)
            values, _, _ = fitter.local(index, values)
    gain, _ = fitter.noise_gain(index, values)
    if fitter.likelihood == "gaussian":
        variance = fitter.variance(index, values, gain)
        values, _, _ = fitter.local(index, values, variance)
    else:
        variance = fitter.variance(index, values, gain)
    if "thickness" in fitter.free_all and len(fitter.model.thicknesses) > 1:
        index, values, chi2_profile = _profile_thickness(fitter, index, values, variance)
    else:
        chi2_profile = np.full(len(fitter.model.thicknesses), np.nan)
    # final noise model at the optimum, then the other registrations against it
    gain, gain_sigma = fitter.noise_gain(index, values)
    variance = fitter.variance(index, values, gain)
    values, cost, success = _other_registrations(fitter, index, values, variance)
    row_sigma = None
    if fitter.row_shifts is not None:
        row_sigma = fitter.estimate_row_shifts(index, values, variance)
        values, cost, success = fitter.local(index, values, variance)
    if fitter.signal == "integrated":  # the mean is lost: the prediction takes the data's
        values["offset"] = float(np.mean(fitter.data - fitter.predict(index, {**values, "offset": 0.0})))
    prediction = fitter.predict(index, values)
    variance = fitter.variance(index, values, gain)
    fisher = fitter.fisher(index, values, variance)
    covariance = np.linalg.pinv(fisher) if fisher.size else fisher
    parameters = {name: float(values[name]) for name in fitter.names}
    uncertainties = {name: float(math.sqrt(max(covariance[i, i], 0.0))) for i, name in enumerate(fitter.names)}
    thicknesses = fitter.model.thicknesses
    parameters["thickness"] = float(thicknesses[index])
    if "thickness" in fitter.free_all:
        uncertainties["thickness"] = _thickness_sigma(thicknesses, chi2_profile, index)
    if fitter.signal == "counts":
        parameters["gain"] = gain
        uncertainties["gain"] = gain_sigma
    else:
        parameters["noise_sigma"] = math.sqrt(gain)
        uncertainties["noise_sigma"] = gain_sigma / (2 * math.sqrt(gain))
    _dose(fitter, parameters, uncertainties)
    residual = fitter.whiten(fitter.data - prediction) ** 2 / variance
    chi2 = float(residual.sum())
    dof = int(fitter.data.size - len(fitter.names) - ("thickness" in fitter.free_all) - (fitter.gain is None))
    hits = _bound_hits(fitter, values, index)
    converged = success and not hits
    if hits:
        message = f"NOT converged: {', '.join(hits)} at a bound of the search (widen bounds= or fix it)"
    elif not success:
        message = "NOT converged: the optimizer stopped before its tolerance"
    else:
        message = "converged"
    return FitOutcome(
        parameters=parameters,
        uncertainties=uncertainties,
        at_bound=hits,
        converged=converged,
        message=message,
        prediction=prediction,
        variance=variance,
        chi2=chi2,
        dof=max(dof, 1),
        thickness_index=index,
        thickness_profile=chi2_profile,
        covariance=covariance,
        covariance_names=fitter.names,
        evaluations=fitter.evaluations,
        row_shifts=None if fitter.row_shifts is None else (fitter.row_shifts.copy(), row_sigma),
    )


def _dose(fitter: Fitter, parameters: dict, uncertainties: dict) -> None:
    """Dose (e/Å²) = scale / (gain · pixel area · efficiency), with its propagated error."""
    if "dose" not in fitter.free_all:
        return
    scale = parameters.get("scale", fitter.initial.get("scale", 1.0))
    area = fitter.pixel[0] * fitter.pixel[1]
    dose = scale / (parameters["gain"] * area * fitter.efficiency)
    relative = math.hypot(uncertainties.get("scale", 0.0) / scale, uncertainties["gain"] / parameters["gain"])
    parameters["dose"] = float(dose)
    uncertainties["dose"] = float(dose * relative)
