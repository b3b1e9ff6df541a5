"""``convsim compare``: both methods side by side, exit codes, golden checks, networks and ``--json``."""

from __future__ import annotations

import json

import simulator.methods as methods
from simulator.cli import main
from tests.conftest import REPO

CASE2 = str(REPO / "configs" / "seed_case2.yaml")
DCGAN = str(REPO / "configs" / "dcgan_128_64.yaml")


def _json(capsys, argv):
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_compare_json_on_dcgan_counts_macs_by_hand(tmp_path, capsys):
    code, out = _json(capsys, ["compare", DCGAN, "--json", "--golden-dir", str(tmp_path)])
    assert code == 0 and out["ok"] is True
    (layer,) = out["layers"]
    swell, phase = layer["swell"], layer["phase"]
    assert (swell["method"], phase["method"]) == ("swell", "phase")
    # 16x16x128 -> 32x32x64, k4 s2 p1: swell 32*32 outputs x 16 taps, phase 4 phases x 16*16 outputs x 4 taps
    assert swell["macs_issued"] == 32 * 32 * 16 * 128 * 64
    assert phase["macs_issued"] == 4 * 16 * 16 * 4 * 128 * 64
    assert swell["macs_useful"] == phase["macs_useful"] == 62 * 62 * 128 * 64
    assert phase["stage_cycles"]["swell"] is None and swell["stage_cycles"]["swell"] > 0
    assert layer["methods_agree"] is True and layer["golden"] is None


def test_compare_staged_ifmap_of_case2_by_hand(tmp_path, capsys):
    # phase stages the compact 4x6 input (24 B); swell also the swelled map: (4-1)*2+1 + 2*(3-1-1) + 1 = 10 rows,
    # (6-1)*2+1 + 2 + 1 = 14 columns -> 24 + 140 = 164 B
    _, out = _json(capsys, ["compare", CASE2, "--json", "--golden-dir", str(tmp_path)])
    (layer,) = out["layers"]
    assert layer["phase"]["staged_ifmap_bytes"] == 24
    assert layer["swell"]["staged_ifmap_bytes"] == 24 + 10 * 14
    # MACs: swell 8x12 outputs x 9 taps; phase 4 phases of 4x6 outputs x 2x2 taps
    assert layer["swell"]["macs_issued"] == 8 * 12 * 9
    assert layer["phase"]["macs_issued"] == 4 * 4 * 6 * 4


def test_compare_table_and_golden_pass(tmp_path, capsys):
    assert main(["golden", CASE2, "--golden-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["compare", CASE2, "--golden-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for row in ("cycles total (scheduled)", "MACs issued", "utilization useful", "staged ifmap B/tile",
                "peak SRAM psum B", "DRAM read B", "SRAM write B"):
        assert row in text
    assert "MACs issued" in text and "864" in text and "384" in text
    assert "swell and phase bit-exact" in text and "swell PASS, phase PASS" in text


def test_compare_exits_1_when_methods_disagree(tmp_path, capsys, monkeypatch):
    real = methods.simulate_layer

    def faulty(layer, hw, method, tensors, observer=None):
        result = real(layer, hw, method, tensors, observer)
        if method == "phase":
            result.ofmap[0, 0, 3, 5] += 1  # a fault injected into one method only
        return result

    monkeypatch.setattr(methods, "simulate_layer", faulty)
    assert main(["compare", CASE2, "--golden-dir", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "DISAGREE" in text and "at [0, 0, 3, 5]" in text


def test_compare_bad_input_exits_2(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing.yaml")]) == 2
    assert main(["golden", CASE2, "--golden-dir", str(tmp_path)]) == 0
    ofmap = tmp_path / "seed_case2" / "ofmap.npy"
    data = bytearray(ofmap.read_bytes())
    data[-1] ^= 1
    ofmap.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["compare", CASE2, "--golden-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sha256" in err


def test_compare_network_gives_one_block_per_layer(tmp_path, capsys):
    config = tmp_path / "net.yaml"
    config.write_text(
        "name: net\nlayers:\n"
        "  - {name: up1, op: conv_transpose2d, input_shape: [1, 4, 3, 3], in_channels: 4, out_channels: 2,\n"
        "     kernel_size: 3, stride: 2, padding: 1, output_padding: 1}\n"
        "  - {name: up2, op: conv_transpose2d, input_shape: [1, 2, 6, 6], in_channels: 2, out_channels: 2,\n"
        "     kernel_size: 4, stride: 2, padding: 1}\n"
        f"hardware: {REPO / 'configs' / 'hw' / 'default.yaml'}\n")
    code, out = _json(capsys, ["compare", str(config), "--json", "--golden-dir", str(tmp_path / "g")])
    assert code == 0
    assert [layer["layer"] for layer in out["layers"]] == ["up1", "up2"]
    # up2: 12x12 outputs x 16 taps x 2 x 2 channels; phase a quarter of that
    assert out["layers"][1]["swell"]["macs_issued"] == 12 * 12 * 16 * 4
    assert out["layers"][1]["phase"]["macs_issued"] * 4 == 12 * 12 * 16 * 4
    assert main(["compare", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    assert capsys.readouterr().out.count("layer up") == 2
