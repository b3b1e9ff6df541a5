"""The command line as CI uses it: verdicts and exit codes, batches, JUnit XML and JSON, --version, help, pipes.

Golden cases are generated here with ``convsim golden`` (torch) into ``tmp_path``; a FAIL is made by changing one
element of a golden ofmap and re-recording its checksums (a consistent case that the simulator disagrees with).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import yaml

import simulator
from simulator.cli import build_parser, main
from tests.conftest import REPO

LAYER = {"op": "conv_transpose2d", "input_shape": [1, 2, 3, 3], "in_channels": 2, "out_channels": 2,
         "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}
HW = {"mac_array": {"rows": 4, "cols": 4}}


def _config(tmp: Path, name: str, network: bool = False) -> Path:
    raw: dict = {"name": name, "data": {"weight": "random", "bias": "random"}, "hardware": HW}
    if network:
        raw["layers"] = [{**LAYER, "name": "up1"}, {**LAYER, "name": "up2"}]
    else:
        raw["layer"] = LAYER
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    """pass: a config with its golden case; fail: its golden ofmap has one element changed; none: no case;
    net: a two-layer network with its golden case; bad: an invalid config."""
    gold = tmp_path / "golden"
    out = {"pass": _config(tmp_path, "p"), "fail": _config(tmp_path, "f"), "none": _config(tmp_path, "n"),
           "net": _config(tmp_path, "net", network=True)}
    assert main(["golden", str(out["pass"]), str(out["fail"]), str(out["net"]), "--golden-dir", str(gold)]) == 0
    _change_one_element(gold / "f")
    out["bad"] = tmp_path / "bad.yaml"
    out["bad"].write_text("name: bad\nlayer: {kernal_size: 3}\n")
    capsys.readouterr()
    return out


def _change_one_element(case: Path) -> None:
    from simulator.files import npy_bytes, sha256_bytes

    ofmap = np.load(case / "ofmap.npy", allow_pickle=False)
    ofmap[0, 1, 2, 3] += 1
    data = npy_bytes(ofmap)
    (case / "ofmap.npy").write_bytes(data)
    manifest = json.loads((case / "manifest.json").read_text())
    manifest["tensors"]["ofmap"]["sha256"] = manifest["files"]["ofmap.npy"] = sha256_bytes(data)
    (case / "manifest.json").write_text(json.dumps(manifest))


def _argv(tmp: Path, *configs: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["run", *map(str, configs), "--golden-dir", str(tmp / "golden"), "--out", str(tmp / "runs"),
            "--no-dumps", *extra]


# ----------------------------------------------------------------------------------------------- single verdicts


def test_no_golden_exits_3_and_keeps_the_golden_dir_in_the_hint(tmp_path, cases, capsys):
    code, out, err = _run(["run", str(cases["none"]), "--golden-dir", str(tmp_path / "goldne"), "--out",
                           str(tmp_path / "r"), "--no-dumps"], capsys)
    assert code == 3 and err == ""
    assert "NO GOLDEN" in out and f"convsim golden {cases['none']} --golden-dir {tmp_path / 'goldne'}" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["verdict"] == "NO GOLDEN" and report["golden"] == str(tmp_path / "goldne" / "n")


def test_no_compare_exits_0_and_says_so(tmp_path, cases, capsys):
    code, out, _ = _run(["run", str(cases["none"]), "--no-compare", "--out", str(tmp_path / "r"), "--no-dumps"],
                        capsys)
    assert code == 0 and "NOT COMPARED (--no-compare)" in out
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"] == "NOT COMPARED"


def test_pass_and_fail_verdicts_in_report_json(tmp_path, cases, capsys):
    assert _run(_argv(tmp_path, cases["pass"]), capsys)[0] == 0
    report = json.loads((tmp_path / "runs" / "report.json").read_text())
    assert report["verdict"] == "PASS" and report["golden"] == str(tmp_path / "golden" / "p")
    code, out, _ = _run(["run", str(cases["fail"]), "--golden-dir", str(tmp_path / "golden"), "--out",
                         str(tmp_path / "rf"), "--no-dumps"], capsys)
    assert code == 1 and "FAIL against" in out and "elements differ" in out
    assert json.loads((tmp_path / "rf" / "report.json").read_text())["verdict"] == "FAIL"


# ------------------------------------------------------------------------------------------------------ batches


@pytest.mark.parametrize(("names", "code", "overall"), [
    (("pass", "net"), 0, "PASS"),
    (("pass", "none"), 3, "NO GOLDEN"),
    (("none", "fail", "pass"), 1, "FAIL"),
    (("fail", "bad", "pass"), 2, "ERROR"),
])
def test_batch_exits_with_the_worst_verdict(tmp_path, cases, capsys, names, code, overall):
    got, out, err = _run(_argv(tmp_path, *(cases[n] for n in names)), capsys)
    assert got == code, out + err
    assert f"overall: {overall} " in out and f"exit {code})" in out
    assert [line for line in err.splitlines() if not line.startswith("[")] == (
        [line for line in err.splitlines() if "kernal_size" in line] if "bad" in names else [])
    assert f"[{len(names)}/{len(names)}] {cases[names[-1]]}" in err  # the progress line of the last config
    for name in names:  # every config ran (or failed) and has its row, even after an error
        assert str(cases[name]) in out.split("overall:")[0].split("config")[-1]


def test_batch_puts_each_run_under_out(tmp_path, cases, capsys):
    assert _run(_argv(tmp_path, cases["pass"], cases["net"]), capsys)[0] == 0
    assert (tmp_path / "runs" / "p" / "ofmap.npy").is_file() and (tmp_path / "runs" / "net" / "up2").is_dir()


def test_junit_has_one_testcase_per_layer_and_the_scoreboard(tmp_path, cases, capsys):
    junit, verdicts = tmp_path / "ci" / "junit.xml", tmp_path / "ci" / "verdicts.json"
    code, _, _ = _run(_argv(tmp_path, cases["pass"], cases["net"], cases["fail"], cases["none"], cases["bad"],
                            extra=("--junit", str(junit), "--json", str(verdicts))), capsys)
    assert code == 2
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("6", "2", "1")
    cases_ = {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}
    assert set(cases_) == {("convsim.p", "p"), ("convsim.net", "up1"), ("convsim.net", "up2"), ("convsim.f", "f"),
                           ("convsim.n", "n"), (f"convsim.{cases['bad']}", str(cases["bad"]))}
    failure = cases_[("convsim.f", "f")].find("failure")
    assert failure is not None and failure.get("type") == "mismatch"
    assert "elements differ" in (failure.text or "") and "max |expected - actual|" in (failure.text or "")
    assert cases_[("convsim.n", "n")].find("failure").get("type") == "no-golden"
    assert "kernal_size" in cases_[(f"convsim.{cases['bad']}", str(cases["bad"]))].find("error").get("message")
    assert cases_[("convsim.p", "p")].find("failure") is None
    doc = json.loads(verdicts.read_text())
    assert doc["verdict"] == "ERROR" and doc["exit_code"] == 2
    assert [(v["name"], v["layer"], v["outcome"]) for v in doc["layers"]] == [
        ("p", "p", "PASS"), ("net", "up1", "PASS"), ("net", "up2", "PASS"), ("f", "f", "FAIL"),
        ("n", "n", "NO GOLDEN"), ("", "", "ERROR")]


def test_batch_refuses_two_configs_of_one_name(tmp_path, cases, capsys):
    twin = tmp_path / "twin" / "p.yaml"
    twin.parent.mkdir()
    twin.write_text(cases["pass"].read_text())
    code, _, err = _run(_argv(tmp_path, cases["pass"], twin), capsys)
    assert code == 2 and "also the name of" in err


def test_compare_batch_and_junit(tmp_path, cases, capsys):
    junit = tmp_path / "c.xml"
    code, out, _ = _run(["compare", str(cases["pass"]), str(cases["net"]), "--golden-dir", str(tmp_path / "golden"),
                         "--junit", str(junit)], capsys)
    assert code == 0 and "overall: PASS" in out and out.count("swell and phase bit-exact") == 3
    assert len(list(ET.parse(junit).getroot().iter("testcase"))) == 3
    code, out, _ = _run(["compare", str(cases["pass"]), str(cases["fail"]), "--json", "--golden-dir",
                         str(tmp_path / "golden")], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and [c["ok"] for c in doc["configs"]] == [True, False]


# -------------------------------------------------------------------------------------- version, help, pipes


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"convsim {version('convsim')}" == f"convsim {simulator.__version__}"


def test_bare_convsim_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: convsim") and "run" in out and "exit codes" in out


def test_every_argument_has_help_and_options_show_their_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"convsim {name} {action.dest} has no help"
        text = sub.format_help()
        assert "(default:" in text, name
    assert "choices" not in build_parser().format_help()
    assert "{local,ray}" in subparsers.choices["sweep"].format_help()


def test_closed_pipe_ends_quietly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "run", str(REPO / "configs" / "seed_case1.yaml"),
                             "--no-compare", "--no-dumps", "--out", str(tmp_path / "r")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is printed, like `| head -0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_progress_bars_on_a_terminal_only(tmp_path, cases, capsys, monkeypatch):
    from simulator import progress

    code, _, err = _run(_argv(tmp_path, cases["net"]), capsys)
    assert code == 0 and err == ""  # not a terminal: no progress at all
    monkeypatch.setattr(progress, "enabled", lambda: True)
    code, out, err = _run(_argv(tmp_path, cases["net"], extra=("--no-compare",)), capsys)
    assert code == 0 and "NOT COMPARED" in out
    assert "tile" in err and "up1" in err and "up2" in err and "layer" in err  # tqdm bars: layers and tiles
    assert "tile/s" not in out and "it/s" not in out  # progress never mixes into stdout
