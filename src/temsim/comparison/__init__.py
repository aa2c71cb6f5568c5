"""Experiment vs simulation: load a micrograph, register, fit the unknowns, say how well they match.

:func:`compare` takes an experimental image (a file or an array, see
:func:`temsim.load_image`) and a simulation — a multislice exit-wave thickness series (HRTEM),
simulated images over thickness (HRTEM or STEM), or a planning :class:`~temsim.study.Study` /
study TOML file, which it simulates — and fits defocus, thickness, blur, shift, scale, offset and
dose. See ``docs/compare.md``.
"""

from __future__ import annotations

import functools
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from temsim.comparison.decision import chi2_difference, feature_probability, log_likelihood_ratio
from temsim.comparison.fit import CONTINUOUS, UNITS, Fitter, run_fit
from temsim.comparison.metrics import match_metrics
from temsim.comparison.model import ExitWaveModel, ImageModel, model_from_simulation
from temsim.comparison.prepare import (
    crop,
    fourier_resample,
    integrated_modes_lost,
    normalize,
    phase_correlation,
    whiten_integrated,
)
from temsim.comparison.result import CompareResult
from temsim.errors import InputError
from temsim.readers import check_calibration, load_image, pixel_size_of

__all__ = [
    "compare",
    "CompareResult",
    "chi2_difference",
    "feature_probability",
    "log_likelihood_ratio",
    "feature_posterior",
    "FeatureTest",
    "ExitWaveModel",
    "ImageModel",
    "simulate_for_comparison",
    "DEFAULT_FIT",
    "UNITS",
    "crop",
    "normalize",
    "fourier_resample",
    "phase_correlation",
    "whiten_integrated",
]

#: Parameters fitted by default. ``offset`` is fixed at 0 (a counting camera; add it for a
#: detector with a dark level, or give ``black_level``).
DEFAULT_FIT = ("defocus", "thickness", "blur", "shift", "scale", "dose")


def simulate_for_comparison(
    study, *, hypothesis: str = "H1", mode: str | None = None, energy=None, settings=None, defoci=None
):
    """The forward model of a planning study, from one simulation with a thickness series.

    HRTEM modes: one multislice run saving the exit wave after every slice
    (:class:`ExitWaveModel`; defocus can be fitted). STEM modes — annular (HAADF, ADF, ABF,
    BF), segmented (iDPC: the segments' DPC vector integrated over the scan) and pixelated
    (iCoM: the centre of mass integrated) — one scan over the whole cell at the study's
    ``scan_step`` with a thickness series (:class:`ImageModel`), or one per probe defocus of
    ``defoci`` (a defocus series: the probe defocus can then be fitted).

    Parameters
    ----------
    study : temsim.study.Study or str or path
        The study, or its TOML file (``temsim plan`` conventions).
    hypothesis : {"H1", "H0"}
        With the feature (H1) or without (H0).
    mode : str, optional
        Label of the study's mode (default: its first HRTEM mode, else its first annular mode);
        an HRTEM mode's defocus (Å) starts the defocus search.
    energy : float, optional
        Beam energy (eV), one of the study's (default: the first).
    settings : ExecutionSettings, optional
        How the simulation runs (threads, precision).
    defoci : sequence of float, optional
        STEM only: probe defoci (Å, positive = underfocus; at least 3), one scan each, instead
        of the study's single defocus.

    Returns
    -------
    (ExitWaveModel or ImageModel, dict)
        The model and the fit's starting values (``defocus`` for HRTEM).
    """
    from temsim.potentials import Potential
    from temsim.study import Study, load_study

    if not isinstance(study, Study):
        study = load_study(study)
    chosen = _study_mode(study, mode)
    if hypothesis not in ("H0", "H1"):
        raise InputError(f"hypothesis must be 'H0' (without the feature) or 'H1' (with it), got {hypothesis!r}")
    h0, h1, _ = study.hypotheses()
    energy = float(study.energies[0] if energy is None else energy)
    potential = Potential(h1 if hypothesis == "H1" else h0, **study.grid_keys(), slice_thickness=study.slice_thickness)
    if chosen.kind == "image":
        if defoci is not None:
            raise InputError("defoci= is for STEM modes; an HRTEM model fits any defocus from its exit waves")
        model, start = _hrtem_model(study, chosen, potential, energy, settings)
    else:
        model, start = _stem_model(study, chosen, potential, energy, settings, defoci)
    model.study_name = study.name
    model.hypothesis = hypothesis
    return model, start


