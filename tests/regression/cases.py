"""Regression cases: small, fast simulations whose outputs must not change under refactoring.

Each case is a function returning ``{name: numpy array}``. ``python tests/regression/cases.py
OUTPUT.npz`` records every case (done once, on purpose, from a trusted commit; the
reference in ``tests/regression/reference.npz`` was recorded before the seams redesign);
``tests/test_regression.py`` recomputes them and compares.

Only the public API is used, so the same file runs against the old and the new code.
"""

from __future__ import annotations

import sys

import numpy as np

#: Plan-table fields compared at the complex64 tolerance (they are smooth functions of the rates).
PLAN_EXACT_FIELDS = (
    "required_dose",
    "undamaged_dose",
    "bhattacharyya_dose",
    "j_per_dose",
    "budget",
    "margin",
    "dose_low",
    "dose_high",
    "knock_on_probability",
    "best_power_within_budget",
)


def _srtio3(reps=(2, 2, 2)):
    from temsim import structure

    return structure.tile(structure.srtio3(), reps)


def plane_wave_exit_wave() -> dict:
    import temsim

    potential = temsim.Potential(_srtio3((2, 2, 3)), sampling=0.1, slice_thickness=3.905 / 2)
    wave = temsim.multislice(temsim.PlaneWave(energy=200e3), potential)
    image = temsim.hrtem_image(wave, temsim.Aberrations(C10=-50.0, C30=1e4), semiangle_cutoff=25.0)
    return {"exit_wave": np.asarray(wave.values), "hrtem_image": np.asarray(image.values)}


def _stem_detectors():
    import temsim

    return {
        "HAADF": temsim.AnnularDetector(60.0, 150.0),
        "ABF": temsim.AnnularDetector(10.0, 20.0),
        "BF": temsim.AnnularDetector(0.0, 20.0),
        "iDPC": temsim.IntegratedDPC(4.0, 20.0),
        "4D": temsim.PixelatedDetector(max_angle=40.0, binning=2),
    }


def _stem_setup():
    import temsim

    potential = temsim.Potential(_srtio3((4, 4, 2)), gpts=(320, 320), slice_thickness=3.905 / 2)
    probe = temsim.Probe(energy=200e3, semiangle_cutoff=20.0, aberrations=temsim.Aberrations(C10=-5.0))
    scan = temsim.GridScan(gpts=(6, 6))
    return temsim, potential, probe, scan


def stem_multislice() -> dict:
    temsim, potential, probe, scan = _stem_setup()
    ds = temsim.scan(probe, potential, _stem_detectors(), scan, progress=False)
    return {f"stem_{name}": np.asarray(ds[name].values) for name in ds.data_vars}


def stem_phonons_elastic() -> dict:
    temsim, potential, probe, scan = _stem_setup()
    phonons = temsim.FrozenPhonons(sigmas=0.08, num_configs=2, seed=3)
    potential = temsim.Potential(_srtio3((4, 4, 2)), gpts=(320, 320), slice_thickness=3.905 / 2, phonons=phonons)
    ds = temsim.scan(
        probe,
        potential,
        {"HAADF": temsim.AnnularDetector(60.0, 150.0)},
        temsim.GridScan(gpts=(4, 4)),
        progress=False,
        elastic=True,
    )
    return {f"phonons_{name}": np.asarray(ds[name].values) for name in ds.data_vars}


def stem_prism() -> dict:
    temsim, _, probe, scan = _stem_setup()
    # a 6×6-cell supercell: the f = 2 window (11.7 Å) holds the probe
    potential = temsim.Potential(_srtio3((6, 6, 2)), gpts=(480, 480), slice_thickness=3.905 / 2)
    detectors = {"HAADF": temsim.AnnularDetector(60.0, 150.0), "BF": temsim.AnnularDetector(0.0, 20.0)}
    ds = temsim.scan(probe, potential, detectors, scan, method="prism", interpolation=2, progress=False)
    out = {f"prism_{name}": np.asarray(ds[name].values) for name in ds.data_vars}
    series = temsim.scan(
        probe, potential, detectors, scan, method="prism", interpolation=2, progress=False, save_every=2
    )
    out.update({f"prism_series_{name}": np.asarray(series[name].values) for name in series.data_vars})
    out["prism_series_thickness"] = np.asarray(series["thickness"].values)
    return out


def bloch_thickness_series() -> dict:
    import temsim
    from temsim import structure

    ds = temsim.bloch(structure.srtio3(), 200e3, (0, 0, 1), thickness=np.linspace(10.0, 200.0, 12), g_max=4.0)
    return {
        "bloch_amplitude": np.asarray(ds["amplitude"].values),
        "bloch_intensity": np.asarray(ds["intensity"].values),
    }


def bloch_stem() -> dict:
    import temsim
    from temsim import structure

    probe = temsim.Probe(energy=200e3, semiangle_cutoff=15.0)
    ds = temsim.bloch_scan(
        probe,
        structure.srtio3(),
        {"HAADF": temsim.AnnularDetector(50.0, 100.0), "BF": temsim.AnnularDetector(0.0, 15.0)},
        thickness=(40.0, 80.0),
        repetitions=(3, 3),
        scan=temsim.GridScan(gpts=(3, 3)),
        g_max=3.0,
        sampling=0.08,
    )
    return {f"bloch_stem_{name}": np.asarray(ds[name].values) for name in ds.data_vars}


def plan_tables() -> dict:
    from temsim.planning import plan
    from temsim.study import example_study

    out = {}
    for name in ("graphene-si", "srtio3-oxygen-vacancy", "cof-missing-linker"):
        # the study's own modes; the limits of any detector (4D bound, joint, optimal, quantum
        # limit) are checked by tests/test_information_limits.py and validation
        result = plan(example_study(name), progress=False, monte_carlo_trials=2000, limits_of_any_detector=False)
        own = [r for r in result.table if (r["mode"], r["energy"]) in result.signals]
        rows = sorted(own, key=lambda r: (r["mode"], r["energy"]))
        tag = f"plan_{name}"
        out[f"{tag}_keys"] = np.array([f"{r['mode']}|{r['energy']:g}" for r in rows])
        out[f"{tag}_verdicts"] = np.array([r["verdict"] for r in rows])
        for key in PLAN_EXACT_FIELDS + ("rose_dose", "mc_false_alarm", "mc_power"):
            out[f"{tag}_{key}"] = np.array([float(r[key]) for r in rows])
        for row in rows:
            signal = result.signals[(row["mode"], row["energy"])]
            out[f"{tag}_rate_h0|{row['mode']}|{row['energy']:g}"] = np.asarray(signal["rate_h0"])
            out[f"{tag}_rate_h1|{row['mode']}|{row['energy']:g}"] = np.asarray(signal["rate_h1"])
    return out


CASES = {
    "plane_wave_exit_wave": plane_wave_exit_wave,
    "stem_multislice": stem_multislice,
    "stem_phonons_elastic": stem_phonons_elastic,
    "stem_prism": stem_prism,
    "bloch_thickness_series": bloch_thickness_series,
    "bloch_stem": bloch_stem,
    "plan_tables": plan_tables,
}


def record(path: str) -> None:
    arrays = {}
    for name, case in CASES.items():
        print(f"recording {name}", flush=True)
        arrays.update(case())
    # large real arrays are stored in single precision: the comparison is at complex64 accuracy
    arrays = {k: (v.astype(np.float32) if v.dtype == np.float64 and v.size > 10_000 else v) for k, v in arrays.items()}
    np.savez_compressed(path, **arrays)


if __name__ == "__main__":
    record(sys.argv[1])
