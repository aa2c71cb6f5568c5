"""When to stop adding frozen-phonon configurations: running means and standard errors.

:func:`phonon_convergence` scans every configuration of a frozen-phonon potential on its
own (the same work as one averaged scan) and returns, for each detector, the running mean
over the first ``n`` configurations and its standard error

.. math:: \\mathrm{SE}_n = s_n / \\sqrt{n},

with ``s_n`` the sample standard deviation over configurations, per scan pixel, plus its
mean relative value over the image — the number to watch: stop when it falls below the
precision you need (it falls as 1/√n).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from temsim.errors import InputError

__all__ = ["phonon_convergence", "standard_error"]


def standard_error(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Standard error of the mean along ``axis`` (sample standard deviation / √n); NaN for n < 2."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    if n < 2:
        return np.full(np.delete(values.shape, axis), np.nan)
    return values.std(axis=axis, ddof=1) / np.sqrt(n)


def phonon_convergence(probe, potential, detectors: Mapping[str, object], scan=None, **scan_kwargs) -> xr.Dataset:
    """Detector images versus the number of frozen-phonon configurations.

    Parameters
    ----------
    probe, detectors, scan
        As for :func:`temsim.scan`.
    potential : Potential
        A potential with ``phonons`` set (at least 2 configurations).
    **scan_kwargs
        Passed on to :func:`temsim.scan` (``method``, ``interpolation``, ``dtype``, ...).

    Returns
    -------
    xarray.Dataset
        For each detector ``<name>``: ``<name>`` (running mean, dims ``num_configs`` + the
        detector's dims), ``<name>_standard_error`` (same dims; NaN at n = 1) and
        ``<name>_relative_error`` (``num_configs``): the image-mean standard error over the
        image-mean signal. ``num_configs`` runs from 1 to the number of configurations.
    """
    from temsim.solvers.stem import scan as run_scan

    if getattr(potential, "phonons", None) is None:
        raise InputError("phonon_convergence needs a potential with phonons=temsim.FrozenPhonons(...)")
    if scan_kwargs.get("elastic"):
        raise InputError("phonon_convergence tracks total intensities; call scan(..., elastic=True) separately")
    results = [
        run_scan(probe, configuration, detectors, scan, **scan_kwargs) for configuration in potential.configurations()
    ]
    n = len(results)
    if n < 2:
        raise InputError("phonon_convergence needs at least 2 configurations (FrozenPhonons(num_configs=...))")
    counts = np.arange(1, n + 1)
    variables = {}
    for name in detectors:
        stacked = np.stack([np.asarray(r[name].values, dtype=np.float64) for r in results])
        running = np.cumsum(stacked, axis=0) / counts.reshape((-1,) + (1,) * (stacked.ndim - 1))
        errors = np.stack([standard_error(stacked[:k]) for k in counts])
        image_means = stacked.reshape(n, -1).mean(axis=1)
        relative = np.array(
            [standard_error(image_means[:k]) / abs(image_means[:k].mean()) if k > 1 else np.nan for k in counts]
        )
        template = results[0][name]
        dims = ("num_configs",) + template.dims
        coords = {key: value for key, value in template.coords.items()}
        coords["num_configs"] = ("num_configs", counts)
        variables[name] = xr.DataArray(running.astype(np.float32), dims=dims, coords=coords, attrs=template.attrs)
        variables[f"{name}_standard_error"] = xr.DataArray(
            errors.astype(np.float32), dims=dims, coords=coords, attrs={"units": template.attrs.get("units", "")}
        )
        variables[f"{name}_relative_error"] = xr.DataArray(
            relative,
            dims=("num_configs",),
            coords={"num_configs": counts},
            attrs={"long_name": "standard error of the image mean / image mean"},
        )
    attrs = dict(results[0].attrs)
    attrs["frozen_phonon_configurations"] = n
    attrs["phonons"] = repr(potential.phonons)
    return xr.Dataset(variables, attrs=attrs)
