"""Camera models measured like real detectors: flat-field DQE(0), noise power spectra and
edge-method MTFs from simulated counts, compared with the models (within 5 %)."""

import math

import numpy as np
import pytest
import xarray as xr
from _record import record  # noqa: E402

from temsim.cameras import camera_model, frequency_grid
from temsim.noise import apply_noise


def _record(name: str, data: dict) -> None:
    record("noise_validation", name, data)


def _image(values, sampling=1.0):
    nx, ny = values.shape
    return xr.DataArray(
        values.astype(np.float32),
        dims=("x", "y"),
        coords={"x": np.arange(nx) * sampling, "y": np.arange(ny) * sampling},
        attrs={"signal": "image"},
    )


def _flat_fields(detector, electrons_per_pixel, n_fields=48, n=128, seed=0):
    """n_fields independent flat fields in one call (a dose axis of equal doses)."""
    img = _image(np.ones((n, n)))
    if not detector.accepts("image"):  # hybrid pixel arrays: a uniform diffraction pattern
        img = xr.DataArray(
            np.full((n, n), 1.0 / n**2, np.float32),
            dims=("kx", "ky"),
            attrs={"signal": "diffraction", "illuminated_area": float(n * n)},
        )
    out = apply_noise(img, [electrons_per_pixel] * n_fields, detector, seed=seed)
    return out.values.astype(np.float64)


def _nps(fields):
    """Noise power spectrum (counts² per pixel, white Poisson → variance), FFT order."""
    d = fields - fields.mean(axis=(1, 2), keepdims=True)
    n = d.shape[1] * d.shape[2]
    return np.mean(np.abs(np.fft.fft2(d)) ** 2, axis=0) / n


def _low_band(shape, fmax=0.06):
    fx, fy = frequency_grid(shape)
    f = np.hypot(fx, fy)
    return (f > 0) & (f <= fmax), fx, fy


CASES = [
    ("counting-ded", {}, 200.0),
    ("ccd", {}, 200.0),
    ("ccd", {"read_noise": 30.0}, 20.0),  # read noise matters at low dose
    ("hybrid-pixel", {}, 200.0),
    ("ideal", {"dqe0": 0.6}, 200.0),
]


@pytest.mark.parametrize("name,overrides,n_e", CASES)
def test_flat_field_dqe0_matches_model(name, overrides, n_e):
    """DQE(0) = E[S]² / (N · n² · var S) with S the total counts of an n×n flat field: the DC
    bin of the noise power spectrum, estimated from 10 000 independent flat fields."""
    det = camera_model(name, **overrides)
    n, n_fields = 16, 10000
    fields = _flat_fields(det, n_e, n_fields=n_fields, n=n, seed=1)
    totals = fields.sum(axis=(1, 2))
    dqe0_measured = float(totals.mean() ** 2 / (n_e * n * n * totals.var(ddof=1)))
    dqe0_model = float(det.dqe(0.0, 0.0, electrons_per_pixel=n_e)) if hasattr(det, "read_noise") else det.dqe0
    rel = abs(dqe0_measured / dqe0_model - 1)
    sampling_error = math.sqrt(2 / (n_fields - 1))
    label = "_".join(f"{k}={v}" for k, v in overrides.items()) or "preset"
    _record(
        f"dqe0_{name}_{label}_N{n_e:g}",
        {
            "electrons_per_pixel": n_e,
            "dqe0_measured": dqe0_measured,
            "dqe0_model": dqe0_model,
            "relative_error": rel,
            "relative_sampling_error": sampling_error,
        },
    )
    assert rel < 0.05


@pytest.mark.parametrize("name", ["counting-ded", "ccd"])
def test_noise_power_spectrum_matches_model(name):
    det = camera_model(name, read_noise=0.0) if name == "ccd" else camera_model(name)
    n_e = 400.0
    fields = _flat_fields(det, n_e, n_fields=128, n=128, seed=2)
    nps = _nps(fields)
    # NNPS model: NPS(f) = (counts per electron)² · N / DQE(0) · NNPS(f) for integrating cameras,
    # mean counts · NNPS for counting (white)
    gain = fields.mean() / n_e
    nnps_measured = nps / (gain**2 * n_e / det.dqe0)
    fx, fy = frequency_grid(nps.shape)
    # radial average in bins of 0.05 cycles/pixel
    f = np.hypot(fx, fy)
    edges = np.arange(0.0, 0.55, 0.05)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (f > lo) & (f <= hi)
        measured = float(nnps_measured[sel].mean())
        model = float(np.broadcast_to(det.nnps(fx, fy), nps.shape)[sel].mean())
        rows.append(
            {
                "f_lo": lo,
                "f_hi": hi,
                "nnps_measured": measured,
                "nnps_model": model,
                "relative_error": abs(measured / model - 1),
            }
        )
    _record(f"nnps_{name}", {"electrons_per_pixel": n_e, "bins": rows})
    worst = max(r["relative_error"] for r in rows)
    assert worst < 0.05, rows


