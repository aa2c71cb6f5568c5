"""Physics validation of STEM on real crystals (issue #3).

* Mirror symmetry: SrTiO₃ [001] (mirror planes x = 0, y = 0 and the diagonal) gives
  mirror-symmetric HAADF/ABF/BF images; a polar Ti displacement along x breaks only the x mirror.
* Weak phase object: iCoM and iDPC of a graphene sheet equal the probe-convolved projected
  potential (Lazić et al. 2016), iCoM with the slope σ/2π.
* abTEM (optional oracle): HAADF, ABF and BF images of SrTiO₃ [001] with identical settings.

Measured numbers go to ``validation/output/stem_validation.json`` (and ``.md``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _record import record

import temsim
from temsim.structure import graphene, srtio3

ENERGY = 200e3  # eV
ALPHA = 20.0  # mrad, probe convergence semiangle
A = 3.905  # Å, SrTiO3 lattice constant
SCAN_N = 8  # probe positions per unit cell and direction
HAADF_MAX = 150.0  # mrad: within the 0.049 Å grid's 2/3 band limit (≈ 168 mrad at 200 keV)


def _detectors():
    return {name: temsim.annular_preset(name, ALPHA, max_angle=HAADF_MAX) for name in ("HAADF", "ABF", "BF")}


def _cell_scan():
    """One unit cell at SCAN_N × SCAN_N positions i·a/n (endpoint excluded): x → −x maps i → −i mod n."""
    return temsim.GridScan(start=(0.0, 0.0), end=(A, A), gpts=(SCAN_N, SCAN_N))


def _mirror_x(image: np.ndarray) -> np.ndarray:
    return np.roll(image[::-1, :], 1, axis=0)


def _mirror_y(image: np.ndarray) -> np.ndarray:
    return np.roll(image[:, ::-1], 1, axis=1)


def _asymmetry(image: np.ndarray, mirrored: np.ndarray) -> float:
    """max |I − M I| over the image's contrast range (max − min)."""
    return float(np.abs(image - mirrored).max() / np.ptp(image))


def _srtio3_scan(unit, sampling=0.05, gpts=None):
    # 4×4 cells (15.6 Å) keep the probe's tails from wrapping (no AccuracyWarning); 3 cells thick
    potential = temsim.Potential(
        unit * (4, 4, 3), sampling=None if gpts else sampling, gpts=gpts, slice_thickness=A / 2
    )
    probe = temsim.Probe(energy=ENERGY, semiangle_cutoff=ALPHA)
    return temsim.scan(probe, potential, _detectors(), _cell_scan(), progress=False), potential


def test_mirror_symmetric_crystal_gives_mirror_symmetric_images():
    """SrTiO₃ [001] images are symmetric under x → −x, y → −y and x ↔ y to < 1e-3 of the contrast.

    On a 320² grid (80 pixels per cell, 0.0488 Å) the Ti and O columns sit off the pixel
    centres' symmetric positions only through exact (Fourier-space) placement, and the x mirror
    of a one-cell scan maps pixels onto pixels. On a 315² grid (the smallest 7-smooth size for 0.05 Å), the mirror
    of a one-cell scan also needs a translation by 78.75 pixels; exp(iσv) of the strong Sr
    column has harmonics beyond Nyquist that alias onto frequencies that are not multiples of
    1/a, so translation symmetry — not mirror symmetry — holds only to that aliasing level
    (recorded, asserted < 5e-3). Negative control: Ti displaced by 0.15 Å along x (a polar
    distortion) must break the x mirror but not the y one.
    """
    aliased, _ = _srtio3_scan(srtio3(), gpts=(315, 315))
    ds, potential = _srtio3_scan(srtio3(), gpts=(320, 320))
    polar_unit = srtio3()
    polar_unit.positions[1, 0] += 0.15  # Ti
    polar, _ = _srtio3_scan(polar_unit, gpts=(320, 320))
    measured = {
        "gpts": list(potential.grid.gpts),
        "sampling_A": list(potential.grid.sampling),
        "scan": f"{SCAN_N}x{SCAN_N} over one unit cell",
        "threshold": 1e-3,
    }
    for name in ("HAADF", "ABF", "BF"):
        image = ds[name].values.astype(np.float64)
        values = {
            "x_mirror": _asymmetry(image, _mirror_x(image)),
            "y_mirror": _asymmetry(image, _mirror_y(image)),
            "diagonal_mirror": _asymmetry(image, image.T),
        }
        distorted = polar[name].values.astype(np.float64)
        values["polar_Ti_x_mirror"] = _asymmetry(distorted, _mirror_x(distorted))
        values["polar_Ti_y_mirror"] = _asymmetry(distorted, _mirror_y(distorted))
        measured.update({f"{name}_{k}": v for k, v in values.items()})
        assert max(values["x_mirror"], values["y_mirror"], values["diagonal_mirror"]) < 1e-3, (name, values)
        assert values["polar_Ti_y_mirror"] < 1e-3, (name, values)
        assert values["polar_Ti_x_mirror"] > 1e-2, (name, values)  # the control breaks the x mirror
        off_grid = aliased[name].values.astype(np.float64)
        measured[f"{name}_x_mirror_315px_aliasing"] = _asymmetry(off_grid, _mirror_x(off_grid))
        assert measured[f"{name}_x_mirror_315px_aliasing"] < 5e-3
    # contrast sign: HAADF is brightest on the Sr column (the corner, Z = 38)
    haadf = ds.HAADF.values
    assert np.unravel_index(np.argmax(haadf), haadf.shape) == (0, 0)
    record("stem_validation", "mirror_symmetry_srtio3", measured)


@pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")  # periodic crystal: wrap-around intended
def test_icom_idpc_of_graphene_equal_probe_convolved_potential():
    """Graphene at 200 keV (a weak phase object): iCoM and iDPC correlate > 0.99 with |ψ|² ⋆ v_z.

    The sheet is one slice at the probe's focus; the scan covers the periodic cell at
    0.246 × 0.243 Å (finer than the CoM's Nyquist step λ/4α = 0.25 Å) on every fifth pixel, so
    the reference is sampled at exactly the probe positions. The probe's tails wrap around the
    7.4 × 8.5 Å cell; the CoM theorem holds for the periodic probe too (it is used in the
    reference), so the warning is silenced.
    """
    alpha = 25.0
    potential = temsim.Potential(graphene(vacuum=2.0) * (3, 2, 1), gpts=(150, 175), slice_thickness=4.0)
    assert potential.num_slices == 1
    probe = temsim.Probe(energy=ENERGY, semiangle_cutoff=alpha)
    detectors = {
        "iCoM": temsim.IntegratedCenterOfMass(),
        "iDPC_quadrants_0_to_alpha": temsim.IntegratedDPC(0.0, alpha),
        "iDPC_quadrants_half_alpha_to_alpha": temsim.IntegratedDPC(alpha / 2, alpha),
    }
    start = time.perf_counter()
    ds = temsim.scan(probe, potential, detectors, temsim.GridScan(gpts=(30, 35)), progress=False)
    seconds = time.perf_counter() - start
    v = potential.projected().values.astype(np.float64)
    p0 = probe.intensity(potential.grid, (0.0, 0.0))
    # reference(r0) = Σ_r |ψ(r − r0)|² v(r): probe centred at r0, periodic
    reference = np.real(np.fft.ifft2(np.conj(np.fft.fft2(p0)) * np.fft.fft2(v)))[::5, ::5]
    assert reference.shape == ds["iCoM"].shape
    sigma = temsim.interaction_parameter(ENERGY)
    measured = {
        "energy_eV": ENERGY,
        "semiangle_mrad": alpha,
        "gpts": list(potential.grid.gpts),
        "scan_gpts": [30, 35],
        "scan_s": seconds,
        "threshold_correlation": 0.99,
    }
    centred = reference - reference.mean()
    for name in detectors:
        signal = ds[name].values.astype(np.float64)
        correlation = float(np.corrcoef(signal.ravel(), reference.ravel())[0, 1])
        measured[f"{name}_correlation"] = correlation
        measured[f"{name}_correlation_with_unconvolved_vz"] = float(
            np.corrcoef(signal.ravel(), v[::5, ::5].ravel())[0, 1]
        )
        slope = float(np.sum((signal - signal.mean()) * centred) / np.sum(centred**2))
        measured[f"{name}_slope_over_sigma_by_2pi"] = slope / (sigma / (2 * np.pi))
        assert correlation > 0.99, (name, correlation)
    # iCoM is the probe-convolved phase itself: (σ/2π) |ψ|² ⋆ v_z, up to a constant
    assert measured["iCoM_slope_over_sigma_by_2pi"] == pytest.approx(1.0, abs=0.01)
    record("stem_validation", "weak_phase_idpc_icom_graphene", measured)


