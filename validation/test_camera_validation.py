"""Camera data and DQE(f) in the HRTEM statistics, checked against independent computations.

* A broadband weak contrast (a Gaussian feature one pixel wide) is recorded many times with the
  camera model itself (``model.sample``: MTF blur, Poisson, noise shaping, read noise); the
  SNR² of the optimal linear detector measured from those draws equals the planner's
  whitened pixel-wise statistics (dose × J), and not the frequency-blind ``DQE(0)`` one.
* The Timepix4 preset reproduces the published MTF at Nyquist it was fitted to; its DQE at
  Nyquist is compared with the published one (the white-noise model is conservative there).
* Every preset's numbers with their status, at the energies the built-in examples plan.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from _record import record  # noqa: E402

from temsim import detection
from temsim.camera_data import camera_table
from temsim.cameras import CAMERA_PRESETS, camera_model
from temsim.errors import InputError
from temsim.plan_simulation import _rates_of

N = 32
PER_PIXEL = 2e4  # electrons per pixel: read noise negligible, Gaussian limit of the Poisson counts


def _feature(eps=0.02, sigma=1.0):
    r2 = ((np.arange(N) - N / 2)[:, None]) ** 2 + ((np.arange(N) - N / 2)[None, :]) ** 2
    return eps * np.exp(-r2 / (2 * sigma**2))


def _planner_j(camera, energy, contrast):
    """J per unit dose of the planner's (whitened) image rates, 1 Å pixels."""
    x = np.arange(N, dtype=float)
    sims = {
        (energy, h, 0): {"m": xr.DataArray(v, dims=("x", "y"), coords={"x": x, "y": x}, attrs={"channel_area": 1.0})}
        for h, v in (("H0", np.ones((N, N))), ("H1", 1.0 + contrast))
    }
    mode = SimpleNamespace(label="m", name="HRTEM", kind="image", camera_name=camera)
    rates = _rates_of(SimpleNamespace(energies=(energy,)), mode, sims, 1).isel(energy=0, configuration=0)
    return detection.detection_statistics(rates.isel(hypothesis=0).values, rates.isel(hypothesis=1).values).j_per_dose


def _monte_carlo_snr2(model, contrast, seed, draws=1200):
    """SNR² of the optimal linear detector on images drawn with the camera model."""
    fx, fy = np.fft.fftfreq(N)[:, None], np.fft.fftfreq(N)[None, :]
    # template: the recorded mean difference divided by the noise power, F⁻¹[MTF·ΔN/NNPS]
    template = np.fft.ifft2(np.fft.fft2(contrast) * model.mtf(fx, fy) / model.nnps(fx, fy)).real
    rng = np.random.default_rng(seed)
    t = {}
    for h, image in (("H0", np.ones((N, N))), ("H1", 1.0 + contrast)):
        expected = np.broadcast_to(PER_PIXEL * image, (draws, N, N))
        counts = np.asarray(model.sample(expected, rng), float)
        t[h] = np.tensordot(counts, template, axes=([1, 2], [0, 1]))
    pooled = 0.5 * (t["H0"].var(ddof=1) + t["H1"].var(ddof=1))
    return (t["H1"].mean() - t["H0"].mean()) ** 2 / pooled


@pytest.mark.parametrize(
    "camera, energy", [("counting-ded", 80e3), ("ccd", 80e3), ("timepix4", 100e3), ("timepix4", 200e3)]
)
def test_broadband_feature_information_matches_a_monte_carlo_of_the_camera(camera, energy):
    model = camera_model(camera, energy=energy)
    contrast = _feature()
    snr2 = _monte_carlo_snr2(model, contrast, seed=int(energy) + len(camera))
    whitened = PER_PIXEL * _planner_j(camera, energy, contrast)
    blind = PER_PIXEL * model.dqe0 * _planner_j("ideal", energy, contrast)
    record(
        "camera_validation",
        f"broadband_feature_{camera}_{energy / 1e3:g}keV",
        {
            "monte_carlo_snr2": snr2,
            "whitened_planner_snr2": whitened,
            "dqe0_only_snr2": blind,
            "ratio_mc_to_whitened": snr2 / whitened,
            "ratio_dqe0_only_to_whitened": blind / whitened,
            "tolerance": 0.15,
        },
    )
    assert snr2 == pytest.approx(whitened, rel=0.15)
    # the frequency-blind statistics (DQE(0) only) are optimistic, and further from the draws
    assert blind > whitened and abs(snr2 / whitened - 1) < abs(snr2 / blind - 1)


def test_timepix4_preset_against_its_sources():
    """MTF at Nyquist: the fitted values (Dimova et al. 2024); DQE at Nyquist vs Ding et al. 2026."""
    published_mtf = {100e3: 0.16, 200e3: 0.0046}
    out = {}
    for energy, mtf in published_mtf.items():
        model = camera_model("timepix4", energy=energy)
        out[f"mtf_nyquist_{energy / 1e3:g}keV"] = float(model.mtf(0.5, 0.0))
        out[f"mtf_nyquist_{energy / 1e3:g}keV_published"] = mtf
        out[f"dqe_nyquist_{energy / 1e3:g}keV"] = float(model.dqe(0.5, 0.0))
        assert float(model.mtf(0.5, 0.0)) == pytest.approx(mtf, rel=2e-3)
    out["dqe_nyquist_100keV_published"] = "> 0.2 (Ding et al. 2026, abstract)"
    out["dqe0_published"] = "> 0.9 at 100 and 200 kV (Ding et al. 2026, abstract)"
    record("camera_validation", "timepix4_against_sources", out)
    # the white-noise model is conservative at Nyquist at 100 keV (documented in cameras.toml)
    assert out["dqe_nyquist_100keV"] < 0.2


def test_status_of_every_preset_number_at_the_planned_energies():
    """The table of numbers (and refusals) a plan at 60, 80, 200 and 300 kV uses."""
    for name in CAMERA_PRESETS:
        row = {}
        for energy in (60e3, 80e3, 200e3, 300e3):
            try:
                model = camera_model(name, energy=energy)
            except InputError:
                row[f"{energy / 1e3:g}keV"] = "refused (outside the characterised energies)"
                continue
            row[f"{energy / 1e3:g}keV"] = "; ".join(f"{r[0]}={r[1]} ({r[3]})" for r in model.provenance)
        statuses = {e["status"] for e in camera_table()[name]["parameters"].values()}
        row["statuses"] = sorted(statuses)
        record("camera_validation", f"preset_{name}", row)
        assert statuses <= {"measured", "fitted", "representative", "definition"}
