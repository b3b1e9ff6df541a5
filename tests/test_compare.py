"""The scoreboard comparison and its mismatch report, on hand-built arrays with hand-written expectations."""

from __future__ import annotations

import numpy as np

from simulator.compare import compare


def test_equal_arrays_report_all_equal():
    a = np.arange(12, dtype=np.int32).reshape(1, 3, 2, 2)
    cmp = compare(a, a.copy())
    assert cmp.equal and cmp.mismatches == 0
    assert cmp.report().splitlines() == ["ofmap: expected shape [1, 3, 2, 2] int32, actual shape [1, 3, 2, 2] int32",
                                         "  all 12 elements equal"]


def test_shape_mismatch_is_stated_first_and_elements_are_not_compared():
    cmp = compare(np.zeros((1, 2, 3, 3), np.int32), np.zeros((1, 2, 3, 4), np.int32))
    assert not cmp.equal
    lines = cmp.report().splitlines()
    assert lines[0] == "ofmap: expected shape [1, 2, 3, 3] int32, actual shape [1, 2, 3, 4] int32"
    assert "not compared" in lines[1]


def test_dtype_mismatch_is_a_failure_even_with_equal_values():
    cmp = compare(np.zeros((2, 2), np.int32), np.zeros((2, 2), np.int64))
    assert not cmp.equal
    assert cmp.report().splitlines()[0] == "ofmap: expected shape [2, 2] int32, actual shape [2, 2] int64"


def test_int32_report_lists_first_ten_in_c_order_with_decimal_and_hex_then_max_diff():
    expected = np.zeros((1, 2, 3, 4), dtype=np.int32)
    actual = expected.copy()
    # every odd flat index (1, 3, ..., 23) differs: C order puts (0,0,0,1) first, the 10th is flat 19 = (0,1,1,3)
    coords = [(0, c, h, w) for c in range(2) for h in range(3) for w in range(4)][1::2]
    for i, coord in enumerate(coords):
        actual[coord] = -1 - i  # -1 .. -12
    expected[0, 1, 2, 3] = 2**31 - 1  # also one of the 12 coordinates: |diff| = 2**31 - 1 + 12
    cmp = compare(expected, actual)
    assert (cmp.mismatches, cmp.total) == (12, 24)
    lines = cmp.report().splitlines()
    assert lines[0] == "ofmap: expected shape [1, 2, 3, 4] int32, actual shape [1, 2, 3, 4] int32"
    assert lines[1].startswith("  12 of 24 elements differ")
    assert lines[2] == "  at [0, 0, 0, 1]: expected 0 (0x00000000), actual -1 (0xffffffff)"
    assert lines[3] == "  at [0, 0, 0, 3]: expected 0 (0x00000000), actual -2 (0xfffffffe)"
    assert lines[11] == "  at [0, 1, 1, 3]: expected 0 (0x00000000), actual -10 (0xfffffff6)"
    assert lines[12] == "  ... and 2 more"
    assert lines[13] == f"  max |expected - actual|: {2**31 - 1 + 12:,}"
    assert len(lines) == 14
    assert cmp.max_abs_diff == 2**31 - 1 + 12


def test_int8_hex_is_two_digits_and_extreme_difference_does_not_overflow():
    expected = np.array([-128, 5], dtype=np.int8)
    actual = np.array([127, 5], dtype=np.int8)
    cmp = compare(expected, actual, max_listed=10)
    assert cmp.max_abs_diff == 255
    assert cmp.report("ifmap").splitlines()[2] == "  at [0]: expected -128 (0x80), actual 127 (0x7f)"


def test_int32_extremes_max_diff_is_exact():
    cmp = compare(np.array([-(2**31)], np.int32), np.array([2**31 - 1], np.int32))
    assert cmp.max_abs_diff == 2**32 - 1
    assert "expected -2147483648 (0x80000000), actual 2147483647 (0x7fffffff)" in cmp.report()
