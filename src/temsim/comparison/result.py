"""The result of a comparison and its report: figure, NetCDF file and Markdown summary."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from temsim._version import __version__
from temsim.comparison.fit import UNITS
from temsim.io import atomic_write

__all__ = ["CompareResult"]

_FILES = {"figure": "compare.png", "netcdf": "compare.nc", "summary": "compare.md"}


@dataclass(frozen=True)
class CompareResult:
    """Best-fit parameters, their uncertainties and the images of one comparison.

    Attributes
    ----------
    parameters : dict
        Best-fit values: ``defocus`` (Å, positive = underfocus), ``Cs`` (C30, Å), ``thickness`` (Å), ``blur``
        (Gaussian σ, Å), ``shift_x``/``shift_y`` (Å: where the simulation cell's origin lies in
        the experiment, modulo the cell), ``scale`` (data units per fraction of the beam),
        ``offset`` (data units), ``gain`` (data units per electron), ``dose`` (e/Å²); STEM
        ``drift_x``/``drift_y`` (Å over the frame); for signed and integrated signals (DPC, CoM,
        iDPC, iCoM) ``noise_sigma`` (the white noise's standard deviation) instead of gain and dose.
    uncertainties : dict
        One standard error per fitted parameter (Fisher information; thickness from the χ²
        profile over the series, including its step).
    converged : bool
        False when the optimizer stopped early or a parameter sits on a bound (``at_bound``).
    message : str
        ``"converged"`` or why not.
    metrics : dict
        ``ncc``, ``chi2``, ``dof``, ``chi2_per_dof``, ``r_factor``, ``ssim`` (None without
        scikit-image).
    experiment, simulation, residual : xarray.DataArray
        The experiment as fitted, the best simulation on its pixels (same units) and the
        normalized residual ``(data − model)/σ``.
    variance : xarray.DataArray
        The noise model's variance per pixel at the optimum (data units²).
    row_shifts : xarray.DataArray or None
        STEM line jitter (``compare(..., row_shifts=True)``): shift of each scan line along *x*
        (Å, dim ``y``), standard errors in the ``row_shift_sigma`` coordinate.
    thickness_profile : xarray.DataArray
        χ² against thickness (NaN where not refitted).
    """

    parameters: dict
    uncertainties: dict
    converged: bool
    message: str
    at_bound: tuple
    metrics: dict
    experiment: xr.DataArray = field(repr=False)
    simulation: xr.DataArray = field(repr=False)
    residual: xr.DataArray = field(repr=False)
    thickness_profile: xr.DataArray = field(repr=False)
    variance: xr.DataArray = field(repr=False, default=None)
    row_shifts: xr.DataArray | None = field(repr=False, default=None)
    attrs: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ views
    def to_dataset(self) -> xr.Dataset:
        """Experiment, best simulation, residual and thickness profile, parameters in attrs."""
        attrs = {**{k: _plain(v) for k, v in self.attrs.items()}, "temsim_version": __version__}
        for name, value in self.parameters.items():
            attrs[f"fit_{name}"] = float(value)
            attrs[f"fit_{name}_units"] = UNITS.get(name, "")
            if name in self.uncertainties:
                attrs[f"fit_{name}_sigma"] = float(self.uncertainties[name])
        attrs["converged"] = int(self.converged)
        attrs["message"] = self.message
        attrs["at_bound"] = ", ".join(self.at_bound)
        attrs["metrics"] = json.dumps({k: v for k, v in self.metrics.items()})
        return xr.Dataset(
            {
                "experiment": _clean(self.experiment),
                "simulation": _clean(self.simulation),
                "residual": _clean(self.residual),
                "thickness_profile": _clean(self.thickness_profile),
                **({} if self.variance is None else {"variance": _clean(self.variance)}),
                **({} if self.row_shifts is None else {"row_shifts": _clean(self.row_shifts)}),
            },
            attrs=attrs,
        )

    def summary(self) -> str:
        """Markdown summary: parameters with uncertainties, metrics, convergence, provenance."""
        lines = ["# Experiment vs simulation", "", f"**Fit: {self.message}.**", ""]
        lines += ["| parameter | value | standard error | unit |", "|---|---|---|---|"]
        for name, value in self.parameters.items():
            sigma = self.uncertainties.get(name)
            flag = " (at bound)" if name in self.at_bound else ""
            shown = "—" if sigma is None else f"{sigma:.4g}"
            lines.append(f"| {name}{flag} | {value:.6g} | {shown} | {UNITS.get(name, '')} |")
        lines += ["", "| metric | value |", "|---|---|"]
        for name, value in self.metrics.items():
            lines.append(f"| {name} | {'n/a (scikit-image not installed)' if value is None else f'{value:.5g}'} |")
        lines += ["", "Provenance:", ""]
        lines += [f"- {k}: {v}" for k, v in self.attrs.items()]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ report
    def report(self, path, overwrite: bool = False) -> dict:
        """Write ``compare.png``, ``compare.nc`` and ``compare.md`` into the folder ``path``.

        Each file is written under a temporary name and renamed into place (a killed run leaves
        no half-written report). Existing files are never replaced unless ``overwrite=True``.

        Returns
        -------
        dict
            ``{"figure": path, "netcdf": path, "summary": path}``.

        Raises
        ------
        FileExistsError
            A report file exists and ``overwrite`` is False.
        """
        folder = os.fspath(path)
        os.makedirs(folder, exist_ok=True)
        paths = {key: os.path.join(folder, name) for key, name in _FILES.items()}
        existing = [p for p in paths.values() if os.path.exists(p)]
        if existing and not overwrite:
            raise FileExistsError(f"{', '.join(existing)} exist(s); pass overwrite=True (CLI: --overwrite) to replace")
        atomic_write(paths["netcdf"], lambda tmp: self.to_dataset().to_netcdf(tmp, engine="h5netcdf"))
        atomic_write(paths["figure"], lambda tmp: _figure(self, tmp))
        atomic_write(paths["summary"], lambda tmp: _write_text(tmp, self.summary()))
        return paths


def _plain(value):
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def _clean(da: xr.DataArray) -> xr.DataArray:
    return da.copy(data=np.asarray(da.values)).assign_attrs({k: _plain(v) for k, v in da.attrs.items()})


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _figure(result: CompareResult, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    exp = result.experiment
    x, y = exp["x"].values, exp["y"].values
    extent = [x[0], x[-1], y[0], y[-1]]
    fig = Figure(figsize=(16, 4.2))
    axes = fig.subplots(1, 4)
    lo, hi = np.percentile(exp.values, [0.5, 99.5])
    for ax, da, title in ((axes[0], exp, "experiment"), (axes[1], result.simulation, "best simulation")):
        shown = ax.imshow(da.values.T, origin="lower", extent=extent, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    limit = max(float(np.abs(result.residual.values).max()), 1e-12)
    shown = axes[2].imshow(
        result.residual.values.T, origin="lower", extent=extent, cmap="RdBu_r", vmin=-limit, vmax=limit
    )
    axes[2].set_title("residual (data − model)/σ")
    fig.colorbar(shown, ax=axes[2], shrink=0.8)
    row = exp.sizes["y"] // 2
    axes[1].axhline(y[row], color="tab:orange", lw=0.8)
    axes[3].plot(x, exp.values[:, row], ".", ms=3, color="k", label="experiment")
    axes[3].plot(x, result.simulation.values[:, row], color="tab:orange", label="simulation")
    axes[3].set_xlabel("x (Å)")
    axes[3].set_title(f"line profile at y = {y[row]:.2f} Å")
    axes[3].legend(loc="best")
    for ax in axes[:3]:
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
    p, s = result.parameters, result.uncertainties
    text = ", ".join(f"{k} = {p[k]:.4g} ± {s[k]:.2g}" for k in ("defocus", "thickness", "dose") if k in s)
    fig.suptitle(f"{result.message}; {text}; NCC = {result.metrics['ncc']:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
