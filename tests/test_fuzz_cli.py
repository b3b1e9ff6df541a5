"""Fuzzing the command line with hostile inputs: every command, every hostile file, random bytes as a config.

A catalogue of hostile files is built once (a FIFO, ``/dev/zero``, an alias bomb, 1,000-deep nesting, duplicate
keys, a tab, a sparse 50 MB file, random bytes, a sweep file, a directory, a huge layer, a ``.npy`` header
declaring a huge shape, ...); hypothesis then combines a command with one of them, or with random bytes, and
asserts what docs/errors.md promises: exit 2, exactly one ``convsim: error:`` line on stderr, no traceback, no
hang, and no output directory created.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from tests.conftest import REPO

SEED1 = str(REPO / "configs" / "seed_case1.yaml")
LAYER = ("{op: conv_transpose2d, input_shape: [1, 2, 3, 3], in_channels: 2, out_channels: 2, kernel_size: 3, "
         "stride: 2}")


def _hostile(root: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}

    def text(name: str, body: str | bytes) -> None:
        path = root / name
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        files[name] = path

    os.mkfifo(root / "fifo.yaml")
    files["fifo.yaml"] = root / "fifo.yaml"
    files["dev_zero"] = Path("/dev/zero")
    files["missing.yaml"] = root / "missing.yaml"
    (root / "a_directory").mkdir()
    files["a_directory"] = root / "a_directory"
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    text("bomb.yaml", "name: x\n" + bomb + f"layer: {LAYER}\n")
    text("deep.yaml", "name: x\nlayer: " + "[" * 1000 + "]" * 1000 + "\n")
    text("dup.yaml", f"name: x\nname: y\nlayer: {LAYER}\n")
    text("tab.yaml", "name: x\nlayer:\n\tin_channels: 1\n")
    text("garbage.yaml", bytes(range(256)) * 4)
    text("sweep_as_config.yaml", f"base: {SEED1}\ngrid: {{hardware.mac_array.rows: [4]}}\n")
    text("huge_layer.yaml", "name: x\nlayer: {input_shape: [1, 4096, 4096, 4096], in_channels: 4096, "
                            "out_channels: 8, kernel_size: 3}\n")
    text("huge_stride.yaml", f"name: x\nlayer: {LAYER[:-1]}, stride: 100000000}}\n".replace("stride: 2, ", ""))
    text("huge_sram.yaml", f"name: x\nlayer: {LAYER}\nhardware: {{sram: {{psum: {{size_bytes: 10000000000000}}}}}}\n")
    text("hw_dev_zero.yaml", f"name: x\nlayer: {LAYER}\nhardware: /dev/zero\n")
    with open(root / "huge.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|i1", "fortran_order": False, "shape": (10**5,) * 4})
    text("npy_huge.yaml", f"name: x\nlayer: {LAYER}\ndata: {{ifmap: {{file: huge.npy}}}}\n")
    with open(root / "sparse.yaml", "wb") as fh:
        fh.truncate(50 << 20)
    files["sparse.yaml"] = root / "sparse.yaml"
    text("bad_grid.yaml", f"base: {SEED1}\ngrid: {{hardware.mac_aray.rows: [4]}}\n")
    text("big_grid.yaml", f"base: {SEED1}\ngrid:\n" + "".join(
        f"  hardware.{k}: [{', '.join(map(str, range(1, 1001)))}]\n" for k in ("mac_array.rows", "mac_array.cols",
                                                                               "clock_mhz", "layout.c0")))
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _hostile(tmp_path_factory.mktemp("hostile"))


COMMANDS = [
    lambda f, o: ["run", str(f), "--out", str(o), "--no-dumps"],
    lambda f, o: ["run", SEED1, str(f), "--out", str(o), "--no-dumps", "--junit", str(o / "j.xml")],
    lambda f, o: ["compare", str(f)],
    lambda f, o: ["golden", str(f), "--golden-dir", str(o)],
    lambda f, o: ["golden", str(f), "--golden-dir", str(o), "--check"],
    lambda f, o: ["sweep", str(f), "--out", str(o), "--workers", "1"],
]


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors, in process
        return int(exc.code or 0)


def _one_line(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("[")]  # a batch's progress lines
    assert len(lines) == 1 and lines[0].startswith("convsim: error: "), err


def _ok_or_one_line(code: int, err: str) -> int:
    """A bounded option either runs (exit 0) or is refused in one line (exit 2); never a traceback."""
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        _one_line(code, err)
    return code


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(range(len(COMMANDS))), data=st.data())
def test_every_command_refuses_every_hostile_file(command: int, data: st.DataObject,
                                                  hostile: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    name = data.draw(st.sampled_from(sorted(hostile)))
    if COMMANDS[command] is COMMANDS[5] and name == "sweep_as_config.yaml":
        return  # a valid sweep file: the one pairing that is not hostile
    file = hostile[name]
    out = tmp_path_factory.mktemp("out") / "o"
    argv = COMMANDS[command](file, out)
    code = main(argv)
    err = capsys.readouterr().err
    if command == 1:  # a batch: SEED1 has no golden case here, the hostile one is an ERROR; worst is ERROR
        assert "Traceback" not in err and code == 2, err
        assert sum(line.startswith("convsim: error: ") for line in err.splitlines()) == 1, err
        return
    _one_line(code, err)
    assert not out.exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400) | st.text(max_size=400).map(str.encode),
       command=st.sampled_from([0, 2, 3]))
def test_random_bytes_as_a_config(body: bytes, command: int, tmp_path_factory: pytest.TempPathFactory,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    tmp = tmp_path_factory.mktemp("rnd")
    config = tmp / "cfg.yaml"
    config.write_bytes(body)
    out = tmp / "o"
    code = main(COMMANDS[command](config, out))
    _one_line(code, capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("index", ["fifo.yaml", "garbage.yaml", "deep.yaml", "a_directory"])
def test_inspect_refuses_a_hostile_index(index: str, hostile: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dumps").mkdir()
    os.symlink(hostile[index], tmp_path / "dumps" / "index.json")
    _one_line(main(["inspect", str(tmp_path)]), capsys.readouterr().err)


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("seedrun") / "r"
    assert main(["run", SEED1, "--out", str(run), "--no-compare"]) == 0
    return run


NUMBERS = st.one_of(st.integers(-3, 3), st.integers(), st.sampled_from(["x", "", "1e3", "0x10", "-0", " 2"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.lists(st.sampled_from(["--tile", "--channel", "--plane", "--format", "--stage", "--buffer"]),
                        max_size=4, unique=True), data=st.data())
def test_inspect_options_never_crash(options: list[str], data: st.DataObject, seed_run: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["inspect", str(seed_run)]
    for option in options:
        if option == "--stage":
            value = data.draw(st.sampled_from(["load", "swell", "mac_array", "writeback", "nope", ""]))
        elif option == "--buffer":
            value = data.draw(st.sampled_from(["ifmap", "ifmap_swelled", "psum", "ofmap", "weight", "x"]))
        elif option == "--format":
            value = data.draw(st.sampled_from(["grid", "hex", "stats", "png"]))
        else:
            value = str(data.draw(NUMBERS))
        argv += [option, value]
    _ok_or_one_line(_main(argv), capsys.readouterr().err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--dump-tiles", "--workers"]), value=NUMBERS)
def test_numeric_options_are_bounded(option: str, value: object, tmp_path_factory: pytest.TempPathFactory,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path_factory.mktemp("num") / "o"
    if option == "--workers":
        sweep = out.parent / "s.yaml"
        sweep.write_text(f"base: {SEED1}\ngrid: {{hardware.mac_array.rows: [4]}}\n")
        argv = ["sweep", str(sweep), "--out", str(out), "--workers", str(value)]
    else:
        argv = ["run", SEED1, "--out", str(out), "--no-compare", "--dump-tiles", str(value)]
    if _ok_or_one_line(_main(argv), capsys.readouterr().err) == 2:
        assert not out.exists()
