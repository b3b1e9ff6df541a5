"""``convsim from-torch`` on torch.ao quantized models (FX ``--quantize`` and eager mode), then ``golden`` and ``run``:
every layer PASSes and the final int8 output equals torch's quantized model's own output, bit for bit."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from simulator.cli import main

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

DECODER = """
import torch.nn as nn


def decoder() -> nn.Module:
    # the issue's decoder: ConvTranspose2d -> ReLU -> ConvTranspose2d (groups 2) -> Conv2d (per-channel weights
    # under the fbgemm qconfig), then two operations convsim does not run
    return nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=2),
                         nn.Conv2d(8, 4, 3, 1, 1), nn.Upsample(scale_factor=2), nn.Tanh())


def conv_bn_relu() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.ConvTranspose2d(8, 4, 3, 2, 1))


def dcgan() -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(16, 32, 4, 1, 0, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
                         nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
                         nn.ConvTranspose2d(16, 3, 4, 2, 1, bias=False), nn.Tanh())
"""

EAGER = """
import torch
import torch.nn as nn
from torch.ao.quantization import QConfig, HistogramObserver, QuantStub, convert, default_per_channel_weight_observer
from torch.ao.quantization import default_weight_observer, prepare


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.up1 = nn.ConvTranspose2d(16, 8, 4, 2, 1)
        self.relu = nn.ReLU()
        self.up2 = nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=2)
        self.head = nn.Conv2d(8, 4, 3, 1, 1)

    def forward(self, x):
        return self.head(self.up2(self.relu(self.up1(self.quant(x)))))  # ends quantized: no DeQuantStub


def quantized_decoder() -> nn.Module:
    torch.manual_seed(3)
    model = Decoder().eval()
    act = HistogramObserver.with_args(reduce_range=True)
    model.qconfig = QConfig(activation=act, weight=default_per_channel_weight_observer)
    for m in (model.up1, model.up2):  # torch has no per-channel quantized transposed conv
        m.qconfig = QConfig(activation=act, weight=default_weight_observer)
    engine = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        prepared = prepare(model)
        for _ in range(4):
            prepared(torch.randn(1, 16, 4, 4))
        return convert(prepared)
    finally:
        torch.backends.quantized.engine = engine
