"""Tile planner and SRAM allocation (simulator/tiling.py): regressions found by the property suite."""

from __future__ import annotations

import numpy as np

from simulator import simulate
from tests.conftest import make_config, torch_reference


def test_double_buffer_slot_one_is_bank_aligned_and_checked():
    # A 50-byte weight buffer with 8-byte bank rows, double-buffered: slot 1 used to start at byte 25, off a
    # bank-row boundary, and the planner checked only slot 0. Two output channels per tile fit slot 0 (24 bytes)
    # but the second output-channel tile, in slot 1, ran 2 bytes past the end of the buffer.
    sram = {"ifmap": {"size_bytes": 4096, "num_banks": 1, "bank_width_bytes": 8},
            "weight": {"size_bytes": 50, "num_banks": 1, "bank_width_bytes": 8},
            "psum": {"size_bytes": 4096, "num_banks": 1, "bank_width_bytes": 8}}
    # (nine channels, so that the whole layer does not fit the whole 50-byte buffer either: 68 bytes)
    cfg = make_config({"input_shape": [1, 1, 1, 1], "in_channels": 1, "out_channels": 9, "kernel_size": 1,
                       "bias": False},
                      hardware={"sram": sram, "layout": {"activation": "NCHW"},
                                "pipeline": {"overlap": "double_buffer"}},
                      data={"ifmap": "random", "weight": "random"})
    ifmap = np.array([[[[-128]]]], dtype=np.int8)
    taps = [3, -128, 1, 0, 5, -1, 127, 2, -7]
    weight = np.array(taps, dtype=np.int8).reshape(1, 9, 1, 1)
    result = simulate(cfg, ifmap, weight)
    # output channels (0, 2), (4, 6), (8, 9) in weight slot 0; (2, 4), (6, 8) in slot 1
    assert [t.oc for t in result.plan.tiles] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]
    assert [t.weight_slot for t in result.plan.tiles] == [0, 1, 0, 1, 0]
    assert all(r.base_addr % 8 == 0 and r.end_addr <= 50 for t in result.plan.tiles for r in t.regions
               if r.buffer == "weight")
    # out[c] = ifmap * weight[0, c], by hand
    np.testing.assert_array_equal(result.ofmap[0, :, 0, 0], [-128 * t for t in taps])
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, ifmap, weight, np.zeros(9, np.int32)))
