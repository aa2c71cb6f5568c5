"""Writing a plan's report: Markdown table and summary, figures, and a NetCDF file with everything.

Files are written atomically (temporary name, then rename) and existing files are never
replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from temsim.modes import DISPLAYS, mode_spec

__all__ = ["write_report", "format_table"]

REPORT_FILES = ("report.md", "plan.nc", "detection_power.png", "noisy_signals.png")


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:.3g}"


def format_table(result) -> str:
    """Markdown table: mode × energy, minimum dose, interval, budget, margin, verdict."""
    lines = [
        "| mode | energy (kV) | minimum dose (e/Å²) | phonon interval | Rose (k=5) | budget (e/Å²) | margin | "
        "MC false alarm / power | verdict | without damage (e/Å²) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result.table:
        interval = f"{_fmt(row['dose_low'])}–{_fmt(row['dose_high'])}" if not math.isnan(row["dose_low"]) else "—"
        mc = f"{row['mc_false_alarm']:.3f} / {row['mc_power']:.3f}" if not math.isnan(row["mc_power"]) else "—"
        lines.append(
            f"| {row['mode']} | {row['energy'] / 1e3:g} | {_fmt(row['required_dose'])} | {interval} | "
            f"{_fmt(row['rose_dose'])} | {_fmt(row['budget'])} | {_fmt(row['margin'])} | {mc} | "
            f"{row['verdict']} | {_fmt(row['undamaged_dose'])} |"
        )
    return "\n".join(lines)


def _atomic_write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
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
    return DISPLAYS[mode_spec(signal["name"]).display](counts, signal)


def _figure_noisy(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.table]
    energies = sorted({r["energy"] for r in rows})
    modes = list(dict.fromkeys(r["mode"] for r in rows))
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
    for row in result.table:
        if np.isfinite(row["required_dose"]):
            e = row["energy"]
            if e not in best or row["required_dose"] < best[e]["required_dose"]:
                best[e] = row
    lines = [
        f"# temsim plan: {study.name}",
        "",
        study.description,
        "",
        f"* Feature: {study.feature.describe()}",
        f"* Decision target: {study.target.describe()} (required J = {study.target.required_j:.2f})",
        f"* Probe/objective semiangle {study.semiangle_cutoff:g} mrad; sampling {study.sampling:g} Å; "
        f"scan step {study.scan_step:g} Å over a {study.window:g} Å window around the feature",
        f"* Frozen phonons: {study.phonons or 'none (static lattice)'}",
        "",
    ]
    for energy, row in best.items():
        lines.append(
            f"**{energy / 1e3:g} kV:** the lowest-dose mode is **{row['mode']}** at "
            f"{_fmt(row['required_dose'])} e/Å² ({row['verdict']}; {row['budget_basis']})."
        )
    lines += [
        "",
        "## Minimum dose per mode and energy",
        "",
        format_table(result),
        "",
        "How to read this: the minimum dose is the smallest dose at which the likelihood-ratio test on the raw "
        "detector counts meets the target; no processing of the same data (iDPC, CoM, ptychography) can do "
        "better. The phonon interval is ±2 jackknife standard errors over frozen-phonon configurations. "
        "The Monte-Carlo column checks the exact Poisson error rates at the reported dose. Rose is the "
        "simpler SNR = 5 criterion over the feature region. See docs/planning.md.",
        "",
        "Files: `plan.nc` (everything, including the expected counts per channel `rates[<mode>]`), "
        "`detection_power.png`, "
        "`noisy_signals.png`.",
    ]
    return "\n".join(lines) + "\n"


def write_report(result, directory: str, overwrite: bool = False) -> dict:
    """Write report.md, plan.nc, detection_power.png and noisy_signals.png into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in REPORT_FILES}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} exist; pass --overwrite (overwrite=True) to replace them "
            "or choose another output directory"
        )
    tmp = paths["plan.nc"] + ".tmp"
    result.dataset.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=True)
    os.replace(tmp, paths["plan.nc"])
    _figure_power(result, paths["detection_power.png"])
    _figure_noisy(result, paths["noisy_signals.png"])
    _atomic_write_text(paths["report.md"], _summary(result))
    return paths
