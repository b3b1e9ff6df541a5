"""MAC array (simulator/stages/mac_array.py and its arithmetic, mac_values.py and mac_gemm.py): convs computed by hand,
int8 widening, groups, the fold model."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import MacArrayConfig
from simulator.stages import mac_gemm
from simulator.stages.common import BytesMemo
from simulator.stages.mac_array import fold_model
from simulator.stages.mac_values import conv_i8_i32

X = np.arange(1, 10, dtype=np.int8).reshape(1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
W = np.array([[[[1, 2], [3, 4]]]], dtype=np.int8)  # (M=1, C=1, 2, 2)


def conv(x, w, groups=1, stride=(1, 1), dilation=(1, 1), in_offset=(0, 0), out_hw=(2, 2), policy="error"):
    return conv_i8_i32(x, w, groups, stride, dilation, in_offset, out_hw, policy)


def test_tiny_conv_by_hand():
    # out[r, c] = 1*x[r, c] + 2*x[r, c+1] + 3*x[r+1, c] + 4*x[r+1, c+1]
    out = conv(X, W)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[[1 + 4 + 12 + 20, 2 + 6 + 15 + 24], [4 + 10 + 21 + 32, 5 + 12 + 24 + 36]]])


def test_stride_and_implicit_padding_by_hand():
    # x placed at (1, 1) of a zero canvas (padding 1), 3x3 kernel of ones, stride 2 -> sums of 2x2 corners
    ones = np.ones((1, 1, 3, 3), dtype=np.int8)
    out = conv(X, ones, stride=(2, 2), in_offset=(1, 1))
    np.testing.assert_array_equal(out, [[[1 + 2 + 4 + 5, 2 + 3 + 5 + 6], [4 + 5 + 7 + 8, 5 + 6 + 8 + 9]]])


def test_kernel_dilation_by_hand():
    # dilation 2: the 2x2 kernel reads the four corners of x
    out = conv(X, W, dilation=(2, 2), out_hw=(1, 1))
    assert out.tolist() == [[[1 * 1 + 2 * 3 + 3 * 7 + 4 * 9]]]


def test_negative_offset_crops():
    # x placed at (-1, 0): canvas row 0 is x row 1
    out = conv(X, W, in_offset=(-1, 0), out_hw=(1, 1))
    assert out.tolist() == [[[1 * 4 + 2 * 5 + 3 * 7 + 4 * 8]]]


def test_int8_products_are_widened():
    # (-128) * (-128) = 16384 leaves int8; four of them, 65536, leave int16
    x = np.full((4, 1, 1), -128, dtype=np.int8)
    w = np.full((1, 4, 1, 1), -128, dtype=np.int8)
    assert conv(x, w, out_hw=(1, 1)).tolist() == [[[65536]]]
    # and mixed signs: 127 * -128 = -16256 per product
    assert conv(np.full((4, 1, 1), 127, np.int8), w, out_hw=(1, 1)).tolist() == [[[-65024]]]


def test_groups_do_not_mix_channels():
    # 4 input channels, 2 groups, 2 outputs: out0 = x0 + 2*x1, out1 = 3*x2 + 4*x3 (1x1 kernels)
    x = np.array([[[1]], [[10]], [[100]], [[-100]]], dtype=np.int8)
    w = np.array([[[[1]], [[2]]], [[[3]], [[4]]]], dtype=np.int8)  # (M=2, C/g=2, 1, 1)
    out = conv(x, w, groups=2, out_hw=(1, 1))
    assert out.tolist() == [[[1 + 20]], [[300 - 400]]]


def test_fold_model_by_hand():
    mac = MacArrayConfig(rows=4, cols=4, dataflow="os")
    # os: (Sr, Sc, T) = (E=10, N=3, K=9): folds ceil(10/4)*ceil(3/4) = 3, each 9 + 4 + 4 - 2 = 15 cycles
    assert fold_model(10, 9, 3, mac) == (45, 3)
    ws = MacArrayConfig(rows=4, cols=4, dataflow="ws")
    # ws: (Sr, Sc, T) = (K=9, N=3, E=10): 3 folds of 2*4 + 4 + 10 - 2 = 20 cycles
    assert fold_model(10, 9, 3, ws) == (60, 3)
    ws_db = MacArrayConfig(rows=4, cols=4, dataflow="ws", weight_double_buffer=True)
    assert fold_model(10, 9, 3, ws_db) == (4 + 3 * (4 + 4 + 10 - 2), 3)
    assert fold_model(0, 9, 3, mac) == (0, 0)


def _reference(x, w, groups, dilation, in_offset, out_hw):
    """Direct int64 sums, loops over taps written out here: out[m, r, c] = sum over (ci, u, v) of
    w[m, ci, u, v] * canvas[g*Cg + ci, r + u*dh, c + v*dw], the canvas holding x at ``in_offset``."""
    m, cg, kh, kw = w.shape
    c, h, wi = x.shape
    oh, ow = out_hw
    ch, cw = oh + dilation[0] * (kh - 1), ow + dilation[1] * (kw - 1)
    canvas = np.zeros((c, ch, cw), dtype=np.int64)
    r0, c0 = in_offset
    ys, xs = slice(max(0, r0), min(ch, r0 + h)), slice(max(0, c0), min(cw, c0 + wi))
    canvas[:, ys, xs] = x[:, ys.start - r0:ys.stop - r0, xs.start - c0:xs.stop - c0]
    out = np.zeros((m, oh, ow), dtype=np.int64)
    for j in range(m):
        g = j // (m // groups)
        for u in range(kh):
            for v in range(kw):
                patch = canvas[g * cg:(g + 1) * cg, u * dilation[0]:u * dilation[0] + oh,
                               v * dilation[1]:v * dilation[1] + ow]
                out[j] += np.tensordot(w[j, :, u, v].astype(np.int64), patch, axes=1)
    return out


@pytest.mark.parametrize("scatter_budget", [1 << 20, 0])  # a 0/1 scatter GEMM, or one indexed add per tap
def test_mostly_zero_input_deep_channels(scatter_budget, monkeypatch):
    """A swelled-looking input (one pixel in four non-zero) with more channels than outputs: the engine may skip
    the all-zero pixels, and the sums must not change; also one lone non-zero channel in a 'zero' pixel."""
    monkeypatch.setattr(mac_gemm, "SCATTER_BUDGET_ELEMENTS", scatter_budget)
    rng = np.random.default_rng(7)
    for groups, dilation, offset in ((1, (1, 1), (0, 0)), (2, (2, 1), (1, -1))):
        x = np.zeros((64, 9, 9), dtype=np.int8)
        x[:, 1::2, 1::2] = rng.integers(-128, 128, size=(64, 4, 4))
        x[5, 0, 0] = -128  # a pixel the swell pattern says is zero, holding one value
        w = rng.integers(-128, 128, size=(6, 64 // groups, 3, 3), dtype=np.int8)
        got = conv(x, w, groups=groups, dilation=dilation, in_offset=offset, out_hw=(5, 6))
        np.testing.assert_array_equal(got, _reference(x, w, groups, dilation, offset, (5, 6)))


@pytest.mark.parametrize("rows, cols", [
    (slice(1, None, 2), slice(1, None, 2)),  # a swelled ifmap: the stride as the grid step
    (slice(0, None, 3), slice(2, 9, 2)),  # different steps, first row and column not zero
    (slice(4, 5), slice(None)),  # a single non-zero row: a grid of one row
    (slice(0, 0), slice(None)),  # all zeros: no GEMM at all
])
def test_row_gemms_skip_zero_rows_and_columns(rows, cols, monkeypatch):
    """The row GEMMs multiply only the grid of rows and columns that holds the non-zero pixels; the sums must
    be those of the whole input, also with a stray value off the grid (which makes the grid finer)."""
    monkeypatch.setattr(mac_gemm, "SPARSE_MAX_DENSITY", 0.0)  # never the pixel path
    rng = np.random.default_rng(11)
    for groups, dilation, offset, stray in ((1, (1, 1), (0, 0), None), (2, (2, 1), (1, -2), (7, 3, 4)),
                                            (1, (1, 3), (-1, 2), (0, 8, 8))):
        x = np.zeros((16, 9, 10), dtype=np.int8)
        x[:, rows, cols] = rng.integers(-128, 128, size=x[:, rows, cols].shape)
        if stray is not None:
            x[stray] = 127
        w = rng.integers(-128, 128, size=(6, 16 // groups, 3, 3), dtype=np.int8)
        got = conv(x, w, groups=groups, dilation=dilation, in_offset=offset, out_hw=(8, 9))
        np.testing.assert_array_equal(got, _reference(x, w, groups, dilation, offset, (8, 9)))


def test_support_grid_by_hand():
    mask = np.zeros((7, 9), dtype=bool)
    mask[1, 2] = mask[5, 8] = mask[3, 4] = True  # rows 1, 3, 5; columns 2, 4, 8
    assert mac_gemm.support_grid(mask) == ((1, 2, 3), (2, 2, 4))  # columns 2, 4, 6, 8 (6 is zero, in the grid)
    mask[2, 2] = True  # row 2 joins: step 1
    assert mac_gemm.support_grid(mask) == ((1, 1, 5), (2, 2, 4))
    assert mac_gemm.support_grid(np.zeros((3, 3), dtype=bool)) == ((0, 1, 0), (0, 1, 0))


def test_reused_weight_operand_follows_the_sram_bytes():
    """The GEMM operand converted for one tile is reused on the next only while the weight bytes are equal: a
    weight that changed in SRAM (same shape, same job) gets a fresh operand, [u, g, v, m, c] = w[m, c, u, v]; an
    image seen before the change is found again (the slices of one output-channel tile alternate)."""
    rng = np.random.default_rng(3)
    memo = BytesMemo()
    first = rng.integers(-128, 128, size=(3, 4, 2, 3), dtype=np.int8)
    changed = first.copy()
    changed[2, 1, 1, 0] ^= 1
    seen = []
    for w in (first, first.copy(), changed, first):
        ops = memo.get("k", w.view(np.uint8).ravel(), lambda w=w: mac_gemm.RowOperands([w], 1), lambda o: o.nbytes)
        got = ops.rows[0]
        assert got.shape == (2, 1, 3, 3, 4) and got.dtype == np.float32
        for u, v, m, c in np.ndindex(2, 3, 3, 4):
            assert got[u, 0, v, m, c] == w[m, c, u, v]
        band = ops.band(((0, 1),), 0, 1, 3)  # kernel row 1, channels 1..2: rows (v, m), columns c
        assert band.shape == (9, 2)
        for v, m, c in np.ndindex(3, 3, 2):
            assert band[v * 3 + m, c] == w[m, c + 1, 1, v]
        seen.append(ops)
    assert seen[1] is seen[0] and seen[2] is not seen[0] and seen[3] is seen[0]


def test_bytes_memo_stays_within_its_budget():
    """A value whose image and size exceed the budget is not kept; older entries go first when the budget is full;
    the newest entry always stays."""
    memo = BytesMemo(budget=100)
    images = [np.full(30, i, dtype=np.uint8) for i in range(4)]
    made = []

    def get(i: int) -> object:
        return memo.get("k", images[i], lambda: made.append(i) or object(), lambda _: 10)

    for i in (0, 1, 2):  # 3 x 40 bytes > 100: the oldest (0) is dropped
        get(i)
    assert memo.held == 80
    get(1), get(2)
    get(0)
    assert made == [0, 1, 2, 0] and memo.held == 80
    memo.get("big", np.zeros(95, dtype=np.uint8), lambda: object(), lambda _: 10)
    assert memo.held == 80
