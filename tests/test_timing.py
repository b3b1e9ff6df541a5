"""The cycle model (docs/timing.md): every cost function against a hand calculation, the MAC-array fold model on
layers whose closed form is worked out here, the tile schedule, and the reports against hand counts of MACs."""

from __future__ import annotations

import json
from itertools import product
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import load_config, simulate
from simulator.cli import main
from simulator.config import BufferConfig, DmaConfig, DramDmaConfig, MacArrayConfig
from simulator.pipeline import STAGE_NAMES, schedule
from simulator.report import chrome_trace
from simulator.sram import Region
from simulator.stages.dma_load import activation_transfer, bank_conflict_factor, dma_cycles
from simulator.stages.mac_array import fold_model
from simulator.stages.swell import swell_cycles
from simulator.stages.weight_transpose import transpose_cycles
from simulator.stages.writeback import bias_add_cycles
from tests.conftest import REPO, make_config

BANKS16 = BufferConfig(size_bytes=1 << 19, num_banks=16, bank_width_bytes=16)


def _report(layer: dict[str, Any], **hw: Any):
    return simulate(make_config(layer, hardware=hw), functional=False).report


# ------------------------------------------------------------------------------------------ stage cost functions


def test_dma_cycles_is_setup_per_descriptor_plus_beats_times_conflicts():
    cfg = DmaConfig(bytes_per_cycle=64, setup_cycles=32)
    # 3 descriptors * 32 + ceil(1000 / 64) = 16 beats, each taking 2 cycles
    assert dma_cycles(1000, 3, cfg, conflict_factor=2) == 3 * 32 + 16 * 2 == 128
    assert dma_cycles(64, 1, cfg) == 32 + 1
    assert dma_cycles(65, 1, cfg) == 32 + 2
    assert dma_cycles(0, 5, cfg) == 0  # nothing to move: no descriptor issued


def test_swell_reads_compact_and_writes_swelled_on_separate_ports():
    cfg = DmaConfig(bytes_per_cycle=64, setup_cycles=8)
    # max(1000, 4000) = 4000 bytes -> ceil(4000/64) = 63 beats
    assert swell_cycles(1000, 4000, cfg) == 8 + 63
    assert swell_cycles(4000, 1000, cfg) == 8 + 63


def test_transpose_cycles():
    cfg = DmaConfig(bytes_per_cycle=32, setup_cycles=8)
    assert transpose_cycles(65536, 65536, cfg) == 8 + 2048
    # phase split: the write (zero-padded sub-kernels) is the larger side
    assert transpose_cycles(576, 1024, cfg) == 8 + 32


def test_bias_add_cycles():
    assert bias_add_cycles(131072, DmaConfig(bytes_per_cycle=64, setup_cycles=8)) == 8 + 2048
    assert bias_add_cycles(100, DmaConfig(bytes_per_cycle=64, setup_cycles=8)) == 8 + 2


# ----------------------------------------------------------------------------------------------- bank conflicts


def test_bank_conflict_nchw_dram_into_nhwc_c128():
    # a 64-byte beat of one NCHW row = 64 int8 pixels of one channel; in NHWC with C=128 they land 128 B apart:
    # words 0, 8, 16, ... -> banks (8j) % 16 in {0, 8} -> 32 words queue on each of the two banks
    assert bank_conflict_factor(128, 64, 1, BANKS16) == 32
    # native (contiguous) beat: 64 bytes = 4 words in 4 different banks
    assert bank_conflict_factor(1, 64, 1, BANKS16) == 1
    # NC1HWC0 with c0=16: 16 B apart, one word each, 64 words over 16 banks -> 4 per bank
    assert bank_conflict_factor(16, 64, 1, BANKS16) == 4
    # int32 store out of NHWC C=8: 16 elements 32 B apart -> words 0, 2, ..., 30 -> 8 even banks, 2 words each
    assert bank_conflict_factor(32, 64, 4, BANKS16) == 2


