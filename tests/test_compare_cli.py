"""``temsim compare IMAGE CONFIG.toml``: a study file plus [compare]/[experiment] tables."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import temsim
from temsim.cli import main
from temsim.compare_cli import read_config
from temsim.errors import StudyError

tifffile = pytest.importorskip("tifffile")

STUDY = """
name = "tiny-graphene"

[specimen]
example = "graphene"
arguments = {vacuum = 2.0}
supercell = [3, 2, 1]

[feature]
kind = "substitution"
element = "Si"
host_element = "C"

[microscope]
energies = [80e3]
semiangle_cutoff = 30.0
aberrations = {C30 = -100000.0}

[[modes]]
name = "HRTEM"
defocus = -50.0

[simulation]
sampling = 0.1
slice_thickness = 2.0
"""

COMPARE = """
[experiment]
pixel_size = {pixel}

[compare]
fit = ["defocus", "shift", "scale", "dose"]
gain = 1.0
"""


@pytest.fixture
def experiment(tmp_path):
    """A noisy HRTEM image of the study's H1 structure at defocus −70 Å, as a TIFF without calibration."""
    study_path = tmp_path / "study.toml"
    study_path.write_text(STUDY)
    study, _, _ = read_config(study_path)
    _, h1, _ = study.hypotheses()
    potential = temsim.Potential(h1, sampling=0.1, slice_thickness=2.0)
    wave = temsim.multislice(temsim.PlaneWave(energy=80e3), potential)
    lens = study.aberrations.with_defocus(-70.0)
    image = temsim.hrtem_image(wave, lens, semiangle_cutoff=30.0)
    counts = temsim.apply_noise(image, 5000.0, camera="ideal", seed=1)
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, counts.values.T)
    pixel = float(counts.x[1] - counts.x[0])
    config = tmp_path / "compare.toml"
    config.write_text(STUDY + COMPARE.format(pixel=pixel))
    return path, config


def test_compare_command_writes_a_report(experiment, tmp_path, capsys):
    image, config = experiment
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    output = tmp_path / "out"
    code = main(["compare", str(image), str(config), "--output", str(output)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert sorted(p.name for p in output.iterdir()) == ["compare.md", "compare.nc", "compare.png"]
    assert "| defocus |" in printed.out and "converged" in printed.out
    defocus = float(printed.out.split("| defocus |")[1].split("|")[0])
    assert abs(defocus + 70.0) < 10.0
    assert hashlib.sha256(image.read_bytes()).hexdigest() == digest
    # a second run refuses to replace the report
    assert main(["compare", str(image), str(config), "--output", str(output)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_bad_config_names_the_key(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(STUDY + '\n[compare]\nfit = ["defocus"]\nsmoothing = 2\n')
    with pytest.raises(StudyError, match="smoothing"):
        read_config(config)
    image = tmp_path / "image.npy"
    np.save(image, np.ones((8, 8)))
    assert main(["compare", str(image), str(config)]) == 1
    assert "unknown key(s) ['smoothing'] in [compare]" in capsys.readouterr().err
    config.write_text(STUDY + "\n[compare]\nefficiency = 2\n")
    with pytest.raises(StudyError, match=r"compare.efficiency must be ≤ 1"):
        read_config(config)
    config.write_text(STUDY + "\n[compare]\nbounds = {defocus = [0]}\n")
    with pytest.raises(StudyError, match=r"compare.bounds.defocus must be \[low, high\]"):
        read_config(config)


def test_missing_calibration_says_how_to_pass_it(experiment, tmp_path, capsys):
    image, _ = experiment
    config = tmp_path / "no-pixel.toml"
    config.write_text(STUDY)
    assert main(["compare", str(image), str(config), "--output", str(tmp_path / "x")]) == 1
    assert "pixel_size" in capsys.readouterr().err


def test_stem_keys_are_read_and_checked(tmp_path):
    config = tmp_path / "stem.toml"
    config.write_text(STUDY + '\n[compare]\ndefoci = [-20, 0, 20]\nsignal = "integrated"\nregularization = 0.05\n')
    _, options, _ = read_config(config)
    assert options["defoci"] == (-20.0, 0.0, 20.0)
    assert options["signal"] == "integrated" and options["regularization"] == 0.05
    config.write_text(STUDY + "\n[compare]\ndefoci = [0, 10]\n")
    with pytest.raises(StudyError, match="at least 3 probe defoci"):
        read_config(config)
    config.write_text(STUDY + "\n[compare]\nregularization = -1\n")
    with pytest.raises(StudyError, match="compare.regularization"):
        read_config(config)
