"""Writing a sweep's report: the minimum dose per mode over the sweep, a figure per swept key, a NetCDF file.

Files go into one output folder, are written atomically and are never replaced without
``overwrite`` (the folder is claimed before any simulation, as for a plan).
"""

from __future__ import annotations

import math
import os

import numpy as np
import xarray as xr

from temsim.io import atomic_write
from temsim.report import _atomic_write_text, _fmt, _os_error, report_paths
from temsim.sweeps import minimum_doses

__all__ = ["write_sweep_report", "format_sweep_table", "SWEEP_FILES"]

SWEEP_FILES = ("sweep.md", "sweep.nc", "sweep.png")
_BAND = ("required_dose_low", "required_dose_high")


def _at(at: dict) -> str:
    parts = []
    for key, value in at.items():
        if key == "energy":
            parts.append(f"{value / 1e3:g} kV")
        else:
            parts.append(f"{key} = {value:g}" if isinstance(value, (int, float)) else f"{key} = {value}")
    return ", ".join(parts)


def format_sweep_table(result: xr.Dataset) -> str:
    """Markdown table: per mode, the minimum dose over the sweep, where, its band and the budget there."""
    band = "required_dose_low" in result
    lines = [
        "| mode | minimum dose (e/Å²) | at | "
        + ("band over the unknowns | " if band else "")
        + "budget there (e/Å²) |",
        "|---|---|---|" + ("---|" if band else "") + "---|",
    ]
    for row in minimum_doses(result):
        cells = [row["mode"], _fmt(row["minimum_dose"]), _at(row["at"]) or "—"]
        if band:
            low, high = row["band"]
            cells.append(f"{_fmt(low)}–{_fmt(high)}" if not math.isnan(low) else "—")
        cells.append(_fmt(row.get("budget", math.nan)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_over(da: xr.DataArray, dose: xr.DataArray, others: list) -> np.ndarray:
    """``da`` at the point of ``dose``'s minimum over the ``others`` dims, for each remaining index."""
    if not others:
        return da.values
    stacked = dose.stack(_other=others)
    filled = stacked.where(np.isfinite(stacked), np.inf)
    index = filled.argmin("_other").values
    values = da.stack(_other=others).values
    return np.take_along_axis(values, index[..., None], axis=-1)[..., 0]


def _figure(result: xr.Dataset, path: str) -> None:
    """Per swept key: each mode's minimum dose (over the other keys and the energies), its band,
    and the damage budget at that best point (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(result.attrs.get("swept_keys", [])) or ["energy"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        x = np.asarray(result[key].values)
        numeric = np.issubdtype(x.dtype, np.number)
        xs = x if numeric else np.arange(len(x))
        for i in range(result.sizes["mode"]):
            dose = result.required_dose.isel(mode=i).transpose(key, ...)
            others = [d for d in dose.dims if d != key]
            best = _best_over(dose, dose, others)
            (line,) = ax.plot(xs, best, "o-", label=str(result.mode_label.values[i]))
            if "required_dose_low" in result:
                low, high = (_best_over(result[name].isel(mode=i), dose, others) for name in _BAND)
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
            budget = _best_over(result.budget.isel(mode=i), dose, others)
            ax.plot(xs, np.where(np.isfinite(budget), budget, np.nan), "--", color=line.get_color(), lw=1)
        ax.set_yscale("log")
        if numeric and np.all(xs > 0) and xs.max() / xs.min() > 100:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in x])
        ax.set_ylabel("minimum dose (e/Å²)")
    axes[0][0].plot([], [], "k--", lw=1, label="damage budget there")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{result.attrs.get('study', 'sweep')}: minimum detectable dose over the sweep (band: unknowns)")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def _summary(result: xr.Dataset) -> str:
    lines = [
        f"# Sweep: {result.attrs.get('study', '')}",
        "",
        f"Feature: {result.attrs.get('feature', '')}.",
        "",
        "Swept: " + (", ".join(f"`{k}` ({result.sizes[k]} values)" for k in result.attrs.get("swept_keys", [])) or "—"),
        "",
    ]
    if result.attrs.get("unknowns"):
        lines += ["Unknowns (the band is the range of the minimum dose over their samples):", ""]
        lines += [f"- `{u}`" for u in result.attrs["unknowns"]] + [""]
    lines += [format_sweep_table(result), "", "![minimum dose vs each swept key](sweep.png)", ""]
    lines.append("Every point's doses, budgets and verdicts are in `sweep.nc` (`xarray.open_dataset`).")
    return "\n".join(lines) + "\n"


def write_sweep_report(result: xr.Dataset, directory: str, overwrite: bool = False) -> dict:
    """Write sweep.md, sweep.nc and sweep.png into ``directory`` (existing files refused unless ``overwrite``)."""
    directory = os.path.abspath(os.fspath(directory))
    paths = report_paths(directory, SWEEP_FILES, overwrite)
    try:
        os.makedirs(directory, exist_ok=True)
        atomic_write(paths["sweep.nc"], lambda tmp: result.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=True))
        _figure(result, paths["sweep.png"])
        _atomic_write_text(paths["sweep.md"], _summary(result))
    except OSError as err:
        raise _os_error(err, directory, "write the sweep report to") from None
    return paths
