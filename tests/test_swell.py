"""Swelling DMA (simulator/stages/swell.py): zero insertion, border pad, crop, against grids written by hand."""

from __future__ import annotations

import numpy as np

from simulator import simulate
from simulator.config import DmaConfig
from simulator.stages.swell import place_on_canvas, swell, swell_cycles
from tests.conftest import make_config

X3 = np.arange(1, 10, dtype=np.int8).reshape(1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]


def test_zero_insertion_stride2_pad1_and_output_padding():
    # k=3, s=2, p=1, op=1: q = d(k-1)-p = 1 zero before, q + op = 2 after; (3-1)*2+1 + 1 + 2 = 8
    expected = np.array([
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 2, 0, 3, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 4, 0, 5, 0, 6, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 7, 0, 8, 0, 9, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ], dtype=np.int8)
    out = swell(X3, (2, 2), (1, 1), (2, 2))
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, expected[None])


def test_negative_pad_crops():
    # stride 2 swells to 5x5; crop one row on top (pad -1) and two columns on the right (pad -2)
    expected = np.array([
        [0, 0, 0],
        [4, 0, 5],
        [0, 0, 0],
        [7, 0, 8],
    ], dtype=np.int8)
    np.testing.assert_array_equal(swell(X3, (2, 2), (-1, 0), (0, -2)), expected[None])


def test_non_square_stride_and_channels_are_independent():
    x = np.stack([X3[0], -X3[0]])  # 2 channels
    out = swell(x, (1, 3), (0, 0), (0, 0))  # rows untouched, two zeros between columns
    expected = np.array([[1, 0, 0, 2, 0, 0, 3], [4, 0, 0, 5, 0, 0, 6], [7, 0, 0, 8, 0, 0, 9]], dtype=np.int8)
    np.testing.assert_array_equal(out, np.stack([expected, -expected]))


def test_place_on_canvas_drops_pixels_outside():
    out = place_on_canvas(X3, (2, 2), (-2, 1), (2, 4))
    # row 1 of x lands on canvas row 0, row 2 on row 2 (outside); columns at 1, 3 (5 is outside)
    np.testing.assert_array_equal(out, [[[0, 4, 0, 5], [0, 0, 0, 0]]])


def test_stage_writes_swelled_tile_into_sram():
    # seed-case-2 geometry on a 2x2 input: k3 s2 p1 op1 -> output 4x4, staged canvas 6x6
    cfg = make_config({"input_shape": [1, 1, 2, 2], "in_channels": 1, "out_channels": 1, "kernel_size": 3,
                       "stride": 2, "padding": 1, "output_padding": 1},
                      hardware={"layout": {"activation": "NC1HWC0", "c0": 4}})
    seen = {}

    def observer(stage, tile, sram, cost):
        if stage == "swell":
            seen["swelled"] = np.array(sram.read(tile.region("ifmap_swelled")))

    simulate(cfg, np.array([[[[1, 2], [3, 4]]]], dtype=np.int8), observer=observer)
    expected = np.array([
        [0, 0, 0, 0, 0, 0],
        [0, 1, 0, 2, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 3, 0, 4, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ], dtype=np.int8)
    np.testing.assert_array_equal(seen["swelled"], expected[None])


def test_swell_cycles_by_hand():
    # 8 set-up cycles + ceil(max(100 read, 300 written) / 64 per cycle) = 8 + 5
    assert swell_cycles(100, 300, DmaConfig(bytes_per_cycle=64, setup_cycles=8)) == 13
