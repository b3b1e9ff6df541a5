"""Networks: per-layer runs against golden cases, the totals table, and ``convsim from-torch``.

Expected values are written here by hand (layer arguments, totals arithmetic) or come from the independent torch
reference in conftest; generated golden cases go to tmp directories.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from simulator import load_config
from simulator.cli import main
from simulator.report import LayerReport, StageSummary, network_table, network_totals
from tests.conftest import REPO, torch_reference

NETWORKS = ["dcgan_generator", "unet_decoder", "fsrcnn_deconv", "fcn8s_upsample"]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- shipped networks


@pytest.mark.parametrize("name", NETWORKS)
def test_shipped_network_passes_and_matches_torch(name, tmp_path, capsys):
    config = REPO / "configs" / f"{name}.yaml"
    cfg = load_config(config)
    assert cfg.is_network
    code, out, err = _run(["run", str(config), "--out", str(tmp_path), "--golden-dir", str(REPO / "golden"),
                           "--no-dumps"], capsys)
    assert code == 0, out
    assert out.count(": PASS against") == len(cfg.layers) and "FAIL" not in out
    assert err == ""  # progress bars only on a terminal
    for layer in cfg.layers:  # each layer's ofmap against torch on the golden case's own inputs
        case = REPO / "golden" / name / layer.name
        ifmap, weight, bias = (np.load(case / f"{t}.npy", allow_pickle=False) for t in ("ifmap", "weight", "bias"))
        ofmap = np.load(tmp_path / layer.name / "ofmap.npy", allow_pickle=False)
        np.testing.assert_array_equal(ofmap, torch_reference(layer, ifmap, weight, bias))


def test_shipped_network_golden_is_small():
    total = sum(p.stat().st_size for n in NETWORKS for p in (REPO / "golden" / n).rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024  # .npy + $readmemh .hex of every tensor of every layer


# --------------------------------------------------------------------------------------------- a network run


NET = """
name: tiny_net
layers:
  - {name: up, op: conv_transpose2d, input_shape: [1, 4, 3, 3], in_channels: 4, out_channels: 6,
     kernel_size: 3, stride: 2, padding: 1, output_padding: 1, bias: true}
  - {name: conv, op: conv2d, input_shape: [2, 6, 6, 6], in_channels: 6, out_channels: 4, kernel_size: 3,
     padding: 1, groups: 2, bias: true}
  - {name: up_dil, op: conv_transpose2d, input_shape: [1, 4, 4, 5], in_channels: 4, out_channels: 2,
     kernel_size: [2, 3], stride: [3, 2], dilation: 2, bias: false}
