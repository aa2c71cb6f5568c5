"""STEM detectors: every signal is computed from the same diffraction intensities.

A detector is a small frozen description. :meth:`compile` turns it, for one grid and
energy, into a :class:`CompiledDetector` whose ``measure`` maps a batch of diffraction
intensities ``(batch, nx, ny)`` (FFT order, each summing to the transmitted fraction of the
beam, i.e. 1 without absorption) to per-probe values, and whose ``finalize`` wraps the
values of all probe positions as an ``xarray.DataArray``. One pass over the probe positions
feeds every detector; none forces a second simulation.

Angles are in mrad (α = λ|k|, small-angle); intensities are fractions of the incident beam.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from temsim.backend import array_namespace, fft2, ifft2, to_numpy
from temsim.checks import as_number
from temsim.constants import wavelength
from temsim.errors import GridMismatchError, InputError, SamplingError
from temsim.grid import Grid

__all__ = [
    "AnnularDetector",
    "FlexibleAnnularDetector",
    "SegmentedDetector",
    "IntegratedDPC",
    "CenterOfMass",
    "IntegratedCenterOfMass",
    "PixelatedDetector",
    "annular_preset",
    "dpc_signal",
    "integrate_gradient",
    "integrate_annular",
    "CompiledDetector",
    "CompiledMask",
    "CompiledIntegratedDPC",
    "CompiledIntegratedCenterOfMass",
    "CompiledPixelated",
]

PRESETS = ("BF", "ABF", "ADF", "HAADF")


def _angles(grid: Grid, energy: float):
    """Scattering angle α (mrad) and azimuth φ (rad) of every FFT-grid frequency."""
    lam = wavelength(energy)
    kx = grid.kx()[:, None]
    ky = grid.ky()[None, :]
    alpha = np.sqrt(kx**2 + ky**2) * lam * 1e3
    phi = np.arctan2(np.broadcast_to(ky, alpha.shape), np.broadcast_to(kx, alpha.shape))
    return alpha, phi


def _check_range(inner: float, outer: float, name: str) -> tuple[float, float]:
    inner = as_number(f"{name} inner angle", inner, "mrad", minimum=0)
    outer = as_number(f"{name} outer angle", outer, "mrad")
    if outer <= inner:
        raise InputError(f"{name} inner angle ({inner} mrad) must be smaller than its outer angle ({outer} mrad)")
    return inner, outer


def _check_reach(outer: float, grid: Grid, energy: float, name: str) -> None:
    grid.check_angle(outer, energy, f"the {name} outer angle")


class CompiledDetector:
    """A detector resolved on a grid, beam energy and array namespace (built by ``Detector.compile``).

    The contract every scan driver relies on:

    * :meth:`measure` takes diffraction intensities ``(n, *gpts)`` (FFT order, fractions of
      the incident beam) and returns ``(n, *value_shape)`` values in the same array namespace.
      It checks the shape (:class:`~temsim.errors.GridMismatchError` naming both shapes) and
      calls the :meth:`_measure` hook, which subclasses implement.
    * :meth:`finalize` wraps the values of all probe positions, a numpy array
      ``(*scan.shape, *value_shape)``, as an ``xarray.DataArray`` with dims
      ``scan.dims + dims``, the coordinates of :meth:`extra_coords` and ``attrs``.
    * ``derived`` detectors (iDPC, iCoM) measure a raw vector per probe position
      (``value_shape``) that only the whole scan turns into the signal: their ``finalize``
      integrates it, and their ``dims`` are those of the finished signal (none).

    Subclasses: :class:`CompiledMask` (annular, flexible annular, segmented, centre of mass),
    :class:`CompiledIntegratedDPC`, :class:`CompiledIntegratedCenterOfMass`,
    :class:`CompiledPixelated`.

    Attributes
    ----------
    derived : bool
        True when the values are raw vectors that need the whole scan to finalize.
    dims : tuple of str
        The detector's own output dims, after the scan dims (``("kx", "ky")``,
        ``("ring", "segment")``, ``("radial_bin",)``, ``("component",)`` or none).
    attrs : dict
        Provenance attrs put on the output DataArray.
    gpts : (int, int)
        Grid points of the diffraction intensities it accepts.
    """

    derived: bool = False
    dims: tuple[str, ...] = ()
    attrs: dict
    gpts: tuple[int, int]

    def __init__(self, gpts, attrs: dict):
        self.gpts = (int(gpts[0]), int(gpts[1]))
        self.attrs = dict(attrs)

    @property
    def value_shape(self) -> tuple[int, ...]:
        """Shape of :meth:`measure`'s output per probe position (the raw vector for derived detectors)."""
        raise NotImplementedError  # pragma: no cover - interface

    def measure(self, intensity):
        """Values ``(n, *value_shape)`` for diffraction intensities ``(n, *gpts)``."""
        shape = tuple(intensity.shape)
        if len(shape) != 3 or shape[1:] != self.gpts:
            raise GridMismatchError(
                f"{type(self).__name__} was compiled for diffraction intensities of shape (n, {self.gpts[0]}, "
                f"{self.gpts[1]}), got shape {shape}; compile the detector on the grid the intensities come from"
            )
        return self._measure(intensity)

    def _measure(self, intensity):
        """Hook: the values for intensities whose shape :meth:`measure` has checked."""
        raise NotImplementedError  # pragma: no cover - interface

    def extra_coords(self) -> dict:
        """Coordinates of the own dims, ``{name: (dim, values[, attrs])}``."""
        return {}

    def finalize(self, values: np.ndarray, scan, attrs: dict) -> xr.DataArray:
        """The values of all probe positions, ``(*scan.shape, *value_shape)``, as a DataArray.

        ``scan`` is a :class:`temsim.positions.ResolvedScan`; ``attrs`` (the simulation's
        provenance) are updated with the detector's own :attr:`attrs`.
        """
        coords = scan.coords()
        coords.update(self.extra_coords())
        attrs = dict(attrs)
        attrs.update(self.attrs)
        return xr.DataArray(values, dims=tuple(scan.dims) + tuple(self.dims), coords=coords, attrs=attrs)


