"""temsim.load_image: each format written by its own library is read back with its calibration."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import xarray as xr

import temsim
from temsim.errors import InputError
from temsim.readers import MissingReaderError, ReaderError, check_calibration, load_image

tifffile = pytest.importorskip("tifffile")
mrcfile = pytest.importorskip("mrcfile")


@pytest.fixture
def picture(rng):
    """A (rows=12, columns=20) image whose orientation is recognizable."""
    return rng.random((12, 20)) + np.arange(20)[None, :] * 0.1


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiff_imagej_calibration_in_nm(tmp_path, picture):
    path = tmp_path / "image.tif"
    tifffile.imwrite(
        path, picture.astype(np.float32), imagej=True, resolution=(1 / 0.02, 1 / 0.03), metadata={"unit": "nm"}
    )
    before = _digest(path)
    image = load_image(path)
    assert _digest(path) == before  # the user's file is not modified
    assert image.dims == ("x", "y") and image.shape == (20, 12)
    np.testing.assert_allclose(image.values, picture.T.astype(np.float32))
    np.testing.assert_allclose(image.attrs["pixel_size"], [0.2, 0.3], rtol=1e-6)  # nm → Å
    np.testing.assert_allclose(float(image.x[1] - image.x[0]), 0.2, rtol=1e-6)
    assert image.attrs["reader"] == "tifffile" and "ImageJ" in image.attrs["calibration"]
    assert image.attrs["source_sha256"] == before


def test_tiff_without_calibration_says_how_to_pass_it(tmp_path, picture):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, picture.astype(np.float32))
    with pytest.raises(InputError, match=r"pixel_size=") as err:
        load_image(path)
    assert str(path) in str(err.value)
    image = load_image(path, pixel_size=0.05)
    np.testing.assert_allclose(image.attrs["pixel_size"], [0.05, 0.05])
    assert "user pixel_size" in image.attrs["calibration"]


def test_mrc_voxel_size(tmp_path, picture):
    path = tmp_path / "image.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(picture.astype(np.float32))
        mrc.voxel_size = (0.7, 0.9, 1.0)
    before = _digest(path)
    image = load_image(path)
    assert _digest(path) == before
    np.testing.assert_allclose(image.values, picture.T.astype(np.float32))
    np.testing.assert_allclose(image.attrs["pixel_size"], [0.7, 0.9], rtol=1e-6)
    assert image.attrs["reader"] == "mrcfile"


def test_mrc_zero_voxel_size_is_missing_calibration(tmp_path, picture):
    path = tmp_path / "image.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(picture.astype(np.float32))
    with pytest.raises(InputError, match="no pixel-size calibration"):
        load_image(path)


def _rsciio_signal(picture, scale_x, scale_y, units):
    return {
        "data": picture,
        "axes": [
            {"name": "y", "size": picture.shape[0], "scale": scale_y, "offset": 0.0, "units": units, "navigate": False},
            {"name": "x", "size": picture.shape[1], "scale": scale_x, "offset": 0.0, "units": units, "navigate": False},
        ],
        "metadata": {"General": {"title": "test"}, "Signal": {"signal_type": ""}},
        "original_metadata": {},
    }


@pytest.mark.parametrize("plugin, suffix", [("emd", "emd"), ("tiff", "tif")])
def test_rosettasciio_written_files(tmp_path, picture, plugin, suffix):
    rsciio = pytest.importorskip(f"rsciio.{plugin}")
    path = tmp_path / f"image.{suffix}"
    rsciio.file_writer(str(path), _rsciio_signal(picture, 0.015, 0.025, "nm"))
    before = _digest(path)
    image = load_image(path)
    assert _digest(path) == before
    np.testing.assert_allclose(image.values, picture.T, rtol=1e-6)
    np.testing.assert_allclose(image.attrs["pixel_size"], [0.15, 0.25], rtol=1e-5)


def test_berkeley_emd_written_by_ncempy(tmp_path, picture):
    """EMD v0.2 written by NCEM's own library (ncempy), read through rosettasciio.

    The format does not say which of dim1/dim2 is x: rosettasciio takes dim1 (the file's first
    array axis) as x, so the image comes out transposed with respect to a TIFF of the same
    array — with each axis's calibration travelling with it (dim1's pixel size on x).
    """
    ncempy_emd = pytest.importorskip("ncempy.io.emd")
    path = tmp_path / "image.emd"
    ncempy_emd.emdWriter(path, picture, pixel_size=(0.025, 0.015), pixel_unit=("nm", "nm"))
    before = _digest(path)
    image = load_image(path)
    assert _digest(path) == before
    assert image.shape == picture.shape  # x = dim1 (12 pixels), y = dim2 (20 pixels)
    np.testing.assert_allclose(image.values, picture)
    np.testing.assert_allclose(image.attrs["pixel_size"], [0.25, 0.15], rtol=1e-6)  # nm → Å, per axis
    assert "EMD" in image.attrs["reader"]


def test_digital_micrograph_goes_to_rosettasciio_and_names_the_complaint(tmp_path):
    pytest.importorskip("rsciio.digitalmicrograph")
    path = tmp_path / "broken.dm4"
    path.write_bytes(b"\x00\x00\x00\x04 not a DM file")
    with pytest.raises(ReaderError, match=r"broken\.dm4.*rosettasciio \(DigitalMicrograph\)"):
        load_image(path)


def test_truncated_tiff_names_file_and_reader(tmp_path, picture):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, picture.astype(np.float32))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ReaderError, match=r"cut\.tif with tifffile"):
        load_image(path)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(ReaderError, match="does not exist"):
        load_image(tmp_path / "nothing.tif")
    other = tmp_path / "image.xyz123"
    other.write_bytes(b"abc")
    with pytest.raises(ReaderError, match="no reader"):
        load_image(other)


def test_missing_reader_names_the_extra(monkeypatch, tmp_path, picture):
    path = tmp_path / "image.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(picture.astype(np.float32))
    monkeypatch.setitem(sys.modules, "mrcfile", None)  # as if not installed: import raises ImportError
    with pytest.raises(MissingReaderError, match=r"temsim\[compare\]"):
        load_image(path)


def test_nan_and_inf_are_refused(picture):
    bad = picture.copy()
    bad[3, 5] = np.nan
    with pytest.raises(InputError, match=r"NaN/inf.*row 3, column 5"):
        load_image(bad, pixel_size=0.1)
    bad[3, 5] = np.inf
    with pytest.raises(InputError, match="NaN/inf"):
        load_image(bad, pixel_size=0.1)


def test_numpy_array_needs_pixel_size(tmp_path, picture):
    with pytest.raises(InputError, match="pixel_size="):
        load_image(picture)
    image = load_image(picture, pixel_size=(0.1, 0.2))
    assert image.shape == (20, 12)
    np.testing.assert_allclose(float(image.y[-1]), 11 * 0.2)
    path = tmp_path / "image.npy"
    np.save(path, picture)
    np.testing.assert_array_equal(load_image(path, pixel_size=0.1).values, picture.T)


def test_temsim_output_round_trips(tmp_path):
    from ase.build import bulk

    potential = temsim.Potential(bulk("Si", cubic=True), sampling=0.2, slice_thickness=2.7)
    wave = temsim.multislice(temsim.PlaneWave(energy=200e3), potential)
    image = temsim.hrtem_image(wave, temsim.Aberrations(C10=-50.0), semiangle_cutoff=20.0)
    path = tmp_path / "image.nc"
    image.to_netcdf(path, engine="h5netcdf")
    before = _digest(path)
    loaded = load_image(path)
    assert _digest(path) == before
    np.testing.assert_array_equal(loaded.values, image.values)
    np.testing.assert_array_equal(loaded.x.values, image.x.values)
    np.testing.assert_array_equal(loaded.y.values, image.y.values)
    assert loaded.attrs["energy"] == image.attrs["energy"]
    assert loaded.attrs["calibration"].startswith("temsim")


def test_stem_dataarray_scan_dims(rng):
    da = xr.DataArray(
        rng.random((5, 7)),
        dims=("scan_x", "scan_y"),
        coords={"scan_x": np.arange(5) * 0.3, "scan_y": np.arange(7) * 0.3},
    )
    image = load_image(da)
    assert image.dims == ("x", "y") and image.shape == (5, 7)
    np.testing.assert_allclose(image.attrs["pixel_size"], [0.3, 0.3])


def test_unit_error_is_named():
    check_calibration(0.5, 0.1)  # 5×: allowed
    with pytest.raises(InputError, match="likely a unit error"):
        check_calibration(1.0, 0.05)  # 20×: nm read as Å
    with pytest.raises(InputError, match="likely a unit error"):
        check_calibration(0.001, 0.05)
