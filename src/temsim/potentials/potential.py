"""The sliced projected potential of a specimen: :class:`Potential`.

The beam travels along +z. Slices start at z = 0 and cover the cell's ``c`` length; each
slice's projected potential (V·Å, float32, ``(nx, ny)``) is built lazily in Fourier space
(:mod:`.superposition`), so atoms sit exactly where they are and a thick specimen never needs
all slices in memory. Slices with identical content share a :meth:`Potential.slice_key`, so a
solver (and :meth:`Potential.iter_slices` itself) computes each distinct slice once.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

from temsim._version import __version__
from temsim.backend import array_namespace, is_numpy_namespace, to_numpy
from temsim.errors import InputError
from temsim.grid import Grid
from temsim.potentials.parametrizations import (
    PARAMETRIZATIONS,
    Parametrization,
    ParametrizationName,
    load_parametrization,
)
from temsim.potentials.projection import accumulate_radial, radial_factor, radial_table
from temsim.potentials.superposition import (
    BandGeometry,
    band_spectrum_to_slice,
    phase_factors,
    slice_from_groups,
)
from temsim.structure import prepare_for_slicing

__all__ = ["Potential", "ProjectionName", "PROJECTIONS", "DEFAULT_SAMPLING"]

ProjectionName = Literal["infinite", "finite"]
#: Valid values of ``projection``.
PROJECTIONS: tuple[str, ...] = ("infinite", "finite")
#: Lateral sampling (Å) used when neither ``sampling`` nor ``gpts`` is given.
DEFAULT_SAMPLING = 0.05

_QUANTUM = 1e-6  # Å: positions closer than this are "the same" for slice keys and groups
_INF_CODE = np.int64(2**62)
_MEMO_SIZE = 8
#: Distinct radial factors in one finite-projection slice above which the numba kernel is used.
_NUMBA_MIN_GROUPS = 16


def _quantize(values, period: float | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    q = np.zeros(values.shape, dtype=np.int64)
    q[finite] = np.round(values[finite] / _QUANTUM).astype(np.int64)
    if period is not None:
        q = np.mod(q, np.int64(round(period / _QUANTUM)))
    q[~finite & (values > 0)] = _INF_CODE
    q[~finite & (values < 0)] = -_INF_CODE
    return q


def _digest(columns: list[np.ndarray]) -> str:
    if not columns or columns[0].size == 0:
        return "empty"
    table = np.stack(columns, axis=1)
    table = table[np.lexsort(table.T[::-1])]
    return hashlib.blake2b(np.ascontiguousarray(table).tobytes(), digest_size=16).hexdigest()


class Potential:
    """Sliced, projected electrostatic potential of a specimen (independent-atom model).

    Parameters
    ----------
    atoms : ase.Atoms or path
        Structure with an orthogonal cell, c along the beam (+z). Copied, validated and wrapped
        laterally by :func:`temsim.structure.prepare_for_slicing`; never modified. May be
        empty (vacuum: zero potential).
    sampling : float or (float, float), optional
        Lateral pixel size in Å (≤ this, FFT-friendly point counts; see
        :meth:`Grid.from_sampling`). Default 0.05 Å when ``gpts`` is not given either.
    gpts : (int, int), optional
        Number of grid points; if ``sampling`` is also given they must agree (1e-6 relative).
    slice_thickness : float or sequence of float
        Å. A number: ``ceil(c / slice_thickness)`` slices of *equal* thickness (so each is
        ≤ the number given and a crystal's repeated cells slice identically); a sequence:
        explicit thicknesses from z = 0 that must sum to the cell's c within 1e-6 Å.
    parametrization : {"lobato", "kirkland"}
        Electron scattering-factor parametrization.
    projection : {"infinite", "finite"}
        ``"infinite"``: each atom's whole potential goes into the slice containing its
        centre (analytic infinite projection). ``"finite"``: each slice gets the integral of
        every atom's 3-D potential between the slice's z limits (atoms within the cutoff
        radius of a slice contribute; the first slice extends to −∞ and the last to +∞, so an
        atom at a surface keeps its full potential).
    cutoff_tolerance : float
        Finite projection only: an atom reaches slices within
        :meth:`Parametrization.cutoff_radius` (fraction ``cutoff_tolerance`` of its projected
        potential lies outside). Default 1e-3.
    phonons : FrozenPhonons, optional
        Thermal displacements: solvers then average over :meth:`configurations`, one static
        potential per displaced copy of the atoms (this potential's own slices are those of
        the undisplaced atoms).

    Notes
    -----
    Slice ``i`` covers ``slice_limits[i] ≤ z < slice_limits[i+1]`` (an atom within 1e-6 Å
    below a boundary counts as on it, i.e. in the upper slice); for infinite projection
    an atom with z < 0 goes into the first slice and one with z ≥ c into the last.

    Examples
    --------
    >>> from ase.build import bulk
    >>> atoms = bulk("Si", "diamond", a=5.431, cubic=True)
    >>> pot = Potential(atoms, sampling=0.1, slice_thickness=5.431 / 4)
    >>> pot.num_slices, pot.grid.gpts
    (4, (56, 56))
    >>> sum(1 for _ in pot.iter_slices())
    4
    """

    def __init__(
        self,
        atoms,
        sampling=None,
        gpts=None,
        slice_thickness=1.0,
        parametrization: ParametrizationName = "lobato",
        projection: ProjectionName = "infinite",
        cutoff_tolerance: float = 1e-3,
        phonons=None,
    ):
        if phonons is not None and not callable(getattr(phonons, "configurations", None)):
            raise InputError(
                f"phonons must be a temsim.FrozenPhonons (e.g. FrozenPhonons(sigmas=0.08, num_configs=8, seed=0)), "
                f"got {type(phonons).__name__}"
            )
        self._phonons = phonons
        if projection not in PROJECTIONS:
            raise InputError(f"unknown projection {projection!r}; valid values are {', '.join(map(repr, PROJECTIONS))}")
        if isinstance(parametrization, Parametrization):
            self._param = parametrization
        else:
            if parametrization not in PARAMETRIZATIONS:
                raise InputError(
                    f"unknown parametrization {parametrization!r}; valid names are "
                    f"{', '.join(map(repr, PARAMETRIZATIONS))}"
                )
            self._param = load_parametrization(parametrization)
        tol = float(cutoff_tolerance)
        if not (0 < tol < 1):
            raise InputError(f"cutoff_tolerance must be a fraction in (0, 1), got {cutoff_tolerance!r}")
        self._projection = projection
        self._tolerance = tol
        self._atoms = prepare_for_slicing(atoms)
        cell = np.diag(np.asarray(self._atoms.cell))
        self._grid = self._make_grid(cell[:2], sampling, gpts)
        self._limits = self._make_limits(float(cell[2]), slice_thickness)
        self._slice_thickness_arg = slice_thickness
        self._numbers = np.asarray(self._atoms.numbers, dtype=np.int64)
        self._positions = np.asarray(self._atoms.positions, dtype=np.float64)
        n = self.num_slices
        z = self._positions[:, 2]
        # an atom within 1e-6 Å below a boundary belongs to the slice above it, so atoms that
        # sit on boundaries (z = k·c/n in a crystal) land in the same slice despite rounding
        which = np.clip(np.searchsorted(self._limits, z + _QUANTUM, side="right") - 1, 0, n - 1)
        self._order = np.argsort(which, kind="stable")
        self._starts = np.searchsorted(which[self._order], np.arange(n + 1))
        self._z_order = np.argsort(z, kind="stable")
        self._z_sorted = z[self._z_order]
        self._cutoffs = {int(Z): self._param.cutoff_radius(int(Z), tol) for Z in np.unique(self._numbers)}
        self._max_cutoff = max(self._cutoffs.values(), default=0.0)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _make_grid(extent, sampling, gpts) -> Grid:
        if gpts is not None:
            gpts_t = np.broadcast_to(np.asarray(gpts), (2,))
            if not np.all(gpts_t == np.round(gpts_t)) or np.any(gpts_t < 2):
                raise InputError(f"gpts must be two integers ≥ 2, got {gpts!r}")
            grid = Grid(extent=tuple(extent), gpts=tuple(int(g) for g in gpts_t))
            if sampling is not None:
                s = np.broadcast_to(np.asarray(sampling, dtype=float), (2,))
                if not np.allclose(s, grid.sampling, rtol=1e-6, atol=0):
                    raise InputError(
                        f"sampling {s.tolist()} Å and gpts {grid.gpts} disagree for the cell "
                        f"{tuple(round(e, 6) for e in extent)} Å (gpts give {grid.sampling} Å); "
                        "give only one of them"
                    )
            return grid
        if sampling is None:
            sampling = DEFAULT_SAMPLING
        return Grid.from_sampling(extent, sampling)

    @staticmethod
    def _make_limits(c: float, slice_thickness) -> np.ndarray:
        if np.ndim(slice_thickness) == 0:
            try:
                dz = float(slice_thickness)
            except (TypeError, ValueError):
                raise InputError(f"slice_thickness must be a length in Å, got {slice_thickness!r}") from None
            if not math.isfinite(dz) or dz <= 0:
                raise InputError(f"slice_thickness must be a positive length in Å, got {slice_thickness!r}")
            if c < dz * (1 - 1e-9):
                raise InputError(
                    f"the cell is {c:g} Å thick along the beam, thinner than one {dz:g} Å slice; "
                    f"use slice_thickness ≤ {c:g} Å (or add vacuum along z)"
                )
            n = max(1, int(math.ceil(c / dz - 1e-6)))
            return np.linspace(0.0, c, n + 1)
        dzs = np.asarray(slice_thickness, dtype=float).reshape(-1)
        if dzs.size == 0 or not np.all(np.isfinite(dzs)) or np.any(dzs <= 0):
            raise InputError(f"slice thicknesses must be positive lengths in Å, got {dzs.tolist()}")
        total = float(dzs.sum())
        if abs(total - c) > 1e-6:
            raise InputError(
                f"slice thicknesses sum to {total:.6f} Å but the cell is {c:.6f} Å thick along the "
                "beam; they must cover the cell exactly (within 1e-6 Å)"
            )
        limits = np.concatenate([[0.0], np.cumsum(dzs)])
        limits[-1] = c
        return limits

    # ------------------------------------------------------------------ properties
    @property
    def grid(self) -> Grid:
        """Lateral sampling grid (extent = cell a × b)."""
        return self._grid

    @property
    def band_limit(self) -> float:
        """Largest spatial frequency (1/Å) of the slices: just inside the Nyquist circle.

        The slices keep every frequency the grid holds isotropically (the exact Nyquist bins,
        whose shift is ambiguous, are left out so placement stays exact). The solvers form
        ``exp(iσv)`` from these full-band slices and only then band-limit the transmission
        function to 2/3 of Nyquist: truncating v itself at 2/3 would drop the high-frequency
        potential whose products still scatter into the kept band (HAADF of heavy columns
        came out ~7% high at 0.05 Å that way).
        """
        return self._grid.nyquist * (1.0 - 1e-9)

    @property
    def phonons(self):
        """The :class:`~temsim.phonons.FrozenPhonons` model, or ``None`` for a static lattice."""
        return self._phonons

    def configurations(self) -> Iterator[Potential]:
        """Static potentials of the frozen-phonon configurations (just ``self`` without phonons).

        Each has the same grid, slicing, parametrization and projection, and the atoms of one
        displaced copy :meth:`FrozenPhonons.configurations` draws (reproducible from its seed).
        """
        if self._phonons is None:
            yield self
            return
        for atoms in self._phonons.configurations(self._atoms):
            yield self.with_atoms(atoms)

    @property
    def atoms(self):
        """A copy of the (validated, laterally wrapped) atoms."""
        return self._atoms.copy()

    @property
    def parametrization(self) -> str:
        """Name of the scattering-factor parametrization."""
        return self._param.name

    @property
    def parametrization_object(self) -> Parametrization:
        """The :class:`Parametrization` itself."""
        return self._param

    @property
    def projection(self) -> str:
        """``"infinite"`` or ``"finite"``."""
        return self._projection

    @property
    def cutoff_tolerance(self) -> float:
        """Fraction of an atom's projected potential allowed outside its cutoff radius."""
        return self._tolerance

    @property
    def num_slices(self) -> int:
        """Number of slices."""
        return len(self._limits) - 1

    @property
    def slice_limits(self) -> np.ndarray:
        """z of the slice boundaries (Å), ``num_slices + 1`` values from 0 to c."""
        return self._limits.copy()

    @property
    def slice_thicknesses(self) -> np.ndarray:
        """Thickness of each slice (Å)."""
        return np.diff(self._limits)

    @property
    def thickness(self) -> float:
        """Total specimen thickness (Å) = the cell's c."""
        return float(self._limits[-1])

    def __repr__(self) -> str:
        return (
            f"Potential({len(self._atoms)} atoms, gpts={self._grid.gpts}, sampling="
            f"({self._grid.sampling[0]:.4f}, {self._grid.sampling[1]:.4f}) Å, "
            f"{self.num_slices} slices, {self._param.name}, {self._projection} projection"
            + (f", {len(self._phonons)} frozen-phonon configurations)" if self._phonons is not None else ")")
        )

    # ------------------------------------------------------------------ slice contents
    def _check_index(self, i) -> int:
        n = self.num_slices
        try:
            idx = int(i)
        except (TypeError, ValueError):
            raise InputError(f"slice index must be an integer, got {i!r}") from None
        if idx != i or not (-n <= idx < n):
            raise InputError(f"slice index {i!r} is out of range for {n} slices")
        return idx % n

    def _slice_atoms(self, i: int):
        """Atom indices, and (finite) the z limits relative to each atom, of slice ``i``.

        Returns ``(indices, t_start, t_stop)``; for infinite projection the limits are ±inf.
        Finite-projection limits farther than the atom's cutoff are snapped to ±inf (the
        truncated part is below ``cutoff_tolerance``), so atoms wholly inside a slice share
        the infinite-projection factor.
        """
        n = self.num_slices
        if self._projection == "infinite":
            idx = self._order[self._starts[i] : self._starts[i + 1]]
            inf = np.full(idx.size, np.inf)
            return idx, -inf, inf
        lo = -np.inf if i == 0 else self._limits[i]
        hi = np.inf if i == n - 1 else self._limits[i + 1]
        a = np.searchsorted(self._z_sorted, lo - self._max_cutoff, side="left") if np.isfinite(lo) else 0
        b = (
            np.searchsorted(self._z_sorted, hi + self._max_cutoff, side="right")
            if np.isfinite(hi)
            else self._z_sorted.size
        )
        idx = self._z_order[a:b]
        z = self._positions[idx, 2]
        rc = np.array([self._cutoffs[int(Z)] for Z in self._numbers[idx]], dtype=float)
        t1 = lo - z
        t2 = hi - z
        keep = (t2 > -rc) & (t1 < rc)
        idx, t1, t2, rc = idx[keep], t1[keep], t2[keep], rc[keep]
        t1 = np.where(t1 <= -rc, -np.inf, t1)
        t2 = np.where(t2 >= rc, np.inf, t2)
        return idx, t1, t2

    def slice_key(self, i: int):
        """Hashable key, equal for slices with identical content.

        Two slices have equal keys when their thickness agrees and they hold the same
        elements at the same in-slice positions (laterally and, for finite projection,
        relative to the slice limits, including neighbours within the cutoff) to 1e-6 Å.
        """
        i = self._check_index(i)
        idx, t1, t2 = self._slice_atoms(i)
        Lx, Ly = self._grid.extent
        cols = [
            self._numbers[idx],
            _quantize(self._positions[idx, 0], Lx),
            _quantize(self._positions[idx, 1], Ly),
        ]
        if self._projection == "finite":
            cols += [_quantize(t1), _quantize(t2)]
        thickness = int(_quantize(self._limits[i + 1] - self._limits[i]))
        return (self._projection, thickness, int(idx.size), _digest(cols))

    # ------------------------------------------------------------------ building slices
    def _groups(self, i: int):
        idx, t1, t2 = self._slice_atoms(i)
        keys = (
            np.stack([self._numbers[idx], _quantize(t1), _quantize(t2)], axis=1)
            if idx.size
            else np.zeros((0, 3), dtype=np.int64)
        )
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        groups = []
        for row in range(uniq.shape[0]):
            first = int(np.flatnonzero(inverse == row)[0])
            groups.append((int(self._numbers[idx[first]]), float(t1[first]), float(t2[first])))
        return idx, inverse, groups

    def _build_slice(self, i: int, xp, band: BandGeometry, cache: dict):
        idx, group_of_atom, groups = self._groups(i)
        if idx.size == 0:
            return xp.zeros(self._grid.gpts, dtype=xp.float32)
        if "kx" not in cache:
            cache["kx"] = xp.asarray(band.kx)
            cache["ky"] = xp.asarray(band.ky)
            cache["k_abs"] = xp.asarray(band.k_abs)
            cache["inside"] = xp.asarray(band.inside)
        positions = xp.asarray(self._positions[idx, :2])
        if is_numpy_namespace(xp) and len(groups) >= _NUMBA_MIN_GROUPS:
            spacing, table = radial_table(self._param, groups, float(band.k_abs.max()))
            ex = phase_factors(cache["kx"], positions[:, 0])
            ey = phase_factors(cache["ky"], positions[:, 1])
            spectrum = accumulate_radial(ex, ey, group_of_atom, table, spacing, band.k_abs, band.inside)
            return band_spectrum_to_slice(spectrum, band)
        factors = []
        for group in groups:
            if group not in cache:
                Z, z1, z2 = group
                f = radial_factor(self._param, Z, cache["k_abs"], z1, z2)
                f = xp.where(cache["inside"], f, xp.zeros_like(f))
                cache[group] = xp.astype(f, xp.float32)
                if len(cache) > 64 + 4:  # keep the factor cache bounded (frozen phonons)
                    cache.pop(next(k for k in cache if isinstance(k, tuple)))
            factors.append(cache[group])
        return slice_from_groups(band, positions, group_of_atom, factors, kx=cache["kx"], ky=cache["ky"])

    def iter_slices(self, xp=None, start: int = 0, stop: int | None = None) -> Iterator:
        """Yield the projected potential of slices ``start … stop−1`` one at a time.

        Parameters
        ----------
        xp : array namespace, optional
            Namespace of the yielded arrays (numpy by default; cupy / array_api_strict work).
        start, stop : int
            Slice range (default: all slices).

        Yields
        ------
        (nx, ny) float32 array, V·Å
            A new array each time (safe to modify). Slices with equal :meth:`slice_key` are
            computed once (small bounded memo), so a repeating crystal costs only its distinct
            slices.
        """
        if xp is None:
            xp = array_namespace(np.empty(0))
        else:
            xp = array_namespace(xp.asarray([0.0]))
        n = self.num_slices
        stop = n if stop is None else int(stop)
        start = int(start)
        if not (0 <= start <= stop <= n):
            raise InputError(f"slice range [{start}, {stop}) is not within [0, {n}]")
        band = BandGeometry.from_grid(self._grid, cutoff=self.band_limit)
        cache: dict = {}
        memo: OrderedDict = OrderedDict()
        for i in range(start, stop):
            key = self.slice_key(i)
            if key in memo:
                memo.move_to_end(key)
                arr = memo[key]
            else:
                arr = self._build_slice(i, xp, band, cache)
                memo[key] = arr
                if len(memo) > _MEMO_SIZE:
                    memo.popitem(last=False)
            yield xp.asarray(arr, copy=True)

    def build_slice(self, i: int, xp=None):
        """Projected potential of slice ``i`` alone, ``(nx, ny)`` float32 V·Å."""
        i = self._check_index(i)
        return next(self.iter_slices(xp=xp, start=i, stop=i + 1))

    # ------------------------------------------------------------------ xarray outputs
    def _attrs(self) -> dict:
        return {
            "units": "V·Å",
            "long_name": "projected potential",
            "parametrization": self._param.name,
            "projection": self._projection,
            "sampling": list(self._grid.sampling),
            "gpts": list(self._grid.gpts),
            "slice_thicknesses": self.slice_thicknesses.tolist(),
            "cutoff_tolerance": self._tolerance,
            "temsim_version": __version__,
        }

    def _coords(self) -> dict:
        return {"x": ("x", self._grid.x(), {"units": "Å"}), "y": ("y", self._grid.y(), {"units": "Å"})}

    def projected(self):
        """Projected potential summed over all slices: DataArray ``(x, y)`` in V·Å."""
        import xarray as xr

        total = np.zeros(self._grid.gpts, dtype=np.float32)
        for s in self.iter_slices():
            total += s
        return xr.DataArray(
            total, dims=("x", "y"), coords=self._coords(), attrs=self._attrs(), name="projected_potential"
        )

    def slices(self):
        """All slices as a DataArray ``(slice, x, y)`` in V·Å with a ``z`` coordinate of slice
        centres (Å). Materializes every slice: for small cases."""
        import xarray as xr

        data = np.stack([to_numpy(s) for s in self.iter_slices()]) if self.num_slices else None
        coords = self._coords()
        coords["z"] = ("slice", 0.5 * (self._limits[:-1] + self._limits[1:]), {"units": "Å"})
        coords["slice"] = ("slice", np.arange(self.num_slices))
        return xr.DataArray(
            data, dims=("slice", "x", "y"), coords=coords, attrs=self._attrs(), name="projected_potential"
        )

    # ------------------------------------------------------------------ variants
    def _kwargs(self) -> dict:
        return dict(
            gpts=None,
            sampling=self._grid.sampling,
            parametrization=self._param,
            projection=self._projection,
            cutoff_tolerance=self._tolerance,
        )

    def with_atoms(self, atoms) -> Potential:
        """Same settings (sampling, slicing rule, parametrization, projection) for new atoms.

        The result is static (no ``phonons``)."""
        kwargs = self._kwargs()
        return Potential(atoms, slice_thickness=self._slice_thickness_arg, **kwargs)

    def tile(self, reps: Sequence[int]) -> Potential:
        """Potential of the structure repeated ``reps`` = (nx, ny) or (nx, ny, nz) times.

        The lateral sampling stays the same (gpts are multiplied); a scalar slice thickness
        is kept, an explicit thickness sequence is repeated ``nz`` times.
        """
        reps = tuple(int(r) for r in reps)
        if len(reps) == 2:
            reps = reps + (1,)
        if len(reps) != 3 or any(r < 1 for r in reps):
            raise InputError(f"reps must be 2 or 3 positive integers, got {reps!r}")
        atoms = self._atoms.repeat(reps)
        dz = self._slice_thickness_arg
        if np.ndim(dz) != 0:
            dz = list(np.asarray(dz, dtype=float)) * reps[2]
        kwargs = self._kwargs()
        kwargs["sampling"] = None
        kwargs["gpts"] = (self._grid.gpts[0] * reps[0], self._grid.gpts[1] * reps[1])
        return Potential(atoms, slice_thickness=dz, phonons=self._phonons, **kwargs)