class CompiledMask(CompiledDetector):
    """Weighted sums of the intensity, ``values[n, j] = Σ_k I_n(k) W_j(k)`` (one matrix product).

    Compiled form of :class:`AnnularDetector` (``squeeze``: one value per probe position),
    :class:`FlexibleAnnularDetector`, :class:`SegmentedDetector` and :class:`CenterOfMass`.

    Parameters
    ----------
    weights : ndarray, shape ``(nx, ny, *value_shape)``
        Weights ``W`` on the FFT grid.
    xp : array namespace
        Namespace of the intensities (the weights are moved there as float32).
    dims, coords, attrs
        Own output dims, their coordinates and the provenance attrs.
    squeeze : bool
        Drop the single trailing weight axis (scalar output per probe position).
    """

    def __init__(self, weights: np.ndarray, xp, dims, coords, attrs, squeeze: bool = False):
        super().__init__(weights.shape[:2], attrs)
        n = weights.shape[0] * weights.shape[1]
        self._weights = xp.asarray(weights.reshape(n, -1).astype(np.float32))
        self._xp = xp
        self.dims = tuple(dims)
        self._coords = coords
        self._squeeze = squeeze
        self._trailing = tuple(int(s) for s in weights.shape[2:])

    @property
    def value_shape(self) -> tuple[int, ...]:
        return () if self._squeeze else self._trailing

    def _measure(self, intensity):
        xp = self._xp
        b = intensity.shape[0]
        flat = xp.reshape(intensity, (b, -1))
        values = flat @ self._weights
        if self._squeeze:
            return values[:, 0]
        return xp.reshape(values, (b,) + self._trailing)

    def extra_coords(self) -> dict:
        return dict(self._coords)


