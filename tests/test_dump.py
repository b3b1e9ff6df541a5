"""Per-stage dumps (simulator/dump/) and ``convsim inspect`` (simulator/inspector.py).

Expected values are built by hand here (zero insertion, flip + swap, byte orders) or come from the independent
torch reference in conftest, never from the dump code itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator import load_config, simulate
from simulator.cli import main
from simulator.dump import Dumps, DumpWriter
from simulator.errors import IntegrityError
from simulator.heatmap import LABEL_H
from tests.conftest import REPO, make_config, torch_reference

SEED1 = REPO / "configs" / "seed_case1.yaml"
# CASE_2-like geometry with 5 input channels, so c0=4 does not divide C (NC1HWC0 pads the channel tail)
LAYER = {"op": "conv_transpose2d", "input_shape": [1, 5, 4, 6], "in_channels": 5, "out_channels": 3,
         "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1, "bias": True}
DATA = {"seed": 7, "ifmap": "random", "weight": "random", "bias": "random"}


def run_seed1(tmp_path: Path, name: str = "r1") -> Path:
    out = tmp_path / name
    assert main(["run", str(SEED1), "--out", str(out), "--no-compare"]) == 0
    return out


def dump_layer(tmp_path: Path, cfg, **kw) -> tuple[Dumps, object]:
    writer = DumpWriter(tmp_path / "dumps", cfg.hardware, **kw)
    result = simulate(cfg, observer=writer)
    writer.finish(result)
    return Dumps.open(tmp_path), result


def grid_of(text: str) -> np.ndarray:
    """Parse the rows of the first grid `inspect` printed ('.' = 0)."""
    rows = []
    for line in text.splitlines():
        head, sep, cells = line.partition(":")
        if sep and head.strip().isdigit():
            rows.append([0 if c == "." else int(c) for c in cells.split()])
    return np.array(rows)


# ------------------------------------------------------------------------------------------ done-when checks


def test_seed_case1_swelled_map_is_17x17_with_pixels_3_apart(tmp_path, capsys):
    run = run_seed1(tmp_path)
    capsys.readouterr()
    assert main(["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled"]) == 0
    shown = grid_of(capsys.readouterr().out)
    ifmap = simulate(load_config(SEED1)).tensors.ifmap[0, 0]
    # stride 3: two zeros between pixels; border d(k-1)-p = 2 zeros on every side: 2 + 3*4 + 1 + 2 = 17
    expected = np.zeros((17, 17), dtype=np.int64)
    expected[2:15:3, 2:15:3] = ifmap
    assert shown.shape == (17, 17)
    np.testing.assert_array_equal(shown, expected)


def _rewrite_hex_byte(entry_dir: Path, index_path: Path, offset: int, value: int) -> None:
    """Change byte `offset` of ifmap_swelled in a copied run, keeping the dir self-consistent (npy, both sha256)."""
    hex_path, npy_path = entry_dir / "ifmap_swelled.hex", entry_dir / "ifmap_swelled.npy"
    lines = hex_path.read_text().splitlines()
    data = [i for i, line in enumerate(lines) if line and not line.startswith(("//", "@"))]
    line_no = data[offset // 16]
    pos = 2 * (15 - offset % 16)  # MSB first: byte 15 of the word is digits 0-1, byte 0 is digits 30-31
    line = lines[line_no]
    lines[line_no] = line[:pos] + f"{value & 0xFF:02x}" + line[pos + 2:]
    hex_path.write_text("\n".join(lines) + "\n")
    h, w = divmod(offset, 17)  # NHWC with C=1: byte offset = h*17 + w
    arr = np.load(npy_path, allow_pickle=False)
    arr[0, 0, h, w] = value
    np.save(npy_path, arr, allow_pickle=False)
    index = json.loads(index_path.read_text())
    for stage in index["stages"]:
        for t in stage["tiles"]:
            for b in t["buffers"]:
                if b["name"] == "ifmap_swelled":
                    b["hex_sha256"] = hashlib.sha256(hex_path.read_bytes()).hexdigest()
                    b["npy_sha256"] = hashlib.sha256(npy_path.read_bytes()).hexdigest()
    index_path.write_text(json.dumps(index))


def test_diff_names_the_changed_buffer_and_coordinate(tmp_path, capsys):
    run = run_seed1(tmp_path)
    other = tmp_path / "r2"
    shutil.copytree(run, other)
    capsys.readouterr()
    assert main(["inspect", str(run), "--diff", str(other)]) == 0
    assert "all equal" in capsys.readouterr().out
    # pixel (5, 8) of the swelled map is input pixel (1, 2): offset 5*17 + 8 = 93
    _rewrite_hex_byte(other / "dumps" / "swell", other / "dumps" / "index.json", 93, 77)
    assert main(["inspect", str(run), "--diff", str(other)]) == 1
    out = capsys.readouterr().out
    ifmap = simulate(load_config(SEED1)).tensors.ifmap
    base = json.loads((run / "dumps" / "index.json").read_text())["stages"][1]["tiles"][0]["buffers"][0]["base_addr"]
    assert (f"first difference: stage swell, tile 0, buffer ifmap_swelled at [0, 0, 5, 8]: {ifmap[0, 0, 1, 2]} vs 77"
            f"; first differing byte at ifmap 0x{base + 93:08x}") in out
    assert "1 differ" in out


def test_changed_byte_without_new_checksum_is_an_integrity_error(tmp_path, capsys):
    run = run_seed1(tmp_path)
    path = run / "dumps" / "swell" / "ifmap_swelled.hex"
    text = path.read_text()
    path.write_text(text[:-3] + ("1" if text[-3] != "1" else "2") + text[-2:])
    with pytest.raises(IntegrityError, match="sha256"):
        Dumps.open(run).find("swell", "ifmap_swelled").physical()
    capsys.readouterr()
    assert main(["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled", "--format", "hex"]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------- round trip, every layout


def physical_bytes(logical: np.ndarray, layout: str, c0: int) -> bytes:
    """Storage order written by hand: (C, H, W) as NCHW / NHWC / NC1HWC0 (channel tail zero-padded)."""
    if layout == "NCHW":
        return logical.tobytes()
    if layout == "NHWC":
        return np.ascontiguousarray(logical.transpose(1, 2, 0)).tobytes()
    c, h, w = logical.shape
    c1 = -(-c // c0)
    padded = np.zeros((c1 * c0, h, w), dtype=logical.dtype)
    padded[:c] = logical
    return np.ascontiguousarray(padded.reshape(c1, c0, h, w).transpose(0, 2, 3, 1)).tobytes()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NC1HWC0"])
def test_round_trip_every_layout(tmp_path, layout):
    cfg = make_config(LAYER, data=DATA, hardware={"layout": {"activation": layout, "c0": 4}})
    dumps, result = dump_layer(tmp_path, cfg)
    assert dumps.index["num_tiles"] == 1
    t = result.tensors
    x, w, b = t.ifmap.astype(np.int64), t.weight.astype(np.int64), t.bias.astype(np.int64)
    # swelled by hand: 1 zero between pixels, border k-1-p = 1, output_padding 1 extra on the far side
    swelled = np.zeros((1, 5, 1 + 7 + 1 + 1, 1 + 11 + 1 + 1), dtype=np.int64)
    swelled[:, :, 1:8:2, 1:12:2] = x
    ref = torch_reference(cfg.layer, t.ifmap, t.weight, t.bias)
    expected = {
        "ifmap": x, "weight": w, "bias": b, "ifmap_swelled": swelled,
        "weight_conv": w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1],  # (C_in, C_out, kh, kw) -> (C_out, C_in) flipped
        "psum": ref - b[None, :, None, None], "ofmap": ref,
    }
    seen = set()
    for d in dumps.buffers():
        logical, physical = d.logical(), d.physical()
        np.testing.assert_array_equal(logical, d.decoded())  # npy == decode(hex bytes)
        np.testing.assert_array_equal(logical.astype(np.int64), expected[d.name])
        if d.entry["layout"] in ("NCHW", "NHWC", "NC1HWC0"):
            assert d.entry["layout"] == layout
            want = physical_bytes(expected[d.name][0].astype(d.entry["dtype"]), layout, 4)
        else:
            want = expected[d.name].astype(d.entry["dtype"]).tobytes()
        assert physical.tobytes() == want
        seen.add(d.name)
    assert seen == set(expected)


def test_hex_lines_are_bank_words_msb_first(tmp_path):
    cfg = make_config(LAYER, data=DATA, hardware={"layout": {"activation": "NCHW", "c0": 4}})
    dumps, result = dump_layer(tmp_path, cfg)
    d = dumps.find("writeback", "ofmap")
    text = (d.directory / d.entry["hex"]).read_text().splitlines()
    at = [line for line in text if line.startswith("@")]
    assert at == [f"@{d.entry['base_addr'] // 16:08x}"]
    first = text[text.index(at[0]) + 1]
    # NCHW int32 little-endian: the first word holds ofmap[0, 0, 0, 0:4]; its lowest byte is the last 2 digits
    words = result.ofmap[0, 0, 0, :4].astype("<i4").tobytes()
    assert first == words[::-1].hex()
    assert int(first[-8:], 16) == int(result.ofmap[0, 0, 0, 0]) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------------- tiling, budget


def test_tiled_layer_dumps_each_tile_with_its_output_region(tmp_path):
    small = {"ifmap": {"size_bytes": 512}, "weight": {"size_bytes": 4096}, "psum": {"size_bytes": 1024}}
    cfg = make_config(LAYER, data=DATA, hardware={"sram": small, "pipeline": {"overlap": "serial"}})
    dumps, result = dump_layer(tmp_path, cfg)
    ix = dumps.index
    assert ix["tiled"] and ix["num_tiles"] > 1 and ix["dumped_tiles"] == list(range(ix["num_tiles"]))
    ref = torch_reference(cfg.layer, *(getattr(result.tensors, n) for n in ("ifmap", "weight", "bias")))
    covered = np.zeros(ref.shape, dtype=bool)
    wb = next(s for s in ix["stages"] if s["name"] == "writeback")
    for t in wb["tiles"]:
        assert t["dir"] == f"writeback/tile{t['tile']:04d}"
        (o0, o1), (c0, c1), n = t["oh"], t["oc"], t["n"]
        ofmap = dumps.find("writeback", "ofmap", t["tile"]).logical()
        np.testing.assert_array_equal(ofmap[0], ref[n, c0:c1, o0:o1])
        covered[n, c0:c1, o0:o1] = True
    assert covered.all()


def test_dump_tiles_cap_and_byte_budget_are_recorded(tmp_path):
    small = {"ifmap": {"size_bytes": 512}, "weight": {"size_bytes": 4096}, "psum": {"size_bytes": 1024}}
    cfg = make_config(LAYER, data=DATA, hardware={"sram": small, "pipeline": {"overlap": "serial"}})
    dumps, result = dump_layer(tmp_path / "a", cfg, max_tiles=2)
    n = len(result.plan.tiles)
    assert dumps.index["dumped_tiles"] == [0, 1] and dumps.index["skipped_tiles"] == list(range(2, n))
    assert sorted(p.name for p in (tmp_path / "a" / "dumps" / "load").iterdir()) == ["tile0000", "tile0001"]
    assert dumps.index["policy"] == {"max_tiles": 2, "budget_bytes": None}
    dumps, _ = dump_layer(tmp_path / "b", cfg, budget_bytes=1)
    assert dumps.index["dumped_tiles"] == [] and dumps.index["bytes_written"] == 0
    dumps, _ = dump_layer(tmp_path / "c", cfg, budget_bytes=20_000)
    ix = dumps.index
    assert 0 < len(ix["dumped_tiles"]) < n and ix["bytes_written"] <= 20_000
    assert ix["dumped_tiles"] + ix["skipped_tiles"] == list(range(n))
    files = [p for p in (tmp_path / "c" / "dumps").rglob("*") if p.is_file() and p.name != "index.json"]
    on_disk = sum(p.stat().st_size for p in files)
    assert on_disk == ix["bytes_written"]


def test_no_dumps_writes_no_dumps_dir(tmp_path):
    out = tmp_path / "r"
    assert main(["run", str(SEED1), "--out", str(out), "--no-compare", "--no-dumps"]) == 0
    assert not (out / "dumps").exists()


# ---------------------------------------------------------------------------------------------- renderers


def test_listing_hex_stats_and_png(tmp_path, capsys):
    run = run_seed1(tmp_path)
    ifmap = simulate(load_config(SEED1)).tensors.ifmap
    capsys.readouterr()
    assert main(["inspect", str(run)]) == 0
    listing = capsys.readouterr().out
    assert "swell:" in listing and "ifmap_swelled" in listing and "289 B" in listing

    assert main(["inspect", str(run), "--stage", "load", "--buffer", "ifmap", "--format", "hex"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("0x")]
    # 25 bytes = two 16-byte words; bytes listed in ascending address order (NHWC, C=1: row-major pixels)
    assert rows[0].split()[:3] == ["0x00000000", "0", "0"]
    assert rows[0].split()[3:] == [f"{int(v) & 0xFF:02x}" for v in ifmap.reshape(-1)[:16]]
    assert len(rows) == 2 and len(rows[1].split()[3:]) == 9

    assert main(["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled", "--format", "stats"]) == 0
    stats = capsys.readouterr().out
    zeros = 289 - int(np.count_nonzero(ifmap))
    assert f"min {int(ifmap.min()):>12,} max {int(ifmap.max()):>12,} zeros {zeros}/289" in stats

    png = tmp_path / "swelled.png"
    assert main(["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled", "--png", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
    pixels = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)[:, 1:]
    pixels = pixels.reshape(height, width, 3)
    scale = (width - 2) // 17
    assert scale >= 1 and width == 17 * scale + 2
    top = 1 + LABEL_H  # the plane's label strip is above it
    # pixel (0, 0) of the map is border zero (white); (2, 2) is input pixel (0, 0), coloured unless it is 0
    assert (pixels[top, 1] == 255).all()
    assert (pixels[top + 2 * scale, 1 + 2 * scale] == 255).all() == (ifmap[0, 0, 0, 0] == 0)
    assert (pixels[1:top, 1:-1] == 0).any()  # the label "n=0,c=0" is drawn in black
    # the colour scale under the plane: -max blue at the left end, white in the middle, +max red at the right
    bar = pixels[top + 17 * scale + 2]
    assert tuple(bar[1]) == (0, 0, 255) and tuple(bar[-2]) == (255, 0, 0)  # fully saturated at |max|
    assert (bar[width // 2] >= 200).all()


def test_network_run_dir_names_its_layers(tmp_path, capsys):
    run = run_seed1(tmp_path)
    net = tmp_path / "net"
    shutil.copytree(run, net / "up1")
    capsys.readouterr()
    assert main(["inspect", str(net)]) == 2
    assert "up1" in capsys.readouterr().err
    assert main(["inspect", str(net / "up1")]) == 0


def test_input_channel_slices_and_width_tiles_are_dumped_and_indexed(tmp_path):
    # 24 input channels on 512-byte buffers: the planner slices the reduction and the width
    layer = {"op": "conv_transpose2d", "input_shape": [1, 24, 4, 40], "in_channels": 24, "out_channels": 3,
             "kernel_size": 3, "stride": 2, "padding": 1, "bias": True}
    small = {b: {"size_bytes": 512, "num_banks": 2, "bank_width_bytes": 4} for b in ("ifmap", "weight", "psum")}
    cfg = make_config(layer, data=DATA, hardware={"sram": small}, engine={"transposed_conv": "swell"})
    dumps, result = dump_layer(tmp_path, cfg, max_tiles=10**6)
    plan, ix = result.plan, dumps.index
    assert plan.ic_per_tile < 24 and plan.cols_per_tile < cfg.layer.output_hw[1], plan.shape()
    assert ix["tile_shape"] == plan.shape()
    t = result.tensors
    mac = {e["tile"]: e for e in next(s for s in ix["stages"] if s["name"] == "mac_array")["tiles"]}
    wb = {e["tile"]: e for e in next(s for s in ix["stages"] if s["name"] == "writeback")["tiles"]}
    for tile in plan.tiles:
        entry = mac[tile.index]
        assert (entry["ow"], entry["ic"], entry["ic_slice"]) == (list(tile.ow), list(tile.ic),
                                                                  [tile.ic_slice, tile.ic_slices])
        # the psum after slice k holds the sum over input channels [0, ic1): torch over those channels alone
        partial = torch_reference(cfg.layer.model_copy(update={"in_channels": tile.ic[1],
                                                               "input_shape": (1, tile.ic[1], 4, 40)}),
                                  t.ifmap[:, :tile.ic[1]], t.weight[:tile.ic[1]], np.zeros(3, np.int32))
        psum = dumps.find("mac_array", "psum", tile.index).logical()[0]
        (o0, o1), (w0, w1), (c0, c1) = tile.oh, tile.ow, tile.oc
        np.testing.assert_array_equal(psum, partial[0, c0:c1, o0:o1, w0:w1])
        assert wb[tile.index]["skipped"] == (not tile.last_slice)


def test_heatmap_is_capped_and_says_what_it_left_out():
    import struct as st

    from simulator.heatmap import MAX_SIDE_PX, heatmap

    many = np.ones((128, 32, 4, 4), dtype=np.int8)  # 4,096 planes: a real weight tile
    image = heatmap(many, [f"i={i},o={o}" for i in range(128) for o in range(32)])
    width, height = st.unpack(">II", image.png[16:24])
    assert width <= MAX_SIDE_PX and height <= MAX_SIDE_PX
    assert 0 < image.planes_shown < image.planes_total == 4096 and image.subsample == 1
    tall = heatmap(np.ones((1, 10_000, 3), dtype=np.int32), ["c=0"])
    width, height = st.unpack(">II", tall.png[16:24])
    assert height <= MAX_SIDE_PX and tall.subsample == 3 and tall.planes_shown == 1


def test_diff_of_swell_and_phase_runs_compares_the_ofmaps(tmp_path, capsys):
    """Swell and phase write different buffers by design; --diff says whether the outputs agree instead of
    counting every buffer as different, and finds a changed ofmap element."""
    raw = yaml.safe_load(SEED1.read_text())
    raw["hardware"] = str(SEED1.parent / raw["hardware"])
    runs = {}
    for method in ("swell", "phase"):
        cfg = tmp_path / f"{method}.yaml"
        cfg.write_text(yaml.safe_dump({**raw, "engine": {"transposed_conv": method}}))
        runs[method] = tmp_path / method
        assert main(["run", str(cfg), "--out", str(runs[method]), "--no-compare"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(runs["swell"]), "--diff", str(runs["phase"])]) == 0
    out = capsys.readouterr().out
    assert "swell, 1 tile(s) vs phase, 1 tile(s)" in out and "ofmaps equal" in out and "all 225 elements" in out
    ofmap = np.load(runs["phase"] / "ofmap.npy")
    ofmap[0, 0, 3, 4] += 1
    np.save(runs["phase"] / "ofmap.npy", ofmap)
    assert main(["inspect", str(runs["swell"]), "--diff", str(runs["phase"])]) == 1
    out = capsys.readouterr().out
    assert "ofmaps DIFFER" in out and "1 of 225 elements differ" in out and "at [0, 0, 3, 4]" in out


def test_stage_alone_channel_and_plane_select_what_is_shown(tmp_path, capsys):
    """A 2 -> 3 channel transposed conv: the weight (IOHW, 2 x 3 planes) shown whole, for one output channel,
    and one plane, each compared with the weight the simulator was given (generated from the config's seed)."""
    cfg_path = tmp_path / "w.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "name": "w", "layer": {"input_shape": [1, 2, 3, 3], "in_channels": 2, "out_channels": 3, "kernel_size": 2,
                               "stride": 2}, "data": {"weight": "random"}, "hardware": {"mac_array": {"rows": 4,
                                                                                                     "cols": 4}}}))
    weight = simulate(load_config(cfg_path)).tensors.weight  # (I=2, O=3, 2, 2)
    run = tmp_path / "run"
    assert main(["run", str(cfg_path), "--out", str(run), "--no-compare"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(run), "--stage", "load"]) == 0
    listing = capsys.readouterr().out
    assert "load:" in listing and "swell:" not in listing and "rows oh [0, " in listing and ")" in listing
    assert "int32" in listing and "<i4" not in listing
    assert main(["inspect", str(run), "--stage", "load", "--buffer", "weight", "--channel", "2"]) == 0
    out = capsys.readouterr().out
    assert "[i=0, o=2]" in out and "[i=1, o=2]" in out and "o=1" not in out
    np.testing.assert_array_equal(grid_of(out)[:2], weight[0, 2])  # the first grid printed: i=0, o=2
    assert main(["inspect", str(run), "--stage", "load", "--buffer", "weight", "--channel", "2", "--plane", "1"]) == 0
    out = capsys.readouterr().out
    assert "[i=1, o=2]" in out and "[i=0, o=2]" not in out
    np.testing.assert_array_equal(grid_of(out), weight[1, 2])