def test_activation_transfer_descriptors_and_conflicts():
    region = Region("ifmap", "ifmap", 0, (128, 4, 4), "int8", "NHWC")
    nchw = DramDmaConfig(bytes_per_cycle=64, setup_cycles=32, dram_layout="NCHW")
    native = DramDmaConfig(bytes_per_cycle=64, setup_cycles=32, dram_layout="native")
    assert activation_transfer(region, nchw, BANKS16, full_channels=True) == (128, 32)  # a descriptor per channel
    assert activation_transfer(region, native, BANKS16, full_channels=True) == (1, 1)
    assert activation_transfer(region, native, BANKS16, full_channels=False) == (4 * 4, 1)  # a run per pixel
    planar = Region("ifmap", "ifmap", 0, (8, 4, 4), "int8", "NCHW")
    assert activation_transfer(planar, native, BANKS16, full_channels=True, full_height=True) == (1, 1)
    assert activation_transfer(planar, native, BANKS16, full_channels=True, full_height=False) == (8, 1)


def test_bank_conflicts_show_in_the_load_stage_of_a_layer():
    layer = {"op": "conv2d", "input_shape": [1, 128, 4, 4], "in_channels": 128, "out_channels": 8, "kernel_size": 1}
    # serial: one tile either way (double-buffered, the planner would slice the slow NCHW load to overlap it)
    native = _report(layer, dma={"dram_layout": "native"}, pipeline={"overlap": "serial"})
    nchw = _report(layer, dma={"dram_layout": "NCHW"}, pipeline={"overlap": "serial"})
    assert native.num_tiles == nchw.num_tiles == 1
    # ifmap (128, 4, 4) int8 = 2048 B = 32 beats; weight (8, 128, 1, 1) = 1024 B; bias 8 * 4 = 32 B
    weights = (32 + 1024 // 64) + (32 + 1)
    assert native.stage("load").cycles == (32 + 32) + weights
    assert nchw.stage("load").cycles == (128 * 32 + 32 * 32) + weights
    # store: ofmap (8, 4, 4) int32 = 512 B; bias add reads max(psum, ofmap) = 512 B on the 64 B/cycle adder
    add = 8 + 512 // 64
    assert native.stage("writeback").cycles == add + 32 + 8
    assert nchw.stage("writeback").cycles == add + 8 * 32 + 8 * 2  # stride 32 B -> factor 2 (see above)


# ------------------------------------------------------------------------------------------------- fold model


def _mac(rows: int, cols: int, dataflow: str, double: bool = False) -> MacArrayConfig:
    return MacArrayConfig(rows=rows, cols=cols, dataflow=dataflow, weight_double_buffer=double)  # type: ignore[arg-type]


def test_fold_model_os_single_column_fold():
    # DCGAN 128->64 tile: E = 32*32, K = 4*4*128, N = 32 on 32x32: ceil(1024/32) * ceil(32/32) = 32 folds
    assert fold_model(1024, 2048, 32, _mac(32, 32, "os")) == (32 * (2048 + 32 + 32 - 2), 32)


def test_fold_model_folds_in_both_dims():
    # os: (Sr, Sc, T) = (E, N, K) = (10, 7, 5) on 4x3: ceil(10/4)=3 * ceil(7/3)=3 = 9 folds of 5+4+3-2 = 10
    assert fold_model(10, 5, 7, _mac(4, 3, "os")) == (90, 9)
    assert fold_model(10, 5, 7, _mac(4, 3, "os", double=True)) == (90, 9)  # no weight preload to hide in os
    # ws: (Sr, Sc, T) = (K, N, E) = (9, 7, 10): 3 * 3 = 9 folds of 2*4 + 3 + 10 - 2 = 19
    assert fold_model(10, 9, 7, _mac(4, 3, "ws")) == (171, 9)
    # double-buffered weights: one exposed preload (4) + 9 folds of 4 + 3 + 10 - 2 = 15
    assert fold_model(10, 9, 7, _mac(4, 3, "ws", double=True)) == (4 + 135, 9)
    assert fold_model(0, 9, 7, _mac(4, 3, "ws")) == (0, 0)


SMALL_T = {"op": "conv_transpose2d", "input_shape": [1, 8, 4, 4], "in_channels": 8, "out_channels": 6,
           "kernel_size": 3}  # stride 1, padding 0: output 6x6


@pytest.mark.parametrize(("dataflow", "double", "groups", "cycles", "folds"), [
    # E = 36, K = 3*3*8 = 72, N = 6 on 4x4
    ("os", False, 1, (9 * 2) * (72 + 4 + 4 - 2), 9 * 2),  # ceil(36/4)=9 * ceil(6/4)=2
    ("ws", False, 1, (18 * 2) * (2 * 4 + 4 + 36 - 2), 18 * 2),  # ceil(72/4)=18 * 2
    ("ws", True, 1, 4 + (18 * 2) * (4 + 4 + 36 - 2), 18 * 2),
    # groups=2: per group K = 3*3*4 = 36, N = 3; groups run one after the other
    ("os", False, 2, 2 * (9 * 1) * (36 + 4 + 4 - 2), 2 * 9),
    ("ws", False, 2, 2 * (9 * 1) * (2 * 4 + 4 + 36 - 2), 2 * 9),
    ("ws", True, 2, 2 * (4 + 9 * (4 + 4 + 36 - 2)), 2 * 9),
])
def test_fold_model_on_a_layer(dataflow, double, groups, cycles, folds):
    rep = _report({**SMALL_T, "groups": groups},
                  mac_array={"rows": 4, "cols": 4, "dataflow": dataflow, "weight_double_buffer": double})
    assert rep.num_tiles == 1
    mac = rep.stage("mac_array")
    assert (mac.compute_cycles, mac.cycles, mac.folds) == (cycles, cycles, folds)
    # issued: E * K * C_out = 36 * (9 * 8 / groups) * 6, inserted zeros and padding included
    assert mac.macs_issued == 36 * (9 * 8 // groups) * 6
    assert mac.utilization_issued == mac.macs_issued / (16 * cycles)


# --------------------------------------------------------------------------------------------------- schedule


def test_schedule_serial_runs_tiles_back_to_back():
    starts, ends = schedule([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], "serial")
    assert starts == [[0, 1, 3, 6, 10], [15, 16, 18, 21, 25]]
    assert ends == [[1, 3, 6, 10, 15], [16, 18, 21, 25, 30]]


def test_schedule_double_buffer_waits_for_ifmap_slot():
    # stages load, swell, weight_transpose, mac_array, writeback, output_convert (skipped: 0 cycles)
    starts, ends = schedule([[2, 1, 1, 5, 3, 0]] * 3, "double_buffer")
    assert starts == [[0, 2, 3, 4, 9, 12], [2, 4, 5, 9, 14, 17], [9, 11, 12, 14, 19, 22]]  # tile 2 loads at mac(0) end
    assert ends == [[2, 3, 4, 9, 12, 12], [4, 5, 6, 14, 17, 17], [11, 12, 13, 19, 22, 22]]


def test_schedule_double_buffer_waits_for_psum_slot():
    starts, ends = schedule([[1, 0, 0, 2, 10, 0]] * 3, "double_buffer")
    # tile 2: load waits for mac(0) (ends 3); mac waits for writeback(0) to free the psum slot (ends 13)
    assert starts == [[0, 1, 1, 1, 3, 13], [1, 2, 2, 3, 13, 23], [3, 4, 4, 13, 23, 33]]
    assert ends == [[1, 1, 1, 3, 13, 13], [2, 2, 2, 5, 23, 23], [4, 4, 4, 15, 33, 33]]
    assert schedule([[1, 0, 0, 2, 10, 0]] * 3, "serial")[1][-1][-1] == 3 * 13


def test_schedule_double_buffer_psum_slot_waits_for_output_converter():
    # a quantized layer: the psum slot holds the tile until the output converter (last stage) has stored it
    starts, _ = schedule([[1, 0, 0, 2, 1, 10]] * 3, "double_buffer")
    assert starts[2][3] == 14  # mac(2) waits for output_convert(0): 4 + 10


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1000), min_size=6, max_size=6), min_size=1, max_size=12))
def test_double_buffer_never_slower_than_serial(costs):
    _, serial = schedule(costs, "serial")
    _, double = schedule(costs, "double_buffer")
    assert double[-1][-1] <= serial[-1][-1] == sum(map(sum, costs))
    assert all(d <= s for d_row, s_row in zip(double, serial, strict=True) for d, s in zip(d_row, s_row, strict=True))