@dataclass(frozen=True)
class AnnularDetector:
    """Annular detector collecting angles ``inner ≤ α < outer`` (mrad).

    Examples
    --------
    >>> AnnularDetector(70, 200)
    AnnularDetector(inner=70.0, outer=200.0)
    """

    inner: float
    outer: float

    def __post_init__(self):
        inner, outer = _check_range(self.inner, self.outer, "annular detector")
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "outer", outer)

    def compile(self, grid: Grid, energy: float, xp) -> CompiledDetector:
        _check_reach(self.outer, grid, energy, "annular detector")
        alpha, _ = _angles(grid, energy)
        mask = ((alpha >= self.inner) & (alpha < self.outer)).astype(np.float32)[..., None]
        attrs = {
            "signal": "stem",
            "detector": "annular",
            "inner": self.inner,
            "outer": self.outer,
            "angle_units": "mrad",
            "units": "fraction of incident beam",
        }
        return CompiledMask(mask, xp, (), {}, attrs, squeeze=True)


def annular_preset(
    name: Literal["BF", "ABF", "ADF", "HAADF"], semiangle_cutoff: float, max_angle: float = 200.0
) -> AnnularDetector:
    """Conventional annular detector for a probe of ``semiangle_cutoff`` mrad.

    ======  ==============================  ============================================
    name    range (mrad)                    note
    ======  ==============================  ============================================
    BF      0 – α                           covers the bright-field disc
    ABF     α/2 – α                         annular bright field (Findlay et al. 2010)
    ADF     α – 3α                          low-angle annular dark field
    HAADF   max(3α, 50) – ``max_angle``     incoherent Z-contrast (default outer 200)
    ======  ==============================  ============================================
    """
    if name not in PRESETS:
        raise InputError(f"unknown detector preset {name!r}; valid presets are {', '.join(PRESETS)}")
    a = float(semiangle_cutoff)
    if a <= 0:
        raise InputError(f"semiangle_cutoff must be positive (mrad), got {semiangle_cutoff!r}")
    ranges = {"BF": (0.0, a), "ABF": (a / 2, a), "ADF": (a, 3 * a), "HAADF": (max(3 * a, 50.0), max_angle)}
    return AnnularDetector(*ranges[name])


@dataclass(frozen=True)
class FlexibleAnnularDetector:
    """Radial bins of width ``step`` mrad from 0 to ``max_angle`` (default: the grid's band limit).

    Any annulus can be formed after the run with :func:`integrate_annular`.
    """

    step: float = 1.0
    max_angle: float | None = None

    def __post_init__(self):
        if not self.step > 0:
            raise InputError(f"radial bin step must be positive (mrad), got {self.step!r}")

    def compile(self, grid: Grid, energy: float, xp) -> CompiledDetector:
        limit = grid.max_angle(energy) if self.max_angle is None else float(self.max_angle)
        if self.max_angle is not None:
            _check_reach(limit, grid, energy, "flexible detector")
        nbins = int(math.floor(limit / self.step + 1e-9))
        if nbins < 1:
            raise InputError(f"step {self.step} mrad is larger than the maximum angle {limit:.1f} mrad")
        alpha, _ = _angles(grid, energy)
        index = np.floor(alpha / self.step).astype(int)
        weights = np.zeros(alpha.shape + (nbins,), dtype=np.float32)
        ii, jj = np.nonzero(index < nbins)
        weights[ii, jj, index[ii, jj]] = 1.0
        edges = np.arange(nbins + 1) * self.step
        coords = {
            "radial_bin": ("radial_bin", 0.5 * (edges[:-1] + edges[1:]), {"units": "mrad"}),
            "bin_inner": ("radial_bin", edges[:-1], {"units": "mrad"}),
            "bin_outer": ("radial_bin", edges[1:], {"units": "mrad"}),
        }
        attrs = {
            "signal": "stem",
            "detector": "flexible_annular",
            "step": float(self.step),
            "angle_units": "mrad",
            "units": "fraction of incident beam",
        }
        return CompiledMask(weights, xp, ("radial_bin",), coords, attrs)