# --------------------------------------------------------------------------------------------
# abTEM as an oracle
# --------------------------------------------------------------------------------------------

#: 80 pixels per unit cell: every atom column (0, a/2) sits on a pixel. abTEM's potential
#: depends on where atoms fall relative to pixels (at 315 pixels for 4 cells its Ti-column
#: HAADF drops by 25 %), temsim's does not; on-pixel atoms make the comparison fair.
ABTEM_GPTS = (320, 320)


@pytest.fixture(scope="module")
def abtem_comparison():
    abtem = pytest.importorskip("abtem")
    atoms = srtio3() * (4, 4, 3)
    potential = temsim.Potential(atoms, gpts=ABTEM_GPTS, slice_thickness=A / 2)
    reference = abtem.Potential(
        atoms, gpts=ABTEM_GPTS, slice_thickness=A / 2, parametrization="lobato", projection="infinite"
    )
    detectors = _detectors()
    results = {
        "abtem_version": abtem.__version__,
        "gpts": list(ABTEM_GPTS),
        "sampling_A": list(potential.grid.sampling),
        "thickness_A": 3 * A,
        "energy_eV": ENERGY,
        "semiangle_mrad": ALPHA,
        "slice_thickness_A": A / 2,
        "projection": "infinite",
        "parametrization": "lobato",
        "detectors_mrad": {k: [d.inner, d.outer] for k, d in detectors.items()},
        "metric": "mean over scan pixels of |temsim − abtem| / abtem",
        "threshold": 0.02,
    }
    # soft aperture edges: temsim's default (one reciprocal pixel) vs abTEM's soft=True; hard: both off
    for label, edge, soft in (("soft", None, True), ("hard", 0.0, False)):
        probe = temsim.Probe(energy=ENERGY, semiangle_cutoff=ALPHA, aperture_edge=edge)
        start = time.perf_counter()
        ours = temsim.scan(probe, potential, detectors, _cell_scan(), progress=False)
        ours_s = time.perf_counter() - start
        other_probe = abtem.Probe(energy=ENERGY, semiangle_cutoff=ALPHA, soft=soft)
        start = time.perf_counter()
        theirs = other_probe.scan(
            reference,
            scan=abtem.GridScan(start=(0, 0), end=(A, A), gpts=(SCAN_N, SCAN_N)),
            detectors=[abtem.AnnularDetector(d.inner, d.outer) for d in detectors.values()],
        ).compute(progress_bar=False)
        results[f"{label}_temsim_s"] = ours_s
        results[f"{label}_abtem_s"] = time.perf_counter() - start
        for name, measurement in zip(detectors, theirs):
            a = ours[name].values.astype(np.float64)
            b = np.asarray(measurement.array, dtype=np.float64)
            assert a.shape == b.shape
            relative = np.abs(a - b) / np.abs(b)
            results[f"{label}_{name}_mean_relative_difference"] = float(relative.mean())
            results[f"{label}_{name}_max_relative_difference"] = float(relative.max())
            results[f"{label}_{name}_image_mean_ratio"] = float(a.mean() / b.mean())
            results[f"{label}_{name}_correlation"] = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    results["note_haadf"] = (
        "Slices hold the projected potential up to Nyquist (Potential.band_limit) and exp(iσv) is "
        "band-limited to 2/3 afterwards. An earlier version truncated v at 2/3 Nyquist before the "
        "exponential, which put the Sr-column HAADF ~7 % high at 0.049 Å (slow convergence in sampling)."
    )
    record("stem_validation", "abtem_srtio3_haadf_abf_bf", results)
    return results


@pytest.mark.peers
@pytest.mark.parametrize("name", ["BF", "ABF"])
@pytest.mark.parametrize("aperture", ["soft", "hard"])
def test_bright_field_images_match_abtem(abtem_comparison, name, aperture):
    assert abtem_comparison[f"{aperture}_{name}_mean_relative_difference"] < 0.02
    assert abtem_comparison[f"{aperture}_{name}_max_relative_difference"] < 0.02


@pytest.mark.peers
@pytest.mark.parametrize("aperture", ["soft", "hard"])
def test_haadf_image_matches_abtem(abtem_comparison, aperture):
    assert abtem_comparison[f"{aperture}_HAADF_mean_relative_difference"] < 0.02
