"""convsim cosim: the shipped RTL (rtl/) under Icarus Verilog, driven by convsim's dumps through cocotb's runner.

Each RTL test runs the real HDL simulator on a layer: the RTL's output must equal the next stage's dump (bytes
for swell, int32 for the MAC array's psums) and its busy cycles must equal the stage's cost function, or, for
the swelling DMA, the cycles of a scoreboard of its micro-architecture written here (see docs/rtl.md: a left
crop of at least bytes_per_cycle bytes makes its first write wait for the read, which the cost model does not
charge). The cycle figures of the seed cases are checked against hand calculations as well.
Marked ``rtl``: `pytest -m "not rtl"` is the fast tier; without Icarus they skip, except in CI (CI=true),
where they fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.config import load_config
from simulator.cosim import Fault, cosim
from simulator.cosim.check import add_int32, coordinate, first_difference, parse_writememh
from simulator.geometry import ceil_div
from simulator.pipeline import plan_for
from simulator.sram import Region, to_physical
from simulator.stages.swell import place_on_canvas

REPO = Path(__file__).resolve().parent.parent
HAVE_ICARUS = shutil.which("iverilog") is not None and shutil.which("vvp") is not None
if not HAVE_ICARUS and os.environ.get("CI", "").lower() == "true":
    pytest.fail("CI=true but Icarus Verilog (iverilog, vvp) is not installed: the README's test command installs it",
                pytrace=False)
SMALL_HW = {"mac_array": {"rows": 4, "cols": 4, "dataflow": "os"}, "swell_dma": {"bytes_per_cycle": 16,
                                                                                  "setup_cycles": 3}}


def write_config(path: Path, layer: dict[str, Any], hardware: dict[str, Any] | None = None, seed: int = 0) -> Path:
    raw = {"name": "t", "layer": layer, "data": {"seed": seed, "ifmap": "random", "weight": "random",
                                                  "bias": "random"}, "hardware": hardware or SMALL_HW}
    path.write_text(yaml.safe_dump(raw))
    return path


def swell_rtl_cycles(config: Path, method: str = "swell") -> list[int]:
    """Scoreboard of swell_dma's micro-architecture, per tile: after the set-up cycles, each cycle the reader reads
    the next B compact bytes and the writer writes the next B swelled bytes if every source byte they need has been
    read by then (this cycle's read included), else waits. Independent of the RTL: the byte map comes from the
    functional model (place_on_canvas of the source byte offsets)."""
    cfg = load_config(config)
    layer, hw = cfg.layer, cfg.hardware
    plan = plan_for(layer, hw, method)  # the plan the pipeline runs
    mapping = plan.mapping
    b = hw.swell_dma.bytes_per_cycle
    out = []
    for tile in plan.tiles:
        src, dst = tile.region("ifmap"), tile.region(mapping.staged)
        offsets = np.arange(1, src.size_bytes + 1, dtype=np.int64).reshape(src.shape[1], src.shape[2], src.shape[0])
        logical = offsets.transpose(2, 0, 1)  # NHWC bytes -> (C, H, W) of 1 + byte offset
        canvas = place_on_canvas(logical, layer.stride, mapping.canvas_offset(tile), dst.shape[1:], dtype=np.int64)
        need = to_physical(canvas, "NHWC", dst.c0).reshape(-1) - 1  # source byte of every swelled byte, -1: fill
        read_beats, write_beats = ceil_div(src.size_bytes, b), ceil_div(dst.size_bytes, b)
        cycle = -1
        for w in range(write_beats):
            last = int(need[w * b:(w + 1) * b].max())
            cycle = max(cycle + 1, last // b if last >= 0 else 0)
        out.append(hw.swell_dma.setup_cycles + max(read_beats, cycle + 1))
    return out


def check_verdicts(verdicts: Any, config: Path, method: str) -> None:
    """Data equal on every stage; cycles equal to the cost model (MAC) or to the scoreboard (swell), and equal to
    the cost model whenever the scoreboard says the writer never waits."""
    for v in verdicts:
        assert "FAIL at" not in v.line, v.line
        if v.stage == "mac_array":
            assert v.passed, v.line
            assert all(rtl_c == model_c for _, rtl_c, model_c in v.tiles)
        else:
            expected = swell_rtl_cycles(config, method)
            for tile, rtl_c, _ in v.tiles:
                assert rtl_c == expected[tile], (v.line, tile, expected)
            assert v.passed == all(expected[tile] == model_c for tile, _, model_c in v.tiles), v.line


# ------------------------------------------------------------------------------------------ fast tier (no Icarus)


def test_parse_writememh_reads_words_little_end_first_and_marks_unknown_bytes() -> None:
    text = "// 0x00000010\n0102030405060708090a0b0c0d0e0f10\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx7f\n"
    data = parse_writememh(text, 18)
    assert data[:4].tolist() == [0x10, 0x0F, 0x0E, 0x0D]
    assert data[16] == 0x7F and data[17] == -1


def test_add_int32_wraps_like_int32_and_keeps_unknown_elements_unknown() -> None:
    """A later input-channel slice: the RTL's contribution plus the previous slice's psum, element by element."""
    rtl = np.frombuffer(np.array([2**31 - 1, -5, 7], dtype="<i4").tobytes(), dtype=np.uint8).astype(np.int16)
    rtl[9] = -1  # one byte of the third element never written
    base = np.frombuffer(np.array([1, -2**31, 3], dtype="<i4").tobytes(), dtype=np.uint8)
    out = add_int32(rtl, base)
    assert np.frombuffer(out[:8].astype(np.uint8).tobytes(), dtype="<i4").tolist() == [-2**31, 2**31 - 5]
    assert out[8:].tolist() == [-1] * 4


def test_first_difference_reports_int32_element_address_and_values() -> None:
    model = np.frombuffer(np.array([5, -7, 9], dtype="<i4").tobytes(), dtype=np.uint8)
    rtl = model.astype(np.int16).copy()
    rtl[5] ^= 0x01  # one bit of the second int32
    region = Region("psum", "psum", 0x100, (3, 1, 1), "<i4", "NHWC")  # 3 channels of one pixel
    diff = first_difference(region, rtl, model)
    assert diff is not None and diff.addr == 0x104 and diff.differing_bytes == 1 and diff.where == "[1, 0, 0]"
    assert diff.model.startswith("-7 ") and diff.rtl.startswith(f"{-7 ^ 0x100} ")
    assert first_difference(region, model.astype(np.int16), model) is None


def test_coordinate_follows_the_layout_and_names_nc1hwc0_padding() -> None:
    # (C=3, H=2, W=2) in NC1HWC0 with c0=4: byte ((c1*H + y)*W + x)*4 + c; channel 3 is the zero tail
    region = Region("r", "ifmap", 0, (3, 2, 2), "int8", "NC1HWC0", 4)
    assert coordinate(region, ((0 * 2 + 1) * 2 + 1) * 4 + 2) == "[2, 1, 1]"  # c1 = 0, y = 1, x = 1, c = 2
    assert coordinate(region, 3) == "[padding]"
    assert coordinate(Region("r", "ifmap", 0, (3, 2, 2), "int8", "NHWC"), (1 * 2 + 0) * 3 + 1) == "[1, 1, 0]"


def test_missing_icarus_is_exit_2_with_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no iverilog, no vvp
    code = main(["cosim", str(REPO / "configs" / "seed_case1.yaml"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Icarus Verilog" in err and "apt-get install -y iverilog" in err
    assert not (tmp_path / "o").exists()


def test_bad_tiles_and_network_without_layer_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cosim", str(REPO / "configs" / "seed_case1.yaml"), "--tiles", "0"]) == 2
    assert "--tiles: 0" in capsys.readouterr().err
    assert main(["cosim", str(REPO / "configs" / "dcgan_generator.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "--layer" in capsys.readouterr().err
    # a unit the layer or hardware does not have: refused before anything runs or is written
    assert main(["cosim", str(REPO / "configs" / "seed_case1.yaml"), "--stage", "swell", "--method", "phase",
                 "--out", str(tmp_path / "o")]) == 2
    assert "method phase has no swell stage" in capsys.readouterr().err
    ws = write_config(tmp_path / "ws.yaml", {"op": "conv_transpose2d", "input_shape": [1, 1, 2, 2], "in_channels": 1,
                                             "out_channels": 1, "kernel_size": 2},
                      {"mac_array": {"rows": 4, "cols": 4, "dataflow": "ws"}})
    assert main(["cosim", str(ws), "--out", str(tmp_path / "o")]) == 2
    assert "output-stationary (os) only" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------- RTL tier (Icarus)


DOC = REPO / "docs" / "rtl.md"


def documented_runs() -> list[tuple[str, list[str]]]:
    """Every ``$ convsim cosim ...`` command quoted in docs/rtl.md with the stdout lines quoted under it."""
    runs: list[tuple[str, list[str]]] = []
    in_block = False
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block and line.startswith("$ convsim cosim "):
            runs.append((line[2:], []))
        elif in_block and runs and line.startswith("cosim "):
            runs[-1][1].append(line)
    return runs


def test_documented_seed_lines_are_the_hand_counts() -> None:
    """The seed cases' lines in docs/rtl.md against hand counts (default hardware: 32x32 os array, swell DMA
    64 B/cycle after 8 set-up cycles); tests/test_docs.py checks the same lines against the RTL (they are
    generated by running the commands)."""
    runs = dict(documented_runs())
    swell1, swell2 = 8 + ceil_div(17 * 17, 64), 8 + ceil_div(10 * 14, 64)  # 17x17 and 10x14 swelled maps, 1 channel
    expected = {
        # CASE_1: 225 outputs = 8 folds of 32 rows, K = 9; phase: 9 jobs of 5x5 outputs, one tap, one fold each
        "seed_case1.yaml --method swell": (swell1, 289, 8 * (9 + 62), 900),
        "seed_case1.yaml --method phase": (None, None, 9 * (1 + 62), 900),
        # CASE_2: 96 outputs = 3 folds, K = 9; phase: 4 jobs of 4x6 outputs with 2x2 sub-kernels
        "seed_case2.yaml --method swell": (swell2, 140, 3 * (9 + 62), 384),
        "seed_case2.yaml --method phase": (None, None, 4 * (4 + 62), 384),
    }
    for tail, (swell, swell_bytes, mac, mac_bytes) in expected.items():
        lines = runs[f"convsim cosim configs/{tail}"]
        first = ("cosim swell: SKIPPED (method phase has no swell stage)" if swell is None else
                 f"cosim swell: PASS (1 tiles, {swell_bytes} bytes compared), rtl {swell} cycles, model {swell} cycles")
        assert lines == [first, f"cosim mac_array: PASS (1 tiles, {mac_bytes} bytes compared), rtl {mac} cycles, "
                                f"model {mac} cycles"]
    # the byte-serial DMA of the --rtl-dir example: set-up + one cycle per swelled byte
    [serial, _] = runs["convsim cosim configs/seed_case2.yaml --rtl-dir tests/user_rtl"]
    assert f"rtl {8 + 10 * 14} cycles, model {swell2} cycles" in serial


LAYERS = st.fixed_dictionaries({
    "groups": st.sampled_from([1, 2]), "cpg": st.integers(1, 3), "opg": st.integers(1, 3),
    "h": st.integers(1, 4), "w": st.integers(1, 5), "k": st.tuples(st.integers(1, 4), st.integers(1, 3)),
    "s": st.tuples(st.integers(1, 4), st.integers(1, 4)), "d": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "extra_p": st.tuples(st.integers(0, 2), st.integers(0, 2)), "op": st.tuples(st.integers(0, 3), st.integers(0, 3)),
    "seed": st.integers(0, 1000),
})


@pytest.mark.rtl
@pytest.mark.skipif(not HAVE_ICARUS, reason="Icarus Verilog not installed")
@settings(max_examples=5, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(p=LAYERS)
def test_random_small_layers_on_a_4x4_array(p: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Strides 1-4, padding up to d(k-1)+2 (crop), output_padding, dilation, groups; both methods; a 4x4 array and
    a 16 B/cycle swelling DMA so tiles take several beats and folds. Fixed examples (derandomized), no shrinking:
    each example costs two RTL simulations."""
    kh, kw = p["k"]
    pad = tuple(min(d * (k - 1) + e, 4) for d, k, e in zip(p["d"], (kh, kw), p["extra_p"], strict=True))
    op = tuple(o % max(s, d) for o, s, d in zip(p["op"], p["s"], p["d"], strict=True))
    out_hw = [(n - 1) * s - 2 * q + d * (k - 1) + o + 1
              for n, s, q, d, k, o in zip((p["h"], p["w"]), p["s"], pad, p["d"], (kh, kw), op, strict=True)]
    assume(min(out_hw) >= 1)
    g = p["groups"]
    layer = {"op": "conv_transpose2d", "input_shape": [1, g * p["cpg"], p["h"], p["w"]], "in_channels": g * p["cpg"],
             "out_channels": g * p["opg"], "kernel_size": [kh, kw], "stride": list(p["s"]), "padding": list(pad),
             "output_padding": list(op), "dilation": list(p["d"]), "groups": g, "bias": True}
    tmp = tmp_path_factory.mktemp("layer")
    config = write_config(tmp / "layer.yaml", layer, seed=p["seed"])
    for method in ("swell", "phase"):
        check_verdicts(cosim(config, method=method, out=tmp / method), config, method)


