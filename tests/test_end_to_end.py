"""The shipped configs run end to end through the CLI and match an independent torch reference."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import load_config, simulate
from simulator.cli import main
from tests.conftest import REPO, torch_reference

# single-layer configs (the network configs are covered layer by layer in tests/test_networks.py)
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if not load_config(p).is_network)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_matches_torch(path):
    cfg = load_config(path)
    result = simulate(cfg)
    t = result.tensors
    q = cfg.layer.quant
    if q is not None:  # a quantized layer: its accumulators are the conv of the zero-point-centred tensors
        expected = torch_reference(cfg.layer, t.ifmap.astype(np.int16) - q.input.zero_point,
                                   t.weight.astype(np.int16) - q.weight.zero_point, t.bias)
        assert result.ofmap.dtype == np.int8
        np.testing.assert_array_equal(result.acc, expected)
        return
    expected = torch_reference(cfg.layer, t.ifmap, t.weight, t.bias)
    assert result.ofmap.dtype == np.int32
    np.testing.assert_array_equal(result.ofmap, expected)


def test_seed_case1_shape_is_15x15():
    result = simulate(load_config(REPO / "configs" / "seed_case1.yaml"))
    assert result.ofmap.shape == (1, 1, 15, 15)


def test_cli_run_writes_ofmap_and_report(tmp_path, capsys):
    code = main(["run", str(REPO / "configs" / "seed_case2.yaml"), "--out", str(tmp_path / "run"),
                 "--no-compare", "--no-dumps"])
    assert code == 0
    ofmap = np.load(tmp_path / "run" / "ofmap.npy", allow_pickle=False)
    assert ofmap.shape == (1, 1, 8, 12) and ofmap.dtype == np.int32
    assert (tmp_path / "run" / "report.json").is_file()