def test_grid_and_hex_are_capped(tmp_path, capsys, monkeypatch):
    from simulator import inspector

    run = run_seed1(tmp_path)
    monkeypatch.setattr(inspector, "MAX_PRINT_LINES", 10)
    capsys.readouterr()
    assert main(["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # 1 description + 1 label + 1 column header + 17 rows = 20 lines: 10 shown, then the note
    assert len(lines) == 11 and lines[-1].startswith("... 10 more lines of the grid not shown")
    assert main(["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled", "--format", "hex"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # 289 bytes in 16-byte words: 19 data lines + 2 header lines = 21
    assert len(lines) == 11 and lines[-1].startswith("... 11 more lines of the hex view not shown")


def test_hex_parser_fast_path_agrees_with_the_line_parser():
    """The numpy parser of the writer's layout and the line-by-line parser (comments, blank lines, upper-case)
    read the same bytes; a malformed line is an integrity error either way."""
    from simulator.dump import hex_header, hex_words, parse_hex
    from simulator.sram import Region

    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, size=1000, dtype=np.uint8)
    region = Region("x", "ifmap", 0x100, (1000,), "int8", "C", 16)
    text = hex_header(region, 16, 16, "t").encode() + hex_words(raw, 16)
    addr, fast = parse_hex(text, 1000, "t")
    assert addr == 0x10 and np.array_equal(fast, raw)
    lines = text.decode().splitlines()
    odd = "\n".join([*lines[:9], "", lines[9].upper() + "  // a comment", *lines[10:]]) + "\n"
    addr, slow = parse_hex(odd, 1000, "t")
    assert addr == 0x10 and np.array_equal(slow, raw)
    with pytest.raises(IntegrityError, match="digits"):
        parse_hex(text[:-3] + b"\n", 1000, "t")