# ifmap and weight SRAM small enough that the planner cuts input-channel slices and column ranges
SLICED = {"op": "conv_transpose2d", "input_shape": [1, 12, 3, 7], "in_channels": 12, "out_channels": 3,
          "kernel_size": 3, "stride": 2, "padding": 1, "bias": True}


@pytest.mark.rtl
@pytest.mark.skipif(not HAVE_ICARUS, reason="Icarus Verilog not installed")
@pytest.mark.parametrize(("method", "ifmap_bytes", "tiles", "fold_cycles"), [
    # 3 oc x 2 ic x 1 row x 10 cols, then the 3 remaining columns: 13 swelled columns = 10 + 3; six slices each.
    # Per slice T = 3*3*2 = 18: ceil(10/4) folds of 18 + 4 + 4 - 2 cycles, then one fold for 3 columns
    ("swell", 192, 12, [3 * 24] * 6 + [24] * 6),
    # 1 oc x 4 ic x 5 rows x 8 cols of 13, three slices each. Per slice 4 phase jobs of T = ceil(3/2)**2 * 4 = 16
    # (kernel taps per phase 2x2, with zero-padded taps for the phases with one): outputs (3|2 rows) x (4|4 cols)
    # of 8 columns, (3|2) x (3|2) of the last 5: folds ceil(12/4) + ceil(12/4) + ceil(8/4) + ceil(8/4) = 10,
    # and 3 + 2 + 2 + 1 = 8, of 16 + 6 cycles
    ("phase", 128, 6, [10 * 22] * 3 + [8 * 22] * 3),
])
def test_input_channel_slices_and_width_tiles_match_the_rtl(method: str, ifmap_bytes: int, tiles: int,
                                                            fold_cycles: list[int], tmp_path: Path) -> None:
    """The RTL runs each slice's folds from zeroed accumulators; a later slice's result plus the previous slice's
    dumped psum equals its dump, and the RTL's busy cycles equal the MAC cost less its psum preload term."""
    hw = {**SMALL_HW, "sram": {"ifmap": {"size_bytes": ifmap_bytes, "num_banks": 1, "bank_width_bytes": 4},
                               "weight": {"size_bytes": 256, "num_banks": 1, "bank_width_bytes": 4}}}
    config = write_config(tmp_path / "l.yaml", SLICED, hw, seed=1)
    plan = plan_for(load_config(config).layer, load_config(config).hardware, method)
    checked = plan.tiles[:tiles]
    assert {t.ic_slice for t in checked} == set(range(checked[0].ic_slices)) and checked[0].ic_slices > 1
    assert len({t.ow for t in checked}) == 2  # two column ranges
    verdicts = cosim(config, method=method, out=tmp_path / "o", tiles=tiles)
    check_verdicts(verdicts, config, method)
    assert all(v.passed for v in verdicts), [v.line for v in verdicts]
    [mac] = [v for v in verdicts if v.stage == "mac_array"]
    assert [rtl_c for _, rtl_c, _ in mac.tiles] == fold_cycles


