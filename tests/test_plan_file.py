"""plan.nc: a tidy file of groups (xarray.DataTree) from which the report's table is rebuilt."""

import json
import math
import os

import numpy as np
import pytest
import xarray as xr

from temsim import structure
from temsim.errors import InputError
from temsim.plan_file import open_plan, table_from_file, write_plan
from temsim.planning import plan
from temsim.report import ReportExistsError, write_report
from temsim.study import Feature, Mode, Study

MODES = (
    Mode("HAADF", 50.0, 120.0),
    Mode("MAADF", 25.0, 60.0, kind="annular"),
    Mode("DPC8", 6.0, 30.0, kind="segmented", segments=8, rotation=10.0),
    Mode("iDPC"),
    Mode("4D-STEM", max_angle=40.0, binning=2),
    Mode("HRTEM", defocus=-50.0),
)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    study = Study(
        name="stored",
        atoms=structure.tile(structure.graphene(vacuum=2.0), (5, 3, 1)),
        feature=Feature("substitution", element="Si", host_element="C"),
        energies=(60e3, 80e3),
        modes=MODES,
        semiangle_cutoff=30.0,
        sampling=0.1,
        scan_step=0.5,
        window=1.5,
        slice_thickness=4.0,
        critical_dose=5e4,
    )
    result = plan(study, progress=False, monte_carlo_trials=50)
    folder = tmp_path_factory.mktemp("plan")
    return result, write_report(result, folder)["plan.nc"]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def test_the_table_is_rebuilt_from_the_file_alone(planned):
    result, path = planned
    rows = table_from_file(path)
    assert len(rows) == len(result.table) >= len(MODES) * 2
    for rebuilt, row in zip(rows, result.table):
        assert rebuilt.keys() == row.keys()
        different = [k for k in row if not _same(rebuilt[k], row[k])]
        assert not different, (row["mode"], row["energy"], different)


def test_modes_energies_and_hypotheses_are_dimensions_with_coordinates(planned):
    result, path = planned
    tree = xr.open_datatree(path, engine="h5netcdf")
    root = tree.to_dataset()
    assert root.required_dose.dims == ("mode", "energy") and root.energy.attrs["units"] == "eV"
    assert [m.label for m in MODES] == list(root.mode.values[: len(MODES)])
    assert not [name for name in root.data_vars if "[" in name or "@" in name]  # no names built from labels
    assert "grid" in root.attrs and list(root.attrs["gpts"]) == list(result.dataset.attrs["gpts"])
    signals = tree["signals"]
    assert sorted(signals.children) == sorted(m.label for m in MODES)
    lead = ("energy", "hypothesis", "configuration")
    expected = {
        "HAADF": ("scan_x", "scan_y"),
        "MAADF": ("scan_x", "scan_y"),
        "DPC8": ("scan_x", "scan_y", "segment"),
        "iDPC": ("scan_x", "scan_y", "segment"),
        "4D-STEM": ("scan_x", "scan_y", "kx", "ky"),
        "HRTEM Δf=-50Å": ("x", "y"),
    }
    for label, channels in expected.items():
        node = signals[label]
        rate = node.rate
        assert rate.dims == lead + channels and node.attrs["mode"] == label, label
        assert list(rate.hypothesis.values) == ["H0", "H1"] and rate.energy.values.tolist() == [60e3, 80e3]
        for dim in channels:
            assert dim in rate.coords, (label, dim)
        # the group holds exactly the rates the plan computed
        np.testing.assert_array_equal(rate.values, result.rates[label].values)
    assert signals["HAADF"].rate.scan_x.attrs["units"] == "Å" and signals["HRTEM Δf=-50Å"].rate.x.attrs["units"] == "Å"
    dpc8 = signals["DPC8"].rate
    assert dpc8.sizes["segment"] == 8 and signals["DPC8"].attrs["rotation"] == 10.0
    np.testing.assert_allclose(dpc8.segment_azimuth.values, 10.0 + 45.0 * (np.arange(8) + 0.5))
    assert signals["iDPC"].rate.sizes["segment"] == 4  # two segmented modes, each with its own segment axis
    assert signals["4D-STEM"].rate.kx.attrs.get("units") == "1/Å"


def test_reading_in_three_lines_as_the_docs_show(planned):
    """The docs' recipe: open the tree, take a limit, take a mean signal."""
    _, path = planned
    tree = xr.open_datatree(path)
    doses = tree.ds.required_dose.sel(energy=60e3).to_series()
    h1 = tree["signals/HAADF"].rate.sel(hypothesis="H1", energy=60e3).mean("configuration")
    assert doses.index[0] == "HAADF" and h1.dims == ("scan_x", "scan_y") and float(h1.max()) > 0


def test_the_writer_carries_any_new_field_and_is_atomic(planned, tmp_path):
    """Fields other steps add to the limits dataset land in the file; a failed write leaves nothing."""
    result, _ = planned
    extra = result.dataset.assign(
        survival_probability=(("mode", "energy"), np.full((result.dataset.sizes["mode"], 2), 0.25)),
        note_per_energy=("energy", np.array(["a", "b"])),
    )
    path = tmp_path / "plan.nc"
    write_plan(path, extra, result.rates)
    root = open_plan(path).to_dataset()
    assert float(root.survival_probability.sel(mode="DPC8", energy=80e3)) == 0.25
    assert root.note_per_energy.values.tolist() == ["a", "b"]
    assert json.loads(root.attrs["table_columns"])[0] == "verdict"
    broken = result.dataset.assign(bad=(("mode", "energy"), np.full((result.dataset.sizes["mode"], 2), object())))
    with pytest.raises((TypeError, ValueError)):
        write_plan(tmp_path / "broken.nc", broken, result.rates)
    assert sorted(os.listdir(tmp_path)) == ["plan.nc"]  # no partial or temporary file


def test_existing_files_are_not_overwritten_and_foreign_files_are_refused(planned, tmp_path):
    result, path = planned
    folder = os.path.dirname(path)
    before = os.path.getmtime(path)
    with pytest.raises(ReportExistsError, match="--overwrite"):
        write_report(result, folder)
    assert os.path.getmtime(path) == before
    foreign = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(foreign, engine="h5netcdf")
    with pytest.raises(InputError, match="not a temsim plan file"):
        table_from_file(foreign)


def test_the_report_prints_the_grid_used(planned):
    """sampling = 0.1 Å over the 12.3 × 12.78 Å cell rounds to FFT-friendly point counts: the report
    gives the points and Å/pixel actually used and by how much the sampling was rounded."""
    result, path = planned
    report = open(os.path.join(os.path.dirname(path), "report.md"), encoding="utf-8").read()
    (nx, ny), (dx, dy) = result.dataset.attrs["gpts"], result.dataset.attrs["grid_sampling"]
    assert nx * dx == pytest.approx(12.3) and dx <= 0.1 and dy <= 0.1
    line = next(t for t in report.splitlines() if t.startswith("* Simulation grid used:"))
    assert f"{nx}×{ny} points" in line and f"{dx:.4g}×{dy:.4g} Å/pixel" in line
    assert f"{100 * (dx / 0.1 - 1):+.1f}%" in line and "requested 0.1 Å" in line
    assert "* Optics: Cs = 0 mm; no focal spread; point source" in report