def _cost_matrix(result) -> list[list[int]]:
    costs = [[0] * len(STAGE_NAMES) for _ in range(result.report.num_tiles)]
    for e in result.events:
        costs[e.tile][STAGE_NAMES.index(e.stage)] = e.end_cycle - e.start_cycle
    return costs


@pytest.mark.parametrize("name", ["dcgan_128_64", "dcgan_256_128", "unet_up_128_64", "grouped_dilated_asym"])
def test_double_buffer_never_slower_on_real_layers(name):
    # Same tile plan scheduled both ways. (Across configs the plans differ: double buffering halves every buffer,
    # which can cut more tiles and reload more, so a double_buffer config can lose to a serial one.)
    result = simulate(load_config(REPO / "configs" / f"{name}.yaml"), functional=False)
    costs = _cost_matrix(result)
    _, serial = schedule(costs, "serial")
    _, double = schedule(costs, "double_buffer")
    assert double[-1][-1] == result.report.cycles
    assert double[-1][-1] <= serial[-1][-1] == sum(map(sum, costs))


# ------------------------------------------------------------------------------------- reports vs hand counts


def test_macs_useful_padding_zero_is_the_closed_form():
    layer = {"op": "conv_transpose2d", "input_shape": [2, 4, 5, 3], "in_channels": 4, "out_channels": 6,
             "kernel_size": [3, 2], "stride": [2, 3], "dilation": [1, 2], "output_padding": [1, 0], "groups": 2}
    rep = _report(layer)
    # N * C_out * (C_in/g) * H_in * W_in * kh * kw: every (input pixel, tap) pair lands inside the output
    assert rep.macs_useful == 2 * 6 * (4 // 2) * 5 * 3 * 3 * 2 == 2160
    # issued: E * K * C_out with E = N*OH*OW; OH = 4*2 + 1*2 + 1 + 1 = 12, OW = 2*3 + 2*1 + 1 = 9
    assert rep.macs_issued == (2 * 12 * 9) * (3 * 2 * 2) * 6


def _brute_force_useful(n: int, c_in: int, c_out: int, groups: int, hw_in: tuple[int, int], k: tuple[int, int],
                        s: tuple[int, int], p: tuple[int, int], d: tuple[int, int], out: tuple[int, int]) -> int:
    """Count (n, co, ci, ih, iw, th, tw) whose contribution lands inside the output: out = i*s - p + t*d."""
    count = 0
    for ih, iw, th, tw in product(range(hw_in[0]), range(hw_in[1]), range(k[0]), range(k[1])):
        oh, ow = ih * s[0] - p[0] + th * d[0], iw * s[1] - p[1] + tw * d[1]
        if 0 <= oh < out[0] and 0 <= ow < out[1]:
            count += 1
    return n * c_out * (c_in // groups) * count


@pytest.mark.parametrize("method", ["swell", "phase"])
@pytest.mark.parametrize(("h", "w", "k", "s", "p", "d", "op"), [
    (5, 4, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    (6, 5, (4, 3), (2, 3), (2, 1), (1, 2), (0, 1)),
    (4, 4, (5, 5), (3, 3), (3, 4), (1, 1), (0, 0)),  # padding larger than the swell border: crops
])
def test_macs_useful_with_padding_matches_brute_force(method, h, w, k, s, p, d, op):
    layer = {"op": "conv_transpose2d", "input_shape": [2, 4, h, w], "in_channels": 4, "out_channels": 2,
             "kernel_size": list(k), "stride": list(s), "padding": list(p), "dilation": list(d),
             "output_padding": list(op)}
    cfg = make_config(layer, engine={"transposed_conv": method})
    rep = simulate(cfg, functional=False).report
    out = cfg.layer.output_hw
    assert rep.macs_useful == _brute_force_useful(2, 4, 2, 1, (h, w), k, s, p, d, out)


def test_dcgan_useful_utilization_is_about_a_quarter_of_issued():
    rep = simulate(load_config(REPO / "configs" / "dcgan_128_64.yaml"), functional=False).report
    mac = rep.stage("mac_array")
    # stride 2x2: 3 of every 4 swelled pixels are inserted zeros, so useful ~ issued / 4. Padding 1 with k=4 loses
    # 2 of the 16*4 (input, tap) pairs per axis at the borders: (62/64)^2 / 4 = 0.2346, hence the band [0.22, 0.25].
    ratio = mac.utilization_useful / mac.utilization_issued
    assert 0.22 <= ratio <= 0.25
    assert mac.macs_useful == 64 * 128 * 62 * 62
    assert mac.macs_issued == (32 * 32) * (4 * 4 * 128) * 64


def test_timing_only_report_equals_functional_report():
    for name in ("dcgan_128_64", "grouped_dilated_asym", "conv2d_basic"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        timing, full = simulate(cfg, functional=False), simulate(cfg)
        assert timing.ofmap is None and full.ofmap is not None
        assert timing.report == full.report
        assert timing.events == full.events


def test_peak_sram_counts_a_shared_weight_slot_once():
    # output 16x16, 8 channels: a psum row is 8*16*4 = 512 B; 4096 B psum -> 2048 B per slot -> 4 rows per tile
    layer = {"op": "conv_transpose2d", "input_shape": [1, 8, 16, 16], "in_channels": 8, "out_channels": 8,
             "kernel_size": 3, "padding": 1}
    rep = _report(layer, sram={"psum": {"size_bytes": 4096}})
    assert (rep.num_tiles, rep.rows_per_tile, rep.oc_per_tile) == (4, 4, 8)
    assert rep.peak_sram_bytes["psum"] == 2 * 8 * 4 * 16 * 4  # two tiles in flight
    # every tile uses the one output-channel tile's weights: weight + weight_conv (8*8*3*3 each) + bias (8*4)
    assert rep.peak_sram_bytes["weight"] == 576 + 576 + 32


def test_dcgan_peak_sram_and_dram_traffic():
    rep = simulate(load_config(REPO / "configs" / "dcgan_128_64.yaml"), functional=False).report
    # the whole layer fits one tile in the whole buffer (262,400 B of weights > one 256 KiB slot): one tile
    assert (rep.num_tiles, rep.rows_per_tile, rep.oc_per_tile) == (1, 32, 64)
    # compact ifmap (128, 16, 16) + swelled (128, 35, 35); weight + weight_conv (128*64*16) + bias; psum
    assert rep.peak_sram_bytes == {"ifmap": 128 * 16 * 16 + 128 * 35 * 35,
                                   "weight": 2 * 128 * 64 * 16 + 64 * 4, "psum": 64 * 32 * 32 * 4}
    assert rep.dram_read_bytes == 128 * 16 * 16 + 128 * 64 * 16 + 64 * 4
    assert rep.dram_write_bytes == 64 * 32 * 32 * 4
    swell = rep.stage("swell")
    assert swell.sram_write_bytes == {"ifmap": 128 * 35 * 35}  # zeros and border written: ~stride^2 larger
    assert rep.time_us == rep.cycles / 1000.0


# --------------------------------------------------------------------------------------------- files: json, trace


REPORT_KEYS = {"cycles", "time_us", "clock_mhz", "dram_read_bytes", "dram_write_bytes", "peak_sram_bytes",
               "num_tiles", "macs_issued", "macs_useful", "utilization_issued", "utilization_useful", "stages"}
STAGE_KEYS = {"name", "cycles", "stall_cycles", "sram_read_bytes", "sram_write_bytes"}
MAC_KEYS = {"compute_cycles", "folds", "macs_issued", "macs_useful", "utilization_issued", "utilization_useful"}


def test_run_writes_report_and_trace(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", str(REPO / "configs" / "grouped_dilated_asym.yaml"), "--out", str(out), "--no-compare",
                 "--no-dumps", "--trace"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report.keys() >= REPORT_KEYS
    assert [s["name"] for s in report["stages"]] == list(STAGE_NAMES)
    for stage in report["stages"]:
        assert stage.keys() >= STAGE_KEYS
        assert f"{stage['name']:<17}" in printed
    mac = next(s for s in report["stages"] if s["name"] == "mac_array")
    assert all(mac[k] is not None for k in MAC_KEYS)
    assert f"compute {mac['compute_cycles']:,} cycles in {mac['folds']:,} folds" in printed
    assert f"{report['cycles']:,} cycles" in printed and f"{report['num_tiles']} tile(s)" in printed

    trace = json.loads((out / "trace.json").read_text())
    events = trace["traceEvents"]
    tracks = {e["args"]["name"]: e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert list(tracks) == list(STAGE_NAMES)
    spans = [e for e in events if e["ph"] == "X"]
    for e in spans:
        assert {"name", "ph", "pid", "tid", "ts", "dur"} <= e.keys()
    for stage in report["stages"]:
        per_tile = sorted(e["args"]["tile"] for e in spans if e["tid"] == tracks[stage["name"]])
        assert len(per_tile) == len(set(per_tile))  # at most one event per tile
        if stage["name"] in ("load", "mac_array", "writeback"):  # stages every tile runs
            assert per_tile == list(range(report["num_tiles"]))
        assert bool(per_tile) != stage["skipped"]


def test_chrome_trace_times_are_microseconds_at_the_clock():
    result = simulate(load_config(REPO / "configs" / "seed_case2.yaml"), functional=False)
    trace = chrome_trace(result.events, STAGE_NAMES, 500.0)
    first = next(e for e in trace["traceEvents"] if e["ph"] == "X")
    event = result.events[0]
    assert first["ts"] == event.start_cycle / 500.0
    assert first["dur"] == (event.end_cycle - event.start_cycle) / 500.0
    json.loads(json.dumps(trace))


# ------------------------------------------------------------------------------- docs/timing.md worked example


def test_dcgan_stage_cycles_follow_the_worked_example():
    rep = simulate(load_config(REPO / "configs" / "dcgan_128_64.yaml"), functional=False).report
    load = (32 + 32768 // 64) + (32 + 131072 // 64) + (32 + 256 // 64)  # ifmap, the whole weight (one run), bias
    swell = 8 + -(-156800 // 64)
    transpose = 8 + 131072 // 32
    mac = 64 * (2048 + 32 + 32 - 2)  # 32 pixel folds x 2 channel folds
    writeback = (8 + 262144 // 64) + (32 + 262144 // 64)  # bias add, store of one NHWC run
    assert [(s.name, s.cycles) for s in rep.stages] == [
        ("load", load), ("swell", swell), ("weight_transpose", transpose), ("mac_array", mac),
        ("writeback", writeback), ("output_convert", 0)]  # int32 layer: no output converter
    assert rep.cycles == load + swell + transpose + mac + writeback == 152494  # one tile: the stages in turn
    assert [s.stall_cycles for s in rep.stages] == [0] * 6


def test_worked_example_table_in_docs_is_current():
    doc = (REPO / "docs" / "timing.md").read_text()
    table = simulate(load_config(REPO / "configs" / "dcgan_128_64.yaml"), functional=False).report.table()
    assert table in doc


def test_network_report_lists_every_layer_without_golden(tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text(
        "name: net\nlayers:\n"
        "  - {name: a, input_shape: [1, 2, 3, 3], in_channels: 2, out_channels: 2, kernel_size: 2, stride: 2}\n"
        "  - {name: b, op: conv2d, input_shape: [1, 2, 6, 6], in_channels: 2, out_channels: 1, kernel_size: 3}\n")
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--no-compare", "--no-dumps"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [layer["layer"] for layer in report["layers"]] == ["a", "b"]
