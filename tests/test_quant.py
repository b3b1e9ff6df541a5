"""The requantization arithmetic (simulator/quant.py) against hand calculations and the independent exact-rational
closed forms of simulator/golden/quantized.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.golden.quantized import _single, _tflite_double, q31_multiplier
from simulator.quant import (
    clamp_output,
    fma_f32,
    multiply_double_rounding,
    multiply_single_rounding,
    quantize_multiplier,
    requantize_fp32,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

INT32 = st.integers(-(2**31), 2**31 - 1)


@pytest.mark.parametrize(("real", "expected"), [
    (0.5, (2**30, 0)),  # 0.5 = 0.5 * 2^0: fraction 0.5 -> 2^30
    (1.0, (2**30, 1)),  # 1.0 = 0.5 * 2^1
    (0.75, (3 * 2**29, 0)),
    (3.0, (3 * 2**29, 2)),  # a left shift of 2
    (0.0, (0, 0)),
    (2.0**-40, (0, 0)),  # shift below -31 flushes to zero
    (1 - 2.0**-40, (2**30, 1)),  # the fraction rounds up to 2^31: renormalised
])
def test_quantize_multiplier_by_hand(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


def test_single_round_saturates_a_shift_above_30() -> None:
    assert quantize_multiplier(2.0**31) == (2**30, 32)
    assert quantize_multiplier(2.0**31, single_round=True) == (2**31 - 1, 30)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.floats(2.0**-45, 2.0**35, allow_nan=False, allow_infinity=False), st.booleans())
def test_quantize_multiplier_matches_exact_rationals(real: float, single: bool) -> None:
    assert quantize_multiplier(real, single) == q31_multiplier(real, single)


def test_srdhm_and_rounding_divide_by_pot_by_hand() -> None:
    a = np.array([2**30, 1, -1, 5, -5, -(2**31)])
    b = np.array([2**30, 2**30, 2**30, 2**30, 2**30, -(2**31)])
    # 2*a*b / 2^32: 2^29; 0.5 -> 1 and -0.5 -> 0 (ties toward +inf); 2.5 -> 3, -2.5 -> -2; the overflow saturates
    assert saturating_rounding_doubling_high_mul(a, b).tolist() == [2**29, 1, 0, 3, -2, 2**31 - 1]
    x = np.array([5, -5, 3, -3, 4, -4, 7])
    # /2 rounded half away from zero: 2.5 -> 3, -2.5 -> -3, 1.5 -> 2, -1.5 -> -2; /4 of 7 = 1.75 -> 2
    assert rounding_divide_by_pot(x, np.array([1, 1, 1, 1, 2, 2, 2])).tolist() == [3, -3, 2, -2, 1, -1, 2]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(INT32, st.integers(2**30, 2**31 - 1), st.integers(-31, 30))
def test_tflite_double_rounding_matches_exact_rationals(x: int, m: int, shift: int) -> None:
    assert int(multiply_double_rounding(np.array([x]), m, shift)[0]) == _tflite_double(x, m, shift)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(INT32, st.integers(0, 2**31 - 1), st.integers(-31, 30))
def test_single_rounding_matches_exact_rationals(x: int, m: int, shift: int) -> None:
    assert int(multiply_single_rounding(np.array([x]), m, shift)[0]) == _single(x, m, shift)


def test_double_and_single_rounding_by_hand() -> None:
    # x = 2, m = 3*2^29 (0.75), shift -1 (scale 0.375): double rounds 2*0.75 = 1.5 up to 2, then 2/2 = 1;
    # single rounds 0.75 once, to 1. The same answer.
    assert int(multiply_double_rounding(np.array([2]), 3 * 2**29, -1)[0]) == 1
    assert int(multiply_single_rounding(np.array([2]), 3 * 2**29, -1)[0]) == 1
    # x = 1, m = 2^30 (0.5), shift -1 (scale 0.25): double rounds 0.5 up to 1, then 1/2 = 0.5 away from zero to 1;
    # single rounds 0.25 once, to 0. Double rounding is one LSB off here.
    assert int(multiply_double_rounding(np.array([1]), 2**30, -1)[0]) == 1
    assert int(multiply_single_rounding(np.array([1]), 2**30, -1)[0]) == 0
    # a left shift: scale 3.0 = 0.75 * 2^2, x = 5 -> 15 exactly in both
    assert int(multiply_double_rounding(np.array([5]), 3 * 2**29, 2)[0]) == 15
    assert int(multiply_single_rounding(np.array([5]), 3 * 2**29, 2)[0]) == 15


def test_fp32_rounds_half_to_even_and_adds_bias_in_float() -> None:
    acc = np.array([[1], [3], [-1], [5]], dtype=np.int64)  # (C=4, 1): 0.5, 1.5, -0.5, 2.5 after * 0.5
    atws, half = np.full(4, 0.25, dtype=np.float32), np.full(4, 0.5, dtype=np.float32)
    zero = np.zeros(4, dtype=np.float32)
    for per_channel in (True, False):
        assert requantize_fp32(acc, zero, atws, half, per_channel).ravel().tolist() == [0, 2, 0, 2]  # half to even
    # bias 0.75 at scale 0.25 is 3 accumulator units: 1 + 3 = 4 -> 2
    bias = np.full(4, 0.75, dtype=np.float32)
    assert requantize_fp32(acc, bias, atws, half, True).ravel().tolist() == [2, 3, 1, 4]


def test_fma_rounds_once() -> None:
    # (1 + 2^-20)(1 - 2^-20) + (2^24 + 2) = 2^24 + 3 - 2^-40: just below the midpoint 2^24 + 3 of the float32
    # values 2^24 + 2 and 2^24 + 4. Its float64 sum rounds onto the midpoint, and a second rounding (ties to even)
    # would give 2^24 + 4; one rounding gives 2^24 + 2.
    a = np.array([1 + 2.0**-20], dtype=np.float32)
    b, c = np.float32(1 - 2.0**-20), np.array([2.0**24 + 2], dtype=np.float32)
    assert np.float32(a.astype(np.float64) * np.float64(b) + c.astype(np.float64)) == np.float32(2.0**24 + 4)
    assert fma_f32(a, b, c)[0] == np.float32(2.0**24 + 2)
    assert fma_f32(-a, b, -c)[0] == np.float32(-(2.0**24) - 2)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.floats(-1e6, 1e6, width=32), st.floats(-1e3, 1e3, width=32), st.floats(-1e6, 1e6, width=32))
def test_fma_matches_exact_rationals(a: float, b: float, c: float) -> None:
    from fractions import Fraction

    from simulator.golden.quantized import _nearest_f32

    exact = Fraction(a) * Fraction(b) + Fraction(c)
    got = fma_f32(np.array([a], dtype=np.float32), np.float32(b), np.array([c], dtype=np.float32))[0]
    assert got == _nearest_f32(exact)


def test_fp32_out_of_range_conversion_is_int32_min_like_cvtps2dq() -> None:
    out = requantize_fp32(np.array([[2**31 - 1]]), np.zeros(1, dtype=np.float32), np.ones(1, dtype=np.float32),
                          np.full(1, 4.0, dtype=np.float32), True)
    assert out.ravel().tolist() == [-(2**31)]


def test_clamp_saturates_and_relu_clamps_at_the_zero_point() -> None:
    scaled = np.array([-1000, -3, 0, 5, 1000])
    assert clamp_output(scaled, -5, "none").tolist() == [-128, -8, -5, 0, 127]
    assert clamp_output(scaled, 10, "relu").tolist() == [10, 10, 10, 15, 127]  # relu: real 0 is code 10
    assert clamp_output(scaled, -128, "relu").tolist() == [-128, -128, -128, -123, 127]


def test_quantize_multiplier_rejects_negative_scales() -> None:
    with pytest.raises(ValueError, match="finite number"):
        quantize_multiplier(-1.0)
    with pytest.raises(ValueError, match="finite number"):
        quantize_multiplier(math.inf)