def _study_mode(study, mode: str | None):
    kinds = ("image", "annular", "segmented", "pixelated")  # preferred in this order
    candidates = [m for m in study.modes if m.kind in kinds and (mode is None or m.label == mode)]
    candidates.sort(key=lambda m: kinds.index(m.kind))
    if not candidates:
        labels = [m.label for m in study.modes]
        raise InputError(f"study {study.name!r} has no mode named {mode!r} (modes: {labels})")
    return candidates[0]


def _hrtem_model(study, mode, potential, energy: float, settings):
    from temsim.solvers.multislice import multislice
    from temsim.waves import PlaneWave

    if study.aperture_edge:
        raise InputError(
            "the HRTEM comparison model uses a hard objective aperture; remove microscope.aperture_edge to compare"
        )
    waves = multislice(PlaneWave(energy=energy), potential, save_every=1, settings=settings)
    lens = study.aberrations.with_defocus(study.aberrations.defocus + mode.defocus)
    focal_spread = study.focal_spread_at(energy)
    model = ExitWaveModel(waves, lens, semiangle_cutoff=study.semiangle_cutoff, focal_spread=focal_spread)
    return model, {"defocus": lens.defocus}


def _stem_detector(mode, alpha: float):
    """The detector whose signal an acquired image of ``mode`` shows: annular, iDPC or iCoM."""
    from temsim.detectors import AnnularDetector, IntegratedCenterOfMass, IntegratedDPC
    from temsim.modes import KINDS

    inner, outer = mode.angles(alpha)
    if mode.kind == "annular":
        return AnnularDetector(inner, outer)
    if mode.kind == "segmented":
        segments = KINDS["segmented"].detector(mode, inner, outer, None)
        return IntegratedDPC(segments.inner, segments.outer, segments.nsegments, segments.rotation)
    return IntegratedCenterOfMass()


def _stem_model(study, mode, potential, energy: float, settings, defoci=None) -> tuple[ImageModel, dict]:
    from temsim.microscopes import source_blur
    from temsim.positions import GridScan
    from temsim.solvers.stem import scan
    from temsim.waves import Probe

    cell = tuple(float(e) for e in potential.grid.extent)
    gpts = tuple(max(2, math.ceil(e / study.scan_step)) for e in cell)
    positions = GridScan(start=(0.0, 0.0), end=cell, gpts=gpts)
    detector = {mode.label: _stem_detector(mode, study.semiangle_cutoff)}
    members = [study.aberrations.defocus] if defoci is None else [float(d) for d in defoci]
    images = []
    for defocus in members:
        probe = Probe(
            energy=energy,
            semiangle_cutoff=study.semiangle_cutoff,
            aberrations=study.aberrations.with_defocus(defocus),
            aperture_edge=study.aperture_edge,
            focal_spread=study.focal_spread_at(energy),
        )
        result = scan(probe, potential, detector, positions, save_every=1, settings=settings)
        # the scan covers the periodic cell: the finite source blurs it periodically
        images.append(source_blur(result[mode.label], study.source_size, boundary="wrap"))
    if defoci is None:
        return ImageModel(images[0]), {}
    series = xr.concat(images, dim=xr.DataArray(members, dims="defocus", attrs={"units": "Å"}))
    series = series.assign_coords(defocus=("defocus", members, {"units": "Å"})).assign_attrs(images[0].attrs)
    nominal = study.aberrations.defocus
    start = nominal if min(members) <= nominal <= max(members) else float(np.median(members))
    return ImageModel(series), {"defocus": start}