def integrate_annular(radial: xr.DataArray, inner: float, outer: float) -> xr.DataArray:
    """Sum radial bins of a :class:`FlexibleAnnularDetector` output over ``inner ≤ α < outer`` (mrad).

    Only whole bins are summed: ``inner`` and ``outer`` must fall on bin edges.
    """
    inner, outer = _check_range(inner, outer, "annulus")
    edges_in = np.asarray(radial["bin_inner"])
    edges_out = np.asarray(radial["bin_outer"])
    step = edges_out[0] - edges_in[0]
    for value in (inner, outer):
        if abs(value / step - round(value / step)) > 1e-6:
            raise InputError(f"{value} mrad is not on a bin edge (bins are {step} mrad wide)")
    if outer > edges_out[-1] + 1e-9:
        raise SamplingError(f"outer angle {outer} mrad is beyond the recorded bins (≤ {edges_out[-1]} mrad)")
    selected = (edges_in >= inner - 1e-9) & (edges_out <= outer + 1e-9)
    out = radial.isel(radial_bin=np.flatnonzero(selected)).sum("radial_bin")
    out.attrs = dict(radial.attrs, detector="annular", inner=inner, outer=outer)
    return out


@dataclass(frozen=True)
class SegmentedDetector:
    """Segmented annular detector: ``rings`` × ``nsegments`` segments between ``inner`` and ``outer`` (mrad).

    Segment ``j`` of a ring spans azimuths ``rotation + 2πj/n … rotation + 2π(j+1)/n`` (rad,
    counter-clockwise from +kx). The default is the four-quadrant DPC detector.
    Output dims: (``ring``, ``segment``).
    """

    inner: float
    outer: float
    nsegments: int = 4
    rings: int = 1
    rotation: float = 0.0

    def __post_init__(self):
        inner, outer = _check_range(self.inner, self.outer, "segmented detector")
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "outer", outer)
        if int(self.nsegments) < 1 or int(self.rings) < 1:
            raise InputError(f"nsegments and rings must be ≥ 1, got {self.nsegments}, {self.rings}")

    def segment_centres(self) -> np.ndarray:
        """Azimuth of each segment's centre (rad)."""
        n = int(self.nsegments)
        return self.rotation + 2 * np.pi * (np.arange(n) + 0.5) / n

    def compile(self, grid: Grid, energy: float, xp) -> CompiledDetector:
        _check_reach(self.outer, grid, energy, "segmented detector")
        alpha, phi = _angles(grid, energy)
        n, rings = int(self.nsegments), int(self.rings)
        radii = np.linspace(self.inner, self.outer, rings + 1)
        seg = np.floor(np.mod(phi - self.rotation, 2 * np.pi) / (2 * np.pi / n)).astype(int) % n
        weights = np.zeros(alpha.shape + (rings, n), dtype=np.float32)
        for r in range(rings):
            in_ring = (alpha >= radii[r]) & (alpha < radii[r + 1])
            for j in range(n):
                weights[..., r, j] = in_ring & (seg == j)
        coords = {
            "ring": ("ring", np.arange(rings)),
            "ring_inner": ("ring", radii[:-1], {"units": "mrad"}),
            "ring_outer": ("ring", radii[1:], {"units": "mrad"}),
            "segment": ("segment", np.arange(n)),
            "segment_azimuth": ("segment", self.segment_centres(), {"units": "rad"}),
        }
        attrs = {
            "signal": "stem",
            "detector": "segmented",
            "inner": self.inner,
            "outer": self.outer,
            "nsegments": n,
            "rings": rings,
            "rotation": float(self.rotation),
            "angle_units": "mrad",
            "units": "fraction of incident beam",
        }
        return CompiledMask(weights, xp, ("ring", "segment"), coords, attrs)


