"""The instrument: microscope presets, focal spread from the energy spread, and the source size.

A study names a typical instrument with ``[microscope] preset = NAME`` (:data:`PRESET_NAMES`;
numbers, units and their sources in the data table ``temsim/data/microscopes.toml``);
explicit keys override the preset's values.

Two kinds of partial coherence are modelled:

* **temporal** (energy spread ΔE, FWHM, through the chromatic aberration Cc): a focal spread
  σ_f = Cc · (σ_E / E) · (1 + E/E₀) / (1 + E/2E₀), σ_E = ΔE / (2√(2 ln 2)), E₀ = m₀c² —
  the relativistic factor is d ln(λ⁻²) / d ln E, the change of the lens's focusing strength
  with energy (:func:`focal_spread_from_energy_spread`);
* **spatial** (finite effective source size at the specimen, FWHM in Å): the STEM image is the
  coherent-probe image blurred by the source's Gaussian over probe positions
  (:func:`source_blur`), applied to the noise-free expected counts.

Energies in eV, lengths in Å.
"""

from __future__ import annotations

import functools
import math
from importlib import resources

import numpy as np
import xarray as xr

from temsim.constants import ELECTRON_REST_ENERGY, check_energy
from temsim.errors import InputError

__all__ = [
    "microscope_preset",
    "preset_sources",
    "PRESET_NAMES",
    "focal_spread_from_energy_spread",
    "source_blur",
    "FWHM_PER_SIGMA",
]

#: FWHM / σ of a Gaussian, 2√(2 ln 2).
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


@functools.cache
def _presets() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    text = (resources.files("temsim") / "data" / "microscopes.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


#: Names of the shipped microscope presets.
PRESET_NAMES: tuple[str, ...] = tuple(_presets())


def _entry(name) -> dict:
    if not isinstance(name, str) or name not in _presets():
        raise InputError(f"unknown microscope preset {name!r}; valid presets are {', '.join(PRESET_NAMES)}")
    return _presets()[name]


def microscope_preset(name: str) -> dict:
    """Study keys of preset ``name``: ``energy_spread`` (eV FWHM), ``chromatic_aberration`` (Å),
    ``source_size`` (Å FWHM) and ``aberrations`` (``{"C30": Å, ...}``), plus ``energies``
    ((min, max) eV that the preset describes), ``description`` and ``status``.

    >>> microscope_preset("uncorrected-tem-schottky-200kv")["aberrations"]
    {'C30': 10000000.0}
    """
    entry = _entry(name)
    return {
        "energy_spread": float(entry["energy_spread"]["value"]),
        "chromatic_aberration": float(entry["chromatic_aberration"]["value"]),
        "source_size": float(entry["source_size"]["value"]),
        "aberrations": {k: float(v["value"]) for k, v in entry["aberrations"].items()},
        "energies": tuple(float(e) for e in entry["energies"]),
        "description": entry["description"],
        "status": entry["status"],
    }


def preset_sources(name: str) -> dict:
    """Where each number of preset ``name`` comes from, ``{key: source}`` (in words)."""
    entry = _entry(name)
    out = {k: entry[k]["source"] for k in ("energy_spread", "chromatic_aberration", "source_size")}
    out.update({f"aberrations.{k}": v["source"] for k, v in entry["aberrations"].items()})
    return out


def focal_spread_from_energy_spread(energy: float, energy_spread: float, chromatic_aberration: float) -> float:
    """Focal-spread standard deviation σ_f (Å) from the energy spread and Cc.

    Parameters
    ----------
    energy : float
        Beam energy E, eV.
    energy_spread : float
        FWHM ΔE of the beam's energy distribution, eV (Gaussian).
    chromatic_aberration : float
        Chromatic aberration coefficient Cc, Å.

    Returns
    -------
    float
        ``Cc · (ΔE / 2√(2 ln 2)) / E · (1 + E/E₀) / (1 + E/2E₀)`` in Å.

    Examples
    --------
    >>> round(focal_spread_from_energy_spread(200e3, 0.7, 1.4e7), 1)  # Schottky gun, Cc 1.4 mm
    24.2
    """
    energy = check_energy(energy)
    if not (energy_spread >= 0 and chromatic_aberration >= 0):
        raise InputError(
            f"energy_spread ({energy_spread!r} eV) and chromatic_aberration ({chromatic_aberration!r} Å) must be ≥ 0"
        )
    relativistic = (1 + energy / ELECTRON_REST_ENERGY) / (1 + energy / (2 * ELECTRON_REST_ENERGY))
    return float(chromatic_aberration * energy_spread / FWHM_PER_SIGMA / energy * relativistic)


def source_blur(
    da: xr.DataArray, fwhm: float, dims: tuple[str, str] = ("scan_x", "scan_y"), boundary: str = "reflect"
) -> xr.DataArray:
    """Blur a STEM signal over probe positions by a Gaussian effective source of ``fwhm`` Å.

    The incoherent sum of coherent probes displaced by the source's Gaussian distribution
    gives the coherent-probe image convolved with that Gaussian (partial spatial coherence).
    The scan ``dims`` must be evenly spaced coordinates in Å. At the edges of a scanned
    window the image is continued by mirror symmetry (``boundary="reflect"``, the default),
    which keeps the total signal of every channel; a scan over a whole periodic cell uses
    ``boundary="wrap"``. ``fwhm = 0`` returns ``da`` unchanged.
    """
    from scipy.ndimage import gaussian_filter

    if not (math.isfinite(fwhm) and fwhm >= 0):
        raise InputError(f"source size must be a FWHM ≥ 0 in Å, got {fwhm!r}")
    if boundary not in ("reflect", "wrap"):
        raise InputError(f"boundary must be 'reflect' (a window) or 'wrap' (a periodic cell), got {boundary!r}")
    if fwhm == 0:
        return da
    sigma = [0.0] * da.ndim
    for dim in dims:
        coords = np.asarray(da[dim].values, dtype=float)
        if coords.size < 2:
            continue
        step = float(np.mean(np.diff(coords)))
        if not np.allclose(np.diff(coords), step, rtol=1e-6):
            raise InputError(f"source_blur needs an evenly spaced {dim}, got steps {np.diff(coords)}")
        sigma[da.dims.index(dim)] = fwhm / FWHM_PER_SIGMA / abs(step)
    values = gaussian_filter(np.asarray(da.values, dtype=np.float64), sigma, mode=boundary, truncate=6.0)
    return da.copy(data=values)
