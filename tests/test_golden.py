"""Golden cases: committed cases regenerate byte-identically, --check, integrity on load, atomic regeneration,
the overflow policy in the reference, and the $readmemh files. Expected values are written here by hand."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator import files as files_module
from simulator.cli import main
from simulator.config import load_config
from simulator.golden import readmemh_bytes
from simulator.runner import golden_configs
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
GOLDEN = REPO / "golden"
CASE_FILES = sorted(f"{t}.{ext}" for t in ("ifmap", "weight", "bias", "ofmap") for ext in ("npy", "hex"))
CASE_BUDGET_BYTES = 2 * 2**20  # docs/formats.md: configs whose case is larger are not committed
VERSION_KEYS = ("torch_version", "numpy_version")


def case_bytes(config: Path) -> int:
    """Size of a config's golden data from its shapes: .npy (itemsize per element) + .hex (2*itemsize+1)."""
    total = 0
    for layer in load_config(config).layers:
        tensors = [(layer.input_shape, 1), (layer.weight_shape, 1), ((layer.out_channels,), 4),
                   (layer.output_shape, 4)]
        if layer.quant is not None:  # an int8 ofmap and the int32 accumulators
            tensors += [(layer.output_shape, 1)]
        for shape, itemsize in tensors:
            total += int(np.prod(shape)) * (itemsize + 2 * itemsize + 1)
    return total


