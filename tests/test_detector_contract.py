"""The CompiledDetector contract every scan driver relies on, checked for every detector class."""

import numpy as np
import pytest
import xarray as xr

import temsim.detectors as td
from temsim.errors import GridMismatchError
from temsim.grid import Grid
from temsim.positions import GridScan

GRID = Grid((12.0, 10.0), (96, 80))
ENERGY = 200e3

DETECTORS = {
    "annular": td.AnnularDetector(20, 60),
    "flexible": td.FlexibleAnnularDetector(step=5.0),
    "segmented": td.SegmentedDetector(5, 20, nsegments=6, rings=2),
    "idpc": td.IntegratedDPC(5, 20),
    "com": td.CenterOfMass(),
    "icom": td.IntegratedCenterOfMass(),
    "pixelated": td.PixelatedDetector(max_angle=40.0, binning=2),
}

#: The own dims each detector declares (none for the integrated, derived ones).
EXPECTED_DIMS = {
    "annular": (),
    "flexible": ("radial_bin",),
    "segmented": ("ring", "segment"),
    "idpc": (),
    "com": ("component",),
    "icom": (),
    "pixelated": ("kx", "ky"),
}


def _intensity(n=3, gpts=GRID.gpts, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.random((n,) + tuple(gpts)).astype(np.float32)
    return values / values.sum(axis=(1, 2), keepdims=True)


def test_every_detector_class_is_covered():
    classes = {type(d) for d in DETECTORS.values()}
    parameter_classes = {
        getattr(td, name)
        for name in td.__all__
        if isinstance(getattr(td, name), type) and hasattr(getattr(td, name), "compile")
    }
    assert parameter_classes <= classes


def test_compiled_classes_live_at_module_level():
    for det in DETECTORS.values():
        compiled = det.compile(GRID, ENERGY, np)
        cls = type(compiled)
        assert "<locals>" not in cls.__qualname__
        assert getattr(td, cls.__name__) is cls
        assert cls.__doc__


@pytest.mark.parametrize("name", list(DETECTORS))
def test_value_shape_matches_measure(name):
    compiled = DETECTORS[name].compile(GRID, ENERGY, np)
    assert isinstance(compiled, td.CompiledDetector)
    assert compiled.gpts == GRID.gpts
    values = compiled.measure(_intensity())
    assert values.shape == (3,) + compiled.value_shape


@pytest.mark.parametrize("name", list(DETECTORS))
def test_wrong_intensity_shape_raises_grid_mismatch(name):
    compiled = DETECTORS[name].compile(GRID, ENERGY, np)
    for bad in (_intensity(gpts=(80, 96)), _intensity()[0]):
        with pytest.raises(GridMismatchError) as info:
            compiled.measure(bad)
        assert str(bad.shape) in str(info.value) and "96, 80" in str(info.value)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_flags_and_dims_are_declared(name):
    compiled = DETECTORS[name].compile(GRID, ENERGY, np)
    assert isinstance(type(compiled).derived, bool)
    assert compiled.derived == (name in ("idpc", "icom"))
    assert tuple(compiled.dims) == EXPECTED_DIMS[name]
    assert isinstance(compiled.attrs, dict) and "detector" in compiled.attrs
    assert set(compiled.extra_coords()) >= set(compiled.dims) - {"ring", "segment", "component"}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_finalize_gives_the_declared_dims(name):
    compiled = DETECTORS[name].compile(GRID, ENERGY, np)
    scan = GridScan(gpts=(4, 3)).resolve(GRID.extent, 0.5)
    values = np.asarray(compiled.measure(_intensity(n=12)))
    da = compiled.finalize(values.reshape(scan.shape + values.shape[1:]), scan, {"energy": ENERGY})
    assert isinstance(da, xr.DataArray)
    assert da.dims == tuple(scan.dims) + tuple(compiled.dims)
    assert da.attrs["energy"] == ENERGY and da.attrs["detector"] == compiled.attrs["detector"]
    if not compiled.derived:
        assert da.shape == scan.shape + compiled.value_shape