def dpc_signal(segments: xr.DataArray) -> xr.DataArray:
    """DPC vector from segment signals: ``Σ_j I_j (cos φ_j, sin φ_j)`` summed over rings.

    For four quadrants this is the familiar difference signal (opposite segments subtracted),
    scaled by cos 45°. Dims: scan dims + ``component`` (``"x"``, ``"y"``); fraction of the beam.
    """
    azimuth = segments["segment_azimuth"]
    summed = segments.sum("ring") if "ring" in segments.dims else segments
    dx = (summed * np.cos(azimuth)).sum("segment")
    dy = (summed * np.sin(azimuth)).sum("segment")
    out = xr.concat([dx, dy], dim=xr.DataArray(["x", "y"], dims="component", name="component"))
    out = out.transpose(..., "component").drop_vars(["segment_azimuth"], errors="ignore")
    out.attrs = dict(segments.attrs, signal="derived", detector="dpc")
    return out


def integrate_gradient(gx, gy, sampling, regularization: float = 0.0):
    """Integrate a gradient field on a periodic grid by Fourier division.

    ``φ̂(q) = (q_x ĝ_x + q_y ĝ_y) / (2πi (|q|² + ε))`` with ``φ̂(0) = 0`` (the mean is lost)
    and ε = ``regularization`` (1/Å²) damping the lowest frequencies, where scan noise and
    non-periodic edges are amplified most. ε = 0 is exact for a periodic, noise-free field.

    Parameters
    ----------
    gx, gy : (..., nx, ny) arrays
        Gradient components (per Å) sampled on a regular grid.
    sampling : (float, float)
        Grid spacing (Å).
    """
    xp = array_namespace(gx, gy)
    nx, ny = gx.shape[-2], gy.shape[-1]
    qx = xp.asarray(np.fft.fftfreq(nx, sampling[0]))[:, None]
    qy = xp.asarray(np.fft.fftfreq(ny, sampling[1]))[None, :]
    q2 = qx**2 + qy**2
    denominator = 2j * math.pi * (q2 + regularization)
    denominator = xp.where(q2 == 0, xp.asarray(1.0 + 0j), denominator)
    numerator = qx * fft2(gx) + qy * fft2(gy)
    spectrum = xp.where(q2 == 0, xp.asarray(0j), numerator / denominator)
    return xp.real(ifft2(spectrum))


def _integrated(values: np.ndarray, scan, weights_per_component: np.ndarray | None, regularization: float):
    if scan.kind != "grid":
        raise InputError("integrated signals (iDPC, iCoM) need a GridScan; line and custom scans cannot be integrated")
    if weights_per_component is not None:
        vector = values @ weights_per_component  # (..., 2)
    else:
        vector = values
    step = scan.step
    if any(not math.isfinite(s) for s in step):
        raise InputError("integrated signals need a scan with at least 2 positions along x and y")
    return to_numpy(integrate_gradient(vector[..., 0], vector[..., 1], step, regularization))


@dataclass(frozen=True)
class IntegratedDPC:
    """Integrated differential phase contrast from a segmented detector.

    The DPC vector (:func:`dpc_signal`) is integrated over the scan by Fourier division
    (:func:`integrate_gradient`, regularization ε in 1/Å²). Needs a periodic grid scan for
    the integration to be exact (scan the whole cell with ``endpoint=False``).
    """

    inner: float
    outer: float
    nsegments: int = 4
    rotation: float = 0.0
    regularization: float = 0.0

    def compile(self, grid: Grid, energy: float, xp) -> CompiledDetector:
        segmented = SegmentedDetector(self.inner, self.outer, self.nsegments, 1, self.rotation)
        compiled = segmented.compile(grid, energy, xp)
        centres = segmented.segment_centres()
        directions = np.stack([np.cos(centres), np.sin(centres)], axis=1)  # (n, 2)
        attrs = dict(
            compiled.attrs,
            signal="derived",
            detector="idpc",
            regularization=float(self.regularization),
            units="fraction of incident beam × Å",
        )
        return CompiledIntegratedDPC(compiled, directions, float(self.regularization), attrs)