data: {seed: SEED, ifmap: random, weight: random, bias: random}
hardware: HW
"""


def _tiny_net(tmp_path: Path, seed: int) -> Path:
    path = tmp_path / f"tiny_{seed}.yaml"
    path.write_text(NET.replace("SEED", str(seed)).replace("HW", str(REPO / "configs" / "hw" / "default.yaml")))
    return path


def test_network_run_against_tmp_golden(tmp_path, capsys):
    config, gold, run = _tiny_net(tmp_path, 1), tmp_path / "golden", tmp_path / "run"
    assert _run(["golden", str(config), "--golden-dir", str(gold)], capsys)[0] == 0
    assert sorted(p.name for p in (gold / "tiny_net").iterdir()) == ["conv", "up", "up_dil"]
    code, out, _ = _run(["run", str(config), "--golden-dir", str(gold), "--out", str(run), "--no-dumps"], capsys)
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["up"], ["conv"],
                                                                                               ["up_dil"], ["total"])}
    assert [rows[n][-1] for n in ("up", "conv", "up_dil", "total")] == ["PASS"] * 4
    assert rows["conv"][1:3] == ["conv2d", "direct"]
    # the totals report is the sum (cycles, MACs, DRAM) and the max (peak SRAM) of the per-layer reports
    layers = [json.loads((run / n / "report.json").read_text()) for n in ("up", "conv", "up_dil")]
    totals = json.loads((run / "report.json").read_text())["totals"]
    assert totals["cycles"] == sum(r["cycles"] for r in layers)
    assert totals["macs_useful"] == sum(r["macs_useful"] for r in layers)
    assert totals["dram_read_bytes"] == sum(r["dram_read_bytes"] for r in layers)
    assert totals["peak_sram_total_bytes"] == max(sum(r["peak_sram_bytes"].values()) for r in layers)
    assert rows["total"][2] == f"{totals['cycles']:,}"
    # useful MACs by hand: products of a real input value (no inserted zero, no border), per axis then squared.
    # up: inputs 0,1,2 (s2, p1, k3) reach 2, 3, 3 of the 6 outputs -> 8 per axis; x N*C_in*C_out = 1*4*6
    # conv: outputs 0..5 (p1, k3) see 2, 3, 3, 3, 3, 2 real taps -> 16 per axis; x N*C_out*C_in/g = 2*4*3
    # up_dil: no padding, every tap lands: 4*2 rows x 5*3 cols; x N*C_in*C_out = 1*4*2
    assert [r["macs_useful"] for r in layers] == [8 * 8 * 1 * 4 * 6, 16 * 16 * 2 * 4 * 3, 8 * 15 * 1 * 4 * 2]


def test_network_run_reports_a_failing_layer(tmp_path, capsys):
    config, gold = _tiny_net(tmp_path, 1), tmp_path / "golden"
    assert _run(["golden", str(config), "--golden-dir", str(gold)], capsys)[0] == 0
    case = gold / "tiny_net" / "conv"  # a wrong expected value, with a manifest that still verifies
    ofmap = np.load(case / "ofmap.npy", allow_pickle=False)
    ofmap[1, 2, 3, 4] += 1
    np.save(case / "ofmap.npy", ofmap, allow_pickle=False)
    manifest = json.loads((case / "manifest.json").read_text())
    digest = hashlib.sha256((case / "ofmap.npy").read_bytes()).hexdigest()
    manifest["tensors"]["ofmap"]["sha256"] = manifest["files"]["ofmap.npy"] = digest
    (case / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = _run(["run", str(config), "--golden-dir", str(gold), "--out", str(tmp_path / "run"),
                         "--no-dumps"], capsys)
    assert code == 1
    assert "conv: FAIL" in out and "up: PASS" in out and "up_dil: PASS" in out
    assert out.splitlines()[-1].split()[-1] == "FAIL"
    assert json.loads((tmp_path / "run" / "report.json").read_text())["layers"][1]["verdict"] == "FAIL"


def _report(name: str, cycles: int, compute: int, issued: int, useful: int, peak: dict[str, int],
            energy_fj: int = 0) -> LayerReport:
    mac = StageSummary("mac_array", compute, 0, {}, {}, 0, 0, False, compute_cycles=compute, macs_issued=issued,
                       macs_useful=useful)
    return LayerReport(name, "conv_transpose2d", "swell", 1, 1, 1, cycles, cycles / 500, 500.0, 100, 10, peak,
                       issued, useful, 0.0, 0.0, (mac,), energy_fj=energy_fj,
                       energy_fj_by_action={"mac": energy_fj // 4, "dram": energy_fj - energy_fj // 4},
                       zero_mac_energy_fj=energy_fj // 8)


def test_network_totals_by_hand():
    a = _report("a", 1000, 400, 400 * 16, 1600, {"ifmap": 10, "weight": 50, "psum": 5}, energy_fj=1_000_000)
    b = _report("b", 3000, 100, 100 * 8, 200, {"ifmap": 40, "weight": 1, "psum": 1}, energy_fj=2_500_008)
    totals = network_totals([a, b], num_pes=16)
    assert totals["cycles"] == 4000 and totals["time_us"] == 8.0
    assert totals["utilization_issued"] == (6400 + 800) / (16 * 500)  # 0.9, not the mean of 100% and 50%
    assert totals["utilization_useful"] == 1800 / (16 * 500)
    assert totals["dram_read_bytes"] == 200 and totals["dram_write_bytes"] == 20
    assert totals["peak_sram_bytes"] == {"ifmap": 40, "weight": 50, "psum": 5}
    assert totals["peak_sram_total_bytes"] == 65
    # energies add up exactly in fJ: 1,000,000 + 2,500,008; by action 250,000 + 625,002 and 750,000 + 1,875,006
    assert totals["energy_fj"] == 3_500_008 and totals["energy_pj"] == 3500.008
    assert totals["energy_fj_by_action"]["mac"] == 875_002 and totals["energy_fj_by_action"]["dram"] == 2_625_006
    assert totals["zero_mac_energy_fj"] == 125_000 + 312_501
    table = network_table([a, b], ["PASS", "NO GOLDEN"], num_pes=16).splitlines()
    assert table[-1].split() == ["total", "2", "4,000", "3.500", "8.000", "7,200", "1,800", "90.0%", "22.5%", "220",
                                 "65", "-"]
    assert [line.split()[0] for line in table[3:5]] == ["a", "b"]


# ---------------------------------------------------------------------------------------------------- from-torch


MODELS = '''
import torch
import torch.nn as nn


def dcgan(nz=8, ngf=4, nc=3):
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1))
        self.up = nn.ConvTranspose2d(8, 12, 3, stride=2, padding=1, output_padding=1, groups=4, dilation=2)
        self.same = nn.Conv2d(12, 6, 3, padding="same", dilation=2)
        self.odd = nn.Conv2d(6, 6, 2, padding="same")
        self.shared = nn.ConvTranspose2d(6, 6, 2, stride=2, groups=3, bias=False)
        self.sized = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1)

    def forward(self, x):
        y = self.odd(self.same(self.up(self.head(x))))
        y = self.shared(self.shared(y))
        return self.sized(y, output_size=(2 * y.shape[2], 2 * y.shape[3]))


class Reflect(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.pad = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")

    def forward(self, x):
        return self.pad(self.up(x))


NOT_CALLABLE = 3


def not_a_module():
    return torch.zeros(1)
'''

LAYER_ARGS = ("op", "input_shape", "in_channels", "out_channels", "kernel_size", "stride", "padding",
              "output_padding", "dilation", "groups", "bias")


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


def _args(layer) -> tuple:
    return tuple(getattr(layer, k) for k in LAYER_ARGS)


def _golden_then_run(config: Path, tmp_path: Path, capsys) -> str:
    gold = tmp_path / "gold"
    assert _run(["golden", str(config), "--golden-dir", str(gold)], capsys)[0] == 0
    code, out, _ = _run(["run", str(config), "--golden-dir", str(gold), "--out", str(tmp_path / "run"),
                         "--no-dumps"], capsys)
    assert code == 0, out
    return out


def test_from_torch_dcgan_runs_bit_exact(models, tmp_path, capsys):
    out_file = tmp_path / "out" / "gen.yaml"
    code, out, _ = _run(["from-torch", f"{models}:dcgan", "--input-shape", "1,8,1,1", "--out", str(out_file)],
                        capsys)
    assert code == 0 and "wrote" in out
    cfg = load_config(out_file)
    assert cfg.name == "dcgan" and cfg.is_network
    assert [layer.name for layer in cfg.layers] == ["layer_0", "layer_3", "layer_6", "layer_9"]
    t = "conv_transpose2d"
    assert [_args(layer) for layer in cfg.layers] == [
        (t, (1, 8, 1, 1), 8, 16, (4, 4), (1, 1), (0, 0), (0, 0), (1, 1), 1, False),
        (t, (1, 16, 4, 4), 16, 8, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, False),
        (t, (1, 8, 8, 8), 8, 4, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, False),
        (t, (1, 4, 16, 16), 4, 3, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 1, False),
    ]
    # no hw/default.yaml beside the output: the default engine is written inline, equal to the shipped file
    assert "hardware: hw/default.yaml" not in out_file.read_text()
    assert cfg.hardware == load_config(REPO / "configs" / "dcgan_generator.yaml").hardware
    assert cfg.data.weight == "random" and cfg.data.bias == "random" and cfg.data.seed == 0
    run_out = _golden_then_run(out_file, tmp_path, capsys)
    assert run_out.count(": PASS against") == 4 and "FAIL" not in run_out


def test_from_torch_default_path_and_module_target(models, tmp_path, capsys, monkeypatch):
    (tmp_path / "configs" / "hw").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "hw" / "default.yaml", tmp_path / "configs" / "hw" / "default.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, _ = _run(["from-torch", "tiny_models:dcgan", "--input-shape", "2,8,1,1", "--name", "gen2"], capsys)
    assert code == 0
    written = tmp_path / "configs" / "gen2.yaml"
    assert "hardware: hw/default.yaml" in written.read_text()
    assert load_config(written).layers[0].input_shape == (2, 8, 1, 1)


def test_from_torch_grouped_dilated_and_unsupported(models, tmp_path, capsys):
    out_file = tmp_path / "mixed.yaml"
    code, out, _ = _run(["from-torch", f"{models}:Mixed", "--input-shape", "1,3,10,12", "--out", str(out_file)],
                        capsys)
    assert code == 0
    cfg = load_config(out_file)
    c, t = "conv2d", "conv_transpose2d"
    assert [layer.name for layer in cfg.layers] == ["head_0", "up", "same", "shared", "shared_1", "sized"]
    assert [_args(layer) for layer in cfg.layers] == [
        (c, (1, 3, 10, 12), 3, 8, (3, 3), (2, 2), (1, 1), (0, 0), (1, 1), 1, True),
        # (5-1)*2 - 2 + 2*2 + 1 + 1 = 12, (6-1)*2 - 2 + 4 + 1 + 1 = 14
        (t, (1, 8, 5, 6), 8, 12, (3, 3), (2, 2), (1, 1), (1, 1), (2, 2), 4, True),
        # padding='same' with dilation 2: 2*(3-1) = 4 in total, 2 each side
        (c, (1, 12, 12, 14), 12, 6, (3, 3), (1, 1), (2, 2), (0, 0), (2, 2), 1, True),
        # `odd` (not included) keeps 12x14; the shared module is called twice
        (t, (1, 6, 12, 14), 6, 6, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1), 3, False),
        (t, (1, 6, 24, 28), 6, 6, (2, 2), (2, 2), (0, 0), (0, 0), (1, 1), 3, False),
        # output_size (96, 112) = (48-1)*2 - 2 + 3 + op  ->  output_padding 1 on both axes
        (t, (1, 6, 48, 56), 6, 4, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, True),
    ]
    assert "NOT INCLUDED odd (Conv2d): padding='same'" in out
    assert "#   odd (Conv2d): padding='same'" in out_file.read_text()
    run_out = _golden_then_run(out_file, tmp_path, capsys)
    assert run_out.count(": PASS against") == 6 and "FAIL" not in run_out


def _one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_from_torch_rejects_padding_mode(models, tmp_path, capsys):
    err = _one_line_error(*_run(["from-torch", f"{models}:Reflect", "--input-shape", "1,4,3,3", "--out",
                                 str(tmp_path / "r.yaml")], capsys))
    assert "'pad' (Conv2d)" in err and "padding_mode='reflect'" in err
    assert not (tmp_path / "r.yaml").exists()


@pytest.mark.parametrize(("target", "shape", "expected"), [
    ("missing.py:dcgan", "1,8,1,1", "not found"),
    ("{m}:nope", "1,8,1,1", "no attribute 'nope'"),
    ("{m}:NOT_CALLABLE", "1,8,1,1", "int is not callable"),
    ("{m}:not_a_module", "1,8,1,1", "returned Tensor, expected a torch.nn.Module"),
    ("no_such_package_xyz.models:dcgan", "1,8,1,1", "cannot import module no_such_package_xyz.models"),
    ("{m}", "1,8,1,1", "expected path/to/file.py:callable"),
    ("{m}:dcgan", "1,8,1", "--input-shape '1,8,1'"),
    ("{m}:dcgan", "1,0,1,1", "--input-shape '1,0,1,1'"),
    ("{m}:dcgan", "1,x,1,1", "--input-shape '1,x,1,1'"),
    ("{m}:dcgan", "1,5,1,1", "forward pass on input [1, 5, 1, 1] raised RuntimeError"),
])
def test_from_torch_bad_target_or_shape(models, tmp_path, capsys, target, shape, expected):
    target = target.format(m=models)
    err = _one_line_error(*_run(["from-torch", target, "--input-shape", shape, "--out", str(tmp_path / "x.yaml")],
                                capsys))
    assert expected in err


def test_a_large_layers_byte_columns_never_run_together() -> None:
    """A stage reading hundreds of MB per buffer overflows the 30-character column: one space still separates it
    from the next (the 64 KiB benchmark layer's MAC array row ran 'psum 251,658,240psum 268,435,456')."""
    mac = StageSummary("mac_array", 43_302_912, 0, {"ifmap": 193_167_360, "weight": 134_217_728,
                                                     "psum": 251_658_240}, {"psum": 268_435_456}, 0, 0, False)
    row = mac.line()
    assert "psum 251,658,240 psum 268,435,456" in row
    small = StageSummary("load", 99, 0, {}, {"ifmap": 25, "weight": 13}, 38, 0, False).line()
    assert "ifmap 25 weight 13            38/0" in small  # short columns keep their width
