"""Writing a plan's report: Markdown table and summary, figures, and a NetCDF file with everything.

Files are written atomically (temporary name, then rename) and existing files are never
replaced unless ``overwrite=True``.

The command line claims its output folder before any simulation (:func:`prepare_output`):
the folder is resolved, created and checked; existing report files are refused unless
``--overwrite``; and a marker holding the study's fingerprint records the run in progress, so
a plan killed while writing its report finishes on the rerun without ``--overwrite``
(:func:`finish_output` removes the marker). :func:`safe_name` turns a study name into a
folder name that stays inside ``plan-output/``.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from temsim.damage_channels import format_damage_dose
from temsim.errors import TemsimError
from temsim.modes import DISPLAYS, mode_spec
from temsim.plan_file import write_plan
from temsim.planning import QUANTUM_ROWS

__all__ = [
    "write_report",
    "format_table",
    "safe_name",
    "prepare_output",
    "finish_output",
    "OutputError",
    "ReportExistsError",
]

REPORT_FILES = ("report.md", "plan.nc", "detection_power.png", "noisy_signals.png")
#: Marker of a plan in progress in its output folder; it holds the study's fingerprint.
IN_PROGRESS = ".temsim-plan-in-progress"


class OutputError(TemsimError, OSError):
    """The output folder cannot be used (a file, not writable, not creatable); names the path."""


class ReportExistsError(TemsimError, FileExistsError):
    """Report files already exist in the output folder and ``overwrite`` was not given."""


def safe_name(name: str) -> str:
    """A study name as one folder name: letters, digits, ``.``, ``_``, ``-`` only (≤ 100 characters).

    >>> safe_name("../../x"), safe_name("/etc/passwd"), safe_name(""), safe_name("Si in graphene")
    ('x', 'etc_passwd', 'study', 'Si_in_graphene')
    """
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._-")[:100].rstrip("._-")
    return text or "study"


def _os_error(err: OSError, path: str, doing: str) -> OutputError:
    where = err.filename if getattr(err, "filename", None) else path
    return OutputError(f"cannot {doing} {where}: {err.strerror or err}")


def prepare_output(directory, fingerprint: str, overwrite: bool = False, files=REPORT_FILES) -> str:
    """Resolve, create and claim the output folder before any simulation; returns its absolute path.

    Raises :class:`OutputError` (naming the path) for a folder that is a file or cannot be
    created or written, and :class:`ReportExistsError` when report files exist, unless
    ``overwrite`` or they were left by a killed run of the same study (same ``fingerprint``).
    ``files`` names the report files of the run (a plan's by default; a sweep's differ).
    """
    path = os.path.abspath(os.fspath(directory))
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"the output {path} exists and is not a folder; choose another --output")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise _os_error(err, path, "create the output folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {path} is not writable; choose another --output")
    marker = os.path.join(path, IN_PROGRESS)
    resuming = False
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8", errors="replace") as f:
            resuming = f.read().strip() == fingerprint
    existing = [os.path.join(path, n) for n in files if os.path.exists(os.path.join(path, n))]
    if existing and not (overwrite or resuming):
        raise ReportExistsError(
            f"{', '.join(existing)} exist; pass --overwrite (overwrite=True) to replace them "
            "or choose another output directory"
        )
    try:
        _atomic_write_text(marker, fingerprint + "\n")
    except OSError as err:
        raise _os_error(err, marker, "write") from None
    return path


def finish_output(directory) -> None:
    """Remove the in-progress marker once every report file is in place."""
    marker = os.path.join(os.fspath(directory), IN_PROGRESS)
    if os.path.exists(marker):
        os.remove(marker)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:.3g}"


def _fmt_margin(value: float) -> str:
    """Budget / dose with two digits; ``"> 1e6"`` above a million (no false precision)."""
    if value is None or math.isnan(value):
        return "—"
    return "> 1e6" if value > 1e6 else f"{value:.2g}"


def _fmt_survival(value: float) -> str:
    """Feature survival probability rounded down to three decimals; ``"> 0.999"`` above 0.999."""
    if value is None or math.isnan(value):
        return "—"
    return "> 0.999" if value > 0.999 else f"{math.floor(value * 1e3) / 1e3:.3f}"


def _damage_section(result) -> list:
    """Per energy: every damage channel with its dose, then every damage number used with status and source."""
    ds = result.dataset
    if ds is None or "damage_channel_summary" not in ds:
        return []
    lines = ["## Damage channels and the data they use", ""]
    for ei, energy in enumerate(ds.energy.values):
        channels = str(ds.damage_channel_summary.values[ei])
        lines.append(f"**{float(energy) / 1e3:g} kV** (budget: the smallest dose below)")
        lines += [f"* {line}" for line in channels.splitlines()] or ["* no damage limit given"]
        lines.append("")
    sources = dict.fromkeys(
        line for ei in range(ds.sizes["energy"]) for line in str(ds.damage_sources.values[ei]).splitlines()
    )
    if sources:
        lines += ["Damage numbers used (value — status; source):", ""]
        lines += [f"* {line}" for line in sources]
        lines.append("")
    lines += [
        "Damage figures carry two significant digits; budgets above 1e12 e/Å² are shown as > 1e12, and a "
        "knock-on channel whose displacement probability per atom stays below 1e-12 at 1e12 e/Å² is "
        "reported as none (see docs/planning.md).",
        "",
    ]
    return lines


def _camera_section(result) -> list:
    """Per mode and energy: the camera's numbers with status and source (temsim/data/cameras.toml)."""
    import json

    from temsim.camera_data import describe_number

    rates = getattr(result, "rates", None)
    if rates is None:
        return []
    used: dict = {}  # (camera, energy, numbers) -> mode labels, so shared cameras are listed once
    for label, da in rates.data_vars.items():
        provenance = json.loads(da.attrs.get("camera_provenance", "{}"))
        for (energy, rows), eta in zip(provenance.items(), da.attrs.get("efficiency_by_energy", [])):
            key = (str(da.attrs.get("camera")), float(energy), float(eta), json.dumps(rows))
            used.setdefault(key, []).append(str(label))
    lines = ["## Cameras and the numbers they use", ""]
    for (camera, energy, eta, rows), labels in used.items():
        lines.append(f"**{camera} at {energy / 1e3:g} kV** (DQE(0) = {eta:.3g}; {', '.join(labels)}):")
        lines += [f"* {describe_number(row)}" for row in json.loads(rows)]
        lines.append("")
    lines += [
        "Status: measured (a published characterisation), fitted (a model fitted to one), representative "
        "(a class value, not a device: replace it by your camera's measured value), override (given in the "
        "study). Image modes use the camera's DQE(f), read at the camera pixel (the mode's pixel_size, "
        "default the simulation sampling); see docs/dose-detectors-damage.md.",
        "",
    ]
    return lines


