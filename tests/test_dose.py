"""Dose bookkeeping: hand-checkable conversions, exact round trips, bad input."""

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from temsim.dose import Dose, DoseWarning
from temsim.errors import InputError

E = 1.602176634e-19  # C, exact (SI 2019)

positive = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False, allow_infinity=False)


def test_stem_example_by_hand():
    # 50 pA for 10 µs = 5e-16 C = 3120.75 electrons per probe position; step 0.2 Å → area 0.04 Å²
    d = Dose.from_current(50, 10e-6, 0.2)
    electrons = 50e-12 * 10e-6 / E
    assert electrons == pytest.approx(3120.7545, rel=1e-7)
    assert d.value == pytest.approx(electrons / 0.04, rel=1e-14)
    assert d.value == pytest.approx(78018.86, rel=1e-6)
    assert d.electrons_per_probe(0.2) == pytest.approx(electrons, rel=1e-14)


def test_hrtem_pixel_and_rectangular_step():
    d = Dose(100.0)
    assert d.electrons_per_pixel(0.05) == pytest.approx(100 * 0.0025)
    assert d.electrons_per_probe((0.2, 0.5)) == pytest.approx(100 * 0.1)


def test_coulomb_per_cm2():
    # 1 C/cm² = 1/e electrons per 1e16 Å² = 624.15 e/Å²
    assert Dose.from_coulomb_per_cm2(1.0).value == pytest.approx(624.150907, rel=1e-8)
    assert Dose(624.150907).coulomb_per_cm2 == pytest.approx(1.0, rel=1e-8)


@settings(max_examples=60, deadline=None)
@given(current=positive, dwell=positive, step=st.floats(0.01, 10))
def test_current_round_trip(current, dwell, step):
    dwell = dwell * 1e-6
    d = Dose.from_current(current, dwell, step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DoseWarning)
        assert math.isclose(d.current(dwell, step), current, rel_tol=4e-16 * 8)
        assert math.isclose(d.dwell_time(current, step), dwell, rel_tol=4e-16 * 8)


@settings(max_examples=60, deadline=None)
@given(dose=positive, t=positive, px=st.floats(0.01, 10), n=st.integers(1, 50))
def test_rate_pixel_and_frame_round_trips(dose, t, px, n):
    d = Dose(dose, n)
    assert math.isclose(Dose.from_dose_rate(d.dose_rate(t), t).value, dose, rel_tol=1e-15)
    assert math.isclose(Dose.from_electrons_per_pixel(d.electrons_per_pixel(px), px).value, dose, rel_tol=1e-15)
    assert math.isclose(d.per_frame().value * n, dose, rel_tol=1e-15)
    # frame time at a dose rate times n_frames is the total exposure
    assert math.isclose(d.frame_time(2.0) * n * 2.0, dose, rel_tol=1e-15)


def test_multiframe_split_conserves_total():
    d = Dose.from_current(10, 1e-6, 0.5, n_frames=4)
    single = Dose.from_current(10, 1e-6, 0.5)
    assert d.value == pytest.approx(4 * single.value)
    assert d.frame_dose == pytest.approx(single.value)
    assert d.split(8).frame_dose == pytest.approx(d.value / 8)
    assert d.current(1e-6, 0.5) == pytest.approx(10)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_negative_or_nonfinite_dose_rejected(bad):
    with pytest.raises(InputError, match="dose"):
        Dose(bad)


def test_negative_current_and_zero_dwell_rejected():
    with pytest.raises(InputError, match="current"):
        Dose.from_current(-5, 1e-6, 0.2)
    with pytest.raises(InputError, match="dwell"):
        Dose.from_current(5, 0, 0.2)
    with pytest.raises(InputError, match="n_frames"):
        Dose(10, 0)


def test_absurd_current_warns():
    # 1e5 e/Å² with 0.2 Å steps in 1 ns per position needs ~640 µA
    with pytest.warns(DoseWarning, match="pA"):
        Dose(1e5).current(1e-9, 0.2)
    with pytest.warns(DoseWarning):
        Dose.from_current(1e6, 1e-6, 0.2)
