"""Property tests: the whole engine (tiled, every layout, both transposed-conv methods) is bit-exact with torch.

Every example builds a *valid* layer (output_padding < max(stride, dilation), padding up to the largest value
that still gives a non-empty output, so padding > d(k-1) crops), a hardware config whose SRAM buffers are
deliberately tight (the planner must cut the layer into output-channel, input-channel, row and column tiles), under
each overflow policy, and int8 tensors (random,
or the worst case all -128), then compares ``simulate`` with the independent int64 torch reference of
``tests/conftest.py``. The same transposed-conv suite runs over both methods (``engine.transposed_conv``).

Examples are derandomized (the same examples every CI run, no example database) and small, so the file runs in
seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simulator import simulate
from simulator.config import SimConfig
from simulator.errors import ConvsimError
from simulator.mapping import mapping_for
from simulator.tiling import plan_tiles
from tests.conftest import make_config, torch_reference

METHODS = ("swell", "phase")
TRANSPOSED_EXAMPLES = 300  # per method: 600 transposed-conv examples per run
CONV2D_EXAMPLES = 150
PROPERTY_SETTINGS = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass(frozen=True)
class Case:
    """One example: the layer and hardware mappings (as a user would write them) and the tensors."""

    layer: dict[str, Any]
    hardware: dict[str, Any]
    fill: str
    seed: int

    def config(self, method: str) -> SimConfig:
        return make_config(self.layer, hardware=self.hardware, engine={"transposed_conv": method},
                           data={"seed": self.seed, "ifmap": "random", "weight": "random", "bias": "random"})


# ------------------------------------------------------------------------------------------------ strategies


def _pair(draw: st.DrawFn, lo: int, hi: int) -> list[int]:
    return [draw(st.integers(lo, hi)), draw(st.integers(lo, hi))]


@st.composite
def transposed_layers(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    n = draw(st.integers(1, 2))
    k, s, d = _pair(draw, 1, 4), _pair(draw, 1, 3), _pair(draw, 1, 3)
    hw = _pair(draw, 1, 5)
    op = [draw(st.integers(0, max(s[a], d[a]) - 1)) for a in (0, 1)]
    # largest padding with a non-empty output: 2p <= (H-1)s + d(k-1) + op; p > d(k-1) is a crop
    p = [draw(st.integers(0, ((hw[a] - 1) * s[a] + d[a] * (k[a] - 1) + op[a]) // 2)) for a in (0, 1)]
    return {"op": "conv_transpose2d", "input_shape": [n, c_in, *hw], "in_channels": c_in, "out_channels": c_out,
            "kernel_size": k, "stride": s, "padding": p, "output_padding": op, "dilation": d, "groups": groups,
            "bias": draw(st.booleans())}


@st.composite
def conv2d_layers(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    k, s, d, p = _pair(draw, 1, 4), _pair(draw, 1, 3), _pair(draw, 1, 3), _pair(draw, 0, 3)
    # non-empty output: H + 2p >= d(k-1) + 1
    hw = [draw(st.integers(max(1, d[a] * (k[a] - 1) + 1 - 2 * p[a]), d[a] * (k[a] - 1) + 6)) for a in (0, 1)]
    return {"op": "conv2d", "input_shape": [draw(st.integers(1, 2)), c_in, *hw], "in_channels": c_in,
            "out_channels": c_out, "kernel_size": k, "stride": s, "padding": p, "dilation": d, "groups": groups,
            "bias": draw(st.booleans())}


@st.composite
def hardware(draw: st.DrawFn) -> dict[str, Any]:
    """Everything but the SRAM sizes, which :func:`tight_sram` sets once the layer is known."""
    return {
        "mac_array": {"rows": draw(st.sampled_from([1, 2, 4, 8])), "cols": draw(st.sampled_from([1, 2, 4, 8])),
                      "dataflow": draw(st.sampled_from(["os", "ws"])), "weight_double_buffer": draw(st.booleans())},
        "layout": {"activation": draw(st.sampled_from(["NCHW", "NHWC", "NC1HWC0"])), "c0": draw(st.integers(1, 5))},
        "dma": {"bytes_per_cycle": 8, "setup_cycles": 2, "dram_layout": draw(st.sampled_from(["native", "NCHW"]))},
        "accumulator": {"on_overflow": draw(st.sampled_from(["wrap", "saturate", "error"]))},
        "pipeline": {"overlap": draw(st.sampled_from(["serial", "double_buffer"]))},
    }


def tight_sram(layer: dict[str, Any], hw: dict[str, Any], method: str, shrink: tuple[float, float, float],
               banks: tuple[int, int]) -> dict[str, Any]:
    """SRAM buffers of ``shrink`` times what the untiled layer needs, grown by 1.5x until one tile fits.

    Only the *choice of hardware* depends on the planner; the expected values never do.
    """
    num_banks, width = banks
    big = {b: {"size_bytes": 1 << 24, "num_banks": num_banks, "bank_width_bytes": width}
           for b in ("ifmap", "weight", "psum")}
    cfg = make_config(layer, hardware={**hw, "sram": big})
    method_ = mapping_for(cfg.layer, cfg.hardware, method)
    whole = plan_tiles(cfg.layer, cfg.hardware, method_).peak_bytes
    sizes = {b: max(16, int(whole[b] * f)) for b, f in zip(("ifmap", "weight", "psum"), shrink, strict=True)}
    for _ in range(40):
        sram = {b: {"size_bytes": sizes[b], "num_banks": num_banks, "bank_width_bytes": width} for b in sizes}
        try:
            plan_tiles(cfg.layer, make_config(layer, hardware={**hw, "sram": sram}).hardware, method_)
            return sram
        except ConvsimError:
            sizes = {b: sizes[b] * 3 // 2 + 16 for b in sizes}
    raise AssertionError(f"no SRAM size fits {layer}")


@st.composite
def cases(draw: st.DrawFn, layers: st.SearchStrategy[dict[str, Any]], method: str) -> Case:
    layer = draw(layers)
    hw = draw(hardware())
    # down to a few percent of the untiled need: input-channel slices and width tiles, not only rows and channels
    shrink = tuple(draw(st.sampled_from([0.02, 0.05, 0.15, 0.3, 0.5, 0.8, 1.0, 2.5])) for _ in range(3))
    banks = (draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 4, 8])))
    hw = {**hw, "sram": tight_sram(layer, hw, method, shrink, banks)}  # type: ignore[arg-type]
    fill = draw(st.sampled_from(["random"] * 6 + ["min", "max"]))
    return Case(layer, hw, fill, draw(st.integers(0, 2**32 - 1)))


# ------------------------------------------------------------------------------------------------- checking


def tensors(case: Case, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The example's ifmap, weight and bias (None: let the engine generate it from ``data:``)."""
    layer = cfg.layer
    rng = np.random.default_rng(case.seed)
    if case.fill == "random":
        ifmap = rng.integers(-128, 128, size=layer.input_shape, dtype=np.int8)
        weight = rng.integers(-128, 128, size=layer.weight_shape, dtype=np.int8)
    else:
        value = -128 if case.fill == "min" else 127
        ifmap = np.full(layer.input_shape, value, dtype=np.int8)
        weight = np.full(layer.weight_shape, value, dtype=np.int8)
    bias = rng.integers(-(2**24), 2**24, size=layer.out_channels, dtype=np.int32) if layer.bias else None
    return ifmap, weight, bias


