"""Fuzzing the config loader and the CLI: random, mostly invalid mappings only ever give a clean error or a result.

Two generators: arbitrary nested dicts/lists/scalars (keys drawn partly from the real key names, so some reach
deep validators), and near-valid tiny configs with one field perturbed (wrong type, out of range, deleted, or
an unknown key). ``config_from_mapping`` must return a SimConfig or raise ConvsimError with a one-line message;
``convsim run`` on the same mapping written as YAML must exit 0/1, or 2 with one ``convsim: error:`` line.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.config import SimConfig, config_from_mapping
from simulator.errors import ConvsimError

KEYS = ["name", "layer", "layers", "data", "hardware", "engine", "op", "input_shape", "in_channels",
        "out_channels", "kernel_size", "stride", "padding", "output_padding", "dilation", "groups", "bias",
        "ifmap", "weight", "file", "seed", "mac_array", "rows", "cols", "sram", "size_bytes", "accumulator",
        "on_overflow", "layout", "activation", "transposed_conv", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["random", "pattern", "zeros", "swell", "phase", "conv2d",
                                                          "conv_transpose2d", "wrap", "NHWC", "../x", "a/b"]))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)),
    max_leaves=20)

VALID: dict[str, Any] = {
    "name": "fz",
    "layer": {"op": "conv_transpose2d", "input_shape": [1, 2, 3, 3], "in_channels": 2, "out_channels": 2,
              "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1, "dilation": 1, "groups": 1},
    "data": {"seed": 1, "ifmap": "random", "weight": "random", "bias": "random"},
    "hardware": {"mac_array": {"rows": 4, "cols": 4, "dataflow": "os"}, "sram": {"ifmap": {"size_bytes": 4096}},
                 "accumulator": {"on_overflow": "error"}, "layout": {"activation": "NHWC"}},
    "engine": {"transposed_conv": "swell"},
}
FIELDS = [("name",), ("layer",), ("data",), ("hardware",), ("engine",),
          *[("layer", k) for k in VALID["layer"]], *[("data", k) for k in VALID["data"]],
          ("hardware", "mac_array", "rows"), ("hardware", "mac_array", "cols"), ("hardware", "mac_array", "dataflow"),
          ("hardware", "sram", "ifmap", "size_bytes"), ("hardware", "accumulator", "on_overflow"),
          ("hardware", "layout", "activation"), ("engine", "transposed_conv")]
small = st.one_of(st.integers(-2, 5), st.lists(st.integers(-1, 4), max_size=5), st.sampled_from(
    [None, True, "", "3", 2.5, {"file": "missing.npy"}, {"fil": "a"}, "NCHW", "saturate", "phase", "conv2d"]))


# valid alternatives, so that a fair share of near-valid configs load and run
ALTERNATIVES: dict[str, list[Any]] = {
    "stride": [1, [1, 2], 3], "padding": [0, 2], "dilation": [2], "groups": [2], "op": ["conv2d"],
    "output_padding": [0], "kernel_size": [1, 2, [2, 3]], "out_channels": [4], "weight": ["pattern"],
    "bias": ["zeros"], "dataflow": ["ws"], "on_overflow": ["wrap", "saturate"], "activation": ["NCHW", "NC1HWC0"],
    "transposed_conv": ["phase"], "rows": [1, 3], "cols": [2], "seed": [0, 7],
}


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(FIELDS))
        node = raw
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict):
            continue
        action = draw(st.sampled_from(["set", "set", "set", "delete", "extra", "valid", "valid"]))
        if action == "valid":
            node[path[-1]] = draw(st.sampled_from(ALTERNATIVES.get(path[-1], [node.get(path[-1])])))
        elif action == "delete":
            node.pop(path[-1], None)
        elif action == "extra":
            node[path[-1] + "_"] = draw(small)
        else:
            node[path[-1]] = draw(small)
    return raw


mappings = st.one_of(near_valid(), near_valid(), st.dictionaries(st.sampled_from(KEYS), anything, max_size=6))


def check_loader(raw: Any, base: Path) -> SimConfig | None:
    try:
        return config_from_mapping(raw, base, source="fuzz")
    except ConvsimError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mappings)
def test_loader_gives_config_or_clean_error(raw: Any) -> None:
    check_loader(raw, Path(tempfile.gettempdir()))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=mappings)
def test_cli_run_gives_result_or_one_line(raw: Any, tmp_path_factory: pytest.TempPathFactory,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    tmp = tmp_path_factory.mktemp("fz")
    config = tmp / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = check_loader(raw, tmp)
    if cfg is not None and any(layer.output_shape[2] * layer.output_shape[3] * layer.in_channels > 4096
                               for layer in cfg.layers):
        return  # keep the run fast: only tiny layers are simulated
    try:
        code = main(["run", str(config), "--out", str(tmp / "out"), "--golden-dir", str(tmp / "g"), "--no-dumps"])
    except SystemExit as exc:  # pragma: no cover - argparse only, never reached with a valid argv
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("convsim: error: "), err
        assert not (tmp / "out").exists()
    else:
        assert code == 3, err  # NO GOLDEN: the fuzz configs have no golden case
        assert cfg is not None
