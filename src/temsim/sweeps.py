"""What-if sweeps: the planner's minimum doses over a grid of study keys, with uncertainty bands.

A sweep is a study (the same TOML document ``temsim plan`` reads) plus a ``[sweep]`` table:

.. code-block:: toml

    [sweep]
    "microscope.semiangle_cutoff" = [20.0, 25.0, 30.0]                  # mrad
    "damage.critical_dose" = {start = 10, stop = 250, num = 4, spacing = "log"}

    [sweep.uncertain]                                                    # what is not known exactly
    "microscope.aberrations.defocus" = {sd = 50.0, samples = 3}          # Å, normal about the study's value
    "specimen.supercell[2]" = {values = [4, 5, 6]}                       # unit cells, equally likely

Each swept key is a dotted path into the study document (``[i]`` indexes an array:
``"modes[3].defocus"``); the grid is the Cartesian product of the swept values. At every grid
point the study is planned at each combination of the unknowns' sample values; the *band* of a
minimum dose is its range over those samples. A normal unknown is sampled at the midpoints of
``samples`` equal-probability intervals (quantiles ``(i + 1/2)/n``), so with 5 samples the band
spans the 10–90 % quantiles of the dose.

Simulations are shared wherever the inputs are equal: every simulation goes through the plan's
checkpoint store, keyed by its inputs, so points that differ only in damage, decision or dose
keys re-evaluate the same rates, and a killed sweep resumes with only the missing simulations.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import xarray as xr

from temsim.checks import as_choice, as_number
from temsim.errors import StudyError
from temsim.planning import simulate, study_limits, verdicts
from temsim.progress import progress_bar
from temsim.settings import ExecutionSettings, resolve_settings
from temsim.study import read_study_document, study_from_dict

__all__ = ["Sweep", "Unknown", "sweep", "sweep_from_document", "minimum_doses", "MAX_EVALUATIONS"]

#: Refuse sweeps with more planner evaluations than this (grid points × samples of the unknowns).
MAX_EVALUATIONS = 4096
#: Per mode × energy fields of a sweep point (from :func:`temsim.planning.evaluate`).
SWEEP_FIELDS = ("required_dose", "budget", "margin", "j_per_dose")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?$")


# ----------------------------------------------------------------------------- keys
def _path(key: str) -> list:
    """``"modes[3].defocus"`` → ``["modes", 3, "defocus"]`` (a malformed key is refused)."""
    if not isinstance(key, str) or not key:
        raise StudyError(f"sweep key {key!r} must be a dotted study key such as 'microscope.semiangle_cutoff'")
    parts: list = []
    for part in key.split("."):
        if not _KEY.match(part):
            raise StudyError(
                f"sweep key {key!r}: {part!r} is not a key name (letters, digits, _), optionally indexed "
                "like supercell[2]"
            )
        name, _, index = part.partition("[")
        parts.append(name)
        if index:
            parts.append(int(index[:-1]))
    return parts


def _get(data: dict, key: str):
    node = data
    for part in _path(key):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise StudyError(
                f"sweep key {key!r}: the study has no value there; give the nominal value in the study "
                "(or `mean =` for an unknown)"
            ) from None
    return node


def _set(data: dict, key: str, value) -> None:
    """Set ``key`` in the study document (missing tables are created; arrays must exist)."""
    parts = _path(key)
    node = data
    for part, following in zip(parts[:-1], parts[1:]):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise StudyError(f"sweep key {key!r}: index {part} is outside the study's array")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise StudyError(f"sweep key {key!r}: {part!r} is not inside a table")
        node = node.setdefault(part, [] if isinstance(following, int) else {})
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise StudyError(f"sweep key {key!r}: index {last} is outside the study's array")
    elif not isinstance(node, dict):
        raise StudyError(f"sweep key {key!r}: {parts[-2]!r} is not a table")
    node[last] = value


def _values(key: str, spec) -> tuple:
    """A swept key's values: a list, or ``{start, stop, num[, spacing]}`` / ``{start, stop, step}``."""
    if isinstance(spec, list):
        if not spec:
            raise StudyError(f"sweep.{key!r} is an empty list; give at least one value")
        return tuple(spec)
    if not isinstance(spec, Mapping):
        raise StudyError(f"sweep.{key!r} must be a list of values or a range table {{start, stop, num}}, got {spec!r}")
    allowed = {"start", "stop", "num", "step", "spacing"}
    unknown = set(spec) - allowed
    if unknown:
        raise StudyError(f"sweep.{key!r}: unknown range keys {sorted(unknown)}; use {sorted(allowed)}")
    if "start" not in spec or "stop" not in spec or ("num" in spec) == ("step" in spec):
        raise StudyError(f"sweep.{key!r}: a range needs start, stop and one of num or step")
    start = as_number(f"sweep.{key}.start", spec["start"], error=StudyError)
    stop = as_number(f"sweep.{key}.stop", spec["stop"], error=StudyError)
    spacing = as_choice(f"sweep.{key}.spacing", spec.get("spacing", "linear"), ("linear", "log"), error=StudyError)
    if "step" in spec:
        if spacing != "linear":
            raise StudyError(f"sweep.{key!r}: step goes with linear spacing; use num for a log range")
        step = as_number(f"sweep.{key}.step", spec["step"], minimum=0, exclusive_minimum=True, error=StudyError)
        num = int(math.floor(abs(stop - start) / step + 1e-9)) + 1
        return tuple(float(v) for v in start + math.copysign(step, stop - start) * np.arange(num))
    num = as_number(f"sweep.{key}.num", spec["num"], integer=True, minimum=1, error=StudyError)
    if spacing == "log":
        if start <= 0 or stop <= 0:
            raise StudyError(f"sweep.{key!r}: a log range needs positive start and stop")
        return tuple(float(v) for v in np.geomspace(start, stop, num))
    return tuple(float(v) for v in np.linspace(start, stop, num))


