"""The second loop order, ``oc > ic > n > oh > ow`` (input-channel slices outside the spatial tiles): each slice's
weights loaded once per output-channel tile and resident across its spatial tiles, every spatial tile's psum
resident across the slices.

The order is forced here (``plan_tiles(loop_order=...)``, or a given tile shape through the tiler) so that every
path runs with it whatever the objective would choose. References are independent of the engine: torch (int64,
through ``tests.conftest.torch_reference``), the quantized references of ``simulator/golden/quantized.py``, plain
Python loops, and counts by hand.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from simulator import pipeline, simulate
from simulator.cli import main
from simulator.cosim import cosim
from simulator.dump import Dumps, DumpWriter
from simulator.errors import AccumulatorOverflowError, ConvsimError
from simulator.mapping import mapping_for
from simulator.pipeline import schedule
from simulator.plan import SLICES_INNER, SLICES_OUTER, TilePlan
from simulator.tiler import Shape, Tiler
from simulator.tiling import plan_tiles
from tests.conftest import make_config, torch_reference
from tests.test_cosim import HAVE_ICARUS, SLICED, SMALL_HW, write_config
from tests.test_quant_layers import check as check_quantized
from tests.test_quant_layers import quant_sections

METHODS = ("swell", "phase")
RANDOM = {"ifmap": "random", "weight": "random", "bias": "random"}
PROPERTY = settings(deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
# (the ``force`` fixture patches the planner the same way for every example)

Force = Callable[..., None]


@pytest.fixture
def force(monkeypatch: pytest.MonkeyPatch) -> Force:
    """``force(order, shape=None)``: every simulation in the test plans in ``order`` (the objective's best candidate
    of that order, or exactly ``shape``)."""

    def apply(order: str, shape: Shape | None = None) -> None:
        def plan_for(layer: Any, hw: Any, method_choice: str) -> TilePlan:
            mapping = mapping_for(layer, hw, method_choice)
            if shape is not None:
                return Tiler(layer, hw, mapping, 2 if hw.pipeline.overlap == "double_buffer" else 1).plan(shape, order)
            return plan_tiles(layer, hw, mapping, functools.partial(pipeline.modelled_cost, layer, hw),
                              loop_order=order)

        monkeypatch.setattr(pipeline, "plan_for", plan_for)

    return apply


@st.composite
def layers(draw: st.DrawFn) -> dict[str, Any]:
    """Layers deep enough, for the small ifmap and weight buffers below, to need input-channel slices."""
    c_in, c_out = draw(st.integers(8, 64)), draw(st.integers(1, 12))
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 8)), draw(st.integers(1, 20))
    if draw(st.booleans()):
        p = draw(st.integers(0, ((min(h, w) - 1) * s + k - 1) // 2))
        return {"op": "conv_transpose2d", "input_shape": [n, c_in, h, w], "in_channels": c_in,
                "out_channels": c_out, "kernel_size": k, "stride": s, "padding": p,
                "output_padding": draw(st.integers(0, s - 1)), "bias": True}
    p = draw(st.integers(0, 2))
    h, w = max(h, k - 2 * p), max(w, k - 2 * p)
    return {"op": "conv2d", "input_shape": [n, c_in, h, w], "in_channels": c_in, "out_channels": c_out,
            "kernel_size": k, "stride": s, "padding": p, "bias": True}


def sram(size: int, psum: int, banks: int = 4, width: int = 8) -> dict[str, Any]:
    out = {b: {"size_bytes": size, "num_banks": banks, "bank_width_bytes": width} for b in ("ifmap", "weight")}
    return {**out, "psum": {"size_bytes": psum, "num_banks": banks, "bank_width_bytes": width}}


def spatial_tiles(plan: TilePlan) -> int:
    return len({(t.n, t.oh, t.ow) for t in plan.tiles})


def check_outer_structure(plan: TilePlan, psum_size: int) -> None:
    """What the order promises, read off the plan: one weight load per (output-channel tile, slice); the spatial
    tiles of one output-channel tile in distinct, non-overlapping psum areas inside the buffer; tile order."""
    assert plan.loop_order == SLICES_OUTER
    loads = Counter((t.oc, t.ic) for t in plan.tiles if t.load_weight)
    assert set(loads) == {(t.oc, t.ic) for t in plan.tiles} and set(loads.values()) == {1}
    for oc in {t.oc for t in plan.tiles}:
        areas = sorted({(min(r.base_addr for r in t.regions if r.buffer == "psum"),
                         max(r.end_addr for r in t.regions if r.buffer == "psum"))
                        for t in plan.tiles if t.oc == oc})
        assert len(areas) == len({(t.n, t.oh, t.ow) for t in plan.tiles if t.oc == oc})
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(areas)) and areas[-1][1] <= psum_size
    # slices outside the spatial tiles: within an output-channel tile the slice number never decreases
    keys = [(t.oc, t.ic_slice) for t in plan.tiles]
    assert keys == sorted(keys, key=lambda k: ([t.oc for t in plan.tiles].index(k[0]), k[1]))


# ------------------------------------------------------------------------------------- bit-exact, any layer


@settings(PROPERTY, max_examples=40)
@given(layer=layers(), size=st.sampled_from([256, 512, 1024]), psum=st.sampled_from([16384, 65536]),
       method=st.sampled_from(METHODS), policy=st.sampled_from(["wrap", "saturate", "error"]),
       overlap=st.sampled_from(["double_buffer", "serial"]), seed=st.integers(0, 2**16))
def test_slices_outside_is_bit_exact_with_torch(force: Force, layer: dict[str, Any], size: int, psum: int,
                                                method: str, policy: str, overlap: str, seed: int) -> None:
    force(SLICES_OUTER)
    cfg = make_config(layer, engine={"transposed_conv": method}, data={**RANDOM, "seed": seed},
                      hardware={"sram": sram(size, psum), "accumulator": {"on_overflow": policy},
                                "pipeline": {"overlap": overlap}})
    try:
        result = simulate(cfg)
    except ConvsimError:  # no candidate whose psum areas fit together: the order is not legal for this layer
        assume(False)
        raise
    check_outer_structure(result.plan, psum)
    event(f"slices > 1 and spatial tiles > 1: {result.plan.tiles[0].ic_slices > 1 and spatial_tiles(result.plan) > 1}")
    t = result.tensors
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, t.ifmap, t.weight, t.bias))
    assert result.report.peak_sram_bytes["psum"] <= psum


@settings(PROPERTY, max_examples=30)
@given(data=st.data(), method=st.sampled_from(METHODS))
def test_slices_outside_quantized_layers_match_the_references(force: Force, data: st.DataObject,
                                                              method: str) -> None:
    force(SLICES_OUTER)
    layer = data.draw(layers())
    layer = {**layer, "quant": data.draw(quant_sections(layer["out_channels"]))}
    cfg = make_config(layer, engine={"transposed_conv": method},
                      hardware={"sram": sram(data.draw(st.sampled_from([256, 512, 1024])), 65536)})
    try:
        plan = pipeline.plan_for(cfg.layer, cfg.hardware, method)
    except ConvsimError:
        assume(False)
        raise
    check_outer_structure(plan, 65536)
    check_quantized(cfg, data.draw(st.integers(0, 2**32 - 1)), events=False)


# ------------------------------------------------------------------------------ the planner's own choice

# 40 input channels on 2 KiB ifmap and weight buffers: the planner slices them; the 64 KiB psum buffer holds every
# spatial tile's psums at once
DEEP = {"op": "conv_transpose2d", "input_shape": [2, 40, 6, 10], "in_channels": 40, "out_channels": 6,
        "kernel_size": [3, 4], "stride": [2, 3], "padding": [1, 2], "dilation": [1, 2], "bias": True}


@pytest.mark.parametrize("method", METHODS)
def test_the_planner_takes_slices_outside_when_it_models_fewer_cycles(force: Force, method: str) -> None:
    cfg = make_config(DEEP, engine={"transposed_conv": method}, hardware={"sram": sram(2048, 65536)})
    chosen = pipeline.plan_for(cfg.layer, cfg.hardware, method)
    assert chosen.loop_order == SLICES_OUTER and chosen.tiles[0].ic_slices > 1 and spatial_tiles(chosen) > 1
    force(SLICES_INNER)
    inner = pipeline.plan_for(cfg.layer, cfg.hardware, method)
    assert inner.loop_order == SLICES_INNER
    # the objective's choice, checked on the whole plans: fewer modelled cycles than the best slices-inner plan
    assert pipeline.modelled_cost(cfg.layer, cfg.hardware, chosen)[0] < \
        pipeline.modelled_cost(cfg.layer, cfg.hardware, inner)[0]


def test_run_summary_names_the_loop_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = {"name": "deep", "layer": DEEP, "data": RANDOM, "engine": {"transposed_conv": "phase"},
           "hardware": {"sram": sram(2048, 65536)}}
    config = tmp_path / "deep.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--no-compare"]) == 0
    assert "loop oc > ic > n > oh > ow" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "loop oc > ic > n > oh > ow" in json.dumps(report)


# ------------------------------------------------------------------------------------ counted by hand

# conv_transpose2d 8 -> 4 channels, 3x3, stride 2, padding 1 on 4x4: output 7x7. Tiles of 2 rows x 7 columns x
# 4 output channels x 2 input channels: 4 row tiles (2, 2, 2, 1 rows), 4 slices, one output-channel tile.
CT = {"op": "conv_transpose2d", "input_shape": [1, 8, 4, 4], "in_channels": 8, "out_channels": 4, "kernel_size": 3,
      "stride": 2, "padding": 1, "bias": True}
CT_SHAPE = (2, 7, 4, 2)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("order", [SLICES_INNER, SLICES_OUTER])
def test_weight_loads_and_transposes_are_one_per_slice(force: Force, method: str, order: str) -> None:
    force(order, CT_SHAPE)
    cfg = make_config(CT, engine={"transposed_conv": method}, data=RANDOM)
    result = simulate(cfg)
    t = result.tensors
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, t.ifmap, t.weight, t.bias))
    assert (len(result.plan.tiles), spatial_tiles(result.plan)) == (16, 4)
    # one slice's weights: (2 input, 4 output channels, 3, 3) int8 = 72 B, and the 4 int32 biases = 16 B
    per_load = 2 * 4 * 3 * 3 + 4 * 4
    loads = 4 if order == SLICES_OUTER else 16  # once per (output-channel tile, slice), or on every tile
    ifmap = sum((t.in_rows[1] - t.in_rows[0]) * (t.in_cols[1] - t.in_cols[0]) * (t.ic[1] - t.ic[0])
                for t in result.plan.tiles)
    assert result.report.stage("load").dram_read_bytes == ifmap + loads * per_load
    assert sum(1 for e in result.events if e.stage == "weight_transpose") == loads
    # the ifmap is loaded per tile either way: every tile reads its rows of its slice's 2 channels, 4 columns
    assert ifmap == sum(2 * 4 * (t.in_rows[1] - t.in_rows[0]) for t in result.plan.tiles)


def test_conv2d_weights_load_once_per_slice_and_nothing_is_transposed(force: Force) -> None:
    layer = {"op": "conv2d", "input_shape": [1, 8, 4, 4], "in_channels": 8, "out_channels": 4, "kernel_size": 1,
             "bias": False}
    force(SLICES_OUTER, (1, 4, 4, 2))  # 4 row tiles, 4 slices
    cfg = make_config(layer, data=RANDOM, hardware={"sram": sram(4096, 4096)})
    result = simulate(cfg)
    t = result.tensors
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, t.ifmap, t.weight, t.bias))
    # weights (4 out, 2 in, 1, 1) = 8 B and 4 biases = 16 B per slice; ifmap 2 channels x 4 pixels per tile
    assert result.report.stage("load").dram_read_bytes == 4 * (8 + 16) + 16 * (2 * 4)
    assert not any(e.stage == "weight_transpose" for e in result.events)
    # psum: 4 spatial tiles each hold 4 channels x 1 row x 4 columns x 4 B = 64 B (two 32-byte bank rows) at once
    assert [t.psum_slot for t in result.plan.tiles[:4]] == [0, 1, 2, 3]
    assert sorted({t.region("psum").base_addr for t in result.plan.tiles}) == [0, 64, 128, 192]
    assert result.report.peak_sram_bytes["psum"] == 4 * 64
    # the psum is read back by every later slice (3 of 4) and written by every slice; stored once
    mac = result.report.stage("mac_array")
    assert (mac.sram_read_bytes["psum"], mac.sram_write_bytes["psum"]) == (3 * 4 * 64, 4 * 4 * 64)
    assert result.report.stage("writeback").dram_write_bytes == 4 * 4 * 4 * 4


# ------------------------------------------------------------------------------------------------ schedule


def test_a_later_slice_does_not_wait_for_another_tiles_psum() -> None:
    # stages load, swell, weight_transpose, mac_array, writeback, output_convert. Two slices over three spatial
    # tiles in their own psum areas, then the next output-channel tile's first spatial tile (reusing tile 3's area).
    # Only the last slice writes back (10 cycles).
    costs = [[1, 0, 0, 2, 0, 0]] * 3 + [[1, 0, 0, 2, 10, 0]] * 3 + [[1, 0, 0, 2, 0, 0]]
    releases = [(None, None), (None, None), (0, None), (1, None), (2, None), (3, None), (4, 3)]
    starts, ends = schedule(costs, "double_buffer", releases)
    # by hand: the MAC array runs tiles back to back from cycle 1 (2 cycles each; loads keep ahead of it), so
    # tile 5's MAC starts at 11; with the slot rule of the other order it would wait for tile 3's write-back
    # (9 -> 19), an area tile 5 does not use
    assert [row[3] for row in starts] == [1, 3, 5, 7, 9, 11, 19]
    assert [row[4] for row in ends][3:6] == [19, 29, 39]
    # tile 6 reuses tile 3's psum area: its MAC array waits for that write-back (ends at 19), a real stall
    assert starts[6][3] == ends[3][5] == 19
    assert schedule(costs, "double_buffer")[0][5][3] == 19  # (the t-2 rule: a false stall on tile 3)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_schedule_with_releases_is_never_slower_than_serial_and_t_minus_2_is_the_default(data: st.DataObject
                                                                                          ) -> None:
    costs = data.draw(st.lists(st.lists(st.integers(0, 1000), min_size=6, max_size=6), min_size=1, max_size=12))
    releases = [tuple(data.draw(st.one_of(st.none(), st.integers(0, t - 1))) if t else None for _ in range(2))
                for t in range(len(costs))]
    _, serial = schedule(costs, "serial")
    _, double = schedule(costs, "double_buffer", releases)  # type: ignore[arg-type]
    assert all(d <= s for d_row, s_row in zip(double, serial, strict=True) for d, s in zip(d_row, s_row, strict=True))
    t_minus_2 = [(t - 2, t - 2) if t >= 2 else (None, None) for t in range(len(costs))]
    assert schedule(costs, "double_buffer", t_minus_2) == schedule(costs, "double_buffer")  # type: ignore[arg-type]


def test_plan_releases_name_the_previous_holder_of_the_psum_area(force: Force) -> None:
    force(SLICES_OUTER, (2, 7, 2, 4))  # 2 output-channel tiles x 2 slices x 4 row tiles
    cfg = make_config(CT, data=RANDOM)
    plan = pipeline.plan_for(cfg.layer, cfg.hardware, "swell")
    releases = plan.releases()
    assert releases is not None and len(plan.tiles) == 16
    for t, (load_after, psum_after) in zip(plan.tiles, releases, strict=True):
        assert load_after == (t.index - 2 if t.index >= 2 else None)
        if t.first_slice and t.oc[0] > 0:  # tile t - 4: same spatial tile, last slice, previous oc tile
            assert psum_after == t.index - 4 and plan.tiles[psum_after].last_slice
            assert plan.tiles[psum_after].region("psum").base_addr == t.region("psum").base_addr
        else:
            assert psum_after is None
    assert [plan.previous_slice(t).index if plan.previous_slice(t) else None for t in plan.tiles[:8]] == \
        [None] * 4 + [0, 1, 2, 3]


# --------------------------------------------------------------------------- overflow order across slices

# conv2d 1x1 over 4 slices of 2**17 input channels, 2 output pixels (one spatial tile each): a slice's products
# of 2**14 reach 2**31 exactly at its last product.
C_BIG = 4 * 2**17
BIG = {"op": "conv2d", "input_shape": [1, C_BIG, 1, 2], "in_channels": C_BIG, "out_channels": 1, "kernel_size": 1,
       "bias": False}
BIG_SHAPE = (1, 1, 1, 2**17)


def big_case(slice_values: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """ifmap value of every channel of slice k at output column j = ``slice_values[j][k]``; weight -128."""
    x = np.zeros((1, C_BIG, 1, 2), dtype=np.int8)
    for j, values in enumerate(slice_values):
        for k, v in enumerate(values):
            x[0, k * 2**17:(k + 1) * 2**17, 0, j] = v
    return x, np.full((1, C_BIG, 1, 1), -128, dtype=np.int8)


def test_error_names_the_first_output_in_nchw_order_with_slices_outside(force: Force) -> None:
    # column 1's running sum leaves int32 in slice 0 (tile 1); column 0's only in slice 3 (tile 6). Tile order
    # meets column 1 first; NCHW order names column 0.
    force(SLICES_OUTER, BIG_SHAPE)
    x, w = big_case([[0, 0, 0, -128], [-128, 0, 0, 0]])
    cfg = make_config(BIG, hardware={"accumulator": {"on_overflow": "error"}})
    with pytest.raises(AccumulatorOverflowError, match=r"running sum of output at \[0, 0, 0, 0\] reaches 2147483648,"):
        simulate(cfg, x, w)


def test_saturate_clamps_within_a_slice_then_continues_across_slices(force: Force) -> None:
    force(SLICES_OUTER, BIG_SHAPE)
    # column 0: slice 0 adds 2**17 products of +2**14 (the last reaches 2**31: clamped), slice 1 adds 2**17 of
    # -16256; column 1: the exact sum stays inside int32 all along
    x, w = big_case([[-128, 127, 0, 0], [1, 1, 1, 1]])
    cfg = make_config(BIG, hardware={"accumulator": {"on_overflow": "saturate"}})
    result = simulate(cfg, x, w)
    assert result.plan.loop_order == SLICES_OUTER and [t.ow for t in result.plan.tiles[:2]] == [(0, 1), (1, 2)]
    acc = 0
    for c in range(C_BIG):  # a plain Python loop in channel order, clamping after every addition
        acc = min(2**31 - 1, max(-(2**31), acc + int(x[0, c, 0, 0]) * -128))
    assert acc == 2**31 - 1 - 2**17 * 16256 == 16777215  # (the exact sum is 16777216)
    assert result.ofmap[0, 0, 0].tolist() == [acc, -128 * C_BIG]


# -------------------------------------------------------------------------------------------------- dumps


def test_each_slices_psum_is_dumped_and_indexed(force: Force, tmp_path: Path) -> None:
    force(SLICES_OUTER, CT_SHAPE)
    cfg = make_config(CT, data=RANDOM)
    writer = DumpWriter(tmp_path / "dumps", cfg.hardware)
    result = simulate(cfg, observer=writer)
    writer.finish(result)
    dumps = Dumps.open(tmp_path)
    assert "loop oc > ic > n > oh > ow" in dumps.index["tile_shape"]
    t = result.tensors
    mac = next(s for s in dumps.index["stages"] if s["name"] == "mac_array")
    for entry in mac["tiles"]:
        (i0, i1), (o0, o1), (_, count) = entry["ic"], entry["oh"], entry["ic_slice"]
        assert count == 4 and (i1 - i0) == 2
        # the psum after slices 0..k: torch over the input channels [0, i1) (the others zeroed), without bias
        psum = dumps.find("mac_array", "psum", entry["tile"]).logical()[0]
        x = np.zeros_like(t.ifmap)
        x[:, :i1] = t.ifmap[:, :i1]
        want = torch_reference(cfg.layer, x, t.weight, np.zeros(4, np.int32))
        np.testing.assert_array_equal(psum, want[0, :, o0:o1])


# -------------------------------------------------------------------------------------------------- cosim


@pytest.mark.rtl
@pytest.mark.skipif(not HAVE_ICARUS, reason="Icarus Verilog not installed")
@pytest.mark.parametrize("method", METHODS)
def test_cosim_adds_the_previous_slice_of_the_same_spatial_tile(force: Force, method: str, tmp_path: Path) -> None:
    """3 slices of 4 input channels over 3 row tiles (output 5 x 13): slice k of row tile j is tile 3k + j, and its
    previous slice is tile 3(k-1) + j, not the tile just before it. The RTL's result for each later slice plus
    that tile's dumped psum must equal the slice's dump, with the RTL's fold cycles equal to the model's."""
    force(SLICES_OUTER, (2, 13, 3, 4))
    config = write_config(tmp_path / "l.yaml", SLICED, SMALL_HW, seed=1)
    cfg = make_config(SLICED, hardware=SMALL_HW)
    plan = pipeline.plan_for(cfg.layer, cfg.hardware, method)
    assert [(t.ic_slice, t.oh) for t in plan.tiles[2:5]] == [(0, (4, 5)), (1, (0, 2)), (1, (2, 4))]
    verdicts = cosim(config, stage="mac_array", method=method, out=tmp_path / "o", tiles=9)
    [mac] = verdicts
    assert mac.passed, mac.line
    assert len(mac.tiles) == 9 and all(rtl_c == model_c for _, rtl_c, model_c in mac.tiles)