def _model(simulation, lens: dict, study_options: dict):
    if isinstance(simulation, (ExitWaveModel, ImageModel)):
        return simulation, {}
    if not isinstance(simulation, xr.DataArray):  # a study: its module is imported only when needed
        from temsim.study import Study

        if isinstance(simulation, (Study, str, os.PathLike)):
            return simulate_for_comparison(simulation, **study_options)
    if isinstance(simulation, xr.DataArray):
        model = (
            model_from_simulation(simulation, **lens) if np.iscomplexobj(simulation.values) else ImageModel(simulation)
        )
        start = {"defocus": lens["aberrations"].defocus} if lens.get("aberrations") is not None else {}
        return model, start
    raise InputError(
        "simulation must be exit waves or simulated images (xarray.DataArray), a temsim.study.Study or a study "
        f"TOML file, got {type(simulation).__name__}"
    )


def _stem_levels(initial: dict, fit: tuple, black_level, vacuum_level) -> tuple[dict, tuple]:
    """Black/vacuum levels fix offset and scale (fraction of the beam → data units)."""
    if black_level is None and vacuum_level is None:
        return initial, fit
    if black_level is None or vacuum_level is None:
        raise InputError("give both black_level and vacuum_level (the detector without beam and with all of it)")
    initial = {**initial, "offset": float(black_level), "scale": float(vacuum_level) - float(black_level)}
    return initial, tuple(f for f in fit if f not in ("offset", "scale"))