class CompiledIntegratedDPC(CompiledDetector):
    """Compiled :class:`IntegratedDPC`: measures the segment signals, integrates the DPC vector at the end.

    ``value_shape`` is ``(nsegments,)`` (one ring of a :class:`CompiledMask`); :meth:`finalize`
    forms the DPC vector with the segment directions and integrates it over the grid scan
    (:func:`integrate_gradient`). Output dims: the scan dims only.
    """

    derived = True

    def __init__(self, segments: CompiledMask, directions: np.ndarray, regularization: float, attrs: dict):
        super().__init__(segments.gpts, attrs)
        self._segments = segments
        self._directions = directions  # (nsegments, 2): (cos φ_j, sin φ_j)
        self._regularization = regularization

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (self._directions.shape[0],)

    def _measure(self, intensity):
        return self._segments._measure(intensity)[:, 0, :]

    def finalize(self, values: np.ndarray, scan, attrs: dict) -> xr.DataArray:
        data = _integrated(values, scan, self._directions, self._regularization)
        return super().finalize(data, scan, attrs)


def _com_weights(grid: Grid) -> np.ndarray:
    kx = np.broadcast_to(grid.kx()[:, None], grid.gpts)
    ky = np.broadcast_to(grid.ky()[None, :], grid.gpts)
    return np.stack([kx, ky], axis=-1)


@dataclass(frozen=True)
class CenterOfMass:
    """Centre of mass of the diffraction pattern, ``(⟨k_x⟩, ⟨k_y⟩)`` in 1/Å (dim ``component``).

    For a weak phase object ``⟨k⟩ = (σ/2π) ∇(|ψ_probe|² ⊗ v_z)`` (Lazić et al. 2016).
    """

    def compile(self, grid: Grid, energy: float, xp) -> CompiledDetector:
        attrs = {"signal": "derived", "detector": "center_of_mass", "units": "1/Å"}
        coords = {"component": ("component", ["x", "y"])}
        return CompiledMask(_com_weights(grid), xp, ("component",), coords, attrs)


@dataclass(frozen=True)
class IntegratedCenterOfMass:
    """Integrated centre of mass (iCoM): the CoM field integrated over a periodic grid scan.

    For a weak phase object iCoM = ``(σ/2π) |ψ_probe|² ⊗ v_z`` up to a constant
    (dimensionless: 1/Å × Å).
    """

    regularization: float = 0.0

    def compile(self, grid: Grid, energy: float, xp) -> CompiledDetector:
        com = CenterOfMass().compile(grid, energy, xp)
        regularization = float(self.regularization)
        attrs = {
            "signal": "derived",
            "detector": "icom",
            "units": "dimensionless (1/Å × Å)",
            "regularization": regularization,
        }
        return CompiledIntegratedCenterOfMass(com, regularization, attrs)


class CompiledIntegratedCenterOfMass(CompiledDetector):
    """Compiled :class:`IntegratedCenterOfMass`: measures the CoM vector, integrates it at the end.

    ``value_shape`` is ``(2,)`` (``⟨k_x⟩, ⟨k_y⟩`` in 1/Å); :meth:`finalize` integrates the
    field over the grid scan (:func:`integrate_gradient`). Output dims: the scan dims only.
    """

    derived = True

    def __init__(self, com: CompiledMask, regularization: float, attrs: dict):
        super().__init__(com.gpts, attrs)
        self._com = com
        self._regularization = regularization

    @property
    def value_shape(self) -> tuple[int, ...]:
        return (2,)

    def _measure(self, intensity):
        return self._com._measure(intensity)

    def finalize(self, values: np.ndarray, scan, attrs: dict) -> xr.DataArray:
        data = _integrated(values, scan, None, self._regularization)
        return super().finalize(data, scan, attrs)


