"""Quantized layers through the whole engine (tiled, every layout, both transposed-conv methods, every rounding
profile, per-tensor and per-channel weights, nonzero zero points) against the independent references of
simulator/golden/quantized.py (torch int64 accumulators; exact-rational integer requantization; fbgemm's float
formula in torch float32 ops), and hand-calculated edge cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from simulator import simulate
from simulator.config import SimConfig
from simulator.dump import DumpWriter
from simulator.errors import ConfigError
from simulator.golden.quantized import accumulators, fp32_reference, integer_reference
from tests.conftest import make_config
from tests.test_properties import PROPERTY_SETTINGS, conv2d_layers, hardware, tight_sram, transposed_layers

METHODS = ("swell", "phase")
ZERO_POINTS = st.one_of(st.sampled_from([-128, -1, 0, 9, 127]), st.integers(-128, 127))
SCALES = st.floats(1e-4, 0.2, allow_nan=False, allow_infinity=False)


@st.composite
def quant_sections(draw: st.DrawFn, out_channels: int) -> dict[str, Any]:
    rounding = draw(st.sampled_from(["fp32_rne", "tflite_double", "single_round"]))
    per_channel = draw(st.booleans())
    weight_scale = [draw(SCALES) for _ in range(out_channels)] if per_channel else draw(SCALES)
    quant: dict[str, Any] = {
        "input": {"scale": draw(SCALES), "zero_point": draw(ZERO_POINTS)},
        "weight": {"scale": weight_scale, "zero_point": draw(ZERO_POINTS)},
        "output": {"scale": draw(st.floats(1e-3, 4.0)), "zero_point": draw(ZERO_POINTS)},
        "rounding": rounding, "activation": draw(st.sampled_from(["none", "relu"]))}
    if rounding != "fp32_rne" and draw(st.integers(0, 3)) == 0:  # the hardware registers given directly
        n = out_channels if draw(st.booleans()) else 1
        quant["multiplier"] = [draw(st.integers(2**30, 2**31 - 1)) for _ in range(n)]
        quant["shift"] = [draw(st.integers(-25, 4)) for _ in range(n)]
    return quant


@st.composite
def quant_cases(draw: st.DrawFn, layers: st.SearchStrategy[dict[str, Any]], method: str) -> tuple[SimConfig, int]:
    layer = draw(layers)
    layer = {**layer, "quant": draw(quant_sections(layer["out_channels"]))}
    hw = draw(hardware())
    shrink = tuple(draw(st.sampled_from([0.15, 0.3, 0.5, 1.0, 2.5])) for _ in range(3))
    banks = (draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 4, 8])))
    hw = {**hw, "sram": tight_sram(layer, hw, method, shrink, banks)}  # type: ignore[arg-type]
    cfg = make_config(layer, hardware=hw, engine={"transposed_conv": method})
    return cfg, draw(st.integers(0, 2**32 - 1))


def expected(cfg: SimConfig, ifmap: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    from simulator.data import LayerTensors

    layer = cfg.layer
    quant = layer.quant
    assert quant is not None
    acc = accumulators(layer, LayerTensors(ifmap, weight, bias), cfg.hardware.accumulator.on_overflow)
    if quant.rounding == "fp32_rne":
        return fp32_reference(acc, bias, quant), acc
    return integer_reference(acc, quant), acc


def check(cfg: SimConfig, seed: int, events: bool = True) -> None:
    layer = cfg.layer
    rng = np.random.default_rng(seed)
    ifmap = rng.integers(-128, 128, size=layer.input_shape, dtype=np.int8)
    weight = rng.integers(-128, 128, size=layer.weight_shape, dtype=np.int8)
    bias = (rng.integers(-(2**16), 2**16, size=layer.out_channels, dtype=np.int32) if layer.bias
            else np.zeros(layer.out_channels, dtype=np.int32))
    result = simulate(cfg, ifmap, weight, bias)
    want, want_acc = expected(cfg, ifmap, weight, bias)
    assert result.acc is not None and result.ofmap is not None
    assert result.ofmap.dtype == np.int8 and result.ofmap.shape == want.shape
    assert np.array_equal(result.acc, want_acc), f"accumulators differ at {int((result.acc != want_acc).sum())}"
    assert np.array_equal(result.ofmap, want), f"int8 ofmap differs at {int((result.ofmap != want).sum())}"
    if events:
        event(f"tiles: {'1' if len(result.plan.tiles) == 1 else '>1'}")
        event(f"rounding: {layer.quant.rounding}")  # type: ignore[union-attr]


@pytest.mark.parametrize("method", METHODS)
@settings(PROPERTY_SETTINGS, max_examples=150)
@given(data=st.data())
def test_quantized_conv_transpose2d_matches_references(method: str, data: st.DataObject) -> None:
    check(*data.draw(quant_cases(transposed_layers(), method)))


@settings(PROPERTY_SETTINGS, max_examples=80)
@given(case=quant_cases(conv2d_layers(), "swell"))
def test_quantized_conv2d_matches_references(case: tuple[SimConfig, int]) -> None:
    check(*case)


# ------------------------------------------------------------------------------------------------ edge cases


def one_pixel(quant: dict[str, Any], x: int, w: int, b: int) -> int:
    """A 1x1 conv2d on one pixel: acc = (x - x_zp)(w - w_zp) + b, the int8 output."""
    cfg = make_config({"op": "conv2d", "input_shape": [1, 1, 1, 1], "in_channels": 1, "out_channels": 1,
                       "kernel_size": 1, "quant": quant})
    result = simulate(cfg, np.array([[[[x]]]], dtype=np.int8), np.array([[[[w]]]], dtype=np.int8),
                      np.array([b], dtype=np.int32))
    return int(result.ofmap[0, 0, 0, 0])  # type: ignore[index]


def q(rounding: str, out_zp: int = 0, activation: str = "none", x_zp: int = 0, scale: float = 1.0) -> dict[str, Any]:
    return {"input": {"scale": 1.0, "zero_point": x_zp}, "weight": {"scale": scale, "zero_point": 0},
            "output": {"scale": 1.0, "zero_point": out_zp}, "rounding": rounding, "activation": activation}


PROFILES = ("fp32_rne", "tflite_double", "single_round")


@pytest.mark.parametrize("rounding", PROFILES)
def test_saturates_at_127_and_minus_128(rounding: str) -> None:
    assert one_pixel(q(rounding), 3, 4, 1000) == 127  # 12 + 1000 at scale 1
    assert one_pixel(q(rounding), 3, 4, -1000) == -128
    assert one_pixel(q(rounding, out_zp=-5), 3, 4, 120) == 127  # 132 - 5 = 127 exactly: no saturation needed
    assert one_pixel(q(rounding, out_zp=-5), 3, 4, 121) == 127  # 128 saturates


@pytest.mark.parametrize("rounding", PROFILES)
def test_relu_clamps_at_a_positive_output_zero_point(rounding: str) -> None:
    assert one_pixel(q(rounding, out_zp=20, activation="relu"), 3, -4, 0) == 20  # real -12 -> real 0 = code 20
    assert one_pixel(q(rounding, out_zp=20, activation="relu"), 3, 4, 0) == 32  # real 12 -> 12 + 20
    assert one_pixel(q(rounding, out_zp=20), 3, -4, 0) == 8  # without relu: -12 + 20


@pytest.mark.parametrize("rounding", PROFILES)
def test_input_zero_point_minus_128(rounding: str) -> None:
    assert one_pixel(q(rounding, x_zp=-128), -128, 77, 5) == 5  # x = x_zp: real 0, only the bias
    assert one_pixel(q(rounding, x_zp=-128), 127, 1, 0) == 127  # x - x_zp = 255


@pytest.mark.parametrize("rounding", ["tflite_double", "single_round"])
def test_a_multiplier_that_needs_a_left_shift(rounding: str) -> None:
    # effective scale 3.0 = 0.75 * 2^2: multiplier 3*2^29, shift +2 (a left shift)
    assert one_pixel(q(rounding, scale=3.0), 5, 1, 0) == 15
    assert one_pixel(q(rounding, scale=3.0), 5, -1, -1) == -18
    assert one_pixel(q(rounding, scale=3.0), 100, 1, 0) == 127  # 300 saturates


def test_fp32_multiplier_above_one() -> None:
    assert one_pixel(q("fp32_rne", scale=3.0), 5, 1, 0) == 15


# ------------------------------------------------------------------------------------ zero points in the dumps


def test_swell_dump_holds_the_input_zero_point_in_every_inserted_pixel_and_border(tmp_path) -> None:
    layer = {"op": "conv_transpose2d", "input_shape": [1, 3, 4, 5], "in_channels": 3, "out_channels": 2,
             "kernel_size": 3, "stride": 2, "padding": 0, "output_padding": 1,
             "quant": {"input": {"scale": 0.1, "zero_point": 9}, "weight": {"scale": 0.1, "zero_point": 0},
                       "output": {"scale": 1.0, "zero_point": 0}}}
    cfg = make_config(layer, engine={"transposed_conv": "swell"})
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(1, 3, 4, 5), dtype=np.int8)
    x[x == 9] = 10  # no real pixel holds 9: every 9 in the dump is a filled position
    writer = DumpWriter(tmp_path / "dumps", cfg.hardware)
    result = simulate(cfg, x, observer=writer)
    writer.finish(result)
    assert len(result.plan.tiles) == 1
    swelled = np.load(tmp_path / "dumps" / "swell" / "ifmap_swelled.npy")[0]
    # (3, 4, 5) -> insert 1 between pixels -> (3, 7, 9) -> border k-1-p = 2 (+1 output_padding far side)
    assert swelled.shape == (3, 2 + 7 + 3, 2 + 9 + 3)
    real = np.zeros(swelled.shape, dtype=bool)
    real[:, 2:9:2, 2:11:2] = True
    assert np.array_equal(swelled[real].reshape(3, 4, 5), x[0])
    assert (swelled[~real] == 9).all()


def test_phase_sub_kernels_are_padded_with_the_weight_zero_point(tmp_path) -> None:
    layer = {"op": "conv_transpose2d", "input_shape": [1, 2, 3, 3], "in_channels": 2, "out_channels": 2,
             "kernel_size": 3, "stride": 2, "padding": 1,
             "quant": {"input": {"scale": 0.1, "zero_point": 0}, "weight": {"scale": 0.1, "zero_point": -7},
                       "output": {"scale": 1.0, "zero_point": 0}}}
    cfg = make_config(layer, engine={"transposed_conv": "phase"})
    weight = np.full((2, 2, 3, 3), 5, dtype=np.int8)
    writer = DumpWriter(tmp_path / "dumps", cfg.hardware)
    result = simulate(cfg, weight=weight, observer=writer)
    writer.finish(result)
    phases = np.load(tmp_path / "dumps" / "weight_transpose" / "weight_phases.npy")
    # k3 s2: per axis one phase with 2 taps and one with 1 tap padded to 2: (2x2, 2x1+pad, 1x2+pad, 1x1+3 pads)
    assert sorted(np.unique(phases).tolist()) == [-7, 5]
    assert int((phases == 5).sum()) == 2 * 2 * 9  # every original tap once
    assert int((phases == -7).sum()) == phases.size - 2 * 2 * 9


# ----------------------------------------------------------------------------------------------- config rules


@pytest.mark.parametrize(("quant", "message"), [
    ({"input": {"scale": 0.1, "zero_point": 200}}, "zero_point"),
    ({"weight": {"scale": [0.1, 0.2, 0.3]}}, "quant.weight.scale has 3 entries, out_channels=2"),
    ({"rounding": "tflite_double", "multiplier": [2**30]}, "multiplier and shift are given together"),
    ({"multiplier": [2**30], "shift": [0]}, "need an integer rounding profile"),
    ({"output": {"scale": 0.0}}, "must be > 0"),
    ({"rounding": "tflite_double", "output": {"scale": 1e-12}}, "left shift"),
    ({"rounding": "single_round", "bias_float": [1.0, 2.0]}, "bias_float"),
])
def test_bad_quant_sections_name_the_field(quant: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"input": {"scale": 0.1}, "weight": {"scale": 0.1}, "output": {"scale": 0.1}}
    for key, value in quant.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    with pytest.raises(ConfigError, match=message):
        make_config({"op": "conv2d", "input_shape": [1, 1, 3, 3], "in_channels": 1, "out_channels": 2,
                     "kernel_size": 1, "quant": base})


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("x_zp", "w_zp", "groups"), [(-128, 0, 1), (5, 3, 2), (127, -128, 1)])
def test_deep_layers_take_the_shared_gemm_path_exactly(method: str, x_zp: int, w_zp: int, groups: int,
                                                       monkeypatch: Any) -> None:
    # 16 channels per group: every job of a tile runs through shared row GEMMs (not the per-job fallback)
    from simulator.stages import mac_array

    per_job: list[int] = []
    original = mac_array.conv_centred_i32
    monkeypatch.setattr(mac_array, "conv_centred_i32", lambda *a, **k: per_job.append(1) or original(*a, **k))
    layer = {"op": "conv_transpose2d", "input_shape": [1, 16 * groups, 5, 6], "in_channels": 16 * groups,
             "out_channels": 4 * groups, "kernel_size": 4, "stride": 2, "padding": 1, "groups": groups,
             "quant": {"input": {"scale": 0.02, "zero_point": x_zp}, "weight": {"scale": 0.01, "zero_point": w_zp},
                       "output": {"scale": 0.5, "zero_point": 7}, "rounding": "tflite_double"}}
    cfg = make_config(layer, engine={"transposed_conv": method})
    check(cfg, 3, events=False)
    assert per_job == []


def test_output_converter_cycles_by_hand() -> None:
    # quant_deconv: one tile, 4 x 12 x 12 outputs: int32 tile 2,304 B in, int8 576 B out; writeback 64 B/cycle,
    # set-up 8: 8 + 2304/64 = 44; store: NHWC with every channel, one descriptor: 32 + 576/64 = 41
    from simulator import load_config
    from tests.conftest import REPO

    report = simulate(load_config(REPO / "configs" / "quant_deconv.yaml"), functional=False).report
    stage = report.stage("output_convert")
    assert stage.cycles == (8 + 2304 // 64) + (32 + 576 // 64) == 85
    assert stage.dram_write_bytes == 576 and report.stage("writeback").dram_write_bytes == 0