# ----------------------------------------------------------------------------- unknowns
@dataclass(frozen=True)
class Unknown:
    """A study key known only up to a distribution, represented by equally likely sample values.

    Parameters
    ----------
    key : str
        Dotted study key (units those of the key: Å, mrad, eV, unit cells, …).
    samples : tuple
        Equally likely values the planner is run at.
    description : str
        The distribution in words (for the report).
    """

    key: str
    samples: tuple
    description: str

    @classmethod
    def normal(cls, key: str, mean: float, sd: float, samples: int = 5, integer: bool = False) -> Unknown:
        """Midpoints of ``samples`` equal-probability intervals of N(mean, sd²) (rounded if ``integer``)."""
        quantiles = (np.arange(samples) + 0.5) / samples
        values = [mean + sd * NormalDist().inv_cdf(float(q)) for q in quantiles] if sd > 0 else [mean] * samples
        values = [int(round(v)) for v in values] if integer else [float(v) for v in values]
        return cls(key, tuple(values), f"normal, mean {mean:g}, sd {sd:g}, {samples} samples")


def _unknown(key: str, spec, data: dict) -> Unknown:
    if not isinstance(spec, Mapping):
        raise StudyError(f"sweep.uncertain.{key!r} must be a table such as {{sd = 1.0, samples = 5}}, got {spec!r}")
    allowed = {"distribution", "mean", "sd", "samples", "values"}
    unknown = set(spec) - allowed
    if unknown:
        raise StudyError(f"sweep.uncertain.{key!r}: unknown keys {sorted(unknown)}; use {sorted(allowed)}")
    if "values" in spec:
        if set(spec) - {"values", "distribution"} or spec.get("distribution", "values") != "values":
            raise StudyError(f"sweep.uncertain.{key!r}: values = [...] stands alone (equally likely values)")
        values = _values(f"uncertain.{key}", spec["values"])
        return Unknown(key, values, f"equally likely values {', '.join(f'{v:g}' for v in values)}")
    as_choice(f"sweep.uncertain.{key}.distribution", spec.get("distribution", "normal"), ("normal",), error=StudyError)
    if "sd" not in spec:
        raise StudyError(f"sweep.uncertain.{key!r}: give sd (the standard deviation) or values = [...]")
    nominal = spec["mean"] if "mean" in spec else _get(data, key)
    integer = isinstance(nominal, int) and not isinstance(nominal, bool)
    mean = as_number(f"sweep.uncertain.{key}.mean", nominal, error=StudyError)
    sd = as_number(f"sweep.uncertain.{key}.sd", spec["sd"], minimum=0, error=StudyError)
    n = as_number(f"sweep.uncertain.{key}.samples", spec.get("samples", 5), integer=True, minimum=1, error=StudyError)
    return Unknown.normal(key, mean, sd, n, integer=integer)


