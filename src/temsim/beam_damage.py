"""Beam damage: first-order fading during an acquisition, critical-dose presets, knock-on.

Radiolysis (organics, MOFs, ice) is modelled as first-order fading of the structural signal,
``I(D)/I0 = exp(−D/Dc)``. A pixel whose signal is recorded while its own dose rises from
``D_prior`` to ``D_prior + ΔD`` records the mean ``exp(−D_prior/Dc)·(Dc/ΔD)(1 − e^{−ΔD/Dc})``;
an acquisition of total dose ``D`` from fresh specimen therefore records
``Dc/D·(1 − e^{−D/Dc})`` of the intact signal, however it is split into frames. Scan order
matters when probes overlap (a pixel has already been dosed by its scanned neighbours) and in
multi-frame acquisitions (later frames see a damaged specimen); both are modelled by
:func:`fading_weights`.

Knock-on displacement (conductors such as graphene) is computed by :func:`knock_on`:
``E_max = 2E(E + 2m0c²)/(Mc²)``, the threshold beam energy for a displacement energy
``E_d``, the McKinley–Feshbach cross-section (Egerton's formulation) and, optionally, the
thermal-vibration average of Meyer et al. (2012) that lowers the onset in graphene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from temsim import damage_data
from temsim.backend import array_namespace, to_numpy
from temsim.checks import as_choice, as_number
from temsim.constants import (
    ATOMIC_MASS_UNIT,
    BOLTZMANN_EV,
    ELECTRON_REST_ENERGY,
    ELEMENTARY_CHARGE,
    SPEED_OF_LIGHT,
    check_energy,
)
from temsim.errors import InputError
from temsim.microscopes import FWHM_PER_SIGMA
from temsim.phonons import debye_mean_square_displacement

__all__ = [
    "CriticalDose",
    "CRITICAL_DOSE_PRESETS",
    "critical_dose",
    "fading",
    "mean_fading",
    "fading_weights",
    "damage",
    "signal_to_noise_with_damage",
    "optimal_dose",
    "critical_exposure_cryo",
    "KnockOn",
    "knock_on",
    "max_transferred_energy",
    "threshold_energy",
    "displacement_cross_section",
    "thermal_cross_section",
    "debye_vibrational_energy",
    "debye_temperature_from_msd",
    "BARN_TO_A2",
]

#: 1 barn = 1e-24 cm² = 1e-8 Å².
BARN_TO_A2 = 1e-8
#: Atomic mass unit as rest energy, eV.
_AMU_EV = ATOMIC_MASS_UNIT * SPEED_OF_LIGHT**2 / ELEMENTARY_CHARGE
#: Fine-structure constant (CODATA 2018).
_ALPHA = 7.2973525693e-3
#: Classical electron radius, Å (CODATA 2018).
_R_E = 2.8179403262e-5
#: x = D/Dc that maximizes (1 − e^{−x})/√x (root of 2x e^{−x} = 1 − e^{−x}).
_SNR_OPTIMUM = 1.2564312086261696


# ============================================================================ critical doses
@dataclass(frozen=True)
class CriticalDose:
    """A critical dose ``Dc`` (e/Å²) for first-order fading, with where it comes from.

    Parameters
    ----------
    value : float
        Dc in e/Å² (> 0): the dose after which the signal has fallen to 1/e.
    material, conditions, source : str
        What was measured, under which conditions (energy, temperature, signal), and the
        reference (with DOI).
    status : str
        ``"user"`` for a number given by the user, otherwise the damage table's status
        (measured, fitted, calculated, representative, unverified).
    dose_kind : str
        ``"1/e"``, or ``"end-point"`` for a dose at which the signal is gone (used as Dc it
        overstates the budget); ``""`` when not stated.
    """

    value: float
    material: str = "custom"
    conditions: str = ""
    source: str = "user"
    status: str = "user"
    dose_kind: str = ""

    def __post_init__(self):
        object.__setattr__(
            self, "value", as_number("critical dose", self.value, "e/Å²", minimum=0, exclusive_minimum=True)
        )

    def fading(self, dose):
        """``exp(−D/Dc)`` for dose(s) ``D`` (e/Å²)."""
        return fading(dose, self.value)

    def mean_fading(self, dose):
        """Mean intact fraction over an acquisition of total dose ``D``: ``Dc/D·(1 − e^{−D/Dc})``."""
        return mean_fading(dose, self.value)

    @property
    def optimal_dose(self) -> float:
        """Dose (e/Å²) maximizing the damage-limited SNR, ≈ 1.256·Dc."""
        return _SNR_OPTIMUM * self.value


def _presets() -> dict[str, CriticalDose]:
    """Critical-dose presets from the damage table (``temsim/data/damage.toml``)."""
    out = {}
    for name, e in damage_data.critical_dose_entries().items():
        out[name] = CriticalDose(e.value, e.material, e.conditions, e.cite(), e.status, e.dose_kind)
    return out


#: Critical doses with sources and status, read from the damage table (docs/dose-detectors-damage.md).
CRITICAL_DOSE_PRESETS: dict[str, CriticalDose] = _presets()


def critical_dose(spec) -> CriticalDose:
    """A :class:`CriticalDose` from a preset name, a number (e/Å²) or a CriticalDose.

    ``"graphene"`` (and other conductors) are knock-on limited: use :func:`knock_on` and
    ``KnockOn.critical_dose``. ``"cryo-protein@<d>"`` gives Grant & Grigorieff's critical
    exposure at resolution ``d`` Å (e.g. ``"cryo-protein@3"``).
    """
    if isinstance(spec, CriticalDose):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key in CRITICAL_DOSE_PRESETS:
            return CRITICAL_DOSE_PRESETS[key]
        if key.startswith("cryo-protein@"):
            d = as_number(
                f"the resolution after '@' in {spec!r} (e.g. 'cryo-protein@3')",
                key.split("@", 1)[1],
                "Å",
                minimum=0,
                exclusive_minimum=True,
            )
            return CriticalDose(
                float(critical_exposure_cryo(1.0 / d)),
                f"protein in vitreous ice at {d:g} Å",
                "300 kV, cryo; resolution-dependent critical exposure",
                "Grant & Grigorieff, eLife 4, e06980 (2015) doi:10.7554/eLife.06980",
                "fitted",
                "1/e",
            )
        if key == "graphene":
            raise InputError(
                "graphene is damaged by knock-on, not radiolysis: use temsim.knock_on('C', energy, 21.14, "
                "temperature=300).critical_dose for a dose scale"
            )
        valid = list(CRITICAL_DOSE_PRESETS) + ["cryo-protein@<resolution Å>"]
        raise InputError(
            f"unknown critical-dose preset {spec!r}; valid presets: {', '.join(valid)}, or a number in e/Å²"
        )
    try:
        return CriticalDose(float(spec))
    except (TypeError, ValueError):
        raise InputError(
            f"critical dose must be a preset name, a number (e/Å²) or a CriticalDose, got {spec!r}"
        ) from None


def critical_exposure_cryo(spatial_frequency):
    """Critical exposure (e/Å²) of protein in ice vs spatial frequency (1/Å), 300 kV.

    ``N_e(k) = 0.245·k^−1.665 + 2.81`` (Grant & Grigorieff 2015, doi:10.7554/eLife.06980).
    """
    k = np.asarray(spatial_frequency, dtype=float)
    if np.any(~np.isfinite(k)) or np.any(k <= 0):
        raise InputError(f"spatial frequency must be > 0 1/Å, got {spatial_frequency!r}")
    return 0.245 * k ** (-1.665) + 2.81


def _dc(value) -> float:
    return critical_dose(value).value


def fading(dose, critical):
    """``I/I0 = exp(−D/Dc)``; ``dose`` may be any array-API array (returned in its namespace)."""
    dc = _dc(critical)
    if isinstance(dose, (int, float)):
        _nonneg_dose(dose)
        return math.exp(-dose / dc)
    xp = array_namespace(dose)
    _nonneg_dose(dose)
    return xp.exp(-dose / dc)


def mean_fading(dose, critical):
    """Mean intact fraction during an acquisition of total dose ``D``: ``Dc/D·(1 − e^{−D/Dc})``.

    Equal to 1 at ``D = 0``; evaluated with ``expm1`` so small ``D/Dc`` keeps full precision.
    """
    dc = _dc(critical)
    if isinstance(dose, (int, float)):
        _nonneg_dose(dose)
        x = dose / dc
        return 1.0 if x == 0 else -math.expm1(-x) / x
    xp = array_namespace(dose)
    _nonneg_dose(dose)
    x = dose / dc
    safe = xp.where(x > 0, x, xp.ones_like(x))
    return xp.where(x > 0, -xp.expm1(-safe) / safe, xp.ones_like(x))


def _nonneg_dose(dose) -> None:
    d = to_numpy(dose) if not isinstance(dose, (int, float)) else np.asarray(dose)
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        raise InputError(f"doses must be finite and ≥ 0 e/Å², got {np.asarray(d).ravel()[:5].tolist()}")


def signal_to_noise_with_damage(dose, critical):
    """Relative SNR of a damage-limited measurement: ``Dc(1 − e^{−D/Dc})/√D`` (√(e/Å²) units).

    Signal comes only from intact structure (∝ integral of ``e^{−D/Dc}``), noise ∝ √D; the
    maximum is at ``D ≈ 1.2564·Dc`` (:func:`optimal_dose`).
    """
    dc = _dc(critical)
    d = np.asarray(to_numpy(dose) if not isinstance(dose, (int, float)) else dose, dtype=float)
    _nonneg_dose(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(d > 0, -dc * np.expm1(-d / dc) / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    return float(out) if out.ndim == 0 else out


def optimal_dose(critical) -> float:
    """Dose (e/Å²) that maximizes :func:`signal_to_noise_with_damage`: ``≈ 1.2564·Dc``."""
    return _SNR_OPTIMUM * _dc(critical)


# ============================================================================ scan-order fading
def _kernel_1d(fwhm: float, step: float) -> np.ndarray:
    """Normalized Gaussian probe profile sampled at scan steps, offsets −m..m."""
    if fwhm <= 0:
        return np.array([1.0])
    sigma = fwhm / FWHM_PER_SIGMA / step
    m = max(int(math.ceil(5 * sigma)), 1)
    g = np.exp(-0.5 * (np.arange(-m, m + 1) / sigma) ** 2)
    return g / g.sum()


def _cover_before(n: int, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per position: dose share from all n positions, from earlier ones (forward and reverse)."""
    m = (g.size - 1) // 2
    cover = np.convolve(np.ones(n), g, mode="full")[m : m + n]
    cum = np.concatenate([[0.0], np.cumsum(g[m + 1 :])])  # cum[k] = Σ_{d=1..k} g(d)
    idx = np.arange(n)
    before = cum[np.minimum(idx, m)]
    before_rev = cum[np.minimum(n - 1 - idx, m)]
    return cover, before, before_rev