@pytest.mark.rtl
@pytest.mark.skipif(not HAVE_ICARUS, reason="Icarus Verilog not installed")
@pytest.mark.parametrize("layout", ["NCHW", "NC1HWC0"])
def test_other_activation_layouts(layout: str, tmp_path: Path) -> None:
    """NCHW and NC1HWC0 (c0 4, 6 channels: a zero-padded tail block) on both units, with several tiles."""
    layer = {"op": "conv_transpose2d", "input_shape": [1, 6, 5, 4], "in_channels": 6, "out_channels": 5,
             "kernel_size": 3, "stride": [2, 3], "padding": [1, 3], "output_padding": [1, 0], "bias": True}
    hw = {**SMALL_HW, "layout": {"activation": layout, "c0": 4},
          "sram": {b: {"size_bytes": 1024, "num_banks": 4, "bank_width_bytes": 8} for b in ("ifmap", "weight", "psum")}}
    config = write_config(tmp_path / "l.yaml", layer, hw)
    verdicts = cosim(config, method="swell", out=tmp_path / "o")
    assert all(v.passed for v in verdicts), [v.line for v in verdicts]
    assert len(verdicts[0].tiles) > 1


@pytest.mark.rtl
@pytest.mark.skipif(not HAVE_ICARUS, reason="Icarus Verilog not installed")
def test_a_left_crop_wider_than_a_beat_costs_the_rtl_a_wait_the_model_does_not_charge(tmp_path: Path) -> None:
    """64 channels, stride 2, q = -2: the first swelled pixel with data is input column 1, bytes 64-127 of the
    compact row; the writer's first beat waits one cycle for them. cosim reports FAIL cycles, data equal."""
    layer = {"op": "conv_transpose2d", "input_shape": [1, 64, 4, 4], "in_channels": 64, "out_channels": 4,
             "kernel_size": 2, "stride": 2, "padding": 3, "bias": False}
    config = write_config(tmp_path / "l.yaml", layer, {"mac_array": {"rows": 4, "cols": 4}})
    [v] = cosim(config, stage="swell", out=tmp_path / "o")
    assert not v.passed and "FAIL cycles" in v.line and "bytes compared equal" in v.line
    [(_, rtl_c, model_c)] = v.tiles
    assert rtl_c == model_c + 1 == swell_rtl_cycles(config)[0]
    assert f"`{v.line}`" in " ".join(DOC.read_text().split())  # the line docs/rtl.md quotes