COMMITTED = [c for c in CONFIGS if case_bytes(c) <= CASE_BUDGET_BYTES]


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def write_config(directory: Path, text: str, name: str = "t.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


SMALL = """name: small
layer: {op: conv_transpose2d, input_shape: [1, 2, 3, 3], in_channels: 2, out_channels: 3, kernel_size: 3,
        stride: 2, padding: 1, bias: true}
data: {seed: SEED, ifmap: random, weight: random, bias: random}
"""


# ------------------------------------------------------------------------------------------- committed golden/


def test_every_config_within_budget_is_committed_and_no_other():
    committed = {p.name for p in GOLDEN.iterdir() if p.is_dir()}
    assert committed == {load_config(c).name for c in COMMITTED}
    assert {"seed_case1", "unet_up_128_64_small"} <= committed
    # single-layer cases plus the four shipped networks (issue 9) and the int8 DCGAN twin (issue 16), each case
    # under its 2 MiB budget
    assert sum(len(b) for b in tree(GOLDEN).values()) < 10 * 2**20


@pytest.mark.parametrize("config", COMMITTED, ids=lambda p: p.stem)
def test_committed_case_regenerates_byte_identically(config, tmp_path):
    cfg = load_config(config)
    name = cfg.name
    assert golden_configs([config], tmp_path) == 0
    fresh, committed = tree(tmp_path / name), tree(GOLDEN / name)
    # a network keeps one case per layer in <layer>/
    prefixes = [f"{layer.name}/" for layer in cfg.layers] if cfg.is_network else [""]
    quantized = [f"acc.{ext}" for ext in ("npy", "hex")] if cfg.layers[0].quant is not None else []
    expected = sorted(p + f for p in prefixes for f in [*CASE_FILES, *quantized, "manifest.json"])
    assert sorted(fresh) == sorted(committed) == expected
    for file_name in fresh:
        if file_name.endswith("manifest.json"):
            continue
        assert fresh[file_name] == committed[file_name], f"{name}/{file_name} differs from the committed file"
    for prefix in prefixes:
        manifest = f"{prefix}manifest.json"
        old, new = json.loads(committed[manifest]), json.loads(fresh[manifest])
        if all(old[k] == new[k] for k in VERSION_KEYS):
            assert fresh[manifest] == committed[manifest]
        else:  # another torch/numpy than the one that generated golden/: only the recorded versions may differ
            assert {k: v for k, v in old.items() if k not in VERSION_KEYS} == \
                {k: v for k, v in new.items() if k not in VERSION_KEYS}


def test_committed_manifest_fields_and_checksums():
    directory = GOLDEN / "seed_case2"
    text = (directory / "manifest.json").read_text()
    manifest = json.loads(text)
    assert manifest["generator_version"] and manifest["torch_version"] and manifest["numpy_version"]
    assert manifest["seed"] == 0 and manifest["config"]["name"] == "seed_case2"
    assert manifest["config"]["layers"][0]["output_padding"] == [1, 1]
    assert manifest["config"]["hardware"]["accumulator"]["on_overflow"] == "error"
    assert manifest["tensors"]["ifmap"]["shape"] == [1, 1, 4, 6] and manifest["tensors"]["ifmap"]["dtype"] == "int8"
    assert manifest["tensors"]["weight"]["shape"] == [1, 1, 3, 3]
    assert manifest["tensors"]["ofmap"]["shape"] == [1, 1, 8, 12]
    assert manifest["tensors"]["ofmap"]["dtype"] == "int32" and manifest["tensors"]["bias"]["dtype"] == "int32"
    assert sorted(manifest["files"]) == CASE_FILES
    for file_name, digest in manifest["files"].items():
        assert hashlib.sha256((directory / file_name).read_bytes()).hexdigest() == digest
    assert str(REPO) not in text and "/tmp" not in text


def test_committed_hex_files_hold_the_npy_values_in_c_order():
    for directory in (GOLDEN / "grouped_dilated_asym", GOLDEN / "seed_case1"):
        for tensor in ("ifmap", "weight", "bias", "ofmap"):
            arr = np.load(directory / f"{tensor}.npy", allow_pickle=False)
            lines = (directory / f"{tensor}.hex").read_text().splitlines()
            data = [line for line in lines if not line.startswith("//")]
            bits = 8 * arr.dtype.itemsize
            assert all(len(line) == bits // 4 for line in data)
            values = [int(line, 16) - (1 << bits) if int(line, 16) >= 1 << (bits - 1) else int(line, 16)
                      for line in data]
            assert values == [int(v) for v in arr.reshape(-1)]
            assert lines[0].startswith(f"// convsim golden {tensor}: shape {list(arr.shape)}")


def test_readmemh_twos_complement_by_hand():
    int8 = readmemh_bytes(np.array([[-1, -128], [127, 0]], np.int8), "ifmap", ["H", "W"]).decode()
    assert [ln for ln in int8.splitlines() if not ln.startswith("//")] == ["ff", "80", "7f", "00"]
    int32 = readmemh_bytes(np.array([-2, 2**31 - 1, -(2**31), 0x1234], np.int32), "bias", ["C_out"]).decode()
    assert [ln for ln in int32.splitlines() if not ln.startswith("//")] == ["fffffffe", "7fffffff", "80000000",
                                                                             "00001234"]
    assert int32.endswith("00001234\n")


# ------------------------------------------------------------------------------------------------------ --check


def test_check_is_clean_then_reports_an_edit_without_writing(tmp_path, capsys):
    configs = [str(REPO / "configs" / "seed_case1.yaml"), str(REPO / "configs" / "seed_case2.yaml")]
    assert main(["golden", *configs, "--golden-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "[1/2] " in err and "[2/2] " in err  # progress on stderr
    assert main(["golden", *configs, "--golden-dir", str(tmp_path), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out

    hex_path = tmp_path / "seed_case2" / "ofmap.hex"
    edited = hex_path.read_text().replace("\n", "\n00000000\n", 1)
    hex_path.write_text(edited)
    ofmap_path = tmp_path / "seed_case1" / "ofmap.npy"
    ofmap = np.load(ofmap_path)
    ofmap[0, 0, 1, 2] += 1
    np.save(ofmap_path, ofmap)
    assert main(["golden", *configs, "--golden-dir", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "seed_case2: differs from regeneration: ofmap.hex differs" in out
    assert "ofmap.npy differs (1 of 225 elements)" in out
    assert hex_path.read_text() == edited  # --check wrote nothing


def test_check_reports_a_missing_case(tmp_path, capsys):
    assert main(["golden", str(REPO / "configs" / "seed_case1.yaml"), "--golden-dir", str(tmp_path), "--check"]) == 1
    assert "manifest.json missing" in capsys.readouterr().out
    assert not (tmp_path / "seed_case1").exists()


# ------------------------------------------------------------------------------------ run trusts only checked data


def _tampered_case(tmp_path: Path) -> Path:
    golden = tmp_path / "golden"
    shutil.copytree(GOLDEN / "seed_case2", golden / "seed_case2")
    return golden / "seed_case2"


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda d: _flip_byte(d / "ofmap.npy"), "ofmap.npy: sha256 checksum"),
    (lambda d: (d / "weight.hex").write_bytes((d / "weight.hex").read_bytes()[:-5]), "weight.hex: sha256 checksum"),
    (lambda d: (d / "ifmap.npy").unlink(), "ifmap.npy: missing"),
    (lambda d: (d / "manifest.json").unlink(), "manifest.json missing"),
    (lambda d: (d / "manifest.json").write_text('{"tensors": '), "not valid JSON"),
    (lambda d: (d / "manifest.json").write_text("[1, 2]"), "missing 'tensors'"),
], ids=["flipped-ofmap-byte", "truncated-hex", "missing-npy", "missing-manifest", "manifest-not-json",
        "manifest-not-object"])
def test_run_refuses_a_tampered_golden_case(tmp_path, capsys, tamper, message):
    tamper(_tampered_case(tmp_path))
    code = main(["run", str(REPO / "configs" / "seed_case2.yaml"), "--golden-dir", str(tmp_path / "golden"),
                 "--out", str(tmp_path / "run"), "--no-dumps"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("convsim: error: golden")
    assert message in err


def test_run_uses_the_golden_tensors_not_the_configs_seed(tmp_path, capsys):
    config = write_config(tmp_path, SMALL.replace("SEED", "1"))
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    config.write_text(SMALL.replace("SEED", "2"))  # the config would now generate other data
    assert main(["run", str(config), "--golden-dir", str(tmp_path / "g"), "--out", str(tmp_path / "r"),
                 "--no-dumps"]) == 0
    assert "small: PASS" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "r" / "ofmap.npy"), np.load(tmp_path / "g" / "small" /
                                                                                    "ofmap.npy"))


def test_run_refuses_a_stale_case(tmp_path, capsys):
    config = write_config(tmp_path, SMALL.replace("SEED", "1"))
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    config.write_text(SMALL.replace("SEED", "1").replace("[1, 2, 3, 3]", "[1, 2, 4, 3]"))
    assert main(["run", str(config), "--golden-dir", str(tmp_path / "g"), "--no-dumps",
                 "--out", str(tmp_path / "r")]) == 2
    assert "ifmap shape [1, 2, 3, 3], layer 'small' needs [1, 2, 4, 3] (stale" in capsys.readouterr().err


def test_golden_then_run_passes_for_every_shipped_config(tmp_path, capsys):
    assert main(["golden", *map(str, CONFIGS), "--golden-dir", str(tmp_path)]) == 0
    for config in CONFIGS:
        name = load_config(config).name
        code = main(["run", str(config), "--golden-dir", str(tmp_path), "--out", str(tmp_path / "runs" / name),
                     "--no-dumps"])
        out = capsys.readouterr().out
        assert code == 0 and "FAIL" not in out and "NO GOLDEN" not in out
        assert out.count(": PASS against") == len(load_config(config).layers)


# ------------------------------------------------------------------------------------- atomic regeneration


def test_regeneration_failing_midway_leaves_the_old_case(tmp_path, monkeypatch):
    config = write_config(tmp_path, SMALL.replace("SEED", "1"))
    golden_configs([config], tmp_path / "g")
    before = tree(tmp_path / "g")
    config.write_text(SMALL.replace("SEED", "2"))
    real_write, written = Path.write_bytes, []

    def crash_on_third(self: Path, data: bytes) -> int:
        if len(written) == 2:
            raise RuntimeError("simulated crash while writing")
        written.append(self.name)
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        golden_configs([config], tmp_path / "g")
    monkeypatch.undo()
    assert tree(tmp_path / "g") == before  # same files, same bytes, no temporary directory left
    assert os.listdir(tmp_path / "g") == ["small"]


def test_fallback_swap_restores_the_old_case_if_the_second_rename_fails(tmp_path, monkeypatch):
    config = write_config(tmp_path, SMALL.replace("SEED", "1"))
    golden_configs([config], tmp_path / "g")
    before = tree(tmp_path / "g")
    config.write_text(SMALL.replace("SEED", "2"))
    real_replace, calls = os.replace, []

    def fail_second(src: str | Path, dst: str | Path) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("simulated failure of the second rename")
        real_replace(src, dst)

    monkeypatch.setattr(files_module, "_exchange", lambda a, b: False)
    monkeypatch.setattr(files_module.os, "replace", fail_second)
    with pytest.raises(OSError, match="second rename"):
        golden_configs([config], tmp_path / "g")
    monkeypatch.undo()
    assert tree(tmp_path / "g") == before
    assert [p.name for p in (tmp_path / "g").iterdir() if p.name.endswith(".tmp")] == []


PAUSING_GOLDEN = """
import pathlib, sys, time
from simulator.cli import main
real_write, count = pathlib.Path.write_bytes, [0]
def pausing_write(self, data):
    n = real_write(self, data)
    count[0] += 1
    if count[0] == 3:  # three files of the new case are on disk: stop here until killed
        print("PAUSED", flush=True)
        time.sleep(120)
    return n
pathlib.Path.write_bytes = pausing_write
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_regeneration_killed_with_sigkill_leaves_the_old_case(tmp_path):
    big = SMALL.replace("[1, 2, 3, 3], in_channels: 2", "[1, 16, 64, 64], in_channels: 16")
    config = write_config(tmp_path, big.replace("SEED", "1"))
    golden_configs([config], tmp_path / "g")
    before = tree(tmp_path / "g")
    config.write_text(big.replace("SEED", "2"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_GOLDEN, "golden", str(config), "--golden-dir",
                             str(tmp_path / "g")], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "PAUSED"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p for p in (tmp_path / "g").iterdir() if p.name != "small"]
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".tmp")  # the half-written new case, aside
    assert {k: v for k, v in tree(tmp_path / "g").items() if k.startswith("small/")} == before
    assert golden_configs([config], tmp_path / "g") == 0  # a later regeneration still works
    assert golden_configs([config], tmp_path / "g", check=True) == 0


# --------------------------------------------------------------------------- overflow policy and data files


def _overflow_config(directory: Path, policy: str) -> Path:
    """ofmap = ifmap * 127 + bias (1x1 kernel, one channel): the bias pushes it past int32."""
    directory.mkdir(parents=True)
    (directory / "data").mkdir()
    np.save(directory / "data" / "x.npy", np.array([[[[127, -128], [1, 0]]]], dtype=np.int8))
    np.save(directory / "data" / "w.npy", np.array([[[[127]]]], dtype=np.int8))
    np.save(directory / "data" / "b.npy", np.array([2**31 - 100], dtype=np.int32))
    return write_config(directory, f"""name: ovf
layer: {{op: conv_transpose2d, input_shape: [1, 1, 2, 2], in_channels: 1, out_channels: 1, kernel_size: 1}}
data: {{ifmap: {{file: data/x.npy}}, weight: {{file: data/w.npy}}, bias: {{file: data/b.npy}}}}
hardware: {{accumulator: {{on_overflow: {policy}}}}}
""")


def test_wrap_policy_golden_is_the_exact_value_mod_2_32(tmp_path, capsys):
    config = _overflow_config(tmp_path / "cfg", "wrap")
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    exact = [127 * 127 + 2**31 - 100, -128 * 127 + 2**31 - 100, 127 + 2**31 - 100, 2**31 - 100]
    wrapped = [(v + 2**31) % 2**32 - 2**31 for v in exact]
    assert wrapped == [16029 - 2**31, 2**31 - 16356, 27 - 2**31, 2**31 - 100]  # by hand
    ofmap = np.load(tmp_path / "g" / "ovf" / "ofmap.npy", allow_pickle=False)
    assert ofmap.dtype == np.int32 and ofmap.reshape(-1).tolist() == wrapped
    assert main(["run", str(config), "--golden-dir", str(tmp_path / "g"), "--out", str(tmp_path / "r"),
                 "--no-dumps"]) == 0
    assert "ovf: PASS" in capsys.readouterr().out


def test_saturate_policy_golden_clamps(tmp_path):
    config = _overflow_config(tmp_path / "cfg", "saturate")
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    ofmap = np.load(tmp_path / "g" / "ovf" / "ofmap.npy", allow_pickle=False)
    assert ofmap.reshape(-1).tolist() == [2**31 - 1, 2**31 - 100 - 16256, 2**31 - 1, 2**31 - 100]


def test_error_policy_golden_refuses_to_generate(tmp_path, capsys):
    config = _overflow_config(tmp_path / "cfg", "error")
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 2
    assert "overflow" in capsys.readouterr().err
    assert not (tmp_path / "g" / "ovf").exists()


def test_manifest_is_independent_of_the_checkout_location(tmp_path):
    first = _overflow_config(tmp_path / "here", "wrap")
    second = _overflow_config(tmp_path / "elsewhere" / "deeper", "wrap")
    golden_configs([first], tmp_path / "g1")
    golden_configs([second], tmp_path / "g2")
    assert tree(tmp_path / "g1") == tree(tmp_path / "g2")
    manifest = json.loads((tmp_path / "g1" / "ovf" / "manifest.json").read_text())
    assert manifest["config"]["data"]["ifmap"] == {"file": "data/x.npy"}
    assert str(tmp_path) not in (tmp_path / "g1" / "ovf" / "manifest.json").read_text()


def test_network_case_has_one_checked_subdirectory_per_layer(tmp_path, capsys):
    config = write_config(tmp_path, """name: net
layers:
  - {name: up, op: conv_transpose2d, input_shape: [1, 2, 3, 3], in_channels: 2, out_channels: 3, kernel_size: 3,
     stride: 2}
  - {name: down, op: conv2d, input_shape: [1, 3, 7, 7], in_channels: 3, out_channels: 2, kernel_size: 3}
data: {seed: 3, ifmap: random, weight: random, bias: random}
""")
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g")]) == 0
    assert sorted(tree(tmp_path / "g" / "net")) == sorted(f"{layer}/{f}" for layer in ("up", "down")
                                                          for f in [*CASE_FILES, "manifest.json"])
    assert json.loads((tmp_path / "g" / "net" / "down" / "manifest.json").read_text())["layer_index"] == 1
    assert main(["run", str(config), "--golden-dir", str(tmp_path / "g"), "--out", str(tmp_path / "r"),
                 "--no-dumps"]) == 0
    out = capsys.readouterr().out
    assert "up: PASS" in out and "down: PASS" in out
    _flip_byte(tmp_path / "g" / "net" / "down" / "bias.hex")
    assert main(["golden", str(config), "--golden-dir", str(tmp_path / "g"), "--check"]) == 1
    assert "down/bias.hex differs" in capsys.readouterr().out
