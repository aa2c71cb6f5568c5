"""Physics validation of the plane-wave multislice core on real crystals (issue #2).

* Weak-phase object: a graphene sheet and a random carbon film give an exit-wave phase equal
  to σ·v_z (the phase-object result; exact for one slice once the slice's free-space
  propagation is undone).
* Slice convergence of SrTiO₃ [001], half- vs quarter-unit-cell slicing, both projections.
* abTEM (optional oracle): the same SrTiO₃ exit wave, normalized cross-correlation.

Measured numbers go to ``validation/output/core_validation.json`` (and ``.md``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _record import record
from ase import Atoms

import temsim
from temsim.solvers.multislice import fresnel_propagator
from temsim.structure import graphene, srtio3

ENERGY = 200e3  # eV
A_SRTIO3 = 3.905  # Å


def _back_propagate(wave: np.ndarray, grid, distance: float) -> np.ndarray:
    """Free-space propagation of a complex wave by ``-distance`` Å (undoes a slice's propagator)."""
    p = fresnel_propagator(grid, ENERGY, -distance, xp=np, dtype="complex128", normalize=False)
    return np.fft.ifft2(np.fft.fft2(wave) * p)


def _random_carbon_film(seed: int = 7, n_atoms: int = 14, extent: float = 8.0, thickness: float = 3.0) -> Atoms:
    """A few carbon atoms at random positions, ≥ 1.3 Å apart (an amorphous-carbon-like film)."""
    rng = np.random.default_rng(seed)
    positions: list[np.ndarray] = []
    while len(positions) < n_atoms:
        p = rng.uniform([0, 0, 0.5], [extent, extent, thickness - 0.5])
        d = [
            np.linalg.norm(
                ((p - q + [extent / 2, extent / 2, 0]) % [extent, extent, 1e9]) - [extent / 2, extent / 2, 0]
            )
            for q in positions
        ]
        if not d or min(d) > 1.3:
            positions.append(p)
    return Atoms(f"C{n_atoms}", positions=positions, cell=[extent, extent, thickness], pbc=(True, True, False))


FILMS = {
    "graphene": lambda: graphene(vacuum=2.0) * (3, 2, 1),
    "random_carbon_film": _random_carbon_film,
}


@pytest.mark.parametrize("film", sorted(FILMS))
def test_weak_phase_object_exit_phase_is_sigma_vz(film):
    """One-slice thin carbon film at 200 keV: arg ψ = σ v_z within 1 % of the maximum phase.

    v_z is band-limited like the wave (2/3 of Nyquist) for the comparison.

    Multislice applies a slice's transmission at the slice's entrance and then propagates
    through its thickness, so the exit wave is first propagated back over that thickness
    (exact, free space) to the plane where the potential acts. Metric:
    ``max |arg ψ − σ v_z| / max(σ v_z)`` over all pixels (no offset removed).
    """
    atoms = FILMS[film]()
    c = float(atoms.cell[2, 2])
    potential = temsim.Potential(atoms, sampling=0.05, slice_thickness=c, projection="infinite")
    assert potential.num_slices == 1
    exit_wave = temsim.multislice(temsim.PlaneWave(energy=ENERGY), potential)
    sigma = temsim.interaction_parameter(ENERGY)
    # the wave is band-limited to 2/3 of Nyquist, the slices hold every frequency up to
    # Nyquist: compare with the equally band-limited σ v_z
    v = potential.projected().values.astype(np.float64)
    aperture = potential.grid.antialias_aperture()
    expected = sigma * np.real(np.fft.ifft2(np.fft.fft2(v) * aperture))
    at_film = _back_propagate(exit_wave.values, potential.grid, c)
    phase = np.angle(at_film)
    max_error = float(np.abs(phase - expected).max() / expected.max())
    l2_error = float(np.linalg.norm(phase - expected) / np.linalg.norm(expected))
    raw_error = float(np.abs(np.angle(exit_wave.values) - expected).max() / expected.max())
    amplitude_error = float(np.abs(np.abs(at_film) - 1).max())
    record(
        "core_validation",
        f"weak_phase_object_{film}",
        {
            "energy_eV": ENERGY,
            "sampling_A": list(potential.grid.sampling),
            "gpts": list(potential.grid.gpts),
            "projection": "infinite",
            "slice_thickness_A": c,
            "max_phase_rad": float(expected.max()),
            "max_phase_error_rel_to_max_phase": max_error,
            "l2_phase_error_rel": l2_error,
            "max_phase_error_without_back_propagation": raw_error,
            "max_amplitude_deviation": amplitude_error,
            "threshold_max_phase_error": 0.01,
        },
    )
    assert 0.05 < expected.max() < 1.0  # a weak phase object indeed
    assert max_error < 0.01
    # the amplitude stays 1 up to the band limit of exp(iσv) (a phase object)
    assert amplitude_error < 0.02


def _srtio3_exit_wave(cells_z: int, slices_per_cell: int, projection: str) -> tuple[np.ndarray, object]:
    atoms = srtio3() * (1, 1, cells_z)  # a plane wave's exit wave has the crystal's lateral period
    thicknesses = [A_SRTIO3 / slices_per_cell] * (cells_z * slices_per_cell)  # tiles the cell exactly
    potential = temsim.Potential(atoms, sampling=0.05, slice_thickness=thicknesses, projection=projection)
    wave = temsim.multislice(temsim.PlaneWave(energy=ENERGY), potential)
    return wave.values, potential


def _relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_slice_convergence_srtio3_infinite_projection():
    """SrTiO₃ [001], 10 u.c. (39 Å), 200 keV: half- and quarter-cell slicing agree to < 1e-3.

    With infinite projection every atom plane (z = 0, a/2) is the top of a slice in both
    slicings, so quarter slicing only inserts empty slices whose propagators compose exactly
    (P(a/4)² = P(a/2)): the two must agree to round-off. This checks the slice assignment of
    atoms lying exactly on slice boundaries and the composition of propagators.
    """
    half, potential = _srtio3_exit_wave(10, 2, "infinite")
    quarter, _ = _srtio3_exit_wave(10, 4, "infinite")
    difference = _relative_l2(half, quarter)
    record(
        "core_validation",
        "slice_convergence_srtio3_infinite",
        {
            "energy_eV": ENERGY,
            "thickness_A": 10 * A_SRTIO3,
            "gpts": list(potential.grid.gpts),
            "sampling_A": list(potential.grid.sampling),
            "relative_l2_half_vs_quarter": difference,
            "threshold": 1e-3,
        },
    )
    assert difference < 1e-3


def test_slice_convergence_srtio3_finite_projection():
    """Finite projection converges at first order in Δz and does *not* meet 1e-3 at a/4.

    Each slice's share of the potential acts at the slice's entrance (transmit, then
    propagate), which displaces the potential by up to Δz; the error halves with Δz
    (measured: 8.8 %, 4.8 %, 2.5 % for a/2→a/4, a/4→a/8, a/8→a/16 at 10 u.c.; abTEM's finite
    projection shows the same: 7.4 %, 3.9 %). The test asserts that first-order convergence.
    """
    waves = {n: _srtio3_exit_wave(10, n, "finite")[0] for n in (2, 4, 8, 16)}
    steps = [_relative_l2(waves[n], waves[2 * n]) for n in (2, 4, 8)]
    ratios = [steps[i] / steps[i + 1] for i in range(2)]
    record(
        "core_validation",
        "slice_convergence_srtio3_finite",
        {
            "energy_eV": ENERGY,
            "thickness_A": 10 * A_SRTIO3,
            "relative_l2_a/2_vs_a/4": steps[0],
            "relative_l2_a/4_vs_a/8": steps[1],
            "relative_l2_a/8_vs_a/16": steps[2],
            "reduction_per_halving": ratios,
            "meets_1e-3_at_quarter_cell": bool(steps[0] < 1e-3),
        },
    )
    assert steps[0] > steps[1] > steps[2]
    assert all(r > 1.6 for r in ratios)  # first order (2×) or better per halving of Δz
    assert steps[2] < 0.05


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.peers
def test_exit_wave_matches_abtem():
    """SrTiO₃ [001], 10 u.c., 200 keV, Lobato, infinite projection, a/2 slices: |NCC| > 0.999."""
    abtem = pytest.importorskip("abtem")
    # orientation: abTEM arrays are (x, y) too — check with one off-centre atom in a rectangular cell
    lone = Atoms("Sr", positions=[(1.0, 3.0, 1.0)], cell=[4.0, 6.0, 2.0], pbc=True)
    ours = temsim.Potential(lone, gpts=(80, 120), slice_thickness=2.0).projected().values
    theirs = np.asarray(
        abtem.Potential(lone, gpts=(80, 120), slice_thickness=2.0).build().compute(progress_bar=False).array
    ).sum(0)
    assert theirs.shape == ours.shape
    assert np.unravel_index(np.argmax(theirs), theirs.shape) == np.unravel_index(np.argmax(ours), ours.shape)

    atoms = srtio3() * (1, 1, 10)
    results = {}
    for projection in ("infinite", "finite"):
        potential = temsim.Potential(atoms, sampling=0.05, slice_thickness=A_SRTIO3 / 2, projection=projection)
        start = time.perf_counter()
        wave = temsim.multislice(temsim.PlaneWave(energy=ENERGY), potential, dtype="complex64").values
        ours_s = time.perf_counter() - start
        reference = abtem.Potential(
            atoms,
            gpts=potential.grid.gpts,
            slice_thickness=A_SRTIO3 / 2,
            parametrization="lobato",
            projection=projection,
        )
        start = time.perf_counter()
        other = np.asarray(abtem.PlaneWave(energy=ENERGY).multislice(reference).compute(progress_bar=False).array)
        theirs_s = time.perf_counter() - start
        results[projection] = {
            "ncc": _ncc(wave, other),
            "relative_l2": _relative_l2(wave, other),
            # same sign convention for the phase: conjugating one wave must destroy the agreement
            "ncc_with_conjugate": _ncc(wave, other.conj()),
            "temsim_s": ours_s,
            "abtem_s": theirs_s,
        }
    record(
        "core_validation",
        "abtem_exit_wave_srtio3",
        {
            "abtem_version": abtem.__version__,
            "energy_eV": ENERGY,
            "thickness_A": 10 * A_SRTIO3,
            "gpts": list(potential.grid.gpts),
            "slice_thickness_A": A_SRTIO3 / 2,
            "parametrization": "lobato",
            **{f"{p}_{k}": v for p, r in results.items() for k, v in r.items()},
            "threshold_ncc_infinite": 0.999,
        },
    )
    assert results["infinite"]["ncc"] > 0.999
    assert results["infinite"]["ncc_with_conjugate"] < 0.99
    # finite projections are integrated differently by the two codes: agreement, but looser
    assert results["finite"]["ncc"] > 0.99
