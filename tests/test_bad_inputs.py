"""A catalogue of bad inputs: each one gets exit 2 and ONE line naming the field or file and the offending value.

Every case builds its inputs under ``tmp_path`` and runs ``convsim run`` in process; it asserts exit code 2, a
single stderr line ``convsim: error: ...`` containing the expected field/file and value, no traceback, and that
the ``--out`` directory was not created. A few cases also run as real subprocesses (``python -m simulator``).
"""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from simulator.cli import main
from tests.conftest import REPO

# a tiny valid transposed conv: 2 channels, 3x3 input, stride 2 -> 6x6 output
BASE: dict[str, Any] = {
    "name": "bad",
    "layer": {"op": "conv_transpose2d", "input_shape": [1, 2, 3, 3], "in_channels": 2, "out_channels": 2,
              "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
    "data": {"seed": 0, "ifmap": "random", "weight": "random", "bias": "random"},
    "hardware": {"mac_array": {"rows": 4, "cols": 4}},
}
IFMAP_SHAPE = (1, 2, 3, 3)
WEIGHT_SHAPE = (2, 2, 3, 3)

Case = Callable[[Path], tuple[Path, list[str]]]  # tmp_path -> (config path, substrings the one line must contain)


def write_cfg(tmp: Path, raw: Any, name: str = "cfg.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def edit(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``raw`` with ``dotted`` set to ``value`` (``...`` deletes the key)."""
    out = copy.deepcopy(raw)
    *head, last = dotted.split(".")
    node = out
    for key in head:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return out


def mapping_case(dotted: str, value: Any, *expect: str) -> Case:
    def build(tmp: Path) -> tuple[Path, list[str]]:
        return write_cfg(tmp, edit(BASE, dotted, value)), list(expect)
    return build


def raw_case(raw: Any, *expect: str) -> Case:
    def build(tmp: Path) -> tuple[Path, list[str]]:
        return write_cfg(tmp, raw), list(expect)
    return build


def text_case(text: str | bytes, *expect: str) -> Case:
    def build(tmp: Path) -> tuple[Path, list[str]]:
        path = tmp / "cfg.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path, [str(path), *expect]
    return build


def npy_case(which: str, make: Callable[[Path], None], *expect: str) -> Case:
    """``data.<which>`` read from ``x.npy``, which ``make`` writes."""
    def build(tmp: Path) -> tuple[Path, list[str]]:
        make(tmp / "x.npy")
        return write_cfg(tmp, edit(BASE, f"data.{which}", {"file": "x.npy"})), [f"data.{which}", "x.npy", *expect]
    return build


def save(array: np.ndarray, **kw: Any) -> Callable[[Path], None]:
    return lambda p: np.save(p, array, **kw)


def truncated(shape: tuple[int, ...]) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        np.save(p, np.zeros(shape, dtype=np.int8))
        p.write_bytes(p.read_bytes()[:-5])
    return make


def hw_file_case(text: str | None, *expect: str) -> Case:
    """``hardware: hw.yaml`` holding ``text`` (None: the file does not exist)."""
    def build(tmp: Path) -> tuple[Path, list[str]]:
        if text is not None:
            (tmp / "hw.yaml").write_text(text)
        return write_cfg(tmp, edit(BASE, "hardware", "hw.yaml")), ["hw.yaml", *expect]
    return build


def golden_case(tamper: Callable[[Path], None], *expect: str) -> Case:
    """A real golden case for BASE under ``golden/bad``, then ``tamper(case_dir)``."""
    def build(tmp: Path) -> tuple[Path, list[str]]:
        from simulator.config import load_config
        from simulator.golden import case_files, write_case

        cfg_path = write_cfg(tmp, BASE)
        cfg = load_config(cfg_path)
        case_dir = tmp / "golden" / "bad"
        write_case(case_dir, case_files(cfg, cfg.layer, None))
        tamper(case_dir)
        return cfg_path, [str(case_dir), *expect]
    return build


def flip_byte(name: str) -> Callable[[Path], None]:
    def tamper(case: Path) -> None:
        data = bytearray((case / name).read_bytes())
        data[-1] ^= 0x01
        (case / name).write_bytes(bytes(data))
    return tamper


def truncate_consistently(case: Path) -> None:
    """Truncate ofmap.npy AND update its sha256: the checksum passes, the .npy check must catch it."""
    from simulator.files import sha256_file

    path = case / "ofmap.npy"
    path.write_bytes(path.read_bytes()[:-7])
    manifest = json.loads((case / "manifest.json").read_text())
    manifest["tensors"]["ofmap"]["sha256"] = manifest["files"]["ofmap.npy"] = sha256_file(path)
    (case / "manifest.json").write_text(json.dumps(manifest))


def stale_shape(case: Path) -> None:
    """A consistent golden case (checksums right) for a different layer: ifmap of the wrong shape."""
    from simulator.files import npy_bytes, sha256_bytes

    data = npy_bytes(np.zeros((1, 2, 4, 4), dtype=np.int8))
    (case / "ifmap.npy").write_bytes(data)
    manifest = json.loads((case / "manifest.json").read_text())
    manifest["tensors"]["ifmap"].update(sha256=sha256_bytes(data), shape=[1, 2, 4, 4])
    manifest["files"]["ifmap.npy"] = sha256_bytes(data)
    (case / "manifest.json").write_text(json.dumps(manifest))


def huge_header_consistent(case: Path) -> None:
    """ofmap.npy replaced by a header declaring 10**5 x 10**5 x 10**5 x 10**5 int32 (no data), with the manifest's
    checksums updated to match: the checksum passes, the header must not be trusted."""
    from simulator.files import sha256_bytes

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i4", "fortran_order": False, "shape": (10**5,) * 4})
    (case / "ofmap.npy").write_bytes(buf.getvalue())
    manifest = json.loads((case / "manifest.json").read_text())
    manifest["tensors"]["ofmap"]["sha256"] = manifest["files"]["ofmap.npy"] = sha256_bytes(buf.getvalue())
    (case / "manifest.json").write_text(json.dumps(manifest))


def network(*layers: dict[str, Any]) -> dict[str, Any]:
    raw = {k: v for k, v in BASE.items() if k != "layer"}
    return {**raw, "layers": list(layers)}


ALIAS_BOMB = "name: x\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)) + "layer: {}\n"


def _npy_header_only(path: Path, shape: tuple[int, ...]) -> None:
    """A .npy whose header declares ``shape`` (int8) and holds no data: loading it must allocate nothing."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|i1", "fortran_order": False, "shape": shape})


def _sparse(path: Path, size: int) -> tuple[Path, list[str]]:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path, [str(path), f"{size:,} bytes"]


def _fifo(path: Path) -> tuple[Path, list[str]]:
    os.mkfifo(path)  # reading it would block forever: must be refused from os.stat alone
    return path, [str(path), "FIFO"]


LAYER = BASE["layer"]

CASES: dict[str, Case] = {
    # unknown or misspelt keys, at every level
    "unknown_top_key": mapping_case("nmae", "x", "nmae", "unknown key"),
    "misspelt_layer_key": mapping_case("layer.kernal_size", 3, "layer.kernal_size", "unknown key",
                                       "did you mean 'kernel_size'?"),
    # the misspelling replaces the real key: report the misspelling, not the "missing" key it causes
    "misspelt_key_instead_of_required": raw_case(
        {**BASE, "layer": {("kernal_size" if k == "kernel_size" else k): v for k, v in BASE["layer"].items()}},
        "layer.kernal_size: unknown key (did you mean 'kernel_size'?)"),
    "unknown_hw_nested_key": mapping_case("hardware.mac_array.rowz", 4, "hardware.mac_array.rowz", "unknown key",
                                          "did you mean 'rows'?"),
    "unknown_sram_key": mapping_case("hardware.sram.ifmap.size", 64, "hardware.sram.ifmap.size", "unknown key"),
    "unknown_data_key": mapping_case("data.sead", 1, "data.sead", "unknown key"),
    "union_file_misspelt": mapping_case("data.ifmap", {"fil": "a.npy"}, "data.ifmap", "fil"),
    "union_bad_literal": mapping_case("data.weight", "randm", "data.weight", "randm"),
    "is_network_set": mapping_case("is_network", True, "is_network"),
    # wrong types
    "in_channels_string": mapping_case("layer.in_channels", "two", "layer.in_channels", "two"),
    "kernel_size_string": mapping_case("layer.kernel_size", "3x3", "layer.kernel_size", "3x3"),
    "kernel_size_float": mapping_case("layer.kernel_size", 2.5, "layer.kernel_size", "2.5"),
    "input_shape_3_entries": mapping_case("layer.input_shape", [1, 2, 3], "layer.input_shape", "[1, 2, 3]"),
    "input_shape_scalar": mapping_case("layer.input_shape", 3, "layer.input_shape", "3"),
    "bias_not_bool": mapping_case("layer.bias", "maybe", "layer.bias", "maybe"),
    "groups_bool": mapping_case("layer.groups", True, "layer.groups", "True"),
    "op_unknown": mapping_case("layer.op", "deconv", "layer.op", "deconv"),
    "dataflow_xs": mapping_case("hardware.mac_array.dataflow", "xs", "hardware.mac_array.dataflow", "xs"),
    "layout_nwhc": mapping_case("hardware.layout.activation", "NWHC", "hardware.layout.activation", "NWHC"),
    "overflow_policy_clip": mapping_case("hardware.accumulator.on_overflow", "clip", "on_overflow", "clip"),
    "method_unknown": mapping_case("engine.transposed_conv", "winograd", "engine.transposed_conv", "winograd"),
    "hardware_an_int": mapping_case("hardware", 5, "hardware", "5"),
    "layer_a_list": mapping_case("layer", [1, 2], "layer", "[1, 2]"),
    # zero or negative sizes
    "out_channels_zero": mapping_case("layer.out_channels", 0, "layer.out_channels", "0"),
    "stride_negative": mapping_case("layer.stride", -1, "layer.stride", "-1"),
    "padding_negative": mapping_case("layer.padding", [0, -2], "layer.padding", "-2"),
    "input_shape_zero": mapping_case("layer.input_shape", [1, 2, 0, 3], "layer.input_shape", "0"),
    "seed_negative": mapping_case("data.seed", -1, "data.seed", "-1"),
    "clock_zero": mapping_case("hardware.clock_mhz", 0, "hardware.clock_mhz", "0"),
    "array_zero_rows": mapping_case("hardware.mac_array.rows", 0, "hardware.mac_array.rows", "0"),
    "banks_zero": mapping_case("hardware.sram.psum.num_banks", 0, "hardware.sram.psum.num_banks", "0"),
    # cross-field rules
    "channels_not_divisible": raw_case(edit(edit(BASE, "layer.groups", 2), "layer.out_channels", 3),
                                       "out_channels=3", "groups=2"),
    "in_channels_not_divisible": raw_case({**BASE, "layer": {**LAYER, "input_shape": [1, 3, 3, 3],
                                                             "in_channels": 3, "groups": 2}},
                                          "in_channels=3", "groups=2"),
    "input_shape_vs_in_channels": mapping_case("layer.in_channels", 4, "input_shape[1]=2", "in_channels=4"),
    "output_padding_too_big": mapping_case("layer.output_padding", 2, "output_padding=[2, 2]", "stride=[2, 2]"),
    "output_padding_on_conv2d": raw_case({**BASE, "layer": {**LAYER, "op": "conv2d"}}, "output_padding=[1, 1]",
                                         "conv2d"),
    "output_size_zero_conv2d": raw_case({**BASE, "layer": {**LAYER, "op": "conv2d", "output_padding": 0,
                                                           "padding": 0, "kernel_size": 5}},
                                        "layer", "output size", "kernel_size=[5, 5]"),
    "output_size_negative_transposed": raw_case({**BASE, "layer": {**LAYER, "padding": 5}}, "layer", "output size",
                                                "padding=[5, 5]"),
    "pattern_weight_leaves_int8": raw_case({**BASE, "data": {"weight": "pattern"},
                                            "layer": {**LAYER, "input_shape": [1, 2, 12, 12], "kernel_size": 12}},
                                           "data.weight", "pattern", "144"),
    "name_with_slash": mapping_case("name", "a/b", "name", "a/b"),
    "name_with_dotdot": mapping_case("name", "..", "name", "'..'"),
    "layer_name_with_dotdot": raw_case(network({**LAYER, "name": "../x"}), "layers[0].name", "../x"),
    "duplicate_layer_names": raw_case(network({**LAYER, "name": "a"}, {**LAYER, "name": "a"}), "layers", "a"),
    "layers_empty": raw_case(network(), "layers", "[]"),
    "layer_and_layers": raw_case({**BASE, "layers": [LAYER]}, "layer", "layers"),
    "no_layer": raw_case({k: v for k, v in BASE.items() if k != "layer"}, "layer", "layers"),
    # .npy inputs
    "ifmap_npy_out_of_int8": npy_case("ifmap", save(np.full(IFMAP_SHAPE, 300, dtype=np.int16)), "300", "int8"),
    "ifmap_npy_float": npy_case("ifmap", save(np.zeros(IFMAP_SHAPE, dtype=np.float32)), "float32"),
    "ifmap_npy_wrong_shape": npy_case("ifmap", save(np.zeros((1, 2, 3, 4), dtype=np.int8)), "[1, 2, 3, 4]",
                                      "[1, 2, 3, 3]"),
    "ifmap_npy_truncated": npy_case("ifmap", truncated(IFMAP_SHAPE), "truncated"),
    "ifmap_not_npy": npy_case("ifmap", lambda p: p.write_text("1 2 3\n"), "not a .npy file"),
    "ifmap_pickled_object": npy_case("ifmap", save(np.array([{"a": 1}], dtype=object), allow_pickle=True),
                                     "pickle"),
    "ifmap_npy_missing": npy_case("ifmap", lambda p: None, "not found"),
    "ifmap_npy_is_directory": npy_case("ifmap", lambda p: p.mkdir(), "directory"),
    "weight_npy_out_of_int8": npy_case("weight", save(np.full(WEIGHT_SHAPE, -129, dtype=np.int32)), "-129"),
    "weight_npy_wrong_shape": npy_case("weight", save(np.zeros((2, 2, 3), dtype=np.int8)), "[2, 2, 3]",
                                       "[2, 2, 3, 3]"),
    "weight_npy_bool": npy_case("weight", save(np.zeros(WEIGHT_SHAPE, dtype=bool)), "bool"),
    "bias_npy_out_of_int32": npy_case("bias", save(np.full((2,), 2**40, dtype=np.int64)), str(2**40)),
    "bias_npy_pickled": npy_case("bias", save(np.array([None, None], dtype=object), allow_pickle=True), "pickle"),
    # hardware
    "sram_too_small": mapping_case("hardware.sram.ifmap.size_bytes", 16, "hardware.sram", "16"),
    "missing_hw_file": hw_file_case(None, "not found"),
    "hw_file_not_yaml": hw_file_case("mac_array: {rows: [\n", "not valid YAML"),
    "hw_file_a_list": hw_file_case("- 1\n- 2\n", "list"),
    "hw_file_bad_value": hw_file_case("mac_array: {rows: -4}\n", "hardware.mac_array.rows", "-4"),
    # the config file itself
    "config_not_yaml": text_case("name: x\nlayer: {op: [\n", "not valid YAML", "line"),
    "config_empty": text_case("", "empty"),
    "config_only_comment": text_case("# nothing\n", "empty"),
    "config_top_level_list": text_case("- name: x\n", "mapping", "list"),
    "config_top_level_scalar": text_case("42\n", "mapping", "int"),
    "config_not_utf8": text_case(b"name: \xff\xfe\n", "UTF-8"),
    "config_tab_indent": text_case("name: x\nlayer:\n\tin_channels: 1\n", "not valid YAML", "tab"),
    # resources: refused at load with the bytes they would need, before anything is allocated
    "input_shape_huge": raw_case({**BASE, "layer": {**LAYER, "input_shape": [1, 4096, 4096, 4096],
                                                    "in_channels": 4096}}, "layer", "bytes", "ifmap"),
    "stride_huge": mapping_case("layer.stride", 100_000_000, "layer", "rows or columns"),
    "out_channels_huge": mapping_case("layer.out_channels", 10**9, "layer", "bytes", "weight"),
    "too_much_work": raw_case({**BASE, "layer": {"op": "conv2d", "input_shape": [1, 512, 128, 128],
                                                 "in_channels": 512, "out_channels": 64, "kernel_size": 7,
                                                 "padding": 3}}, "layer", "products", "17,179,869,184"),
    "sram_huge": mapping_case("hardware.sram.ifmap.size_bytes", 10**13, "hardware.sram.ifmap.size_bytes",
                              "10,000,000,000,000 bytes"),
    "npy_header_huge_shape": npy_case("ifmap", lambda p: _npy_header_only(p, (100_000,) * 4), "[100000, 100000"),
    "clock_tiny": mapping_case("hardware.clock_mhz", 1e-320, "hardware.clock_mhz", ">= 1e-06"),
    "clock_infinite": mapping_case("hardware.clock_mhz", float("inf"), "hardware.clock_mhz", "<= 1000000"),
    # files that are not regular files, or too large
    "hardware_dev_zero": mapping_case("hardware", "/dev/zero", "/dev/zero", "character device"),
    "config_50_mb": lambda tmp: _sparse(tmp / "cfg.yaml", 50 << 20),
    "config_fifo": lambda tmp: _fifo(tmp / "cfg.yaml"),
    "hardware_fifo": lambda tmp: (_fifo(tmp / "hw.yaml")[0] and write_cfg(tmp, edit(BASE, "hardware", "hw.yaml")),
                                  ["hw.yaml", "FIFO"]),
    "npy_fifo": npy_case("ifmap", lambda p: os.mkfifo(p), "FIFO"),
    # YAML resource attacks and slips
    "yaml_alias_bomb": text_case(ALIAS_BOMB, "aliases are expanded"),
    "yaml_deep_nesting": text_case("name: x\nlayer: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than"),
    "yaml_deep_mapping": text_case("name: x\nlayer: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n", "nested more than"),
    "yaml_recursive_alias": text_case("name: x\nlayer: &a [*a]\n", "recursive"),
    "yaml_duplicate_key": text_case("name: a\nname: b\nlayer: {}\n", "duplicate key 'name'"),
    "sweep_file_as_config": text_case("base: cfg.yaml\ngrid: {hardware.mac_array.rows: [4]}\n", "sweep file",
                                      "convsim sweep"),
    "name_too_long": mapping_case("name", "a" * 300, "name", "at most 100 characters"),
    "too_many_layers": raw_case(network(*({**LAYER, "name": f"l{i}"} for i in range(1100))), "layers",
                                "1,100 layers"),
    "golden_manifest_deeply_nested": golden_case(
        lambda c: (c / "manifest.json").write_text("[" * 100_000 + "]" * 100_000), "manifest.json", "JSON"),
    "golden_npy_huge_header": golden_case(huge_header_consistent, "ofmap.npy", "needs"),
    "golden_manifest_fifo": golden_case(lambda c: ((c / "manifest.json").unlink(), os.mkfifo(c / "manifest.json")),
                                        "manifest.json"),
    # pydantic's words replaced by the config's
    "kernel_size_words": mapping_case("layer.kernel_size", "3x3", "layer.kernel_size", "an int or a pair [h, w]"),
    "input_shape_words": mapping_case("layer.input_shape", "big", "layer.input_shape", "a list of 4 ints"),
    # golden cases
    "golden_tampered": golden_case(flip_byte("ofmap.npy"), "ofmap.npy", "sha256"),
    "golden_truncated_consistent_sha": golden_case(truncate_consistently, "ofmap.npy", "not a valid .npy"),
    "golden_missing_manifest": golden_case(lambda c: (c / "manifest.json").unlink(), "manifest.json"),
    "golden_manifest_not_json": golden_case(lambda c: (c / "manifest.json").write_text("{"), "manifest.json"),
    "golden_missing_tensor": golden_case(lambda c: (c / "weight.npy").unlink(), "weight.npy"),
    "golden_stale_shape": golden_case(stale_shape, "ifmap", "[1, 2, 4, 4]", "[1, 2, 3, 3]"),
}


def _check_one_line(code: int, err: str, expect: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("convsim: error: "), err
    for piece in expect:
        assert piece in lines[0], f"{piece!r} not in {lines[0]!r}"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_one_line_error(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config, expect = CASES[name](tmp_path)
    out = tmp_path / "out"
    code, err = _run(["run", str(config), "--out", str(out), "--golden-dir", str(tmp_path / "golden")], capsys)
    _check_one_line(code, err, expect)
    assert not out.exists()
    assert not (tmp_path / "runs").exists()


def test_catalogue_has_at_least_40_cases() -> None:
    assert len(CASES) >= 40


# ------------------------------------------------------------------------------------------- paths and arguments


def test_directory_as_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["run", str(tmp_path), "--out", str(tmp_path / "out")], capsys)
    _check_one_line(code, err, [str(tmp_path), "directory"])
    assert not (tmp_path / "out").exists()


def test_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out")], capsys)
    _check_one_line(code, err, ["nope.yaml", "not found"])


def test_missing_config_argument_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["run"], capsys)
    _check_one_line(code, err, ["run", "CONFIG", "--help"])


def test_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["rnu", "x.yaml"], capsys)
    _check_one_line(code, err, ["rnu"])


def _unwritable_out(tmp_path: Path) -> tuple[Path, str]:
    """An output path the current user cannot create: a read-only directory, or (root) a path under a file."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root: permissions do not stop writes
        blocker = tmp_path / "somefile"
        blocker.write_text("x")
        return blocker / "sub", str(blocker)
    return locked / "sub", str(locked)


@pytest.mark.parametrize("dumps", [False, True])
def test_unwritable_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str], dumps: bool) -> None:
    config = write_cfg(tmp_path, BASE)
    out, named = _unwritable_out(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = ["run", str(config), "--out", str(out), "--golden-dir", str(tmp_path / "golden")]
    code, err = _run([*argv, *([] if dumps else ["--no-dumps"])], capsys)
    _check_one_line(code, err, ["output directory", named])
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    (tmp_path / "locked").chmod(0o700)


def test_golden_into_unwritable_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_cfg(tmp_path, BASE)
    out, named = _unwritable_out(tmp_path)
    code, err = _run(["golden", str(config), "--golden-dir", str(out)], capsys)
    _check_one_line(code, err, [named])
    (tmp_path / "locked").chmod(0o700)


def test_golden_of_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_cfg(tmp_path, edit(BASE, "layer.stride", 0))
    code, err = _run(["golden", str(config), "--golden-dir", str(tmp_path / "g")], capsys)
    _check_one_line(code, err, ["layer.stride", "0"])
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------------------------------------------ real processes


@pytest.mark.parametrize("name", ["misspelt_layer_key", "ifmap_pickled_object", "config_not_yaml",
                                  "golden_tampered"])
def test_bad_input_in_a_real_process(name: str, tmp_path: Path) -> None:
    config, expect = CASES[name](tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", str(config), "--out", str(out),
                           "--golden-dir", str(tmp_path / "golden")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    _check_one_line(proc.returncode, proc.stderr, expect)
    assert proc.stdout == ""
    assert not out.exists()


def test_usage_error_in_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "simulator", "run"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)
    _check_one_line(proc.returncode, proc.stderr, ["CONFIG"])


def test_unknown_key_that_is_not_a_name_stays_on_one_line(tmp_path: Path) -> None:
    """A key with a newline or spaces (a YAML slip) is quoted, so the error is still one line."""
    from simulator.config import config_from_mapping
    from simulator.errors import ConfigError

    raw = edit(BASE, "layer.odd\nkey ", 1)
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, tmp_path, source="cfg.yaml")
    assert str(info.value) == "cfg.yaml: layer['odd\\nkey ']: unknown key"


