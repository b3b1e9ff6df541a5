"""Issue 15, "every layer fits": input-channel and width tiles, bit-exact with torch, and the one refusal left.

References are independent of the engine: torch (int64, or float64 where the layer is large: every partial sum of
int8 products there stays below 2**53, so float64 is exact) and hand calculations. Large layers are marked slow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulator import simulate
from simulator.cli import main
from simulator.errors import AccumulatorOverflowError
from simulator.pipeline import plan_for
from tests.conftest import make_config, torch_reference

METHODS = ("swell", "phase")
RANDOM = {"ifmap": "random", "weight": "random", "bias": "random"}


def sram(size: int, banks: int = 4, width: int = 8) -> dict[str, Any]:
    return {b: {"size_bytes": size, "num_banks": banks, "bank_width_bytes": width} for b in ("ifmap", "weight", "psum")}


def float_reference(layer: Any, ifmap: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """torch in float64, exact here: |sum| <= K * 2**14 < 2**53 for every K these tests use."""
    assert layer.reduction_length * 2**14 < 2**53
    x, w = torch.from_numpy(ifmap.astype(np.float64)), torch.from_numpy(weight.astype(np.float64))
    if layer.op == "conv_transpose2d":
        y = F.conv_transpose2d(x, w, None, layer.stride, layer.padding, layer.output_padding, layer.groups,
                               layer.dilation)
    else:
        y = F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return y.numpy().astype(np.int64) + bias.astype(np.int64)[None, :, None, None]


def run_exact(layer: dict[str, Any], hardware: dict[str, Any], method: str, reference: Any = torch_reference,
              seed: int = 0) -> Any:
    cfg = make_config(layer, hardware=hardware, engine={"transposed_conv": method}, data={**RANDOM, "seed": seed})
    result = simulate(cfg)
    t = result.tensors
    np.testing.assert_array_equal(result.ofmap, reference(cfg.layer, t.ifmap, t.weight, t.bias))
    return result


def tiled_both_ways(result: Any) -> bool:
    plan = result.plan
    return plan.ic_per_tile < result.layer.in_channels // result.layer.groups and plan.cols_per_tile < \
        result.layer.output_hw[1]


# ------------------------------------------------------------------------------------------- small buffers


LAYER_96 = {"op": "conv_transpose2d", "input_shape": [1, 96, 10, 12], "in_channels": 96, "out_channels": 96,
            "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1, "bias": True}
CONV_96 = {"op": "conv2d", "input_shape": [1, 96, 20, 22], "in_channels": 96, "out_channels": 96,
           "kernel_size": 3, "stride": 1, "padding": 1, "bias": True}


@pytest.mark.parametrize("size", [4096, 8192])
@pytest.mark.parametrize("method", METHODS)
def test_96_channels_on_4_and_8_kib(size: int, method: str) -> None:
    result = run_exact(LAYER_96, {"sram": sram(size)}, method)
    assert len(result.plan.tiles) > 1  # (the whole layer needs ~200 KB)


@pytest.mark.parametrize("size", [4096, 8192])
def test_96_channel_conv2d_on_4_and_8_kib(size: int) -> None:
    result = run_exact(CONV_96, {"sram": sram(size)}, "swell")
    assert len(result.plan.tiles) > 1


def test_input_channel_slices_and_width_tiles_together() -> None:
    layer = {"op": "conv_transpose2d", "input_shape": [2, 40, 6, 30], "in_channels": 40, "out_channels": 6,
             "kernel_size": [3, 4], "stride": [2, 3], "padding": [1, 2], "dilation": [1, 2], "bias": True}
    for method in METHODS:
        result = run_exact(layer, {"sram": sram(1024)}, method)
        assert tiled_both_ways(result), result.plan.shape()


@pytest.mark.parametrize("overlap", ["serial", "double_buffer"])
def test_halo_columns_are_reloaded_and_counted(overlap: str) -> None:
    # conv2d 3x3, stride 1, padding 1, 1 channel, width 64 on 16-byte-wide ifmap slots: every width tile loads
    # its columns plus one halo column on each side it has a neighbour
    layer = {"op": "conv2d", "input_shape": [1, 1, 1, 64], "in_channels": 1, "out_channels": 1, "kernel_size": 3,
             "padding": 1, "bias": False}
    hw = {"sram": {"ifmap": {"size_bytes": 32, "num_banks": 1, "bank_width_bytes": 4}},
          "pipeline": {"overlap": overlap}}
    result = run_exact(layer, hw, "swell")
    tiles = result.plan.tiles
    assert len(tiles) > 1
    loaded = sum(t.in_cols[1] - t.in_cols[0] for t in tiles)
    # each of the len - 1 boundaries is read from both sides: one halo column each way
    assert loaded == 64 + 2 * (len(tiles) - 1)
    # plus the 3x3 weight (9 B) and bias (4 B) each time a tile loads them
    assert result.report.stage("load").dram_read_bytes == loaded + sum(9 + 4 for t in tiles if t.load_weight)


def test_psum_read_modify_write_is_charged() -> None:
    layer = {"op": "conv2d", "input_shape": [1, 64, 4, 4], "in_channels": 64, "out_channels": 8, "kernel_size": 1,
             "bias": False}
    # 32-byte ifmap slots: at most 32 input channels of one pixel per tile
    result = run_exact(layer, {"sram": {"ifmap": {"size_bytes": 64, "num_banks": 1, "bank_width_bytes": 4}}},
                       "swell")
    slices = -(-64 // result.plan.ic_per_tile)
    assert slices > 1 and 64 % result.plan.ic_per_tile == 0
    mac = result.report.stage("mac_array")
    # every slice but the first reads back the psums it accumulates into (8 channels x 16 pixels x 4 B over the
    # spatial tiles); write-back stores each output once
    psum_bytes = 8 * 4 * 4 * 4
    assert mac.sram_read_bytes["psum"] == (slices - 1) * psum_bytes
    assert mac.sram_write_bytes["psum"] == slices * psum_bytes
    assert result.report.stage("writeback").dram_write_bytes == psum_bytes


# -------------------------------------------------------------------------------------------- overflow order


def test_error_names_the_first_output_in_nchw_order_whatever_the_tiling() -> None:
    # conv2d 1x1, 1 -> 2 channels, 2 images; bias INT32_MAX - 100. psum = w[c] * x[n]: w = (1, 127), x = (1, 127)
    # -> overflow at (n, c) = (0, 1) and (1, 0), not (0, 0). One output channel per tile (8-byte weight buffer),
    # tile order oc > n: (c0, n0), (c0, n1) = overflow [1, 0, 0, 0] first, then (c1, n0) = [0, 1, 0, 0].
    layer = {"op": "conv2d", "input_shape": [2, 1, 1, 1], "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    hw = {"sram": {"weight": {"size_bytes": 8, "num_banks": 1, "bank_width_bytes": 4}},
          "pipeline": {"overlap": "serial"}}
    cfg = make_config(layer, hardware=hw)
    x = np.array([1, 127], dtype=np.int8).reshape(2, 1, 1, 1)
    w = np.array([1, 127], dtype=np.int8).reshape(2, 1, 1, 1)
    bias = np.full(2, 2**31 - 1 - 100, dtype=np.int32)
    with pytest.raises(AccumulatorOverflowError, match=r"at \[0, 1, 0, 0\]"):
        simulate(cfg, x, w, bias)
    assert [t.oc for t in simulate(cfg, x, w, np.zeros(2, np.int32)).plan.tiles] == [(0, 1), (0, 1), (1, 2), (1, 2)]


# ------------------------------------------------------------------------------------ random layers, 2-8 KiB


@st.composite
def layers(draw: st.DrawFn) -> dict[str, Any]:
    transposed = draw(st.booleans())
    c_in, c_out = draw(st.integers(1, 48)), draw(st.integers(1, 24))
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 40))
    if transposed:
        p = draw(st.integers(0, ((h - 1) * s + k - 1) // 2 if h <= w else ((w - 1) * s + k - 1) // 2))
        return {"op": "conv_transpose2d", "input_shape": [1, c_in, h, w], "in_channels": c_in,
                "out_channels": c_out, "kernel_size": k, "stride": s, "padding": p,
                "output_padding": draw(st.integers(0, s - 1)), "bias": True}
    p = draw(st.integers(0, 2))
    h, w = max(h, k - 2 * p), max(w, k - 2 * p)
    return {"op": "conv2d", "input_shape": [1, c_in, h, w], "in_channels": c_in, "out_channels": c_out,
            "kernel_size": k, "stride": s, "padding": p, "bias": True}


@settings(deadline=None, derandomize=True, database=None, max_examples=40,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(layer=layers(), size=st.sampled_from([2048, 4096, 8192]), method=st.sampled_from(METHODS),
       policy=st.sampled_from(["wrap", "saturate", "error"]), seed=st.integers(0, 2**16))
def test_random_layers_on_2_to_8_kib_are_never_refused(layer: dict[str, Any], size: int, method: str, policy: str,
                                                        seed: int) -> None:
    hw = {"sram": sram(size), "accumulator": {"on_overflow": policy}}
    run_exact(layer, hw, method, seed=seed)


@settings(deadline=None, derandomize=True, database=None, max_examples=25,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(transposed=st.booleans(), c_in=st.sampled_from([64, 96, 128, 192]), c_out=st.integers(1, 20),
       k=st.integers(1, 4), s=st.integers(1, 3), hw_in=st.tuples(st.integers(1, 9), st.integers(1, 20)),
       size=st.sampled_from([4096, 8192, 16384]), method=st.sampled_from(METHODS),
       activation=st.sampled_from(["NHWC", "NCHW", "NC1HWC0"]), seed=st.integers(0, 2**16))
def test_input_channel_slices_of_8_or_more_channels_equal_torch_observed_or_not(
        transposed: bool, c_in: int, c_out: int, k: int, s: int, hw_in: tuple[int, int], size: int, method: str,
        activation: str, seed: int) -> None:
    """Slices wide enough for the GEMM paths (>= 8 channels), on every activation layout. Unobserved, the MAC array
    runs a spatial tile's slices in one pass at its last slice; with an observer (dumps) every slice's psum is
    materialised. Both must equal torch."""
    h, w = hw_in
    if transposed:
        layer = {"op": "conv_transpose2d", "input_shape": [1, c_in, h, w], "in_channels": c_in,
                 "out_channels": c_out, "kernel_size": k, "stride": s, "padding": 0, "bias": True}
    else:
        layer = {"op": "conv2d", "input_shape": [1, c_in, h + k, w + k], "in_channels": c_in, "out_channels": c_out,
                 "kernel_size": k, "stride": 1, "bias": True}
    hw = {"sram": sram(size), "layout": {"activation": activation}}
    cfg = make_config(layer, hardware=hw, engine={"transposed_conv": method}, data={**RANDOM, "seed": seed})
    assume(8 <= plan_for(cfg.layer, cfg.hardware, method).ic_per_tile < c_in)
    seen: list[str] = []
    for observer in (None, lambda stage, *_: seen.append(stage)):
        result = simulate(cfg, observer=observer)
        t = result.tensors
        np.testing.assert_array_equal(result.ofmap, float_reference(cfg.layer, t.ifmap, t.weight, t.bias))
    assert "mac_array" in seen


# ---------------------------------------------------------------------------------------------- the refusal


def test_a_256_byte_sram_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 16x16 kernel: one output pixel of one output channel over one input channel needs 256 B of weight, plus the
    # 4-byte bias on the next 256-byte bank row (16 banks x 16 B): 260 B > 256, even in the whole buffer
    raw = {"name": "tiny", "layer": {"op": "conv2d", "input_shape": [1, 4, 20, 20], "in_channels": 4,
                                     "out_channels": 2, "kernel_size": 16},
           "data": {"weight": "random"},
           "hardware": {"sram": {b: {"size_bytes": 256} for b in ("ifmap", "weight", "psum")}}}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    code = main(["run", str(config), "--out", str(out), "--golden-dir", str(tmp_path / "golden")])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "smallest tile" in lines[0] and "weight needs 260 bytes" in lines[0]
    assert "hardware.sram.weight.size_bytes=256" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == [config]


# ------------------------------------------------------------------------------ the layers that were refused


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_512_to_256_on_64x64_default_hardware(method: str) -> None:
    layer = {"op": "conv_transpose2d", "input_shape": [1, 512, 64, 64], "in_channels": 512, "out_channels": 256,
             "kernel_size": 4, "stride": 2, "padding": 1, "bias": True}
    run_exact(layer, {}, method, reference=float_reference)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_1024_to_1024_on_32x32(method: str) -> None:
    layer = {"op": "conv_transpose2d", "input_shape": [1, 1024, 32, 32], "in_channels": 1024,
             "out_channels": 1024, "kernel_size": 4, "stride": 2, "padding": 1, "bias": True}
    run_exact(layer, {}, method, reference=float_reference)


@pytest.mark.slow
def test_256_channel_conv2d_on_4_kib() -> None:
    layer = {"op": "conv2d", "input_shape": [1, 256, 16, 16], "in_channels": 256, "out_channels": 64,
             "kernel_size": 3, "padding": 1, "bias": True}
    result = run_exact(layer, {"sram": sram(4096)}, "swell")
    assert result.plan.ic_per_tile < 256
