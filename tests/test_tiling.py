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
    cfg = make_config({"input_shape": [1, 1, 1, 1], "in_channels": 1, "out_channels": 3, "kernel_size": 1,
                       "bias": False},
                      hardware={"sram": sram, "layout": {"activation": "NCHW"},
                                "pipeline": {"overlap": "double_buffer"}},
                      data={"ifmap": "random", "weight": "random"})
    ifmap = np.array([[[[-128]]]], dtype=np.int8)
    weight = np.array([[[[3]], [[-128]], [[1]]]], dtype=np.int8)
    result = simulate(cfg, ifmap, weight)
    assert len(result.plan.tiles) == 2  # output channels (0, 2) in weight slot 0, (2, 3) in slot 1
    # out[c] = ifmap * weight[0, c], by hand
    np.testing.assert_array_equal(result.ofmap, [[[[-384]], [[16384]], [[-128]]]])
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, ifmap, weight, np.zeros(3, np.int32)))
