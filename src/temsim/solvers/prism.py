"""PRISM: STEM probes assembled from a scattering matrix of plane waves (Ophus 2017 [1]_, [2]_).

A probe is a sum of plane waves inside the condenser aperture, so its exit wave is the
same sum of the plane waves' exit waves (multislice is linear in the incident wave). PRISM
propagates each plane wave once — the *S-matrix* — and assembles every probe position from
it, instead of propagating every probe.

With an interpolation factor ``f`` (separately ``fx``, ``fy``) only every f-th plane wave
of the cell's reciprocal lattice is used: wave vectors ``k = (fx·m/Lx, fy·n/Ly)``. Their sum
is periodic with the *window* ``Lx/fx × Ly/fy``, i.e. an array of probe replicas. Each probe
is cut out of that array in a window of this size centred on its position, and its
diffraction pattern is the FFT of the window — sampled at ``fx/Lx × fy/Ly``, coarser than the
cell's. The approximation is that a replica's tails spill into the window; it vanishes as
the window grows (``f = 1`` is exact: PRISM then *is* multislice). Work falls about as f⁴:
f² fewer plane waves, and f² smaller windows to sum.

Implementation notes
--------------------
* Every plane wave is propagated by the multislice kernel of
  :mod:`temsim.solvers.multislice` (same transmission functions, propagator, band limit and
  FFT plans), in batches sized to a memory budget.
* The exit waves are band-limited to the 2/3-Nyquist anti-aliasing cutoff, so they are stored
  Fourier-cropped to the smallest grid that holds that band (about 2/3 of the points per
  axis, 0.44 of the memory and of the summing work), exactly (no information is lost).
* Probes are summed as matrix products: probes whose windows lie close together share a
  *slab* of the S-matrix covering all their windows, ``coefficients (probes × beams) @ slab
  (beams × pixels)``, then each window is cut from the result. This runs at BLAS speed.
* The windows' diffraction patterns are placed, zero-padded, on the window's grid at the
  cell's *full* sampling (:attr:`PrismEngine.detector_grid`), so detectors see the same
  angular range as with multislice and every detector works unchanged.
* Frozen phonons: one S-matrix per configuration, built when first needed; the mean of the
  configurations' S-matrices (kept on request) gives the elastic wave ``⟨ψ⟩`` directly,
  because a probe is linear in the S-matrix.
* Thickness series: the S-matrix is saved after chosen slices (``save_slices``), so one
  propagation gives every thickness.

References
----------
.. [1] C. Ophus, "A fast image simulation algorithm for scanning transmission electron
   microscopy", Adv. Struct. Chem. Imaging 3, 13 (2017), doi:10.1186/s40679-017-0046-1.
.. [2] A. Pryor, C. Ophus and J. Miao, "A streaming multi-GPU implementation of image
   simulation algorithms for scanning transmission electron microscopy", Adv. Struct. Chem.
   Imaging 3, 15 (2017), doi:10.1186/s40679-017-0048-z.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from temsim.backend import FFTPlan, fft2, is_numpy_namespace
from temsim.errors import AccuracyWarning, InputError
from temsim.grid import Grid, is_fft_friendly
from temsim.memory import available_memory, require
from temsim.solvers.engine import MEAN_CONFIGURATION, Engine, diffraction_intensity
from temsim.solvers.multislice import SliceStack, propagate

__all__ = [
    "PrismEngine",
    "prism_engine",
    "parse_interpolation",
    "plane_wave_indices",
    "estimate_prism_memory",
    "window_tail_fraction",
    "MEAN_CONFIGURATION",
]

#: Fraction of the probe's intensity outside the window above which PRISM warns.
WINDOW_TAIL_TOLERANCE = 0.02

#: Largest number of plane waves propagated together.
MAX_BEAM_BATCH = 32


#: Probes are grouped on tiles of 1/_GROUP_DIVISOR of a window (see ``PrismEngine._assemble``).
_GROUP_DIVISOR = 4


def parse_interpolation(interpolation) -> tuple[int, int]:
    """``f`` or ``(fx, fy)`` as two positive integers."""
    values = interpolation if isinstance(interpolation, (tuple, list)) else (interpolation, interpolation)
    if len(values) != 2:
        raise InputError(f"interpolation must be one integer or a pair (fx, fy), got {interpolation!r}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"interpolation factors must be integers ≥ 1, got {interpolation!r}")
        out.append(int(value))
    return out[0], out[1]


def _suggest_gpts(n: int, f: int) -> int:
    m = max(f, n + (-n) % f)
    while not is_fft_friendly(m):
        m += f
    return m


def check_interpolation(grid: Grid, factors: tuple[int, int]) -> None:
    """Refuse interpolation factors that do not divide the cell's grid points."""
    for axis, (n, f, length) in enumerate(zip(grid.gpts, factors, grid.extent)):
        name = "xy"[axis]
        if n % f:
            good = _suggest_gpts(n, f)
            raise InputError(
                f"interpolation factor {f} along {name} does not divide the cell's {n} grid points, so the "
                f"{length:.3f} Å cell cannot be cut into {f} equal windows. Build the potential with gpts "
                f"divisible by {f} (e.g. {good} along {name}), or tile the structure a multiple of {f} times "
                f"along {name} (Potential.tile multiplies the points, so a unit cell tiled {f}·k times always works)"
            )
        if n // f < 4:
            raise InputError(
                f"interpolation factor {f} leaves a window of {n // f} points along {name}; use f ≤ {n // 4}"
            )