"""


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def from_torch_golden_run(tmp: Path, target: str, shape: str, *extra: str) -> tuple[dict[str, Any], Path]:
    config = tmp / "net.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["from-torch", target, "--input-shape", shape, "--out", str(config), *extra]) == 0
        assert main(["golden", str(config), "--golden-dir", str(tmp / "golden")]) == 0
    assert main(["run", str(config), "--golden-dir", str(tmp / "golden"), "--out", str(tmp / "run"),
                 "--no-dumps"]) == 0
    return yaml.safe_load(config.read_text()), config


def test_fx_quantized_decoder_passes_every_layer_and_equals_torch(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "models.py", DECODER)
    cfg, config = from_torch_golden_run(tmp_path, f"{tmp_path / 'models.py'}:decoder", "1,16,4,4", "--quantize")
    out = capsys.readouterr().out
    layers = cfg["layers"]
    assert [layer["op"] for layer in layers] == ["conv_transpose2d", "conv_transpose2d", "conv2d"]
    assert [layer["input"] for layer in layers] == ["data", "previous", "previous"]
    assert layers[0]["quant"]["activation"] == "relu"  # the ReLU module folded into the first layer
    assert layers[1]["groups"] == 2
    assert isinstance(layers[2]["quant"]["weight"]["scale"], list)  # per-channel weights on the conv
    assert "NOT RUN 4 (Upsample)" in out and "NOT RUN 5 (Tanh)" in out
    assert "#   4 (Upsample): not run" in config.read_text()
    assert out.count("PASS against") == 3
    for layer in layers:  # torch's own int8 output of each layer, recorded from its forward pass
        ours = np.load(tmp_path / "run" / layer["name"] / "ofmap.npy")
        theirs = np.load(tmp_path / f"{cfg['name']}_data" / f"{layer['name']}_torch_ofmap.npy")
        assert np.array_equal(ours, theirs), layer["name"]
        manifest = json.loads((tmp_path / "golden" / cfg["name"] / layer["name"] / "manifest.json").read_text())
        assert manifest["reference"].startswith("torch.ao")


def test_eager_quantized_decoder_final_output_equals_torch(tmp_path: Path) -> None:
    write(tmp_path, "eager.py", EAGER)
    cfg, _ = from_torch_golden_run(tmp_path, f"{tmp_path / 'eager.py'}:quantized_decoder", "1,16,4,4")
    layers = cfg["layers"]
    assert [layer["name"] for layer in layers] == ["up1", "up2", "head"]
    assert layers[0]["quant"]["activation"] == "relu"
    # torch's quantized model on the same float input from-torch used (seed 0), run here independently
    import importlib.util

    spec = importlib.util.spec_from_file_location("eager_model", tmp_path / "eager.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    model = module.quantized_decoder()
    x = torch.randn((1, 16, 4, 4), generator=torch.Generator().manual_seed(0))
    from simulator.golden.quantized import quantized_engine

    with torch.no_grad(), quantized_engine("fbgemm"):
        y = model(x)
    expected = (y.int_repr().numpy().astype(np.int16) - 128).astype(np.int8)
    assert np.array_equal(np.load(tmp_path / "run" / "head" / "ofmap.npy"), expected)


def test_quantize_fuses_conv_bn_relu_and_uses_a_calibration_file(tmp_path: Path) -> None:
    write(tmp_path, "models.py", DECODER)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((4, 3, 6, 6)).astype(np.float32))
    cfg, _ = from_torch_golden_run(tmp_path, f"{tmp_path / 'models.py'}:conv_bn_relu", "1,3,6,6", "--quantize",
                                   "--calibration", str(tmp_path / "calib.npy"))
    layers = cfg["layers"]
    assert [(layer["op"], layer["quant"]["activation"]) for layer in layers] == [("conv2d", "relu"),
                                                                                ("conv_transpose2d", "none")]
    assert layers[1]["input"] == "previous"


@pytest.mark.parametrize(("args", "message"), [
    (["--calibration", "x.npy"], "--calibration needs --quantize"),
    (["--quantize", "--calibration", "bad.npy"], "shape"),
])
def test_from_torch_quantize_errors_are_one_line(tmp_path: Path, capsys: Any, args: list[str], message: str) -> None:
    write(tmp_path, "models.py", DECODER)
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 4, 4), dtype=np.float32))
    cwd_args = [a if not a.endswith(".npy") else str(tmp_path / a) for a in args]
    code = main(["from-torch", f"{tmp_path / 'models.py'}:decoder", "--input-shape", "1,16,4,4",
                 "--out", str(tmp_path / "n.yaml"), *cwd_args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "n.yaml").exists()


def test_quantize_on_an_already_quantized_model_is_refused(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "eager.py", EAGER)
    code = main(["from-torch", f"{tmp_path / 'eager.py'}:quantized_decoder", "--input-shape", "1,16,4,4",
                 "--quantize", "--out", str(tmp_path / "n.yaml")])
    assert code == 2 and "already quantized" in capsys.readouterr().err


def test_quantize_folds_batchnorm_into_transposed_convs_and_keeps_the_chain(tmp_path: Path, capsys: Any) -> None:
    write(tmp_path, "models.py", DECODER)
    cfg, _ = from_torch_golden_run(tmp_path, f"{tmp_path / 'models.py'}:dcgan", "1,16,1,1", "--quantize")
    layers = cfg["layers"]
    assert [layer["input"] for layer in layers] == ["data", "previous", "previous"]
    assert [layer["quant"]["activation"] for layer in layers] == ["relu", "relu", "none"]
    out = capsys.readouterr().out
    assert "NOT RUN 7 (Tanh)" in out and "BatchNorm" not in out and "BNReLU" not in out
    for layer in layers:
        ours = np.load(tmp_path / "run" / layer["name"] / "ofmap.npy")
        assert np.array_equal(ours, np.load(tmp_path / "dcgan_data" / f"{layer['name']}_torch_ofmap.npy"))