@pytest.mark.rtl
@pytest.mark.skipif(not HAVE_ICARUS, reason="Icarus Verilog not installed")
@pytest.mark.parametrize(("stage", "buffer", "addr", "expect"), [
    # ifmap pixel (0, 0) of seed_case1 lands at swelled (2, 2) of the 17x17 map at 0x100: 0x100 + 2*17 + 2
    ("swell", "ifmap", 0x0, "ifmap_swelled[0, 2, 2] at ifmap 0x00000124 (bank 2, row 1)"),
    # conv weight tap (0, 0) (weight_conv at 0x100) multiplies swelled pixel (r, c) into output (r, c); the first
    # non-zero swelled pixel is input (0, 0) at (2, 2) (non-zero in this data), so output (2, 2) differs first:
    # int32 NHWC psum at 4 * (2*15 + 2) = 0x80
    ("mac_array", "weight", 0x100, "psum[0, 2, 2] at psum 0x00000080 (bank 8, row 0)"),
])
def test_one_bit_fault_in_an_rtl_input_fails_and_names_the_address(stage: str, buffer: str, addr: int, expect: str,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = REPO / "configs" / "seed_case1.yaml"
    verdicts = cosim(config, stage=stage, out=tmp_path, fault=Fault(stage, buffer, addr, 6))
    [v] = verdicts
    assert not v.passed
    assert v.line.startswith(f"cosim {stage}: FAIL at tile 0, {expect}: rtl ")
    assert v.line in capsys.readouterr().out


@pytest.mark.rtl
@pytest.mark.skipif(not HAVE_ICARUS, reason="Icarus Verilog not installed")
def test_wave_writes_a_vcd_and_tiles_limits_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Relative paths too (the RTL simulator runs in its build directory, not in the caller's)."""
    monkeypatch.chdir(tmp_path)
    wave = tmp_path / "w.vcd"
    code = main(["cosim", str(REPO / "configs" / "grouped_dilated_asym.yaml"), "--stage", "swell", "--tiles", "1",
                 "--wave", "w.vcd", "--out", "o"])
    captured = capsys.readouterr()
    assert code == 0
    assert "cosim swell: PASS (1 tiles," in captured.out
    assert "checking 1 of 2 tile(s)" in captured.err
    vcd = wave.read_text()
    assert vcd.startswith("$date") and "$enddefinitions" in vcd and " swell_busy $end" in vcd


def test_bad_rtl_dir_is_exit_2_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not HAVE_ICARUS:
        pytest.skip("the tool check comes first")
    code = main(["cosim", str(REPO / "configs" / "seed_case1.yaml"), "--rtl-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--rtl-dir" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ci_runs_the_readme_test_command_which_installs_icarus() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"\n{ci}\n" in readme
    assert ci.startswith("(command -v iverilog >/dev/null || (apt-get update -qq && apt-get install -y -qq iverilog))")