def plane_wave_indices(probe, grid: Grid, factors: tuple[int, int]) -> np.ndarray:
    """FFT indices ``(i, j)`` of the plane waves inside the probe's aperture on the f-lattice.

    A plane wave is included where the probe's aperture function is non-zero (soft edge
    included) and ``i``, ``j`` are multiples of ``fx``, ``fy`` (frequencies ``fx·m/Lx``).
    Returns an ``(n_beams, 2)`` int array.
    """
    kx = grid.kx()
    ky = grid.ky()
    lam = probe.wavelength
    edge = probe.edge(grid)
    limit = (probe.semiangle_cutoff + edge) * 1e-3 / lam
    ix = np.flatnonzero((np.arange(grid.gpts[0]) % factors[0] == 0) & (np.abs(kx) <= limit * (1 + 1e-9)))
    iy = np.flatnonzero((np.arange(grid.gpts[1]) % factors[1] == 0) & (np.abs(ky) <= limit * (1 + 1e-9)))
    ii, jj = np.meshgrid(ix, iy, indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    from temsim.optics import soft_aperture

    alpha = np.sqrt(kx[ii] ** 2 + ky[jj] ** 2) * lam * 1e3
    amplitude = soft_aperture(alpha, probe.semiangle_cutoff, edge)
    keep = np.asarray(amplitude) > 0
    return np.stack([ii[keep], jj[keep]], axis=1)


def _cropped_gpts(grid: Grid, factors: tuple[int, int]) -> tuple[int, int]:
    """Smallest grid (multiple of f per axis, FFT friendly) holding the anti-aliased band."""
    out = []
    cutoff = grid.antialias_cutoff
    for n, f, length in zip(grid.gpts, factors, grid.extent):
        needed = 2 * int(math.floor(cutoff * length * (1 + 1e-9))) + 1
        m = max(1, math.ceil(needed / f))
        while not (is_fft_friendly(m) and is_fft_friendly(m * f)):
            m += 1
        out.append(n if m * f >= n else m * f)
    return out[0], out[1]


def _crop_blocks(full: tuple[int, int], small: tuple[int, int]) -> list:
    """Slice pairs (full-grid block, cropped-grid block) holding the lowest frequencies.

    The cropped FFT grid keeps ``ceil(m/2)`` non-negative and ``floor(m/2)`` negative
    frequencies per axis (numpy's FFT order), as up to four rectangular blocks (copied with
    slicing instead of a gather).
    """

    def axis(n_full, n_small):
        positive, negative = n_small - n_small // 2, n_small // 2
        parts = [(slice(0, positive), slice(0, positive))]
        if negative:
            parts.append((slice(n_full - negative, n_full), slice(n_small - negative, n_small)))
        return parts

    return [((fx, fy), (cx, cy)) for fx, cx in axis(full[0], small[0]) for fy, cy in axis(full[1], small[1])]


def estimate_prism_memory(
    probe, grid: Grid, interpolation=1, num_thicknesses: int = 1, elastic: bool = False, dtype: str = "complex64"
) -> dict:
    """Memory (bytes) PRISM needs for one S-matrix.

    Returns a dict with ``beams`` (number of plane waves), ``s_matrix`` (bytes of the stored
    S-matrices: ``num_thicknesses`` of them, plus their running mean when ``elastic``),
    ``per_beam`` (bytes per plane wave while propagating) and ``cropped_gpts``.
    """
    factors = parse_interpolation(interpolation)
    check_interpolation(grid, factors)
    n_beams = len(plane_wave_indices(probe, grid, factors))
    cropped = _cropped_gpts(grid, factors)
    itemsize = 8 if dtype == "complex64" else 16
    copies = int(num_thicknesses) * (2 if elastic else 1)
    return {
        "beams": n_beams,
        "cropped_gpts": cropped,
        "s_matrix": n_beams * cropped[0] * cropped[1] * itemsize * copies,
        "per_beam": 3 * grid.gpts[0] * grid.gpts[1] * itemsize,
    }


def window_tail_fraction(probe, window_extent, sampling: float, defocus_offset: float = 0.0) -> float:
    """Fraction of the incident probe's intensity outside a window of ``window_extent`` Å.

    The window (``Wx × Wy``) is centred on the probe. PRISM loses this part of the probe
    (and gains the same amount from the neighbouring replicas), so it measures the relative
    error to expect in the detector signals of a thin specimen; the beam spreads with
    thickness, so thick specimens need larger windows still.
    """
    wx, wy = (float(w) for w in window_extent)
    coarse = probe.wavelength / (3 * probe.semiangle_cutoff * 1e-3)
    big = (max(4 * wx, 40.0), max(4 * wy, 40.0))
    reference = Grid.from_sampling(big, max(coarse, sampling))
    if defocus_offset:
        from dataclasses import replace

        probe = replace(probe, aberrations=probe.aberrations.with_defocus(probe.aberrations.defocus + defocus_offset))
    intensity = probe.intensity(reference, (0.0, 0.0))
    x = np.minimum(reference.x(), reference.extent[0] - reference.x())
    y = np.minimum(reference.y(), reference.extent[1] - reference.y())
    inside = (x[:, None] < wx / 2) & (y[None, :] < wy / 2)
    return float(intensity[~inside].sum() / intensity.sum())


class PrismEngine(Engine):
    """S-matrices of a probe's plane waves and the probes assembled from them.

    Built by :func:`prism_engine`; a solver engine (:mod:`temsim.solvers.engine`) used by the
    scan driver through :meth:`intensities` (and :meth:`amplitudes`). The S-matrix of a
    configuration is built when first asked for and kept until another configuration is
    asked for, so configurations are the outermost loop (:attr:`config_outer`).

    Attributes
    ----------
    detector_grid : Grid
        The window at the cell's sampling: ``(Lx/fx, Ly/fy)`` Å, ``(Nx/fx, Ny/fy)`` points.
        Diffraction intensities are returned on this grid (FFT order).
    beams : (n_beams, 2) ndarray
        FFT indices of the plane waves on the cell's grid.
    """

    name = "prism"
    config_outer = True
    #: PRISM assembles probes in groups whose windows overlap; batches of several scan rows
    #: let the groups be compact (less of each group's matrix product is wasted).
    batch_cap = 1024

    def __init__(
        self,
        probe,
        configurations: Sequence,
        grid: Grid,
        factors: tuple[int, int],
        xp,
        dtype: str = "complex64",
        save_slices: Sequence[int] | None = None,
        keep_mean: bool = False,
        memory_limit: int = 2 * 1024**3,
        series: bool = False,
    ):
        self.probe = probe
        self.configurations = list(configurations)
        self.num_configurations = len(self.configurations)
        self.series = bool(series)
        self.grid = grid
        self.factors = factors
        self.xp = xp
        self.dtype = dtype
        num_slices = self.configurations[0].num_slices
        self.save_slices = sorted({int(i) for i in (save_slices or [num_slices - 1])})
        if self.save_slices[0] < 0 or self.save_slices[-1] >= num_slices:
            raise InputError(f"saved slices {self.save_slices} are outside 0…{num_slices - 1}")
        self.keep_mean = bool(keep_mean)
        self.beams = plane_wave_indices(probe, grid, factors)
        self.cropped_gpts = _cropped_gpts(grid, factors)
        self.window_gpts = (self.cropped_gpts[0] // factors[0], self.cropped_gpts[1] // factors[1])
        self.detector_grid = Grid(
            (grid.extent[0] / factors[0], grid.extent[1] / factors[1]),
            (grid.gpts[0] // factors[0], grid.gpts[1] // factors[1]),
        )
        self.cropped_sampling = (grid.extent[0] / self.cropped_gpts[0], grid.extent[1] / self.cropped_gpts[1])
        itemsize = 8 if dtype == "complex64" else 16
        per_wave = grid.gpts[0] * grid.gpts[1] * itemsize
        budget = max(64 * 1024**2, memory_limit // 4)
        n_beams = len(self.beams)
        max_batch = int(max(1, min(MAX_BEAM_BATCH, n_beams, budget // (3 * per_wave))))
        n_batches = math.ceil(n_beams / max_batch)
        self.beam_batch = math.ceil(n_beams / n_batches)
        self._current: tuple[int, list] | None = None
        self._mean: list | None = None
        self._mean_members: set[int] = set()  # configurations summed into _mean
        self._coefficients: dict[float, np.ndarray] = {}
        self._pad_info = [self._pad_indices(axis) for axis in range(2)]

    def __getstate__(self) -> dict:
        """Pickled (sent to a dask worker) without S-matrices: each worker builds those it needs."""
        state = dict(self.__dict__)
        state.update(_current=None, _mean=None, _mean_members=set())
        return state

    # ------------------------------------------------------------------ S-matrix
    @property
    def num_beams(self) -> int:
        return len(self.beams)

    @property
    def thicknesses(self) -> np.ndarray:
        """Thickness (Å) at which each saved S-matrix was taken."""
        limits = np.asarray(self.configurations[0].slice_limits)
        return limits[np.asarray(self.save_slices) + 1]

    def s_matrix(self, config_index: int) -> list:
        """S-matrices ``(n_beams, *cropped_gpts)`` (one per saved slice) of a configuration.

        ``MEAN_CONFIGURATION`` gives the mean over the configurations built so far (needs
        ``keep_mean``).
        """
        if config_index == MEAN_CONFIGURATION:
            if not self.keep_mean:
                raise InputError("the mean S-matrix needs keep_mean=True")
            for index in range(len(self.configurations)):  # in whatever order others were built
                if index not in self._mean_members:
                    self.s_matrix(index)
            scale = 1.0 / len(self._mean_members)
            return [m * scale for m in self._mean]
        if self._current is None or self._current[0] != config_index:
            self._current = None  # free the previous one first
            matrices = self._build(self.configurations[config_index])
            self._current = (config_index, matrices)
            if self.keep_mean and config_index not in self._mean_members:
                if self._mean is None:
                    self._mean = [self.xp.asarray(m, copy=True) for m in matrices]
                else:
                    self._mean = [a + b for a, b in zip(self._mean, matrices, strict=True)]
                self._mean_members.add(config_index)
        return self._current[1]

    def _build(self, potential) -> list:
        xp = self.xp
        grid = self.grid
        stack = SliceStack(potential, self.probe.energy, xp, self.probe.tilt, self.dtype)
        plan = FFTPlan((self.beam_batch,) + grid.gpts, xp, self.dtype)
        cdtype = getattr(xp, self.dtype)
        n_full = grid.gpts[0] * grid.gpts[1]
        n_small = self.cropped_gpts[0] * self.cropped_gpts[1]
        scale = n_small / n_full
        crop = FFTPlan((self.beam_batch,) + self.cropped_gpts, xp, self.dtype)
        blocks = _crop_blocks(grid.gpts, self.cropped_gpts)
        saved = set(self.save_slices)
        last = stack.num_slices - 1
        order = {s: t for t, s in enumerate(self.save_slices)}
        matrices = [xp.zeros((self.num_beams,) + self.cropped_gpts, dtype=cdtype) for _ in self.save_slices]
        x = grid.x()
        y = grid.y()
        kx = grid.kx()
        ky = grid.ky()
        for start in range(0, self.num_beams, self.beam_batch):
            beams = self.beams[start : start + self.beam_batch]
            n = len(beams)
            px = np.zeros((self.beam_batch, grid.gpts[0]), dtype=np.complex128)
            py = np.zeros((self.beam_batch, grid.gpts[1]), dtype=np.complex128)
            px[:n] = np.exp(2j * np.pi * kx[beams[:, 0]][:, None] * x[None, :])
            py[:n] = np.exp(2j * np.pi * ky[beams[:, 1]][:, None] * y[None, :])
            if isinstance(plan.buffer, np.ndarray):
                np.multiply(px.astype(self.dtype)[:, :, None], py.astype(self.dtype)[:, None, :], out=plan.buffer)
            else:
                pxa = xp.asarray(px.astype(self.dtype))
                pya = xp.asarray(py.astype(self.dtype))
                plan.load(pxa[:, :, None] * pya[:, None, :])

            def snapshot(index, start=start, n=n):
                if index not in saved:
                    return
                if index == last:
                    # end_in_fourier: the buffer already holds F[ψ_exit] / N_full, so the
                    # last backward FFT and a forward FFT of the full batch are skipped.
                    spectrum, factor = plan.buffer[:n, ...], float(n_small)
                else:
                    spectrum, factor = fft2(plan.buffer[:n, ...]), scale
                # the lowest frequencies, copied block by block into the cropped plan's buffer
                weight = factor / n_small  # the cropped backward FFT is unnormalized
                for (fx, fy), (cx, cy) in blocks:
                    crop.buffer[:n, cx, cy] = spectrum[:, fx, fy] * weight
                crop.backward()
                matrices[order[index]][start : start + n, ...] = xp.astype(crop.buffer[:n, ...], cdtype)

            propagate(plan, stack, on_slice=snapshot, end_in_fourier=True)
        return matrices

    # ------------------------------------------------------------------ probes
    def _coefficients_for(self, defocus_offset: float) -> np.ndarray:
        key = round(float(defocus_offset), 9)
        if key not in self._coefficients:
            full = self.probe.fourier_coefficients(self.grid, np, defocus_offset)
            a = np.asarray(full)[self.beams[:, 0], self.beams[:, 1]]
            norm = math.sqrt(float(np.sum(np.abs(a) ** 2)) * self.window_gpts[0] * self.window_gpts[1])
            self._coefficients[key] = a / norm
        return self._coefficients[key]

    def _window_starts(self, positions: np.ndarray) -> np.ndarray:
        starts = np.zeros((len(positions), 2), dtype=np.int64)
        for axis in range(2):
            if self.factors[axis] == 1:
                continue  # the window is the whole periodic cell: its origin does not matter
            pixel = np.round(positions[:, axis] / self.cropped_sampling[axis]).astype(np.int64)
            starts[:, axis] = pixel - self.window_gpts[axis] // 2
        return starts

    def windows(self, config_index: int, positions, defocus_offset: float = 0.0, thickness_index: int = -1):
        """Exit waves of probes at ``positions`` (Å, (n, 2)) in their windows, ``(n, *window_gpts)``.

        Normalized so that an incident probe has ``Σ|ψ|² = 1`` over its window.
        """
        xp = self.xp
        positions = np.asarray(positions, dtype=float).reshape(-1, 2)
        matrix = self.s_matrix(config_index)[thickness_index]
        a = self._coefficients_for(defocus_offset)
        kx = self.grid.kx()[self.beams[:, 0]]
        ky = self.grid.ky()[self.beams[:, 1]]
        phase = np.exp(-2j * np.pi * (positions[:, 0:1] * kx[None, :] + positions[:, 1:2] * ky[None, :]))
        coefficients = xp.asarray((phase * a[None, :]).astype(self.dtype))
        starts = self._window_starts(positions)
        return self._assemble(matrix, coefficients, starts)

    def _assemble(self, matrix, coefficients, starts: np.ndarray):
        xp = self.xp
        nwx, nwy = self.window_gpts
        ncx, ncy = self.cropped_gpts
        # Probes are grouped by window origin on tiles of a quarter window: the slab covering a
        # group is at most 1.25 windows wide, and with batches of several scan rows the groups
        # stay large enough for efficient GEMMs.
        tile = (max(1, nwx // _GROUP_DIVISOR), max(1, nwy // _GROUP_DIVISOR))
        keys = np.stack([starts[:, 0] // tile[0], starts[:, 1] // tile[1]], axis=1)
        _, group = np.unique(keys, axis=0, return_inverse=True)
        group = np.asarray(group).reshape(-1)
        n_beams = self.num_beams
        numpy_path = is_numpy_namespace(xp)
        out = np.empty((len(starts), nwx, nwy), dtype=self.dtype) if numpy_path else [None] * len(starts)
        for g in range(int(group.max()) + 1 if len(group) else 0):
            members = np.flatnonzero(group == g)
            x0, y0 = starts[members].min(axis=0)
            sx = int(starts[members, 0].max() - x0 + nwx)
            sy = int(starts[members, 1].max() - y0 + nwy)
            ix = np.mod(x0 + np.arange(sx), ncx)
            iy = np.mod(y0 + np.arange(sy), ncy)
            if numpy_path:
                if (
                    0 <= x0 and 0 <= y0 and x0 + sx <= ncx and y0 + sy <= ncy
                ):  # no wrap-around: a plain slice (≈3× faster than a gather)
                    slab = np.ascontiguousarray(matrix[:, x0 : x0 + sx, y0 : y0 + sy]).reshape(n_beams, sx * sy)
                else:
                    slab = matrix[:, ix[:, None], iy[None, :]].reshape(n_beams, sx * sy)
                result = (coefficients[members] @ slab).reshape(len(members), sx, sy)
            else:
                slab = xp.take(xp.take(matrix, xp.asarray(ix), axis=1), xp.asarray(iy), axis=2)
                slab = xp.reshape(slab, (n_beams, sx * sy))
                picked = xp.take(coefficients, xp.asarray(members), axis=0)
                result = xp.reshape(picked @ slab, (len(members), sx, sy))
            for j, p in enumerate(members):
                ox = int(starts[p, 0] - x0)
                oy = int(starts[p, 1] - y0)
                out[p] = result[j, ox : ox + nwx, oy : oy + nwy]
        return out if numpy_path else xp.stack(out)

    def _pad_indices(self, axis: int):
        n_small = self.window_gpts[axis]
        n_full = self.detector_grid.gpts[axis]
        positive = (n_small + 1) // 2
        return positive, n_small - positive, n_full - n_small

    def _pad(self, spectrum):
        """Place window spectra ``(n, *window_gpts)`` on the detector grid (FFT order, zeros)."""
        xp = self.xp
        if self.window_gpts == self.detector_grid.gpts:
            return spectrum
        parts = []
        n = spectrum.shape[0]
        pos, neg, fill = self._pad_info[0]
        zeros = xp.zeros((n, fill, spectrum.shape[2]), dtype=spectrum.dtype)
        spectrum = xp.concat([spectrum[:, :pos, :], zeros, spectrum[:, pos:, :]], axis=1)
        pos, neg, fill = self._pad_info[1]
        zeros = xp.zeros((n, spectrum.shape[1], fill), dtype=spectrum.dtype)
        parts = [spectrum[:, :, :pos], zeros, spectrum[:, :, pos:]]
        return xp.concat(parts, axis=2)

    def intensities(self, config_index: int, positions, defocus: float):
        for t in range(len(self.save_slices)):
            yield t, self.intensities_at(config_index, positions, defocus, t)

    def amplitudes(self, config_index: int, positions, defocus: float):
        for t in range(len(self.save_slices)):
            yield t, self.amplitudes_at(config_index, positions, defocus, t)

    def attrs(self) -> dict:
        return {
            "solver": self.name,
            "prism_interpolation": list(self.factors),
            "prism_window": list(self.detector_grid.extent),
            "prism_window_gpts": list(self.detector_grid.gpts),
            "prism_plane_waves": int(self.num_beams),
        }

    def check(self) -> None:
        self.check_window()

    def amplitudes_at(self, config_index: int, positions, defocus_offset: float = 0.0, thickness_index: int = -1):
        """Diffraction amplitudes ``(n, *detector_grid.gpts)``, FFT order, ``Σ|·|² ≈ 1`` each."""
        xp = self.xp
        waves = self.windows(config_index, positions, defocus_offset, thickness_index)
        waves = xp.asarray(waves)
        spectrum = fft2(waves) * (1.0 / math.sqrt(self.window_gpts[0] * self.window_gpts[1]))
        return self._pad(xp.astype(spectrum, getattr(xp, self.dtype)))

    def intensities_at(self, config_index: int, positions, defocus_offset: float = 0.0, thickness_index: int = -1):
        """Diffraction intensities ``(n, *detector_grid.gpts)`` (fractions of the beam), FFT order."""
        xp = self.xp
        waves = xp.asarray(self.windows(config_index, positions, defocus_offset, thickness_index))
        # |.|² on the window's own (smaller) grid, then zero-padded: the padding is zeros either way.
        intensity = diffraction_intensity(fft2(waves), self.window_gpts[0] * self.window_gpts[1])
        return self._pad(xp.astype(intensity, xp.float32 if self.dtype == "complex64" else xp.float64))

    def check_window(self) -> float:
        """Warn (:class:`AccuracyWarning`) if > 2% of the probe lies outside the window.

        Returns the fraction (at the probe's nominal defocus).
        """
        window = self.detector_grid.extent
        fraction = window_tail_fraction(self.probe, window, max(self.grid.sampling))
        if fraction > WINDOW_TAIL_TOLERANCE:
            fx, fy = self.factors
            warnings.warn(
                f"PRISM interpolation ({fx}, {fy}) gives a {window[0]:.1f}×{window[1]:.1f} Å window, but "
                f"{fraction:.1%} of the probe's intensity lies outside it: expect errors of about "
                f"{fraction:.0%} in the detector signals (more for thick specimens, where the beam spreads). "
                "Lower the interpolation factor or tile the cell so that the window grows",
                AccuracyWarning,
                stacklevel=3,
            )
        return fraction


def prism_engine(
    probe,
    configurations: Sequence,
    grid: Grid,
    interpolation,
    xp,
    dtype: str = "complex64",
    *,
    save_slices: Sequence[int] | None = None,
    keep_mean: bool = False,
    memory_limit: int | None = None,
    check_window: bool = True,
    series: bool = False,
) -> PrismEngine:
    """Validate a PRISM run and return its :class:`PrismEngine` (S-matrices are built lazily).

    Parameters
    ----------
    probe : Probe
        The STEM probe.
    configurations : sequence of Potential
        Static potentials (one per frozen-phonon configuration), all on ``grid``.
    grid : Grid
        The cell's grid.
    interpolation : int or (int, int)
        Interpolation factor(s) ``f`` or ``(fx, fy)``; must divide the grid points.
    xp : namespace
        Array namespace of the computation.
    save_slices : sequence of int, optional
        Slice indices after which the S-matrix is saved (thickness series); default the last.
    keep_mean : bool
        Keep the mean S-matrix over configurations (for the elastic signal).
    memory_limit : int, optional
        Bytes allowed for the S-matrix and propagation buffers (default: half the available
        memory).
    check_window : bool
        Warn when the probe does not fit in the window.
    series : bool
        Results are a thickness series (a ``thickness`` dim) rather than one exit plane.

    Raises
    ------
    InputError
        Bad interpolation factors (the message says which gpts or tiling work).
    MemoryLimitError
        When the S-matrix does not fit (the message suggests a larger ``f``).
    """
    factors = parse_interpolation(interpolation)
    check_interpolation(grid, factors)
    if not configurations:
        raise InputError("PRISM needs at least one potential configuration")
    available = available_memory()
    if memory_limit is None:
        memory_limit = available // 2
    n_saved = len(set(save_slices)) if save_slices else 1
    estimate = estimate_prism_memory(probe, grid, factors, n_saved, keep_mean, dtype)
    if estimate["beams"] == 0:
        raise InputError("no plane wave lies inside the probe's aperture on this grid; the cell is too small")
    needed = estimate["s_matrix"]
    suggestion = max(factors) * math.ceil(math.sqrt(needed / memory_limit))
    require(
        needed,
        memory_limit,
        f"the PRISM S-matrix ({estimate['beams']} plane waves on {estimate['cropped_gpts']} points"
        f"{f', {n_saved} thicknesses' if n_saved > 1 else ''})",
        f"raise the interpolation factor (about f={suggestion}, with a cell tiled to keep the window larger than "
        "the probe), save fewer thicknesses, or coarsen the sampling",
    )
    engine = PrismEngine(
        probe,
        configurations,
        grid,
        factors,
        xp,
        dtype,
        save_slices=save_slices,
        keep_mean=keep_mean,
        memory_limit=memory_limit,
        series=series,
    )
    if check_window:
        engine.check_window()
    return engine