def check(case: Case, method: str) -> None:
    cfg = case.config(method)
    ifmap, weight, bias = tensors(case, cfg)
    result = simulate(cfg, ifmap, weight, bias)
    expected_bias = bias if bias is not None else np.zeros(cfg.layer.out_channels, dtype=np.int32)
    expected = torch_reference(cfg.layer, ifmap, weight, expected_bias)
    assert result.ofmap is not None and result.ofmap.dtype == np.int32
    assert result.ofmap.shape == expected.shape
    mismatches = int((result.ofmap.astype(np.int64) != expected).sum())
    assert mismatches == 0, f"{mismatches} mismatches for {case}"
    plan = result.plan
    event(f"tiles: {'1' if len(plan.tiles) == 1 else '>1'}")
    event(f"output channels tiled: {plan.oc_per_tile < cfg.layer.out_channels}")
    event(f"input channels sliced: {plan.ic_per_tile < cfg.layer.in_channels // cfg.layer.groups}")
    event(f"width tiled: {plan.cols_per_tile < cfg.layer.output_hw[1]}")


# ---------------------------------------------------------------------------------------------------- suites


@pytest.mark.parametrize("method", METHODS)
@settings(PROPERTY_SETTINGS, max_examples=TRANSPOSED_EXAMPLES)
@given(data=st.data())
def test_conv_transpose2d_matches_torch(method: str, data: st.DataObject) -> None:
    check(data.draw(cases(transposed_layers(), method)), method)