@dataclass(frozen=True)
class PixelatedDetector:
    """Full diffraction pattern per probe position (4D-STEM), dims (``kx``, ``ky``), centred.

    Parameters
    ----------
    max_angle : float, optional
        Keep frequencies with |α_x|, |α_y| ≤ ``max_angle`` mrad (default: the band limit).
    binning : int
        Sum ``binning × binning`` blocks of pixels (after cropping).
    """

    max_angle: float | None = None
    binning: int = 1

    def __post_init__(self):
        if int(self.binning) < 1:
            raise InputError(f"binning must be a positive integer, got {self.binning!r}")
        if self.max_angle is not None and not self.max_angle > 0:
            raise InputError(f"max_angle must be positive (mrad), got {self.max_angle!r}")

    def compile(self, grid: Grid, energy: float, xp) -> CompiledDetector:
        lam = wavelength(energy)
        limit = grid.antialias_cutoff if self.max_angle is None else self.max_angle * 1e-3 / lam
        if self.max_angle is not None:
            _check_reach(self.max_angle, grid, energy, "pixelated detector")
        binning = int(self.binning)
        # indices (FFT order) of the kept frequencies, arranged centred (ascending k)
        idx = []
        ks = []
        for freq in (grid.kx(), grid.ky()):
            order = np.argsort(freq, kind="stable")
            keep = order[np.abs(freq[order]) <= limit * (1 + 1e-9)]
            n = (len(keep) // binning) * binning
            offset = (len(keep) - n) // 2
            keep = keep[offset : offset + n]
            idx.append(keep)
            ks.append(freq[keep].reshape(-1, binning).mean(axis=1))
        attrs = {
            "signal": "4dstem",
            "detector": "pixelated",
            "binning": binning,
            "max_angle": float(limit * lam * 1e3),
            "units": "fraction of incident beam",
        }
        return CompiledPixelated(grid.gpts, xp, idx, ks, binning, attrs)


class CompiledPixelated(CompiledDetector):
    """Compiled :class:`PixelatedDetector`: crops (and bins) the diffraction pattern, centred.

    Parameters
    ----------
    gpts : (int, int)
        Grid points of the diffraction intensities.
    xp : array namespace
    indices : (ndarray, ndarray)
        FFT-order indices of the kept frequencies along kx and ky, in ascending frequency.
    frequencies : (ndarray, ndarray)
        The (binned) frequencies, 1/Å, of the output pixels.
    binning : int
        Pixels summed per output pixel along each axis.
    attrs : dict
        Provenance attrs.
    """

    dims = ("kx", "ky")

    def __init__(self, gpts, xp, indices, frequencies, binning: int, attrs: dict):
        super().__init__(gpts, attrs)
        self._xp = xp
        self._ix, self._iy = (xp.asarray(i) for i in indices)
        self._ks = frequencies
        self._binning = binning
        self.shape = (len(indices[0]) // binning, len(indices[1]) // binning)

    @property
    def value_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)

    def _measure(self, intensity):
        xp, binning, shape = self._xp, self._binning, self.shape
        cropped = xp.take(xp.take(intensity, self._ix, axis=1), self._iy, axis=2)
        if binning > 1:
            b = cropped.shape[0]
            cropped = xp.reshape(cropped, (b, shape[0], binning, shape[1], binning))
            cropped = xp.sum(xp.sum(cropped, axis=4), axis=2)
        return cropped

    def extra_coords(self) -> dict:
        return {"kx": ("kx", self._ks[0], {"units": "1/Å"}), "ky": ("ky", self._ks[1], {"units": "1/Å"})}
