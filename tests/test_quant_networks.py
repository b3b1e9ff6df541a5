"""Quantized networks: ``input: previous`` chains int8 layers (the shipped DCGAN int8 twin runs end to end against
its committed golden case), and a chain whose scales, zero points or shapes disagree is refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.cli import main
from simulator.config import load_config
from simulator.errors import ConfigError
from simulator.golden import load_case
from tests.conftest import REPO, make_config

TWIN = REPO / "configs" / "dcgan_generator_int8.yaml"


def test_dcgan_int8_twin_runs_int8_end_to_end(tmp_path: Path, capsys: Any) -> None:
    assert main(["run", str(TWIN), "--out", str(tmp_path / "run"), "--golden-dir", str(REPO / "golden"),
                 "--no-dumps"]) == 0
    out = capsys.readouterr().out
    cfg = load_config(TWIN)
    assert out.count("PASS against") == 5 and "(int8 ofmap and int32 accumulators)" in out
    previous = None
    for layer in cfg.layers:
        ofmap = np.load(tmp_path / "run" / layer.name / "ofmap.npy")
        assert ofmap.dtype == np.int8 and ofmap.shape == layer.output_shape
        case = load_case(REPO / "golden" / cfg.name / layer.name)
        assert case is not None and case.acc is not None
        if previous is not None:  # the golden chain: each layer's input is the previous layer's int8 output
            assert np.array_equal(case.tensors.ifmap, previous)
        previous = case.ofmap
        if layer.quant is not None and layer.quant.activation == "relu":
            assert ofmap.min() >= layer.quant.output.zero_point
    assert "the DRAM store moves int8" in (tmp_path / "run" / "deconv1" / "report.json").read_text()
    import json

    network = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [entry.get("input") for entry in network["layers"]] == [
        None, "previous: deconv1", "previous: deconv2", "previous: deconv3", "previous: deconv4"]
    assert "deconv2: input = layer deconv1's int8 ofmap (scale 0.07548, zero_point -128)" in out


def layer(name: str, shape: list[int], c_out: int, quant: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    out = {"name": name, "op": "conv2d", "input_shape": shape, "in_channels": shape[1], "out_channels": c_out,
           "kernel_size": 1, **extra}
    return {**out, "quant": quant} if quant else out


def q(x: tuple[float, int], y: tuple[float, int]) -> dict[str, Any]:
    return {"input": {"scale": x[0], "zero_point": x[1]}, "weight": {"scale": 0.01},
            "output": {"scale": y[0], "zero_point": y[1]}}


@pytest.mark.parametrize(("second", "message"), [
    (layer("b", [1, 4, 3, 3], 2, q((0.5, 3), (1.0, 0)), input="previous"), "must equal the quant.output of layer 'a'"),
    (layer("b", [1, 4, 3, 3], 2, q((0.25, 4), (1.0, 0)), input="previous"), "zero_point 4"),
    (layer("b", [1, 4, 5, 5], 2, q((0.25, 3), (1.0, 0)), input="previous"), "outputs [1, 4, 3, 3]"),
    (layer("b", [1, 4, 3, 3], 2, None, input="previous"), "needs a quant: section"),
])
def test_a_broken_chain_is_refused_in_one_line(second: dict[str, Any], message: str) -> None:
    first = layer("a", [1, 2, 3, 3], 4, q((0.1, 0), (0.25, 3)))
    with pytest.raises(ConfigError, match="input=previous") as err:
        from simulator.config import config_from_mapping

        config_from_mapping({"name": "n", "layers": [first, second]}, REPO / "configs")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_first_layer_cannot_read_a_previous_one() -> None:
    with pytest.raises(ConfigError, match="needs a previous layer"):
        make_config(layer("a", [1, 2, 3, 3], 4, q((0.1, 0), (0.25, 3)), input="previous"))


def test_a_golden_case_made_with_other_quant_settings_is_stale(tmp_path: Path, capsys: Any) -> None:
    config = tmp_path / "q.yaml"
    text = (REPO / "configs" / "quant_deconv.yaml").read_text().replace("hardware: hw/default.yaml\n", "")
    config.write_text(text)
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    config.write_text(text.replace("zero_point: -5", "zero_point: -4"))
    assert main(["run", str(config), "--golden-dir", str(tmp_path / "g"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "other quant: settings" in err and len(err.strip().splitlines()) == 1


def test_golden_refuses_an_order_dependent_saturating_quantized_layer() -> None:
    from simulator.data import make_tensors
    from simulator.errors import ConvsimError
    from simulator.golden.quantized import accumulators

    # K = 33,100 centred products of up to 255^2: a running sum can leave int32 and come back
    cfg = make_config(layer("big", [1, 33100, 1, 1], 1, q((0.1, 0), (1.0, 0))),
                      hardware={"accumulator": {"on_overflow": "saturate"}}, data={"weight": "random"})
    with pytest.raises(ConvsimError, match="order-dependent"):
        accumulators(cfg.layer, make_tensors(cfg.data, cfg.layer), "saturate")


def test_golden_manifest_records_the_converter_registers(tmp_path: Path) -> None:
    import json

    from simulator.stages.output_convert import registers

    config = tmp_path / "q.yaml"
    text = (REPO / "configs" / "quant_deconv.yaml").read_text().replace("hardware: hw/default.yaml\n", "")
    config.write_text(text.replace("rounding: fp32_rne", "rounding: tflite_double"))
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    converter = json.loads((tmp_path / "g" / "quant_deconv" / "manifest.json").read_text())["converter"]
    cfg = load_config(config)
    engine = registers(cfg.layer.quant, np.zeros(4, dtype=np.int32))  # type: ignore[arg-type]
    assert converter["multiplier"] == engine.multiplier.tolist() and converter["shift"] == engine.shift.tolist()
    shipped = json.loads((REPO / "golden" / "quant_deconv" / "manifest.json").read_text())["converter"]
    atws = np.array([int(h, 16) for h in shipped["atws_f32"]], dtype=np.uint32).view(np.float32)
    assert np.allclose(atws, 0.046875 * np.array([0.0137, 0.011, 0.0152, 0.009]), rtol=1e-7)