@dataclass(frozen=True)
class Sweep:
    """A sweep: a study document, the swept keys' values and the unknowns.

    Build it with :func:`sweep_from_document` (TOML) or directly; :func:`sweep` runs it.
    """

    document: dict
    axes: dict = field(default_factory=dict)
    unknowns: tuple[Unknown, ...] = ()
    base: str = "."
    #: The study of every evaluation, built (and so checked) once, when the sweep is made.
    _studies: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if not self.axes and not self.unknowns:
            raise StudyError("a sweep needs at least one swept key or one uncertain key")
        for key in self.axes:
            _path(key)
        overlap = set(self.axes) & {u.key for u in self.unknowns}
        if overlap:
            raise StudyError(f"sweep keys {sorted(overlap)} are both swept and uncertain; give each once")
        n = self.num_evaluations
        if n > MAX_EVALUATIONS:
            raise StudyError(
                f"the sweep asks for {n} plans (grid points × samples of the unknowns), more than "
                f"{MAX_EVALUATIONS}; sweep fewer values or use fewer samples"
            )
        # every evaluation must be a valid study: build them all before any simulation
        for values, sample in self.evaluations():
            self._studies[(values, sample)] = self._build(values, sample)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def num_evaluations(self) -> int:
        """How many plans the sweep makes (counted without listing them, for the size check)."""
        return int(np.prod(self.shape, dtype=np.int64)) * (1 + len(list(self.samples())) if self.unknowns else 1)

    def points(self):
        """Grid points: tuples of swept values, in C order over :attr:`axes`."""
        return itertools.product(*self.axes.values())

    def samples(self):
        """Combinations of the unknowns' samples (one empty combination without unknowns)."""
        return itertools.product(*(u.samples for u in self.unknowns))

    def evaluations(self) -> list[tuple[tuple, tuple]]:
        """Every ``(values, sample)`` planned: each grid point at the study's own values of the
        unknowns (``sample = ()``), then at each combination of their samples."""
        samples = [()] + [tuple(s) for s in self.samples()] if self.unknowns else [()]
        return [(tuple(values), sample) for values in self.points() for sample in samples]

    def document_at(self, values: Sequence, sample: Sequence = ()) -> dict:
        data = copy.deepcopy(self.document)
        for key, value in zip(self.axes, values):
            _set(data, key, value)
        for unknown, value in zip(self.unknowns, sample):
            _set(data, unknown.key, value)
        return data

    def study_at(self, values: Sequence, sample: Sequence = ()):
        """The study at one evaluation (built once; see :meth:`evaluations`)."""
        key = (tuple(values), tuple(sample))
        if key not in self._studies:
            self._studies[key] = self._build(*key)
        return self._studies[key]

    def _build(self, values: Sequence, sample: Sequence):
        data = self.document_at(values, sample)
        try:
            return study_from_dict(data, base=self.base)
        except StudyError as err:
            where = ", ".join(f"{k} = {v!r}" for k, v in zip(self.axes, values))
            where += "".join(f", {u.key} = {v!r}" for u, v in zip(self.unknowns, sample))
            raise StudyError(f"sweep point ({where}): {err}") from None


def sweep_from_document(data: dict, base: str = ".") -> Sweep:
    """A :class:`Sweep` from a parsed study document holding a ``[sweep]`` table."""
    data = copy.deepcopy(data)
    table = data.pop("sweep", None)
    if not isinstance(table, dict):
        raise StudyError("the study has no [sweep] table (see docs/running-big-studies.md)")
    uncertain = table.pop("uncertain", {})
    if not isinstance(uncertain, dict):
        raise StudyError("sweep.uncertain must be a table of unknown keys")
    axes = {key: _values(key, spec) for key, spec in table.items()}
    unknowns = tuple(_unknown(key, spec, data) for key, spec in uncertain.items())
    return Sweep(document=data, axes=axes, unknowns=unknowns, base=base)


# ----------------------------------------------------------------------------- running
def _point(study, settings, checkpoint_dir, rates=None) -> xr.Dataset:
    if rates is None:
        rates = simulate(study, settings=settings, progress=False, checkpoint_dir=checkpoint_dir)
    limits = study_limits(study, rates)
    out = limits[list(SWEEP_FIELDS)]
    out["verdict"] = verdicts(limits)
    return out.drop_vars("mode").assign_coords(mode=np.arange(limits.sizes["mode"]))


