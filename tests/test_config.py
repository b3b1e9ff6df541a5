"""Config models (simulator/config/): pair normalisation, output sizes against hand values, a few errors.

The catalogue of bad inputs lives elsewhere; these are the rules the engine relies on.
"""

from __future__ import annotations

import pytest

from simulator.config import HardwareConfig
from simulator.errors import ConfigError
from tests.conftest import make_config

BASE = {"input_shape": [1, 2, 5, 5], "in_channels": 2, "out_channels": 4, "kernel_size": 3}


def layer(**changes):
    return make_config({**BASE, **changes}).layer


def test_pairs_accept_int_or_list():
    one = layer(kernel_size=3, stride=2, padding=1, output_padding=1, dilation=1)
    assert (one.kernel_size, one.stride, one.padding, one.output_padding, one.dilation) == (
        (3, 3), (2, 2), (1, 1), (1, 1), (1, 1))
    two = layer(kernel_size=[3, 5], stride=[1, 2], padding=[0, 2], dilation=[2, 1])
    assert (two.kernel_size, two.stride, two.padding, two.dilation) == ((3, 5), (1, 2), (0, 2), (2, 1))


@pytest.mark.parametrize(("changes", "expected"), [
    # (H-1)s - 2p + d(k-1) + op + 1
    ({"input_shape": [1, 2, 5, 5], "stride": 3}, (15, 15)),  # seed CASE_1: 4*3 + 2 + 1
    ({"input_shape": [1, 2, 4, 6], "stride": 2, "padding": 1, "output_padding": 1}, (8, 12)),  # seed CASE_2
    ({"input_shape": [1, 2, 3, 4], "stride": [2, 1], "padding": [4, 0], "dilation": 2, "output_padding": [1, 0]},
     (2, 8)),  # rows: 4 - 8 + 4 + 1 + 1 = 2 (crop); cols: 3 + 4 + 1 = 8
    ({"input_shape": [1, 2, 4, 4], "kernel_size": [4, 1], "stride": 2, "padding": 1}, (8, 5)),  # DCGAN-like
])
def test_conv_transpose2d_output_hw_by_hand(changes, expected):
    assert layer(**changes).output_hw == expected


@pytest.mark.parametrize(("changes", "expected"), [
    # floor((H + 2p - d(k-1) - 1) / s) + 1
    ({"input_shape": [1, 2, 7, 7], "stride": 2, "padding": 1}, (4, 4)),  # (7 + 2 - 2 - 1)//2 + 1
    ({"input_shape": [1, 2, 7, 6], "stride": 2, "padding": 1, "dilation": 2}, (3, 2)),  # 4//2+1, 3//2+1
    ({"input_shape": [1, 2, 1, 1], "padding": 1}, (1, 1)),
])
def test_conv2d_output_hw_by_hand(changes, expected):
    assert layer(op="conv2d", **changes).output_hw == expected


def test_weight_shapes_follow_torch():
    assert layer(groups=2).weight_shape == (2, 2, 3, 3)  # transposed: (C_in, C_out/g, kh, kw)
    assert layer(op="conv2d", groups=2).weight_shape == (4, 1, 3, 3)  # conv: (C_out, C_in/g, kh, kw)


def test_single_layer_is_normalised_to_one_named_layer():
    cfg = make_config(BASE)
    assert not cfg.is_network and len(cfg.layers) == 1 and cfg.layer.name == "t"


def test_hardware_defaults_match_the_documented_engine():
    hw = HardwareConfig()
    assert (hw.mac_array.rows, hw.mac_array.cols, hw.mac_array.dataflow) == (32, 32, "os")
    assert hw.sram.ifmap.size_bytes == 512 * 1024 and hw.accumulator.on_overflow == "error"
    assert hw.layout.activation == "NHWC" and hw.pipeline.overlap == "double_buffer"


@pytest.mark.parametrize(("changes", "message"), [
    ({"groups": 3}, r"in_channels=2 is not divisible by groups=3"),
    ({"stride": 2, "output_padding": 2}, r"output_padding=\[2, 2\] must be smaller than stride or dilation"),
    ({"padding": 5}, r"output size comes out -3x-3"),  # 4 - 10 + 2 + 1
    ({"input_shape": [1, 3, 5, 5]}, r"input_shape\[1\]=3 must equal in_channels=2"),
    ({"kernel_sise": 3}, r"layer\.kernel_sise: unknown key"),
])
def test_invalid_layers_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        layer(**changes)


def test_output_padding_below_dilation_is_valid():
    assert layer(output_padding=1, dilation=2).output_hw == (4 + 4 + 1 + 1, 10)