def fading_weights(
    dose,
    critical,
    shape,
    *,
    order: str = "parallel",
    n_frames: int = 1,
    step=(1.0, 1.0),
    probe_fwhm: float = 0.0,
    fast_axis: int = 0,
) -> np.ndarray:
    """Mean intact fraction recorded at each pixel in each frame.

    Parameters
    ----------
    dose : float or 1-D array
        Total dose(s) in e/Å² over all frames.
    critical : float, str or CriticalDose
        Critical dose.
    shape : (nx, ny)
        Pixel / scan grid.
    order : {"parallel", "raster", "serpentine"}
        ``"parallel"``: every pixel is exposed at once (HRTEM, diffraction). ``"raster"``:
        a probe scans the fast axis line by line, always in the same direction;
        ``"serpentine"``: alternate lines reversed.
    n_frames : int
        Equal frames (movie frames or repeated scans) the dose is split over.
    step : (float, float)
        Scan step (Å) along x and y (only used with ``probe_fwhm``).
    probe_fwhm : float
        FWHM (Å) of a Gaussian dose footprint of one probe position; 0 means each position
        doses only its own pixel.
    fast_axis : {0, 1}
        Grid axis scanned fastest.

    Returns
    -------
    ndarray, shape (n_dose, n_frames, nx, ny)
        ``F[d, k, i, j]``: mean of ``exp(−D(t)/Dc)`` over the dwell of pixel (i, j) in frame k.

    Notes
    -----
    With probe overlap, the specimen under pixel p has, when p's dwell in frame k starts,
    received ``D_f·(k·C(p) + P(p))`` (``D_f`` dose per frame, ``C`` the footprint sum over
    the whole scan, ``P`` over positions scanned before p in the frame); its own dwell adds
    ``D_f·w(0)``. With no overlap (``C = w(0) = 1``, ``P = 0``) the mean over frames is
    exactly ``Dc/D·(1 − e^{−D/Dc})``.
    """
    dc = _dc(critical)
    doses = np.atleast_1d(np.asarray(dose, dtype=float))
    _nonneg_dose(doses)
    if order not in ("parallel", "raster", "serpentine"):
        raise InputError(f"order must be 'parallel', 'raster' or 'serpentine', got {order!r}")
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise InputError(f"n_frames must be an integer ≥ 1, got {n_frames!r}")
    if probe_fwhm < 0:
        raise InputError(f"probe_fwhm must be ≥ 0 Å, got {probe_fwhm!r}")
    nx, ny = int(shape[0]), int(shape[1])
    if order == "parallel" or probe_fwhm == 0:
        cover = np.ones((nx, ny))
        prior = np.zeros((nx, ny))
        own = np.ones((nx, ny))
    else:
        if fast_axis not in (0, 1):
            raise InputError(f"fast_axis must be 0 or 1, got {fast_axis!r}")
        sx, sy = (float(step[0]), float(step[1])) if np.ndim(step) else (float(step), float(step))
        gx, gy = _kernel_1d(probe_fwhm, sx), _kernel_1d(probe_fwhm, sy)
        cx, bx, bx_rev = _cover_before(nx, gx)
        cy, by, by_rev = _cover_before(ny, gy)
        g0x, g0y = gx[(gx.size - 1) // 2], gy[(gy.size - 1) // 2]
        cover = cx[:, None] * cy[None, :]
        own = np.full((nx, ny), g0x * g0y)
        if fast_axis == 0:  # lines along x, stepping in y
            fast_before = np.broadcast_to(bx[:, None], (nx, ny)).copy()
            if order == "serpentine":
                fast_before[:, 1::2] = bx_rev[:, None]
            prior = cx[:, None] * by[None, :] + g0y * fast_before
        else:
            fast_before = np.broadcast_to(by[None, :], (nx, ny)).copy()
            if order == "serpentine":
                fast_before[1::2, :] = by_rev[None, :]
            prior = cy[None, :] * bx[:, None] + g0x * fast_before
    d_frame = doses[:, None, None, None] / n_frames
    k = np.arange(n_frames)[None, :, None, None]
    start = d_frame * (k * cover + prior) / dc
    delta = d_frame * own / dc
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(delta > 0, -np.expm1(-delta) / np.where(delta > 0, delta, 1.0), 1.0)
    return np.exp(-start) * within


def damage(
    signal,
    dose,
    critical,
    *,
    order: str | None = None,
    n_frames: int = 1,
    frames: bool = False,
    probe_fwhm: float = 0.0,
    damaged="mean",
    fast_axis: str = "scan_x",
):
    """Apply first-order fading, accumulated during the acquisition, to a simulated signal.

    Parameters
    ----------
    signal : DataArray
        Noise-free signal with ``attrs["signal"]`` in ``image``, ``diffraction``, ``stem``,
        ``4dstem`` (dims as in :func:`temsim.apply_noise`).
    dose : float or 1-D sequence
        Total dose(s) (e/Å²) of the acquisition; several doses add a ``dose`` dimension, which
        :func:`temsim.apply_noise` then uses (``dose=None``).
    critical : float, str or CriticalDose
        Critical dose (e/Å²), a preset name (``"zif-8"``, ``"uio-66"``, …) or a CriticalDose.
    order : {"parallel", "raster", "serpentine"}, optional
        Default ``"parallel"`` for image/diffraction and ``"raster"`` for stem/4dstem.
    n_frames : int
        Frames the dose is split over (movie frames or repeated scans).
    frames : bool
        If True keep a ``frame`` dimension (each frame's signal; noise each at ``dose/n_frames``);
        otherwise return the frame average (the signal of the summed acquisition at ``dose``).
    probe_fwhm : float
        Gaussian dose footprint (Å) of one probe position for scanned signals (overlap makes
        scan order matter); 0 = each position doses only itself.
    damaged : "mean", "zero", float or array
        What the signal fades to: ``"mean"`` (default: contrast fades to the mean over the
        image/scan, conserving the total signal), ``"zero"`` (the whole signal fades, e.g.
        Bragg-spot intensities), or an explicit damaged signal broadcastable to the input.
    fast_axis : {"scan_x", "scan_y"}
        Fast scan dimension for raster orders.

    Returns
    -------
    DataArray
        ``damaged + (signal − damaged)·F`` with ``F`` from :func:`fading_weights`.
    """
    kind, dims = _damage_axes(signal)
    dc = critical_dose(critical)
    if order is None:
        order = "parallel" if kind in ("image", "diffraction") else "raster"
    as_choice("fast_axis", fast_axis, ("scan_x", "scan_y"))
    doses = np.asarray(dose, dtype=float)
    if doses.ndim > 1:
        raise InputError("dose must be a number or a 1-D sequence (e/Å²)")
    step = _scan_step(signal, kind, dims, probe_fwhm)
    shape = (signal.sizes[dims[0]], signal.sizes[dims[1]])
    weights = fading_weights(
        doses,
        dc,
        shape,
        order=order,
        n_frames=n_frames,
        step=step,
        probe_fwhm=probe_fwhm,
        fast_axis=0 if fast_axis == "scan_x" else 1,
    )
    f = _fading_dataarray(weights, doses, dims, n_frames, frames)
    ref = _damaged_reference(signal, damaged, dims)
    out = ref + (signal - ref) * f.astype(signal.dtype)
    out = out.transpose(*[d for d in ("dose", "frame") if d in out.dims], *signal.dims)
    out.attrs = dict(signal.attrs)
    out.attrs.update(
        critical_dose=dc.value,
        critical_dose_source=dc.source,
        damage_order=order,
        n_frames=int(n_frames),
        probe_fwhm=float(probe_fwhm),
    )
    if doses.ndim == 0:
        out.attrs["dose"] = float(doses)
    out.name = signal.name
    return out


#: Pixel (or scan) dims of each signal kind that damage() accepts.
_DAMAGE_AXES = {
    "image": ("x", "y"),
    "diffraction": ("kx", "ky"),
    "stem": ("scan_x", "scan_y"),
    "4dstem": ("scan_x", "scan_y"),
}


def _damage_axes(signal) -> tuple[str, tuple[str, str]]:
    """Signal kind and its two pixel/scan dims, after checking that damage() applies."""
    if not isinstance(signal, xr.DataArray):
        raise InputError("damage() takes a DataArray with attrs['signal']; for plain arrays use fading_weights()")
    kind = str(signal.attrs.get("signal", "")).lower()
    if kind not in _DAMAGE_AXES:
        raise InputError(
            f"damage() needs attrs['signal'] in {tuple(_DAMAGE_AXES)}, got {kind!r} "
            "(derived signals such as CoM/iDPC: damage the 4D-STEM data or segments instead)"
        )
    if "dose" in signal.dims:
        raise InputError("the signal already has a 'dose' dimension; apply damage to the dose-free signal")
    dims = _DAMAGE_AXES[kind]
    missing = [d for d in dims if d not in signal.dims]
    if missing:
        raise InputError(f"a {kind!r} signal needs dims {dims}; missing {missing}")
    return kind, dims


def _scan_step(signal, kind: str, dims, probe_fwhm: float) -> tuple[float, float]:
    """Scan step (Å) along the two dims, needed only for a probe footprint (``probe_fwhm > 0``)."""
    if not probe_fwhm > 0:
        return (1.0, 1.0)
    if kind not in ("stem", "4dstem"):
        raise InputError("probe_fwhm applies to scanned signals (stem, 4dstem) only")
    return tuple(float(abs(signal.coords[d].values[1] - signal.coords[d].values[0])) for d in dims)


def _fading_dataarray(weights: np.ndarray, doses: np.ndarray, dims, n_frames: int, frames: bool) -> xr.DataArray:
    """The fading weights as a DataArray: frame-averaged unless ``frames``, no dose dim for one dose."""
    f = xr.DataArray(
        weights,
        dims=("dose", "frame") + tuple(dims),
        coords={"dose": ("dose", np.atleast_1d(doses), {"units": "e/Å²"}), "frame": np.arange(n_frames)},
    )
    if not frames:
        f = f.mean("frame")
    if doses.ndim == 0:
        f = f.isel(dose=0, drop=True)
    return f


def _damaged_reference(signal, damaged, dims):
    """What the signal fades to: its mean over ``dims``, zero, or the given value/array."""
    if not isinstance(damaged, str):
        return damaged
    if damaged == "mean":
        return signal.mean(dims)
    if damaged == "zero":
        return 0.0
    raise InputError(f"damaged must be 'mean', 'zero', a number or an array, got {damaged!r}")


# ============================================================================ knock-on
def _mass_and_z(element, mass):
    from ase.data import atomic_masses, atomic_numbers, chemical_symbols

    if isinstance(element, (int, np.integer)) and not isinstance(element, bool):
        z = int(element)
        if not 1 <= z < len(chemical_symbols):
            raise InputError(f"atomic number must be 1..{len(chemical_symbols) - 1}, got {element}")
        symbol = chemical_symbols[z]
    else:
        symbol = str(element)
        if symbol not in atomic_numbers:
            raise InputError(f"unknown element {element!r}; use a symbol such as 'C' or an atomic number")
        z = atomic_numbers[symbol]
    m = float(atomic_masses[z]) if mass is None else as_number("mass", mass, "u", minimum=0, exclusive_minimum=True)
    return symbol, z, m


def max_transferred_energy(energy, mass_u):
    """Maximum energy (eV) a beam electron of ``energy`` eV gives a nucleus of ``mass_u`` u.

    ``E_max = 2E(E + 2m0c²)/(Mc²)`` (head-on, relativistic electron, nucleus at rest).
    """
    e = np.asarray(energy, dtype=float)
    return 2 * e * (e + 2 * ELECTRON_REST_ENERGY) / (float(mass_u) * _AMU_EV)


def threshold_energy(displacement_energy, mass_u):
    """Beam energy (eV) at which ``E_max`` equals ``displacement_energy`` (eV): the static threshold.

    ``E_th = −m0c² + √((m0c²)² + E_d·Mc²/2)``.
    """
    ed = as_number("displacement energy", displacement_energy, "eV", minimum=0, exclusive_minimum=True)
    mc2 = float(mass_u) * _AMU_EV
    return -ELECTRON_REST_ENERGY + math.sqrt(ELECTRON_REST_ENERGY**2 + ed * mc2 / 2)


def displacement_cross_section(z, energy, e_max, displacement_energy, model: str = "mckinley-feshbach"):
    """Displacement cross-section (barn) for ``E_max`` (eV, scalar or array) and ``E_d`` (eV).

    McKinley–Feshbach (as used by Egerton; Banhart 1999 Eq. 5), with ``x = E_max/E_d``::

        σ = π r_e² Z² (1 − β²)/β⁴ · [x − 1 − β² ln x + π α Z β (2√x − ln x − 2)]

    (``α`` the fine-structure constant); ``model="rutherford"`` keeps ``(x − 1)`` only.
    Zero for ``x ≤ 1``. Valid for light elements (Z ≲ 28).
    """
    gamma = 1 + float(energy) / ELECTRON_REST_ENERGY
    beta2 = 1 - 1 / gamma**2
    beta = math.sqrt(beta2)
    x = np.asarray(e_max, dtype=float) / float(displacement_energy)
    pref = math.pi * _R_E**2 * z**2 * (1 - beta2) / beta2**2 / BARN_TO_A2  # barn
    xs = np.where(x > 1, x, 1.0)
    ln = np.log(xs)
    if model == "mckinley-feshbach":
        bracket = xs - 1 - beta2 * ln + math.pi * _ALPHA * z * beta * (2 * np.sqrt(xs) - ln - 2)
    elif model == "rutherford":
        bracket = xs - 1
    else:
        raise InputError(f"model must be 'mckinley-feshbach' or 'rutherford', got {model!r}")
    out = np.where(x > 1, pref * bracket, 0.0)
    return float(out) if out.ndim == 0 else out


def debye_vibrational_energy(temperature: float, debye_temperature: float) -> float:
    """Mean vibrational energy (eV) per degree of freedom in a Debye model, zero point included.

    ``⟨E⟩ = 3k_BT (T/θ)³ ∫₀^{θ/T} x³ (1/(eˣ − 1) + ½) dx``; the mean-square velocity along that
    direction is ``⟨v²⟩ = ⟨E⟩/M`` (kinetic energy is half of ⟨E⟩).
    """
    from scipy.integrate import quad

    t, th = float(temperature), float(debye_temperature)
    if not (t >= 0 and th > 0):
        raise InputError(
            f"temperature must be ≥ 0 K and Debye temperature > 0 K, got {temperature!r}, {debye_temperature!r}"
        )
    if t == 0:
        return 3 / 8 * BOLTZMANN_EV * th
    xm = th / t
    integral = quad(lambda x: x**3 * (0.5 + (1 / math.expm1(x) if x > 0 else 0.0)), 0, xm)[0]
    return 3 * BOLTZMANN_EV * t * (t / th) ** 3 * integral


def debye_temperature_from_msd(mass_u: float, temperature: float, mean_square_displacement: float) -> float:
    """The Debye temperature (K) whose Debye mean-square displacement equals the given one (Å²).

    Inverts :func:`temsim.phonons.debye_mean_square_displacement` (one direction, zero point
    included).

    Lets a measured or simulated mean-square displacement along the beam set the vibration
    amplitude of :func:`knock_on` for any element.
    """
    from scipy.optimize import brentq

    msd = as_number("mean-square displacement", mean_square_displacement, "Å²", minimum=0, exclusive_minimum=True)

    m = as_number("mass", mass_u, "u", minimum=0, exclusive_minimum=True)
    t = as_number("temperature", temperature, "K", minimum=0)

    def gap(log_theta):
        return math.log(debye_mean_square_displacement(math.exp(log_theta), t, m) / msd)

    lo, hi = math.log(1.0), math.log(1e5)
    if gap(lo) < 0 or gap(hi) > 0:
        raise InputError(
            f"a mean-square displacement of {msd:g} Å² for {mass_u:g} u at {temperature:g} K needs a Debye "
            "temperature outside 1 K–1e5 K; check the value (Å², one direction)"
        )
    return float(math.exp(brentq(gap, lo, hi, xtol=1e-12)))


def thermal_cross_section(z, energy, e_max, displacement_energy, spread, model="mckinley-feshbach") -> float:
    """McKinley–Feshbach σ (barn) averaged over a Gaussian spread (eV, standard deviation) of ``E_max``.

    The integral starts where ``E_max + s·u`` reaches ``E_d`` (``u₀ = (E_d − E_max)/s``), so the
    thermal tail below the static threshold is resolved down to the smallest representable
    weights (≈ 1e-300) instead of being cut at a fixed number of standard deviations.
    """
    if spread <= 0:
        return float(displacement_cross_section(z, energy, e_max, displacement_energy, model))
    u0 = (float(displacement_energy) - float(e_max)) / float(spread)
    lo = max(u0, -10.0)
    hi = max(lo, 0.0) + 12.0
    u = np.linspace(lo, hi, 6001)
    with np.errstate(under="ignore"):
        weight = np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    sigma = displacement_cross_section(z, energy, np.maximum(e_max + spread * u, 0.0), displacement_energy, model)
    return float(np.trapezoid(weight * sigma, u))


@dataclass(frozen=True)
class KnockOn:
    """Knock-on displacement numbers for one element, beam energy and displacement energy.

    Attributes (all energies in eV, cross-sections in barn)
    -------------------------------------------------------
    element, atomic_number, mass (u), energy, displacement_energy, max_transferred_energy,
    threshold_energy (static beam-energy threshold), cross_section (thermal if a temperature
    was given, otherwise static), static_cross_section, temperature (K or None),
    debye_temperature (K or None), transfer_spread (eV: standard deviation of E_max from
    thermal motion along the beam), sources (damage-table entries used, as one-line
    descriptions).
    """

    element: str
    atomic_number: int
    mass: float
    energy: float
    displacement_energy: float
    max_transferred_energy: float
    threshold_energy: float
    cross_section: float
    static_cross_section: float
    temperature: float | None = None
    debye_temperature: float | None = None
    transfer_spread: float = 0.0
    model: str = "mckinley-feshbach"
    sources: tuple[str, ...] = ()

    @property
    def threshold_voltage(self) -> float:
        """Static threshold accelerating voltage (V) — numerically equal to threshold_energy (eV)."""
        return self.threshold_energy

    @property
    def below_threshold(self) -> bool:
        """True when the static ``E_max`` is below ``E_d`` (only thermal motion can displace)."""
        return self.max_transferred_energy < self.displacement_energy

    @property
    def critical_dose(self) -> CriticalDose:
        """Dose (e/Å²) for one expected displacement per atom, ``1/σ`` (infinite σ=0 → error)."""
        if self.cross_section <= 0:
            raise InputError(f"no knock-on displacements at {self.energy / 1e3:g} keV (σ = 0): no finite dose scale")
        return CriticalDose(
            1 / (self.cross_section * BARN_TO_A2),
            f"{self.element} knock-on",
            f"{self.energy / 1e3:g} keV, E_d = {self.displacement_energy:g} eV",
            "McKinley–Feshbach cross-section (temsim.knock_on)",
            "calculated",
            "1/e",
        )

    def expected_displacements(self, dose):
        """Expected displacements per atom, ``σ·D`` (D in e/Å²)."""
        d = np.asarray(dose, dtype=float)
        _nonneg_dose(d)
        return self.cross_section * BARN_TO_A2 * d

    def displacement_probability(self, dose):
        """Probability that a given atom is displaced after dose ``D`` (e/Å²): ``1 − exp(−σD)``."""
        out = -np.expm1(-self.expected_displacements(dose))
        return float(out) if np.ndim(out) == 0 else out

    def dose_for_probability(self, probability: float) -> float:
        """Dose (e/Å²) at which an atom is displaced with ``probability``."""
        p = float(probability)
        if not 0 <= p < 1:
            raise InputError(f"probability must be in [0, 1), got {probability!r}")
        if self.cross_section <= 0:
            return math.inf
        return -math.log1p(-p) / (self.cross_section * BARN_TO_A2)


def _table_energy(material, symbol, displacement_energy) -> tuple[float, tuple[str, ...]]:
    """E_d (eV) given, or the material's displacement (else sputtering) energy from the damage table."""
    if displacement_energy is not None:
        return as_number("displacement energy", displacement_energy, "eV", minimum=0, exclusive_minimum=True), ()
    if material is None:
        raise InputError(
            f"knock_on needs displacement_energy= (eV) or material= (one of {', '.join(damage_data.materials())}) "
            f"to read E_d of {symbol} from the damage table"
        )
    entry = damage_data.displacement_energy(material, symbol)
    return entry.value, (entry.describe(),)


def _table_debye(material, symbol, z, mass, temperature, debye_temperature, msd) -> tuple[float, tuple[str, ...]]:
    """Debye temperature (K): given, from a mean-square displacement, or from the damage table."""
    if debye_temperature is not None and msd is not None:
        raise InputError("give debye_temperature= or mean_square_displacement=, not both")
    if debye_temperature is not None:
        return as_number("Debye temperature", debye_temperature, "K", minimum=0, exclusive_minimum=True), ()
    if msd is not None:
        return debye_temperature_from_msd(mass, temperature, msd), ()
    if material is None and z == 6:
        material = "graphene"  # documented default for carbon: graphene's out-of-plane value
    if material is None:
        raise InputError(
            f"thermal knock-on of {symbol} needs debye_temperature= (K), mean_square_displacement= (Å², along "
            "the beam) or material= with a Debye temperature in the damage table"
        )
    entry = damage_data.lookup(material, symbol, "debye_temperature")
    return entry.value, (entry.describe(),)


def knock_on(
    element,
    energy: float,
    displacement_energy: float | None = None,
    *,
    material: str | None = None,
    mass: float | None = None,
    temperature: float | None = None,
    debye_temperature: float | None = None,
    mean_square_displacement: float | None = None,
    model: str = "mckinley-feshbach",
) -> KnockOn:
    """Knock-on displacement: maximum transfer, threshold voltage, cross-section.

    Parameters
    ----------
    element : str or int
        Element symbol or atomic number.
    energy : float
        Beam energy (eV).
    displacement_energy : float, optional
        Displacement (or sputtering) threshold energy E_d (eV), e.g. 21.14 eV for a carbon
        atom in graphene (Meyer et al. 2012). Default: the ``material``'s value from the
        damage table (displacement energy, else sputtering energy).
    material : str, optional
        Damage-table material (``"graphene"``, ``"mos2"``, ``"srtio3"``, …) supplying E_d
        and the Debye temperature when they are not given.
    mass : float, optional
        Nuclear mass in u (isotope, e.g. 12.0 for ¹²C); default the natural-abundance mass.
    temperature : float, optional
        Specimen temperature (K). When given, the atom's velocity along the beam is Gaussian
        with ``⟨v²⟩`` from a Debye model (zero point included), which spreads ``E_max`` by
        ``s = √(2·E_max·⟨E⟩)`` and lowers the onset (Meyer et al. 2012).
    debye_temperature : float, optional
        Debye temperature (K) of the vibration along the beam. Default: the damage table's
        value for ``material`` (for carbon without a material: graphene's out-of-plane 1287 K,
        Tewary & Yang 2009).
    mean_square_displacement : float, optional
        Instead of a Debye temperature: the atom's mean-square displacement along the beam
        (Å²) at ``temperature``; converted with :func:`debye_temperature_from_msd`.
    model : {"mckinley-feshbach", "rutherford"}
        Cross-section formula.

    Examples
    --------
    >>> r = knock_on("C", 200e3, 21.5)
    >>> round(r.max_transferred_energy, 1)
    43.7
    >>> knock_on("S", 80e3, material="mos2", temperature=300).cross_section > 0
    True
    """
    symbol, z, m = _mass_and_z(element, mass)
    e = check_energy(energy)
    ed, sources = _table_energy(material, symbol, displacement_energy)
    e_max = float(max_transferred_energy(e, m))
    e_th = threshold_energy(ed, m)
    static = displacement_cross_section(z, e, e_max, ed, model)
    sigma, spread, theta = static, 0.0, None
    if temperature is not None:
        t = as_number("temperature", temperature, "K", minimum=0)
        theta, more = _table_debye(material, symbol, z, m, t, debye_temperature, mean_square_displacement)
        sources += more
        spread = math.sqrt(2 * e_max * debye_vibrational_energy(t, theta))
        sigma = thermal_cross_section(z, e, e_max, ed, spread, model)
    return KnockOn(
        symbol,
        z,
        m,
        e,
        ed,
        e_max,
        e_th,
        sigma,
        static,
        None if temperature is None else float(temperature),
        None if theta is None else float(theta),
        spread,
        model,
        sources,
    )