@functools.cache
def _thread_controller():
    """threadpoolctl's view of the loaded BLAS libraries, found once (scanning them takes ~10 ms)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with the compare extra
        return None
    return ThreadpoolController()


def _threads_limited():
    """One BLAS thread during the fit: its many small products slow down by 10× under contention."""
    controller = _thread_controller()
    return nullcontext() if controller is None else controller.limit(limits=1, user_api="blas")


def compare(
    experiment,
    simulation,
    fit=DEFAULT_FIT,
    *,
    pixel_size=None,
    aberrations=None,
    semiangle_cutoff=None,
    focal_spread: float = 0.0,
    angular_spread: float = 0.0,
    initial=None,
    bounds=None,
    likelihood: str = "gaussian",
    gain=None,
    efficiency: float = 1.0,
    black_level=None,
    vacuum_level=None,
    crop_to=None,
    row_shifts: bool = False,
    signal: str | None = None,
    regularization=None,
    hypothesis: str = "H1",
    mode: str | None = None,
    energy=None,
    defoci=None,
    settings=None,
) -> CompareResult:
    """Fit a simulation to an experimental image and report how well it matches.

    Parameters
    ----------
    experiment : str or path or array or xarray.DataArray
        The image: a file or array as :func:`temsim.load_image` takes (calibrated, or with
        ``pixel_size``), in its own units (counts, ADU, …; not normalized: the dose comes from
        the noise).
    simulation : xarray.DataArray or Study or str
        Complex exit waves from :func:`temsim.multislice` (``save_every`` for a thickness
        series): HRTEM with ``aberrations``, ``semiangle_cutoff``, ``focal_spread``. Real images
        (``x``, ``y`` or ``scan_x``, ``scan_y``, optionally over ``thickness``): HRTEM at fixed
        optics or STEM, one simulation cell; a STEM ``defocus`` dim (a probe defocus series)
        lets the probe defocus be fitted. A :class:`temsim.study.Study` or study TOML file:
        its HRTEM or STEM mode simulated here (``hypothesis``, ``mode``, ``energy``, ``defoci``).
    fit : sequence of str
        Fitted among ``defocus``, ``Cs`` (C30, Å), ``thickness``, ``blur``, ``shift``,
        ``rotation_deg`` (searched ±5°), ``magnification``, ``drift`` (STEM: ``drift_x``,
        ``drift_y``, Å from the first to the last scan line), ``scale``, ``offset``, ``dose``;
        the others stay at ``initial`` (offset 0, blur 0, shift 0, rotation 0, magnification 1,
        drift 0, scale 1; Cs the lens's).
    pixel_size : float or (float, float), optional
        Experimental pixel size (Å), where the source has no calibration.
    aberrations : Aberrations, optional
        Objective lens for exit waves (its defocus starts the defocus search).
    semiangle_cutoff, focal_spread, angular_spread : float
        Objective aperture (mrad), focal spread (Å), illumination spread (mrad).
    initial : dict, optional
        Starting (or fixed) values: ``defocus``, ``thickness``, ``blur``, ``shift_x``,
        ``shift_y`` (Å), ``scale``, ``offset`` (data units).
    bounds : dict, optional
        ``{name: (low, high)}``; defocus defaults to start ± 200 Å, blur to 0–5 Å.
    likelihood : {"gaussian", "poisson"}
        Least squares with a Poisson-with-gain noise model (gain from the residuals), or the
        Poisson likelihood of counts (with ``gain`` known, default 1).
    gain : float, optional
        Data units per electron; ``None``: estimated from the noise (Gaussian likelihood).
    efficiency : float
        Camera DQE(0): the fraction of electrons that count, for the dose.
    black_level, vacuum_level : float, optional
        STEM: detector reading without beam and with the whole beam (fixes offset and scale).
    crop_to : dict, optional
        ``{"x": (x0, x1), "y": (y0, y1)}`` in Å: the part of the experiment to fit.
    row_shifts : bool
        STEM line jitter: fit one shift along *x* (the fast scan axis) per scan line
        (``result.row_shifts``, Å, mean folded into ``shift_x``).
    signal : {"counts", "signed", "integrated"}, optional
        The kind of image (default: from the simulation's attrs): counts (HRTEM, annular and
        virtual-detector STEM: Poisson noise with a gain), signed (one DPC or centre-of-mass
        component: white noise of one variance, scale may be negative) or integrated (iDPC,
        iCoM: mean lost, the coloured noise whitened). No dose from signed/integrated images.
    regularization : float, optional
        iDPC/iCoM: the ε (1/Å²) the experiment was integrated with (default: the simulation's).
    hypothesis, mode, energy, defoci, settings
        For a study: with or without the feature, which mode, which energy (eV), the STEM probe
        defocus series (Å), how to run.

    Returns
    -------
    CompareResult
        ``.parameters``, ``.uncertainties``, ``.converged``, ``.metrics``, ``.report(path)``.

    Raises
    ------
    InputError
        Unknown parameters, a calibration more than 10× off the simulation's sampling (likely a
        unit error), an experiment smaller than 8 pixels after cropping.
    """
    from temsim.optics import Aberrations

    if likelihood not in ("gaussian", "poisson"):
        raise InputError(f"likelihood must be 'gaussian' or 'poisson', got {likelihood!r}")
    image = load_image(experiment, pixel_size=pixel_size) if not _is_loaded(experiment, pixel_size) else experiment
    if crop_to:
        image = crop(image, crop_to.get("x"), crop_to.get("y"))
    lens = {
        "aberrations": aberrations or Aberrations(),
        "semiangle_cutoff": semiangle_cutoff,
        "focal_spread": focal_spread,
        "angular_spread": angular_spread,
    }
    model, start = _model(
        simulation,
        lens,
        {"hypothesis": hypothesis, "mode": mode, "energy": energy, "settings": settings, "defoci": defoci},
    )
    if signal is not None:
        _set_signal(model, signal)
    pixel = pixel_size_of(image)
    check_calibration(pixel, model.sampling)
    initial, fit = _stem_levels({**start, **(initial or {})}, tuple(fit), black_level, vacuum_level)
    if likelihood == "poisson" and gain is None:
        gain = 1.0
    fitter = Fitter(model, image.values, pixel, fit, initial, bounds, likelihood, gain, efficiency, regularization)
    if row_shifts:
        fitter.row_shifts = np.zeros(image.sizes["y"])
    with _threads_limited():
        outcome = run_fit(fitter)
    return _result(image, model, outcome, fitter, likelihood)


def _set_signal(model, signal: str) -> None:
    from temsim.comparison.model import SIGNALS

    if signal not in SIGNALS:
        raise InputError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    if signal != "counts" and not isinstance(model, ImageModel):
        raise InputError(f"signal={signal!r} needs a simulated STEM image (iDPC, iCoM, DPC, CoM), not exit waves")
    model.signal = signal


def _is_loaded(experiment, pixel_size) -> bool:
    return (
        pixel_size is None
        and isinstance(experiment, xr.DataArray)
        and experiment.dims == ("x", "y")
        and "calibration" in experiment.attrs
    )


def _result(image: xr.DataArray, model, outcome, fitter: Fitter, likelihood: str) -> CompareResult:
    sigma = np.sqrt(outcome.variance)
    simulation = image.copy(data=outcome.prediction).rename("simulation")
    residual = image.copy(data=fitter.whiten(image.values - outcome.prediction) / sigma).rename("residual")
    residual.attrs = {"units": "standard deviations"}
    if fitter.signal == "integrated":
        residual.attrs["description"] = "whitened: the residual's gradient component along q (iDPC/iCoM)"
    n_fitted = len(fitter.names) + ("thickness" in fitter.free_all) + (fitter.gain is None)
    metrics = match_metrics(image.values, outcome.prediction, outcome.variance, n_fitted)
    if fitter.signal == "integrated":  # modes the whitening leaves out carry no degrees of freedom
        metrics["dof"] = max(metrics["dof"] - integrated_modes_lost(image.shape), 1)
    metrics.update(chi2=outcome.chi2, chi2_per_dof=outcome.chi2 / metrics["dof"])  # in the noise's white space
    profile = xr.DataArray(
        outcome.thickness_profile,
        dims=("thickness",),
        coords={"thickness": ("thickness", model.thicknesses, {"units": "Å"})},
        attrs={"units": "χ²"},
        name="thickness_profile",
    )
    attrs = {
        **model.attrs(),
        "experiment_source": image.attrs.get("source", ""),
        "experiment_sha256": image.attrs.get("source_sha256", ""),
        "experiment_calibration": image.attrs.get("calibration", ""),
        "pixel_size": str(list(fitter.pixel)),
        "likelihood": likelihood,
        "signal": fitter.signal,
        "fitted": ", ".join(fitter.free_all),
        "fixed": str({k: v for k, v in fitter.initial.items() if k in CONTINUOUS and k not in fitter.names}),
        "efficiency": fitter.efficiency,
        "offset": float(outcome.parameters.get("offset", fitter.initial.get("offset", 0.0))),
        "model_evaluations": outcome.evaluations,
    }
    for key in ("study_name", "hypothesis"):
        if hasattr(model, key):
            attrs[key] = getattr(model, key)
    return CompareResult(
        parameters=outcome.parameters,
        uncertainties=outcome.uncertainties,
        converged=outcome.converged,
        message=outcome.message,
        at_bound=tuple(outcome.at_bound),
        metrics=metrics,
        experiment=image,
        simulation=simulation,
        residual=residual,
        thickness_profile=profile,
        variance=image.copy(data=outcome.variance).rename("variance").assign_attrs(units="data units²"),
        row_shifts=_row_shifts(image, outcome),
        attrs=attrs,
    )


# ----------------------------------------------------------------------------- closing the loop
@dataclass(frozen=True)
class FeatureTest:
    """Is the planned feature in an acquired image? (see :func:`feature_posterior`).

    Attributes
    ----------
    probability : float
        Posterior probability that the feature is present.
    log_likelihood_ratio : float
        ``ln L(H1)/L(H0)`` with the nuisance parameters fitted under each hypothesis.
    present : bool
        The decision: ``probability > 0.5`` (equal costs).
    dose, dose_sigma : float
        Dose fitted from the image (e/Å²) and its standard error (under H1).
    planned_dose : float or None
        The plan's required dose (e/Å²), if given.
    dose_matches_plan : bool or None
        Whether the acquired dose reached the planned one (within 2 standard errors).
    fits : dict
        ``{"H0": CompareResult, "H1": CompareResult}``.
    """

    probability: float
    log_likelihood_ratio: float
    present: bool
    dose: float
    dose_sigma: float
    planned_dose: float | None
    dose_matches_plan: bool | None
    fits: dict = field(repr=False)


def feature_posterior(
    experiment, study, *, models=None, prior: float = 0.5, planned_dose=None, fit=("scale", "dose"), **options
) -> FeatureTest:
    """Posterior probability that a study's feature is present in an acquired image.

    The planner decided the dose from the likelihood ratio of the counts under H1 (feature) and
    H0; this evaluates the same likelihood on the acquired image, with the nuisance
    parameters in ``fit`` (default scale and dose; add ``"shift"``, ``"defocus"``, …) fitted
    under each hypothesis. With ``likelihood="poisson"`` (counts, known gain) it is the
    planner's Poisson statistic.

    Parameters
    ----------
    experiment : path or array or DataArray
        The acquired image of the planned region (see :func:`compare`).
    study : Study or str
        The plan's study (or its TOML file); its HRTEM or STEM mode (``mode=``) is simulated
        for H0 and H1.
    models : (model_H0, model_H1), optional
        Already simulated models (from :func:`simulate_for_comparison`), to skip the simulation.
    prior : float
        Prior probability of the feature.
    planned_dose : float, optional
        The plan's required dose (e/Å²), to check the acquired dose against.
    fit, **options
        As for :func:`compare` (``likelihood``, ``gain``, ``initial``, ``pixel_size``, …).

    Returns
    -------
    FeatureTest
    """
    if models is None:
        models = tuple(simulate_for_comparison(study, hypothesis=h, mode=options.get("mode"))[0] for h in ("H0", "H1"))
    lens = getattr(models[1], "aberrations", None)
    initial = ({} if lens is None else {"defocus": lens.defocus}) | options.pop("initial", {})
    options.pop("mode", None)
    image = load_image(experiment, pixel_size=options.pop("pixel_size", None))  # read once for both fits
    fits = {h: compare(image, m, fit=fit, initial=initial, **options) for h, m in zip(("H0", "H1"), models)}
    data = fits["H1"].experiment
    llr = log_likelihood_ratio(data, fits["H0"], fits["H1"])
    probability = feature_probability(data, fits["H0"], fits["H1"], prior=prior)
    dose = float(fits["H1"].parameters.get("dose", math.nan))
    sigma = float(fits["H1"].uncertainties.get("dose", math.nan))
    matches = None if planned_dose is None else bool(dose + 2 * sigma >= float(planned_dose))
    return FeatureTest(probability, llr, probability > 0.5, dose, sigma, planned_dose, matches, fits)


def _row_shifts(image: xr.DataArray, outcome):
    if outcome.row_shifts is None:
        return None
    shifts, sigma = outcome.row_shifts
    coords = {"y": image["y"]}
    attrs = {"units": "Å", "description": "shift of each scan line along x (mean in shift_x)"}
    da = xr.DataArray(shifts, dims=("y",), coords=coords, attrs=attrs, name="row_shifts")
    return da.assign_coords(row_shift_sigma=("y", sigma, {"units": "Å"}))
