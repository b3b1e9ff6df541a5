"""int8/int32 arithmetic (simulator/fixedpoint.py): the overflow policies on hand-picked values."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.errors import AccumulatorOverflowError
from simulator.fixedpoint import (
    add_bias_int32,
    check_int8,
    narrow_to_int32,
    ordered_accumulate,
    reduction_is_order_free,
)

MAX, MIN = 2**31 - 1, -(2**31)


def test_wrap_is_twos_complement():
    values = np.array([2**31, 2**32 + 5, MIN - 1, -7], dtype=np.int64)
    assert narrow_to_int32(values, "wrap").tolist() == [MIN, 5, MAX, -7]


def test_saturate_clamps():
    values = np.array([2**40, -(2**40), 7, MAX, MIN], dtype=np.int64)
    assert narrow_to_int32(values, "saturate").tolist() == [MAX, MIN, 7, MAX, MIN]


def test_error_names_the_first_output_in_whole_tensor_coordinates():
    values = np.array([[1, 2], [2**31, -(2**31) - 5]], dtype=np.int64)
    # local (1, 0) of a tile at image 0, channel 3, row 10, column 1, rows and columns stepped by 2 -> [0, 3, 12, 1]
    with pytest.raises(AccumulatorOverflowError, match=r"at \[0, 3, 12, 1\] reaches 2147483648"):
        narrow_to_int32(values, "error", origin=(0, 3, 10, 1), scale=(1, 1, 2, 2))
    assert narrow_to_int32(np.array([MAX, MIN]), "error").tolist() == [MAX, MIN]


def test_saturate_clamps_at_every_step_in_order():
    # products MAX, +5, -10: clamped after the second step, so the result is MAX - 10, not the exact MAX - 5
    weight = np.array([[1, 1, -1]], dtype=np.int64)
    cols = np.array([[MAX, 5, 10]], dtype=np.int64)
    acc, overflowed, _ = ordered_accumulate(weight, cols, "saturate")
    assert acc.tolist() == [[MAX - 10]]
    acc, overflowed, escaped = ordered_accumulate(weight, cols, "error")
    assert acc.tolist() == [[MAX - 5]] and overflowed.tolist() == [[True]]  # left int32 on the way
    assert escaped.tolist() == [[MAX + 5]]  # the running sum when it left, not the final sum


def test_bias_add_under_each_policy():
    psum = np.array([[[MAX]], [[-3]]], dtype=np.int32)
    bias = np.array([1, 3], dtype=np.int32)
    assert add_bias_int32(psum, bias, "wrap").ravel().tolist() == [MIN, 0]
    assert add_bias_int32(psum, bias, "saturate").ravel().tolist() == [MAX, 0]
    with pytest.raises(AccumulatorOverflowError, match="psum \\+ bias"):
        add_bias_int32(psum, bias, "error")


def test_reduction_order_free_bound():
    # 2**17 products of 2**14 reach 2**31: one past int32
    assert reduction_is_order_free(2**17 - 1)
    assert not reduction_is_order_free(2**17)


def test_check_int8_names_the_offender():
    assert check_int8(np.array([-128, 127], dtype=np.int16), "ifmap").dtype == np.int8
    with pytest.raises(ValueError, match=r"ifmap value 128 at \[1\] is outside int8"):
        check_int8(np.array([0, 128]), "ifmap")