@settings(PROPERTY_SETTINGS, max_examples=CONV2D_EXAMPLES)
@given(case=cases(conv2d_layers(), "swell"))
def test_conv2d_matches_torch(case: Case) -> None:
    check(case, "swell")


# ------------------------------------------------------------------------------------------ worst-case inputs

WORST_LAYERS = {
    # K = 4*4*8 = 128 products of (-128)*(-128) = 16384 each: 2,097,152 per output, beyond int8 and int16
    "k4_s2_p1_cin8": {"op": "conv_transpose2d", "input_shape": [1, 8, 4, 5], "in_channels": 8, "out_channels": 3,
                      "kernel_size": 4, "stride": 2, "padding": 1, "bias": False},
    "grouped_dilated_crop": {"op": "conv_transpose2d", "input_shape": [2, 6, 3, 4], "in_channels": 6,
                             "out_channels": 4, "kernel_size": [3, 2], "stride": [3, 2], "padding": [5, 1],
                             "output_padding": [1, 1], "dilation": [2, 3], "groups": 2, "bias": False},
    "conv2d_k3_s2": {"op": "conv2d", "input_shape": [1, 8, 12, 11], "in_channels": 8, "out_channels": 4,
                     "kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
}
TIGHT_SRAM = {b: {"size_bytes": 1024, "num_banks": 2, "bank_width_bytes": 4} for b in ("ifmap", "weight", "psum")}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NC1HWC0"])
@pytest.mark.parametrize("name", sorted(WORST_LAYERS))
def test_all_minus_128_is_exact_when_tiled(name: str, layout: str, method: str) -> None:
    layer = WORST_LAYERS[name]
    hw = {"sram": TIGHT_SRAM, "layout": {"activation": layout, "c0": 3}, "mac_array": {"rows": 4, "cols": 2}}
    cfg = make_config(layer, hardware=hw, engine={"transposed_conv": method})
    ifmap = np.full(cfg.layer.input_shape, -128, dtype=np.int8)
    weight = np.full(cfg.layer.weight_shape, -128, dtype=np.int8)
    result = simulate(cfg, ifmap, weight)
    assert len(result.plan.tiles) > 1
    zeros = np.zeros(cfg.layer.out_channels, dtype=np.int32)
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, ifmap, weight, zeros))


def test_all_minus_128_hand_value_beyond_int16() -> None:
    # stride 1, no padding, 4x4 kernel, 8 input channels: an interior output sums all 128 taps.
    layer = {"op": "conv_transpose2d", "input_shape": [1, 8, 5, 5], "in_channels": 8, "out_channels": 2,
             "kernel_size": 4, "bias": False}
    cfg = make_config(layer)
    for method in METHODS:
        cfg = make_config(layer, engine={"transposed_conv": method})
        result = simulate(cfg, np.full((1, 8, 5, 5), -128, np.int8), np.full((8, 2, 4, 4), -128, np.int8))
        assert result.ofmap.shape == (1, 2, 8, 8)
        assert int(result.ofmap[0, 1, 4, 4]) == 128 * 16384 == 2_097_152  # > int16 max 32,767
        assert int(result.ofmap[0, 0, 0, 0]) == 8 * 16384  # corner: one tap per input channel