def _edge_mtf(det, n=256, rows_dose=1e5, seed=3):
    """Edge method: a vertical edge (dark 0.2 → bright 1.0), ESF averaged along y, LSF = dESF/dx,
    MTF = |DFT(LSF)| normalized at f = 0, using only the window holding the rising edge."""
    values = np.full((n, n), 0.2)
    values[n // 4 : 3 * n // 4, :] = 1.0
    counts = apply_noise(_image(values), rows_dose, det, seed=seed).values.astype(np.float64)
    esf = counts.mean(axis=1)
    lsf = np.diff(esf)[: n // 2]  # rising edge at n/4, falling edge outside the window
    spectrum = np.abs(np.fft.rfft(lsf))
    freqs = np.fft.rfftfreq(lsf.size)
    return freqs, spectrum / spectrum[0]


@pytest.mark.parametrize("name", ["counting-ded", "ccd"])
def test_edge_method_mtf_matches_model(name):
    det = camera_model(name)
    freqs, measured = _edge_mtf(det)
    model = det.mtf(freqs, 0.0)
    sel = model >= 0.1
    rel = np.abs(measured[sel] / model[sel] - 1)
    absolute = np.abs(measured - model)
    _record(
        f"edge_mtf_{name}",
        {
            "f": freqs[::8].tolist(),
            "mtf_measured": measured[::8].tolist(),
            "mtf_model": model[::8].tolist(),
            "max_relative_error_where_mtf>=0.1": float(rel.max()),
            "max_absolute_error": float(absolute.max()),
            "mtf_model_nyquist": float(det.mtf(0.5, 0.0)),
            "mtf_measured_nyquist": float(measured[-1]),
        },
    )
    assert rel.max() < 0.05
    assert absolute.max() < 0.02


def test_dqe_at_frequency_from_edge_mtf_and_nps():
    """DQE(f) = MTF(f)² · g² · N / NPS(f), MTF from the edge method and NPS from flat fields
    (ring-averaged: the counting camera's noise is isotropic), vs the model along fx."""
    det = camera_model("counting-ded")
    freqs, mtf = _edge_mtf(det)
    n_e, n = 400.0, 128
    fields = _flat_fields(det, n_e, n_fields=64, n=n, seed=4)
    nps = _nps(fields)
    gain = fields.mean() / n_e
    fx, fy = frequency_grid((n, n))
    f = np.hypot(fx, fy)
    rows = []
    for target in (0.0625, 0.125, 0.25, 0.375, 0.4375):
        ring = np.abs(f - target) < 0.5 / n
        measured = float(np.interp(target, freqs, mtf)) ** 2 * gain**2 * n_e / float(nps[ring].mean())
        rows.append(
            {
                "f": target,
                "dqe_measured": measured,
                "dqe_model": float(det.dqe(target, 0.0)),
                "ring_bins": int(ring.sum()),
            }
        )
    _record("dqe_f_counting-ded", {"rows": rows})
    for r in rows:
        assert abs(r["dqe_measured"] / r["dqe_model"] - 1) < 0.05, r


def test_pmt_dqe_including_electronic_noise():
    det = camera_model("annular-pmt", pulse_height_cv=0.7, electronic_noise=2.0)
    n_e = 10.0
    sig = xr.DataArray(
        np.ones((256, 256), np.float32),
        dims=("scan_x", "scan_y"),
        coords={"scan_x": np.arange(256.0), "scan_y": np.arange(256.0)},
        attrs={"signal": "stem"},
    )
    out = apply_noise(sig, n_e, det, seed=5).values.astype(np.float64)
    dqe_measured = out.mean() ** 2 / (n_e * out.var())
    dqe_model = float(det.dqe(0.0, electrons_per_pixel=n_e))
    _record(
        "dqe0_annular-pmt",
        {
            "electrons_per_probe": n_e,
            "dqe_measured": dqe_measured,
            "dqe_model": dqe_model,
            "dqe_no_electronic_noise": det.dqe0,
        },
    )
    assert abs(dqe_measured / dqe_model - 1) < 0.05
    assert dqe_model < det.dqe0 * 0.8  # electronic noise of 2 pulses costs > 20 % at 10 e


def test_coincidence_loss_dqe0_matches_analytic():
    det = camera_model("counting-ded", dqe0=0.9)
    n_e, exposure = 200.0, 0.25  # 100 readout frames at 400 fps → μ = 1.8 per pixel per frame
    img = _image(np.ones((128, 128)))
    fields = apply_noise(img, [n_e] * 16, det, seed=6, exposure_time=exposure).values.astype(np.float64)
    # DQE(0) from the flat-field response slope: d(mean)/dN by a second dose, then variance
    fields2 = apply_noise(img, [n_e * 1.01] * 16, det, seed=7, exposure_time=exposure).values.astype(np.float64)
    slope = (fields2.mean() - fields.mean()) / (0.01 * n_e)
    mu_rate = n_e / exposure
    slope_model = 0.9 * math.exp(-0.9 * mu_rate / 400.0)
    dqe_measured = slope**2 * n_e / fields.var(axis=(1, 2)).mean()
    dqe_model = det.dqe0_at_rate(mu_rate)
    _record(
        "coincidence_counting-ded",
        {
            "slope_measured": slope,
            "slope_model": slope_model,
            "dqe0_measured": dqe_measured,
            "dqe0_model": dqe_model,
            "recorded_fraction": det.recorded_fraction(mu_rate),
        },
    )
    assert abs(slope / slope_model - 1) < 0.05
    assert abs(dqe_measured / dqe_model - 1) < 0.1