# ------------------------------------------------------------------------------- every other command, and the API
# Each case: tmp_path -> (argv, substrings of the one error line, paths that must not exist afterwards).

Command = Callable[[Path], tuple[list[str], list[str], list[Path]]]
SEED1 = str(REPO / "configs" / "seed_case1.yaml")


def _sweep(tmp: Path, grid: str) -> Path:
    path = tmp / "sweep.yaml"
    path.write_text(f"base: {SEED1}\ngrid:\n{grid}")
    return path


def _run_dir(tmp: Path) -> Path:
    """A real run of seed_case1 with dumps (the subject of the inspect cases)."""
    run = tmp / "r"
    assert main(["run", SEED1, "--out", str(run), "--no-compare"]) == 0
    return run


def _edit_index(change: Callable[[dict[str, Any]], None]) -> Command:
    def build(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
        run = _run_dir(tmp)
        index_path = run / "dumps" / "index.json"
        index = json.loads(index_path.read_text())
        change(index)
        index_path.write_text(json.dumps(index))
        return ["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled"], ["index.json"], []
    return build


def _dump_npy_huge_header(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    from simulator.files import sha256_bytes

    run = _run_dir(tmp)
    index_path = run / "dumps" / "index.json"
    index = json.loads(index_path.read_text())
    entry = index["stages"][1]["tiles"][0]["buffers"][0]  # swell: ifmap_swelled
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|i1", "fortran_order": False, "shape": (10**6,) * 4})
    (run / "dumps" / "swell" / entry["npy"]).write_bytes(buf.getvalue())
    entry["npy_sha256"] = sha256_bytes(buf.getvalue())
    index_path.write_text(json.dumps(index))
    return ["inspect", str(run), "--stage", "swell", "--buffer", "ifmap_swelled"], ["ifmap_swelled.npy", "needs"], []


def _model_file(tmp: Path, body: str) -> str:
    path = tmp / "model.py"
    path.write_text("import sys\nimport torch\n" + body)
    return f"{path}:build"


def _from_torch(body: str, *extra: str, expect: tuple[str, ...] = ()) -> Command:
    def build(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
        target = _model_file(tmp, body)
        out = tmp / "net.yaml"
        return (["from-torch", target, "--input-shape", "1,4,2,2", "--out", str(out), *extra], list(expect), [out])
    return build


TINY_MODEL = "def build():\n    return torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 2, 2))\n"


def _existing_config(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    target = _model_file(tmp, TINY_MODEL)
    out = tmp / "seed_case1.yaml"
    out.write_text("mine\n")
    return ["from-torch", target, "--input-shape", "1,4,2,2", "--out", str(out)], ["exists", "--force"], []


def _golden_into_case(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    gold = tmp / "golden"
    assert main(["golden", SEED1, "--golden-dir", str(gold)]) == 0
    return (["run", SEED1, "--golden-dir", str(gold), "--out", str(gold / "seed_case1")],
            ["golden", "seed_case1"], [gold / "seed_case1" / "report.json", gold / "seed_case1" / "dumps"])


def _dumps_symlink(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    out = tmp / "out"
    out.mkdir()
    (tmp / "elsewhere").mkdir()
    (out / "dumps").symlink_to(tmp / "elsewhere")
    return ["run", SEED1, "--no-compare", "--out", str(out)], ["dumps", "symbolic link"], [out / "report.json"]


def _entry_of_the_wrong_kind(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    out = tmp / "out"
    (out / "ofmap.npy").mkdir(parents=True)  # a directory where the run writes a file
    return ["run", SEED1, "--no-compare", "--out", str(out)], ["ofmap.npy", "directory"], \
        [out / "report.json", out / "dumps"]


def _golden_case_is_a_file(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    gold = tmp / "g"
    gold.mkdir()
    (gold / "bad").write_text("not a case")
    return ["golden", str(write_cfg(tmp, BASE)), "--golden-dir", str(gold)], [str(gold / "bad"), "not a directory"], []


def _network_sweep(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    cfg = write_cfg(tmp, network(*({**LAYER, "name": f"l{i}"} for i in range(1000))), "net.yaml")
    sweep = tmp / "s.yaml"
    sweep.write_text(f"base: {cfg}\ngrid: {{hardware.clock_mhz: [{', '.join(str(v) for v in range(1, 201))}]}}\n")
    return ["sweep", str(sweep), "--out", str(tmp / "o")], ["200 points x 1,000 layers"], [tmp / "o"]


def _same_name(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    first, other = write_cfg(tmp, BASE, "a.yaml"), write_cfg(tmp, edit(BASE, "data.seed", 5), "b.yaml")
    gold = tmp / "g"  # both are named 'bad': the second case would overwrite the first
    return ["golden", str(first), str(other), "--golden-dir", str(gold)], ["'bad'", "a.yaml", "b.yaml"], [gold]


def _resume_with_foreign_line(tmp: Path) -> tuple[list[str], list[str], list[Path]]:
    sweep = _sweep(tmp, "  hardware.mac_array.rows: [4]\n")
    out = tmp / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"hello": 1}\n[1, 2]\n')
    return ["sweep", str(sweep), "--out", str(out), "--resume", "--workers", "1"], ["line 1", "not a sweep record"], \
        [out / "results.csv"]


BIG_GRID = "".join(f"  hardware.{k}: [{', '.join(str(v) for v in range(1, 1001))}]\n"
                   for k in ("mac_array.rows", "mac_array.cols", "clock_mhz", "layout.c0"))

COMMAND_CASES: dict[str, Command] = {
    # sweeps
    "sweep_misspelt_grid_key": lambda t: (["sweep", str(_sweep(t, "  hardware.mac_aray.rows: [4, 8]\n")), "--out",
                                           str(t / "o")], ["grid.hardware.mac_aray.rows", "mac_array"], [t / "o"]),
    "sweep_grid_key_a_section": lambda t: (["sweep", str(_sweep(t, "  hardware.sram: [4]\n")), "--out", str(t / "o")],
                                           ["hardware.sram", "section"], [t / "o"]),
    "sweep_empty_values": lambda t: (["sweep", str(_sweep(t, "  hardware.mac_array.rows: []\n")), "--out",
                                      str(t / "o")], ["hardware.mac_array.rows", "empty"], [t / "o"]),
    "sweep_10_to_12_points": lambda t: (["sweep", str(_sweep(t, BIG_GRID)), "--out", str(t / "o")],
                                        ["1,000,000,000,000 points"], [t / "o"]),
    "sweep_workers_negative": lambda t: (["sweep", str(_sweep(t, "  hardware.mac_array.rows: [4]\n")), "--workers",
                                          "-1", "--out", str(t / "o")], ["--workers -1"], [t / "o"]),
    "sweep_workers_million": lambda t: (["sweep", str(_sweep(t, "  hardware.mac_array.rows: [4]\n")), "--workers",
                                         "1000000", "--out", str(t / "o")], ["--workers 1000000"], [t / "o"]),
    "sweep_no_runnable_point": lambda t: (["sweep", str(_sweep(t, "  hardware.mac_array.rows: [0]\n")), "--workers",
                                           "1", "--out", str(t / "o")], ["no point of the grid can run", "rows"],
                                          [t / "o" / "results.jsonl", t / "o" / "pareto.png"]),
    "sweep_resume_foreign_line": _resume_with_foreign_line,
    "sweep_file_fifo": lambda t: (["sweep", str(_fifo(t / "s.yaml")[0]), "--out", str(t / "o")], ["FIFO"], [t / "o"]),
    # inspect on an edited or hostile index.json
    "inspect_index_no_stages": _edit_index(lambda ix: ix.pop("stages")),
    "inspect_index_buffers_not_list": _edit_index(lambda ix: ix["stages"][0]["tiles"][0].update(buffers=3)),
    "inspect_index_file_outside": _edit_index(
        lambda ix: ix["stages"][1]["tiles"][0]["buffers"][0].update(npy="../../../etc/passwd")),
    "inspect_index_size_a_string": _edit_index(
        lambda ix: ix["stages"][1]["tiles"][0]["buffers"][0].update(size_bytes="big")),
    "inspect_index_fifo": lambda t: (["inspect", str(t)], ["index.json", "FIFO"], []) if _fifo(
        t / "index.json") else ([], [], []),
    "inspect_npy_huge_header": _dump_npy_huge_header,
    "inspect_png_is_a_directory": lambda t: (["inspect", str(_run_dir(t)), "--stage", "swell", "--buffer",
                                              "ifmap_swelled", "--png", str(t)], ["--png", str(t)], []),
    "inspect_channel_out_of_range": lambda t: (["inspect", str(_run_dir(t)), "--stage", "swell", "--buffer",
                                                "ifmap_swelled", "--channel", "7"], ["--channel 7"], []),
    # outputs: the user's path is named, never a staging file; golden cases and links are never written through
    "run_out_in_proc": lambda t: (["run", SEED1, "--out", "/proc/convsim-x"], ["/proc/convsim-x"], []),
    "run_junit_in_proc": lambda t: (["run", SEED1, "--no-compare", "--out", str(t / "o"), "--junit",
                                     "/proc/j.xml"], ["--junit /proc/j.xml"], [t / "o"]),
    "run_out_into_golden_case": _golden_into_case,
    "run_dumps_symlink": _dumps_symlink,
    "golden_same_name_twice": _same_name,
    "run_entry_of_the_wrong_kind": _entry_of_the_wrong_kind,
    "golden_case_is_a_file": _golden_case_is_a_file,
    "golden_reference_too_large": lambda t: (["golden", str(write_cfg(t, BASE, "a.yaml")), str(write_cfg(t, {
        **BASE, "name": "big", "layer": {"op": "conv2d", "input_shape": [1, 256, 256, 256], "in_channels": 256,
                                         "out_channels": 1, "kernel_size": 3, "padding": 1}}, "b.yaml")),
        "--golden-dir", str(t / "g")], ["'big'", "bytes", "im2col"], [t / "g"]),
    "sweep_network_times_points": _network_sweep,
    # from-torch
    "from_torch_huge_input": lambda t: (["from-torch", _model_file(t, TINY_MODEL), "--input-shape",
                                         "100000,100000,100000,100000", "--out", str(t / "n.yaml")],
                                        ["--input-shape", "elements"], [t / "n.yaml"]),
    "from_torch_sys_exit_on_import": _from_torch("sys.exit(3)\n" + TINY_MODEL, expect=("sys.exit(3)",)),
    "from_torch_sys_exit_in_build": _from_torch("def build():\n    sys.exit(4)\n", expect=("sys.exit(4)",)),
    "from_torch_overwrite_without_force": _existing_config,
    "from_torch_out_a_directory": lambda t: (["from-torch", _model_file(t, TINY_MODEL), "--input-shape", "1,4,2,2",
                                              "--out", str(t)], ["--out", str(t), "directory"], []),
}


@pytest.mark.parametrize("name", sorted(COMMAND_CASES))
def test_bad_command_one_line_error(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv, expect, absent = COMMAND_CASES[name](tmp_path)
    capsys.readouterr()
    code, err = _run(argv, capsys)
    _check_one_line(code, err, expect)
    for path in absent:
        assert not path.exists(), path
    assert not [p for p in tmp_path.rglob(".*.tmp")], "a staging file was left behind"


def test_golden_without_torch_names_the_install(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    code, err = _run(["golden", SEED1, "--golden-dir", str(tmp_path / "g")], capsys)
    _check_one_line(code, err, ["torch", "pip install 'convsim[golden]'"])
    assert not (tmp_path / "g").exists()


def test_from_torch_lists_dropped_modules_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = _model_file(tmp_path, "def build():\n    return torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 2, 2, 2),"
                                   " torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Upsample(scale_factor=2))\n")
    out = tmp_path / "net.yaml"
    assert main(["from-torch", target, "--input-shape", "1,4,2,2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 (BatchNorm2d), 2 (ReLU), 3 (Upsample)" in printed and "3 other module(s) ignored" in printed
    assert "# Ignored, not convolutions (3): 1 (BatchNorm2d)" in out.read_text()


# ------------------------------------------------------------------------------------------------- the Python API


@pytest.mark.parametrize(("argument", "value", "expect"), [
    ("ifmap", np.full(IFMAP_SHAPE, 0.7), ["ifmap", "float64", "int8 [-128, 127]"]),
    ("ifmap", np.full(IFMAP_SHAPE, np.nan, dtype=np.float32), ["ifmap", "float32"]),
    ("ifmap", np.zeros(IFMAP_SHAPE, dtype=bool), ["ifmap", "bool"]),
    ("ifmap", np.zeros(IFMAP_SHAPE, dtype=object), ["ifmap", "object"]),
    ("ifmap", np.zeros(IFMAP_SHAPE, dtype=np.int8).tolist(), ["ifmap", "list", "numpy integer array"]),
    ("ifmap", np.full(IFMAP_SHAPE, 300, dtype=np.int16), ["ifmap", "300", "int16", "int8 [-128, 127]"]),
    ("weight", np.zeros(WEIGHT_SHAPE, dtype=np.float16), ["weight", "float16"]),
    ("weight", np.zeros((2, 2, 3), dtype=np.int8), ["weight", "[2, 2, 3]", "[2, 2, 3, 3]"]),
    ("bias", np.full((2,), 2**40, dtype=np.int64), ["bias", str(2**40), "int64", "int32"]),
    ("bias", np.zeros((2,), dtype=np.float64), ["bias", "float64"]),
])
def test_api_refuses_tensors_it_would_silently_change(tmp_path: Path, argument: str, value: Any,
                                                      expect: list[str]) -> None:
    from simulator import ConvsimError, load_config, simulate

    cfg = load_config(write_cfg(tmp_path, BASE))
    with pytest.raises(ConvsimError) as info:
        simulate(cfg, **{argument: value})
    message = str(info.value)
    assert "\n" not in message
    for piece in expect:
        assert piece in message, f"{piece!r} not in {message!r}"


def test_overflow_names_the_running_sum_that_left_int32(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """K = 5*5*8192: 20*8192 products of +2**14, then 5*8192 of -128*127. The running sum first leaves int32 at
    exactly 2**31 (product 131,072); the final sum is back inside int32 and is not the value to report."""
    c = 8192
    x = np.full((1, c, 5, 5), -128, dtype=np.int8)
    w = np.full((1, c, 5, 5), -128, dtype=np.int8)
    w[:, :, 4, :] = 127
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    final = 20 * c * 2**14 - 5 * c * 128 * 127
    assert -(2**31) <= final < 2**31
    raw = {"name": "ovf", "layer": {"op": "conv2d", "input_shape": [1, c, 5, 5], "in_channels": c, "out_channels": 1,
                                    "kernel_size": 5, "bias": False},
           "data": {"ifmap": {"file": "x.npy"}, "weight": {"file": "w.npy"}},
           "hardware": {"accumulator": {"on_overflow": "error"}}}
    config = write_cfg(tmp_path, raw)
    code, err = _run(["run", str(config), "--out", str(tmp_path / "out"), "--no-compare"], capsys)
    _check_one_line(code, err, ["running sum of output at [0, 0, 0, 0] reaches 2147483648,"])
    assert str(final) not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("call", "expect"), [
    (lambda sim, cfg: sim.simulate("configs/x.yaml"), ["cfg", "SimConfig", "str"]),
    (lambda sim, cfg: sim.simulate(cfg, layer=True), ["layer", "bool"]),
    (lambda sim, cfg: sim.simulate(cfg, layer=7), ["layer index 7"]),
    (lambda sim, cfg: sim.load_config(42), ["load_config", "int"]),
])
def test_api_refuses_wrong_arguments(tmp_path: Path, call: Callable[[Any, Any], Any], expect: list[str]) -> None:
    import simulator
    from simulator import ConvsimError

    cfg = simulator.load_config(write_cfg(tmp_path, BASE))
    with pytest.raises(ConvsimError) as info:
        call(simulator, cfg)
    for piece in expect:
        assert piece in str(info.value)
