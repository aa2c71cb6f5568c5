"""``temsim plan`` writes nothing outside its output folder, whatever the study is called.

The study name becomes one folder name inside ``plan-output/`` (:func:`temsim.report.safe_name`):
``../../x``, absolute paths, an empty name or odd characters cannot escape it. The test runs
the command in a temporary working directory and walks the whole temporary tree before and
after: every new file lies inside the output folder.
"""

from __future__ import annotations

import os

import pytest

from temsim.cli import main
from temsim.report import safe_name

STUDY = """
name = {name}
[specimen]
example = "graphene"
arguments = {{vacuum = 2.0}}
supercell = [5, 3, 1]
[feature]
kind = "vacancy"
element = "C"
[microscope]
energies = [80e3]
semiangle_cutoff = 30.0
[[modes]]
name = "BF"
[simulation]
sampling = 0.1
scan_step = 0.6
window = 1.2
slice_thickness = 4.0
"""

NAMES = ["../../x", "/tmp/absolute", "", "..", "a/b\\\\c", "naïve name*?<>|", "C:\\\\evil", "." * 300]


def _files(root) -> set[str]:
    return {os.path.join(path, f) for path, _, files in os.walk(root) for f in files} | {
        os.path.join(path, d) for path, dirs, _ in os.walk(root) for d in dirs
    }


@pytest.mark.parametrize("name", NAMES)
def test_plan_writes_only_inside_its_output_folder(tmp_path, monkeypatch, tmp_path_factory, name):
    cache = tmp_path_factory.mktemp("cache")  # FFTW wisdom and matplotlib caches: outside the walked tree
    monkeypatch.setenv("TEMSIM_CACHE_DIR", str(cache))
    monkeypatch.setenv("MPLCONFIGDIR", str(cache))
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(name='"' + name.replace("\\", "\\\\") + '"'), encoding="utf-8")
    monkeypatch.chdir(work)
    before = _files(tmp_path)
    assert main(["plan", str(study), "--quiet"]) == 0
    output = work / "plan-output" / safe_name(name)
    new = _files(tmp_path) - before
    outside = sorted(p for p in new if not (p == str(work / "plan-output") or p.startswith(str(output))))
    assert not outside, f"written outside {output}: {outside}"
    assert (output / "report.md").is_file() and (output / "plan.nc").is_file()
    assert output.parent == work / "plan-output" and output.name not in ("", ".", "..")


def test_safe_names():
    assert safe_name("../../x") == "x"
    assert safe_name("/tmp/absolute") == "tmp_absolute"
    assert safe_name("") == safe_name("..") == safe_name("/") == "study"
    assert safe_name("graphene-si") == "graphene-si"
    assert len(safe_name("a" * 500)) == 100
    assert "/" not in safe_name("a/b\\c") and "\\" not in safe_name("a/b\\c")


def test_rerun_after_a_kill_in_the_report_needs_no_overwrite_but_a_finished_one_does(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEMSIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "cache"))
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(name='"again"'), encoding="utf-8")
    output = tmp_path / "out"
    import temsim.report as report

    original = report._figure_noisy

    def killed(*args):
        raise KeyboardInterrupt("killed while writing the report")

    monkeypatch.setattr(report, "_figure_noisy", killed)
    with pytest.raises(KeyboardInterrupt):
        main(["plan", str(study), "-o", str(output), "--quiet"])
    assert (output / "plan.nc").exists() and (output / ".temsim-plan-in-progress").exists()
    monkeypatch.setattr(report, "_figure_noisy", original)
    assert main(["plan", str(study), "-o", str(output), "--quiet"]) == 0
    assert not (output / ".temsim-plan-in-progress").exists()
    capsys.readouterr()
    assert main(["plan", str(study), "-o", str(output), "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    # another study in the same folder is refused too, even while a run of the first is in progress
    (output / ".temsim-plan-in-progress").write_text("another fingerprint\n")
    assert main(["plan", str(study), "-o", str(output), "--quiet"]) == 1


def test_plan_nc_stores_structures_site_and_monte_carlo_errors(tmp_path, monkeypatch):
    import json

    import numpy as np
    import xarray as xr

    from temsim.detection import DecisionTarget
    from temsim.planning import monte_carlo_notes

    monkeypatch.setenv("TEMSIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "cache"))
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(name='"stored"'), encoding="utf-8")
    assert main(["plan", str(study), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "out" / "plan.nc", engine="h5netcdf") as ds:
        h0, h1 = ds.structure_H0_numbers.values, ds.structure_H1_numbers.values
        assert len(h1) == len(h0) - 1 and ds.structure_H0_positions.shape == (len(h0), 3)
        site = json.loads(ds.attrs["feature_site"])
        assert site["kind"] == "vacancy" and site["element"] == "C" and h0[site["index"]] == 6
        assert np.allclose(ds.structure_H0_positions.values[site["index"], :2], [site["x"], site["y"]])
        # every row recorded by a detector has its Monte-Carlo error; the quantum limits (no detector) none
        quantum = np.char.startswith(ds.mode.values.astype(str), "quantum limit")
        assert quantum.any() and np.all(ds.mc_power_se.values[~quantum] > 0) and "mc_note" in ds
        assert np.all(np.isnan(ds.mc_power_se.values[quantum]))
    assert "C atom" in (tmp_path / "out" / "report.md").read_text()
    # a power 2 standard errors below the target is flagged, one within it is not
    checks = xr.Dataset(
        {
            name: (("mode", "energy"), np.array([[value], [value]]))
            for name, value in dict(
                mc_false_alarm=0.05,
                mc_false_alarm_se=0.005,
                mc_probability_of_error=0.06,
                mc_probability_of_error_se=0.004,
            ).items()
        },
        coords={"mode": ["A", "B"], "energy": [80e3]},
    )
    checks["mc_power"] = (("mode", "energy"), np.array([[0.930], [0.948]]))
    checks["mc_power_se"] = (("mode", "energy"), np.array([[0.005], [0.005]]))
    notes = monte_carlo_notes(checks, DecisionTarget())
    assert "below the target 0.95" in str(notes.values[0, 0]) and str(notes.values[1, 0]) == ""
