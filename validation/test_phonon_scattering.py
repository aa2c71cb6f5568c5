"""Frozen phonons at the scattering level: thermal diffuse scattering in HAADF.

* A thick SrTiO3 crystal's HAADF signal rises with thermal vibrations (TDS feeds the high
  angles) while its elastic part falls (Debye–Waller damping); without phonons the diffuse
  part is zero.
* abTEM (when installed) as an oracle for the frozen-phonon average.

Numbers go to ``validation/results/phonon_scattering.{json,md}``. The statistical tests of
the displacements themselves are in ``tests/test_phonons.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import temsim
from temsim.detectors import AnnularDetector
from temsim.scan import CustomScan, GridScan
from temsim.structure import srtio3, tile

from _record import record

A = 3.905
ENERGY = 200e3
#: Room-temperature r.m.s. displacements per direction (Å), of the order of the measured
#: isotropic values of SrTiO3 (U_iso ≈ 0.005–0.008 Å²).
SIGMAS = {"Sr": 0.08, "Ti": 0.07, "O": 0.09}
PROBE = temsim.Probe(energy=ENERGY, semiangle_cutoff=20.0)

pytestmark = pytest.mark.filterwarnings("ignore::temsim.errors.AccuracyWarning")  # 2x2-cell periodic cells


def test_haadf_rises_with_phonons_and_the_diffuse_part_vanishes_without():
    # 2×2 cells laterally (periodic probe overlap accepted), 10 cells = 39 Å thick
    atoms = tile(srtio3(A), (2, 2, 10))
    gpts = (160, 160)  # 0.049 Å, band limit 171 mrad
    detectors = {"HAADF": AnnularDetector(60, 160)}
    # probe on a Sr column, on a Ti–O column and on an O column
    positions = CustomScan([(A, A), (A / 2, A / 2), (A / 2, A)])
    static = temsim.Potential(atoms, gpts=gpts, slice_thickness=A / 2)
    vibrating = temsim.Potential(atoms, gpts=gpts, slice_thickness=A / 2,
                                 phonons=temsim.FrozenPhonons(sigmas=SIGMAS, num_configs=4, seed=3))
    still = temsim.scan(PROBE, static, detectors, positions, elastic=True)
    warm = temsim.scan(PROBE, vibrating, detectors, positions, elastic=True)
    rise = warm.HAADF.values / still.HAADF.values
    record("phonon_scattering", "srtio3_haadf_static_vs_frozen_phonons", {
        "structure": "SrTiO3 [001] 2x2 cells, 39.05 Å thick, 160x160 points", "sigmas_A": SIGMAS,
        "configurations": 4, "columns": ["Sr", "TiO", "O"], "haadf_static": still.HAADF.values,
        "haadf_phonons": warm.HAADF.values, "haadf_elastic_phonons": warm.HAADF_elastic.values,
        "haadf_diffuse_phonons": warm.HAADF_diffuse.values, "haadf_diffuse_static": still.HAADF_diffuse.values,
        "rise": rise})
    # without phonons the average has one member: ⟨|ψ|²⟩ = |⟨ψ⟩|²
    np.testing.assert_allclose(still.HAADF_diffuse.values, 0.0, atol=1e-6 * still.HAADF.values.max())
    # with phonons the high-angle signal rises on every column and is mostly diffuse
    assert np.all(rise > 1.05)
    assert np.all(warm.HAADF_diffuse.values > 0.5 * warm.HAADF.values)
    # and the elastic high-angle scattering is damped (Debye–Waller)
    assert np.all(warm.HAADF_elastic.values < still.HAADF.values)


@pytest.fixture(scope="module")
def abtem_frozen_phonons():
    """Means over 16 configurations in both codes (the configurations themselves differ).

    Besides the frozen-phonon images themselves, the *rise* from static to frozen-phonon is
    compared in each code, which isolates the frozen-phonon treatment from any static
    difference. The standard error of our 16-configuration
    mean (:func:`temsim.convergence.phonon_convergence`) is recorded with it.
    """
    abtem = pytest.importorskip("abtem")
    from temsim.convergence import phonon_convergence

    atoms = srtio3(A) * (2, 2, 3)
    gpts = (320, 320)  # every column on a pixel (see stem validation), 0.024 Å
    n = 16
    scan_gpts = (4, 4)
    inner, outer = 60.0, 200.0
    detectors = {"HAADF": AnnularDetector(inner, outer)}
    positions = GridScan(start=(0, 0), end=(A, A), gpts=scan_gpts)

    def theirs(structure):
        potential = abtem.Potential(structure, gpts=gpts, slice_thickness=A / 2, parametrization="lobato",
                                    projection="infinite")
        probe = abtem.Probe(energy=ENERGY, semiangle_cutoff=20.0, soft=True)
        measurement = probe.scan(potential, scan=abtem.GridScan(start=(0, 0), end=(A, A), gpts=scan_gpts),
                                 detectors=[abtem.AnnularDetector(inner, outer)]).compute(progress_bar=False)
        return np.asarray(measurement.array, dtype=np.float64)

    start = time.perf_counter()
    vibrating = temsim.Potential(atoms, gpts=gpts, slice_thickness=A / 2,
                                 phonons=temsim.FrozenPhonons(sigmas=SIGMAS, num_configs=n, seed=1))
    study = phonon_convergence(PROBE, vibrating, detectors, positions)
    ours_fp = study.HAADF.values[-1].astype(np.float64)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs_fp = theirs(abtem.FrozenPhonons(atoms, num_configs=n, sigmas=SIGMAS, seed=1))
    theirs_s = time.perf_counter() - start
    ours_static = temsim.scan(PROBE, temsim.Potential(atoms, gpts=gpts, slice_thickness=A / 2), detectors,
                              positions).HAADF.values.astype(np.float64)
    theirs_static = theirs(atoms)
    results = {
        "abtem_version": abtem.__version__, "structure": "SrTiO3 [001] 2x2x3 cells, 320x320 points (0.0244 Å)",
        "sigmas_A": SIGMAS, "configurations": n, "detector_mrad": [inner, outer],
        "mean_relative_difference_frozen_phonon": float(np.mean(np.abs(ours_fp - theirs_fp) / theirs_fp)),
        "image_mean_ratio_temsim_over_abtem": float(ours_fp.mean() / theirs_fp.mean()),
        "static_mean_ratio_temsim_over_abtem": float(ours_static.mean() / theirs_static.mean()),
        "rise_temsim": float(ours_fp.mean() / ours_static.mean()),
        "rise_abtem": float(theirs_fp.mean() / theirs_static.mean()),
        "temsim_relative_standard_error_16": float(study.HAADF_relative_error.values[-1]),
        "correlation": float(np.corrcoef(ours_fp.ravel(), theirs_fp.ravel())[0, 1]),
        "threshold": 0.03, "temsim_s": ours_s, "abtem_s": theirs_s}
    results["rise_relative_difference"] = results["rise_temsim"] / results["rise_abtem"] - 1
    record("phonon_scattering", "abtem_srtio3_frozen_phonon_haadf", results)
    return results


@pytest.mark.peers
def test_frozen_phonon_haadf_rise_and_image_agree_with_abtem(abtem_frozen_phonons):
    r = abtem_frozen_phonons
    # both codes see the same thermal-diffuse rise of the image mean (to 10 %) and the same image
    assert abs(r["rise_relative_difference"]) < 0.10
    assert r["correlation"] > 0.99


@pytest.mark.peers
@pytest.mark.xfail(strict=True, reason=(
    "open: the static SrTiO3 HAADF agrees with abTEM to 0.5 %, but the 16-configuration frozen-phonon "
    "average is ~6 % above abTEM's (thermal-diffuse rise of the image mean 12.6 % vs 6.5 %); the standard "
    "error of each 16-configuration mean in this 2x2-cell crystal is ~2.5 %, so the difference is ~1.6 "
    "combined standard errors and not yet resolved; see phonon_scattering.json"))
def test_frozen_phonon_haadf_within_three_percent_of_abtem(abtem_frozen_phonons):
    assert abtem_frozen_phonons["mean_relative_difference_frozen_phonon"] < 0.03