def format_table(result) -> str:
    """Markdown table: mode × energy, minimum dose, interval, budget, margin, verdict."""
    lines = [
        "| mode | energy (kV) | minimum dose (e/Å²) | phonon interval | Rose (summed) | budget (e/Å²) | margin | "
        "feature survival | MC false alarm / power | verdict | without damage (e/Å²) | × quantum limit | detector |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result.table:
        interval = f"{_fmt(row['dose_low'])}–{_fmt(row['dose_high'])}" if not math.isnan(row["dose_low"]) else "—"
        mc = "—"
        if not math.isnan(row["mc_power"]):
            mc = (
                f"{row['mc_false_alarm']:.3f} ± {row.get('mc_false_alarm_se', math.nan):.3f} / "
                f"{row['mc_power']:.3f} ± {row.get('mc_power_se', math.nan):.3f}"
            )
            if row.get("mc_note"):
                mc += " ⚠"
        lines.append(
            f"| {row['mode']} | {row['energy'] / 1e3:g} | {_fmt(row['required_dose'])} | {interval} | "
            f"{_fmt(row['rose_dose'])} | {format_damage_dose(row['budget'])} | {_fmt_margin(row['margin'])} | "
            f"{_fmt_survival(row.get('survival_probability', math.nan))} | {mc} | "
            f"{row['verdict']} | {_fmt(row['undamaged_dose'])} | {_fmt(row.get('quantum_multiple', math.nan))} | "
            f"{row.get('detector_geometry', '')} |"
        )
    return "\n".join(lines)


def _atomic_write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _figure_power(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = result.dataset
    energies = list(ds.energy.values)
    fig, axes = plt.subplots(1, len(energies), figsize=(5.2 * len(energies), 4.0), squeeze=False)
    for ax, energy in zip(axes[0], energies):
        sub = ds.sel(energy=energy)
        budget = float(sub.budget.max())
        for mode in ds.mode.values:
            ax.semilogx(ds.dose.values, sub.detection_power.sel(mode=mode).values, label=str(mode))
            d = float(sub.required_dose.sel(mode=mode))
            if np.isfinite(d):
                ax.plot([d], [result.study.target.power], "k.", ms=5)
        if np.isfinite(budget) and budget < ds.dose.values[-1]:
            ax.axvspan(budget, ds.dose.values[-1], color="tab:red", alpha=0.15, label="beyond damage budget")
        ax.axhline(result.study.target.power, color="0.5", lw=0.8, ls="--")
        ax.set_xlabel("dose (e/Å²)")
        ax.set_ylabel("detection power")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{result.study.name}: {energy / 1e3:g} kV")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def _noisy_display(signal: dict, dose: float, rng) -> np.ndarray:
    """A noisy realization (H1) of the mode's usual display at ``dose`` (see :mod:`temsim.modes`)."""
    counts = rng.poisson(np.maximum(signal["rate_h1"], 0) * dose).astype(float)
    display = signal.get("display") or mode_spec(signal["name"]).display
    return DISPLAYS[display](counts, signal)


def _figure_noisy(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.table]
    energies = sorted({r["energy"] for r in rows})
    # rows without simulated signals of their own (4D bound, joint, optimal, quantum limit) have no display
    modes = [m for m in dict.fromkeys(r["mode"] for r in rows) if any((m, e) in result.signals for e in energies)]
    fig, axes = plt.subplots(len(energies), len(modes), figsize=(2.8 * len(modes), 2.9 * len(energies)), squeeze=False)
    rng = np.random.default_rng(result.study.seed)
    for i, energy in enumerate(energies):
        for j, mode in enumerate(modes):
            ax = axes[i, j]
            row = result.row(mode, energy)
            dose = row["required_dose"]
            ax.set_xticks([])
            ax.set_yticks([])
            if not np.isfinite(dose):
                ax.text(0.5, 0.5, "not detectable", ha="center", va="center", transform=ax.transAxes)
            else:
                image = _noisy_display(result.signals[(mode, energy)], dose, rng)
                ax.imshow(image.T, origin="lower", cmap="gray")
            ax.set_title(f"{mode}, {energy / 1e3:g} kV\n{_fmt(dose)} e/Å²", fontsize=8)
    fig.suptitle(f"{result.study.name}: simulated noisy data (H1) at each mode's limiting dose", fontsize=9)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def _summary(result) -> str:
    study = result.study
    best = {}
    limits = {}
    for row in result.table:
        if row["mode"] in QUANTUM_ROWS:  # bounds of any detector, not modes
            limits.setdefault(row["energy"], []).append(row)
        elif np.isfinite(row["required_dose"]):
            e = row["energy"]
            if e not in best or row["required_dose"] < best[e]["required_dose"]:
                best[e] = row
    attrs = result.dataset.attrs if result.dataset is not None else {}
    site = attrs.get("feature_site_description", "")
    lines = [
        f"# temsim plan: {study.name}",
        "",
        study.description,
        "",
        f"* Feature: {study.feature.describe()}" + (f" ({site})" if site else ""),
        f"* Decision target: {study.target.describe()} (required J = {study.target.required_j:.2f})",
        f"* Probe/objective semiangle {study.semiangle_cutoff:g} mrad; "
        f"scan step {study.scan_step:g} Å over a {study.window:g} Å window around the feature",
        f"* Simulation grid used: {attrs.get('grid', f'sampling {study.sampling} Å')}",
        f"* Optics: {attrs.get('optics', '')}",
        f"* Frozen phonons: {study.phonons or 'none (static lattice)'}",
        "",
    ]
    for energy, row in best.items():
        lines.append(
            f"**{energy / 1e3:g} kV:** the lowest-dose mode is **{row['mode']}** at "
            f"{_fmt(row['required_dose'])} e/Å² ({row['verdict']}; {row['budget_basis']})."
        )
        if limits.get(energy):
            bounds = "; ".join(f"{b['mode']} {_fmt(b['required_dose'])} e/Å²" for b in limits[energy])
            lines.append(
                f"  No detector at all could do better ({bounds}); this mode needs "
                f"{_fmt(row.get('quantum_multiple', math.nan))} × the quantum limit of its illumination."
            )
    lines += [
        "",
        "## Minimum dose per mode and energy",
        "",
        format_table(result),
        "",
    ]
    lines += _damage_section(result)
    lines += _camera_section(result)
    flagged = [r for r in result.table if r.get("mc_note")]
    if flagged:
        lines += ["**Monte-Carlo check (⚠):** the exact Poisson check misses the target at the reported dose:", ""]
        lines += [f"* {r['mode']}, {r['energy'] / 1e3:g} kV: {r['mc_note']}." for r in flagged]
        lines += ["", "The Gaussian approximation is optimistic there; plan for a somewhat higher dose.", ""]
    lines += [
        "How to read this: the minimum dose is the smallest dose at which the likelihood-ratio test on the raw "
        "detector counts meets the target; no processing of the same data (iDPC, CoM, ptychography) can do "
        "better. The phonon interval is ±2 jackknife standard errors over frozen-phonon configurations. "
        "The Monte-Carlo column checks the exact Poisson error rates at the reported dose (± one standard "
        "error). Rose is the simpler criterion of an observer who sums the counts over the feature's "
        "footprint (|contrast|, so mixed signs do not cancel), at the same SNR the target needs; it never "
        "asks for less dose than the likelihood-ratio test. See docs/planning.md.",
        "",
        "Limits of any detector (STEM): **4D bound** is the likelihood-ratio test on every pixel of a pixelated "
        "camera (its DQE and binning) at every probe position — the dose below which no processing of that 4D "
        "data set (ptychography, iDPC, CoM, any virtual detector) can detect the feature. **joint: …** is the "
        "dose of the STEM detectors recorded together from the same electrons (overlapping rings counted once, "
        "on their disjoint cells). **optimal annulus** and **optimal segmented** are the detectors searched on "
        "the 4D data that need the least dose (geometry in the last column). **quantum limit** is the dose "
        "below which no detector at all could detect the feature, from the exit waves' overlap "
        "|⟨ψ0|ψ1⟩| at each probe position (**quantum limit (plane wave)**: the same for HRTEM illumination); "
        "'× quantum limit' is each row's dose as a multiple of its illumination's limit (without damage).",
        "",
        "Files: `plan.nc` (everything: the table's columns at its root, the expected counts per channel of "
        "each mode in the group `signals/<mode>`; `xarray.open_datatree`, see docs/planning.md), "
        "`detection_power.png`, "
        "`noisy_signals.png`.",
    ]
    return "\n".join(lines) + "\n"


def report_paths(directory: str, files, overwrite: bool) -> dict:
    """``{file name: path}`` of a run's report ``files`` in ``directory`` (absolute); refuses a
    ``directory`` that is a file and existing report files unless ``overwrite``."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise OutputError(f"the output {directory} exists and is not a folder")
    paths = {name: os.path.join(directory, name) for name in files}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise ReportExistsError(
            f"{', '.join(existing)} exist; pass --overwrite (overwrite=True) to replace them "
            "or choose another output directory"
        )
    return paths


def write_report(result, directory: str, overwrite: bool = False) -> dict:
    """Write report.md, plan.nc, detection_power.png and noisy_signals.png into ``directory``.

    Existing report files are refused (:class:`ReportExistsError`, a ``FileExistsError``)
    unless ``overwrite``; a path that cannot be written gives :class:`OutputError` naming it.
    """
    directory = os.path.abspath(os.fspath(directory))
    paths = report_paths(directory, REPORT_FILES, overwrite)
    try:
        os.makedirs(directory, exist_ok=True)
        write_plan(paths["plan.nc"], result.dataset, result.rates)  # atomic: temporary name, then rename
        _figure_power(result, paths["detection_power.png"])
        _figure_noisy(result, paths["noisy_signals.png"])
        _atomic_write_text(paths["report.md"], _summary(result))
    except OSError as err:
        raise _os_error(err, directory, "write the report to") from None
    return paths