def sweep(
    spec: Sweep | Mapping | str | os.PathLike,
    *,
    settings: ExecutionSettings | None = None,
    checkpoint_dir: str | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Plan a study at every point of a sweep.

    Parameters
    ----------
    spec : Sweep, dict or path
        The sweep: a :class:`Sweep`, a study document with a ``[sweep]`` table, or its TOML file.
    settings : ExecutionSettings, optional
        Threads, scheduler (one local cluster serves the whole sweep), progress.
    checkpoint_dir : str, optional
        Where every simulation is saved as it completes; a rerun (after a crash or a kill)
        computes only the missing ones, and points with equal simulation inputs share them.

    Returns
    -------
    xarray.Dataset
        Dims ``mode`` (labels of the nominal study), ``energy`` (eV) and one per swept key
        (named by the key), plus ``sample`` for the unknowns: ``required_dose``, ``budget``,
        ``margin``, ``j_per_dose`` and ``verdict`` at the study's own values of the unknowns;
        ``required_dose_samples`` (…, sample) and the band ``required_dose_low`` /
        ``required_dose_high`` (its range over the samples).
    """
    from temsim import compute

    if isinstance(spec, (str, os.PathLike)):
        data = read_study_document(spec)
        spec = sweep_from_document(data, base=os.path.dirname(os.path.abspath(os.fspath(spec))))
    elif isinstance(spec, Mapping):
        spec = sweep_from_document(dict(spec))
    settings = resolve_settings(settings, progress=progress)
    evaluations = spec.evaluations()
    nominal = spec.study_at(*evaluations[0])
    per_point = len(evaluations) // max(1, int(np.prod(spec.shape, dtype=np.int64)))
    total = len(evaluations)
    bar = progress_bar(total, settings.show_progress(total), "sweep: plans", unit="plan")
    points, runs = [], []
    with compute.session(settings) as shared:
        series = _thickness_series(spec, evaluations, shared, checkpoint_dir)
        for values, sample in evaluations:
            point = _point(spec.study_at(values, sample), shared, checkpoint_dir, series.get((values, sample)))
            bar.update(1)
            if sample:
                runs.append(point["required_dose"])
                if len(runs) < per_point - 1:
                    continue
                points[-1]["required_dose_samples"] = xr.concat(runs, dim="sample")
                runs = []
            else:
                points.append(point)
    bar.close()
    result = _assemble(spec, points, nominal)
    result.attrs["thickness_series"] = int(bool(series))
    return result


# ----------------------------------------------------------------------------- thickness series
#: The key whose values are the number of unit cells along the beam.
THICKNESS_KEY = "specimen.supercell[2]"


def _without_thickness(data: dict) -> str:
    """The document without its thickness, as a key: evaluations that differ only in thickness share it."""
    _set(data, THICKNESS_KEY, None)
    return json.dumps(data, sort_keys=True, default=str)


def _cut(atoms, depth: float):
    """The atoms above ``depth`` (Å along the beam), as sorted (numbers, positions) for comparison."""
    keep = atoms.positions[:, 2] < depth - 1e-6
    order = np.lexsort(np.round(atoms.positions[keep], 6).T)
    return atoms.numbers[keep][order], atoms.positions[keep][order]


def _same_atoms(a, b) -> bool:
    return a[0].shape == b[0].shape and np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-6)


def _series_step(thick, hypotheses, thin, n_thick: int, n_thin: int) -> int | None:
    """Slices per unit cell if ``thin`` is ``thick`` (whose ``hypotheses()`` are given) cut after
    ``n_thin`` of its ``n_thick`` cells (same lateral cell, structure and feature above the cut,
    slices ending on the cut), else None."""
    cz_thick, cz_thin = float(thick.atoms.cell[2, 2]), float(thin.atoms.cell[2, 2])
    cell = cz_thick / n_thick
    per_cell = cell / thick.slice_thickness
    if (
        abs(cz_thin - n_thin * cell) > 1e-6
        or abs(per_cell - round(per_cell)) > 1e-6
        or not np.allclose(np.asarray(thick.atoms.cell)[:2], np.asarray(thin.atoms.cell)[:2], atol=1e-6)
    ):
        return None
    (t0, t1, tp), (s0, s1, sp) = hypotheses, thin.hypotheses()
    if not np.allclose(tp, sp, atol=1e-6):
        return None
    for full, part in ((t0, s0), (t1, s1)):
        if not _same_atoms(_cut(full, cz_thin), _cut(part, np.inf)):
            return None
    return int(round(per_cell))


def _thickness_series(spec: Sweep, evaluations: list, settings, checkpoint_dir) -> dict:
    """Rates of every evaluation that is a thinner cut of another one, from one simulation of
    the thickest: ``{(values, sample): rates at that thickness}`` (multislice is causal, so the
    exit plane at depth t is the exit wave of the specimen cut at t)."""
    if THICKNESS_KEY not in spec.axes and THICKNESS_KEY not in {u.key for u in spec.unknowns}:
        return {}
    groups: dict = {}
    for evaluation in evaluations:
        data = spec.document_at(*evaluation)
        cells = int(_get(data, THICKNESS_KEY))
        groups.setdefault(_without_thickness(data), {}).setdefault(cells, []).append(evaluation)
    out = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        n_thick = max(members)
        thick = spec.study_at(*members[n_thick][0])
        hypotheses = thick.hypotheses()
        steps = {n: _series_step(thick, hypotheses, spec.study_at(*ev[0]), n_thick, n) for n, ev in members.items()}
        if any(step is None for step in steps.values()) or len(set(steps.values())) != 1:
            continue  # not cuts of one specimen: each point is simulated on its own
        rates = simulate(
            thick, settings=settings, progress=False, checkpoint_dir=checkpoint_dir, save_every=steps[n_thick]
        )
        cell = float(thick.atoms.cell[2, 2]) / n_thick
        depths = rates.thickness.values
        for n, same in members.items():
            plane = int(np.argmin(np.abs(depths - n * cell)))
            if abs(float(depths[plane]) - n * cell) > 1e-3:  # pragma: no cover - the slices end on every cell
                raise RuntimeError(f"no exit plane at {n * cell:.4f} Å in the thickness series {depths}")
            for evaluation in same:  # equal documents (e.g. a swept and a sampled thickness that coincide)
                out[evaluation] = rates.isel(thickness=plane, drop=True)
    return out


def _nest(items: list, shape: tuple) -> list:
    """``items`` (C order) as nested lists of ``shape``."""
    if len(shape) <= 1:
        return list(items)
    step = len(items) // shape[0]
    return [_nest(items[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _assemble(spec: Sweep, points: list, nominal) -> xr.Dataset:
    keys = list(spec.axes)
    ds = xr.combine_nested(_nest(points, spec.shape), concat_dim=keys, combine_attrs="drop") if keys else points[0]
    ds = ds.assign_coords({key: (key, list(values), {"sweep_key": key}) for key, values in spec.axes.items()})
    ds = ds.transpose("mode", "energy", *keys, ...)
    ds = ds.assign_coords(mode_label=("mode", [m.label for m in nominal.modes]))
    if spec.unknowns:
        ds = ds.assign_coords(sample=np.arange(ds.sizes["sample"]))
        for i, unknown in enumerate(spec.unknowns):
            values = [s[i] for s in spec.samples()]
            ds = ds.assign_coords({unknown.key: ("sample", values, {"distribution": unknown.description})})
        samples = ds["required_dose_samples"]
        ds["required_dose_low"] = samples.min("sample").assign_attrs(units="e/Å²", band="range over the samples")
        ds["required_dose_high"] = samples.max("sample").assign_attrs(units="e/Å²", band="range over the samples")
    ds.attrs.update(
        study=nominal.name,
        feature=nominal.feature.describe(),
        swept_keys=keys,
        unknowns=[f"{u.key}: {u.description}" for u in spec.unknowns],
    )
    return ds


def minimum_doses(result: xr.Dataset) -> list[dict]:
    """Per mode: the smallest required dose over energies and swept keys, where, and its band."""
    rows = []
    dims = [d for d in result.required_dose.dims if d != "mode"]
    for i in range(result.sizes["mode"]):
        dose = result.required_dose.isel(mode=i)
        row = {"mode": str(result.mode_label.values[i])}
        if not np.isfinite(dose.values).any():
            rows.append({**row, "minimum_dose": math.nan, "at": {}, "band": (math.nan, math.nan)})
            continue
        where = np.unravel_index(int(np.nanargmin(dose.values)), dose.shape)
        at = {d: dose[d].values[j].item() for d, j in zip(dims, where)}
        sel = {d: j for d, j in zip(dims, where)}
        band = (math.nan, math.nan)
        if "required_dose_low" in result:
            band = tuple(float(result[f"required_dose_{s}"].isel(mode=i)[sel]) for s in ("low", "high"))
        budget = float(result.budget.isel(mode=i)[sel])
        rows.append({**row, "minimum_dose": float(dose.values[where]), "at": at, "band": band, "budget": budget})
    return rows
