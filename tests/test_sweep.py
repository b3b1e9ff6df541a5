"""Sweeps: grid expansion, invalid points, Pareto front, local vs Ray, kill and resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.sweep import pareto_front, read_jsonl, set_dotted
from tests.conftest import REPO

GRID_50 = """\
base: {base}
grid:
  hardware.mac_array.rows: [4, 8, 16, 32, 64]
  hardware.mac_array.cols: [8, 16, 32, 64, 128]
  hardware.mac_array.dataflow: [os, ws]
constraints:
  max_pes: 100000
"""


def _sweep_file(tmp_path: Path, body: str = GRID_50) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(body.format(base=REPO / "configs" / "seed_case2.yaml"))
    return path


def _wait_for_records(jsonl: Path, count: int, seconds: float) -> None:
    """Poll a running sweep's results.jsonl until it holds ``count`` records or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(read_jsonl(jsonl)) < count:
        time.sleep(0.02)


def test_set_dotted_creates_nested_copy():
    raw = {"hardware": {"mac_array": {"rows": 32}}, "name": "x"}
    out = set_dotted(raw, "hardware.mac_array.rows", 8)
    assert out == {"hardware": {"mac_array": {"rows": 8}}, "name": "x"}
    assert raw["hardware"]["mac_array"]["rows"] == 32
    assert set_dotted({}, "engine.transposed_conv", "phase") == {"engine": {"transposed_conv": "phase"}}


def test_pareto_front_by_hand():
    pts = [
        {"point": 0, "cycles": 100, "pes": 64, "sram_bytes": 10},  # front: cheapest array
        {"point": 1, "cycles": 50, "pes": 256, "sram_bytes": 10},  # front: fastest
        {"point": 2, "cycles": 120, "pes": 256, "sram_bytes": 10},  # dominated by 1
        {"point": 3, "cycles": 100, "pes": 64, "sram_bytes": 20},  # dominated by 0 (more SRAM)
    ]
    assert sorted(p["point"] for p in pareto_front(pts)) == [0, 1]


def test_invalid_points_are_reported_not_run(tmp_path, capsys):
    sweep = _sweep_file(tmp_path, "base: {base}\ngrid:\n  hardware.mac_array.rows: [0, 8]\n"
                                  "  hardware.mac_array.dataflow: [os, xs]\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "point 0 not run" in err and "rows" in err  # rows=0
    assert "point 1 not run" in err and "xs" in err  # dataflow=xs
    records = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert sorted(i for i, r in records.items() if "problem" in r) == [0, 1, 3]
    assert "rows" in records[2]
    csv_lines = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 2 and csv_lines[1].startswith("2,8,os,")


def test_constraint_excludes_points(tmp_path, capsys):
    body = "base: {base}\ngrid:\n  hardware.mac_array.rows: [8, 64]\nconstraints:\n  max_pes: 1024\n"
    assert main(["sweep", str(_sweep_file(tmp_path, body)), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    assert "2048 PEs > constraints.max_pes=1024" in capsys.readouterr().err


def test_existing_results_need_resume(tmp_path, capsys):
    sweep = _sweep_file(tmp_path, "base: {base}\ngrid:\n  hardware.mac_array.rows: [8]\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--workers", "1"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_local_and_ray_give_identical_tables(tmp_path):
    pytest.importorskip("ray")
    sweep = _sweep_file(tmp_path)
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "local")]) == 0
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local = (tmp_path / "local" / "results.csv").read_text()
    assert len(local.splitlines()) == 1 + 50
    assert (tmp_path / "ray" / "results.csv").read_text() == local


def test_killed_sweep_resumes_to_the_same_table(tmp_path):
    sweep = _sweep_file(tmp_path)
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "whole"), "--workers", "2"]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "simulator", "sweep", str(sweep), "--out", str(out), "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    jsonl = out / "results.jsonl"
    _wait_for_records(jsonl, 10, seconds=60)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_jsonl(jsonl))
    assert 0 < done_before < 50, "the sweep must be killed midway for this test to mean anything"
    with open(jsonl, "a") as fh:
        fh.write('{"point": 49, "torn')  # a half-written last line must be ignored
    assert main(["sweep", str(sweep), "--out", str(out), "--resume", "--workers", "2"]) == 0
    assert (out / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path):
    """SIGINT to the process group (what Ctrl-C sends: the workers get it too) mid-sweep: exit 130 with one
    line and no traceback from the driver or a worker, no worker left behind, and --resume completes the sweep."""
    body = ("base: {base}\ngrid:\n  hardware.mac_array.rows: [8, 16, 32, 64]\n"
            "  engine.transposed_conv: [swell, phase]\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(body.format(base=REPO / "configs" / "dcgan_128_64.yaml"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "simulator", "sweep", str(sweep), "--out", str(out), "--workers", "2", "--verify"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            cwd=tmp_path)
    jsonl = out / "results.jsonl"
    _wait_for_records(jsonl, 2, seconds=120)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    done_before = len(read_jsonl(jsonl))
    assert proc.returncode == 130, err
    assert 0 < done_before < 8, "the sweep must be interrupted midway for this test to mean anything"
    lines = [line for line in err.decode().splitlines() if not line.startswith(("sweep:", "point "))]
    assert lines == ["convsim: interrupted"], err
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the process group is left
    assert main(["sweep", str(sweep), "--out", str(out), "--resume", "--workers", "2", "--verify"]) == 0
    assert len(read_jsonl(jsonl)) == 8


def test_resumed_sweep_prints_overrides_in_grid_order(tmp_path, capsys):
    """results.jsonl stores overrides with sorted keys; what is printed (and pareto.txt) keeps the grid's order."""
    sweep = _sweep_file(tmp_path, "base: {base}\ngrid:\n  hardware.mac_array.rows: [4, 8]\n"
                                  "  engine.transposed_conv: [swell, phase]\n  hardware.mac_array.cols: [4]\n")
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out), "--workers", "1"]) == 0
    first = capsys.readouterr().out
    assert main(["sweep", str(sweep), "--out", str(out), "--resume", "--workers", "1"]) == 0
    again = capsys.readouterr().out
    assert first == again and "rows=4, transposed_conv=" in first and ", cols=4" in first


# ------------------------------------------------------------------------------------------ energy objective


def test_pareto_front_on_cycles_and_energy_by_hand():
    pts = [
        {"point": 0, "cycles": 100, "energy_pj": 50.0, "pes": 64, "sram_bytes": 10},  # front: least energy
        {"point": 1, "cycles": 50, "energy_pj": 80.0, "pes": 4096, "sram_bytes": 99},  # front: fastest
        {"point": 2, "cycles": 100, "energy_pj": 60.0, "pes": 16, "sram_bytes": 1},  # dominated by 0 on these keys
        {"point": 3, "cycles": 70, "energy_pj": 70.0, "pes": 64, "sram_bytes": 10},  # front: in between
    ]
    assert sorted(p["point"] for p in pareto_front(pts, ("cycles", "energy_pj"))) == [0, 1, 3]
    assert sorted(p["point"] for p in pareto_front(pts)) == [1, 2, 3]  # the default keys ignore energy


def test_energy_columns_and_an_energy_only_override(tmp_path, capsys):
    """Sweeping a per-action energy changes the energy column by the hand-computed amount, never the cycles."""
    body = ("base: {base}\ngrid:\n  hardware.energy.mac_pj: [1, 3]\n  hardware.energy.preset: [null]\n"
            "objectives: [cycles, energy_pj]\n")
    assert main(["sweep", str(_sweep_file(tmp_path, body)), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    rows = list(csv.DictReader((tmp_path / "o" / "results.csv").open()))
    assert [r["cycles"] for r in rows] == [rows[0]["cycles"]] * 2
    issued = int(rows[0]["macs_issued"])
    assert [int(r["energy_fj"]) for r in rows] == [1000 * issued, 3000 * issued]  # only MACs cost: 1 and 3 pJ
    out = capsys.readouterr().out
    assert "minimising cycles, energy_pj" in out
    assert out.splitlines()[2].split()[:3] == ["0", rows[0]["cycles"], f"{issued / 1000:,.3f}"]


def test_unknown_objective_is_a_one_line_error(tmp_path, capsys):
    body = "base: {base}\ngrid:\n  hardware.mac_array.rows: [8]\nobjectives: [cycles, joules]\n"
    assert main(["sweep", str(_sweep_file(tmp_path, body)), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "objectives[1]" in err and "energy_pj" in err and len(err.strip().splitlines()) == 1


def test_grid_keys_below_a_mapping_field_are_accepted(tmp_path, capsys):
    """hardware.energy.buffers is a mapping (buffer name -> table): a key below it cannot be checked against the
    model's fields up front, so it is accepted there and validated per point."""
    body = "base: {base}\ngrid:\n  hardware.energy.buffers.ifmap.read_pj_per_byte: [1, 2]\n"
    assert main(["sweep", str(_sweep_file(tmp_path, body)), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    body = "base: {base}\ngrid:\n  hardware.energy.buffers.accum.read_pj_per_byte: [1]\n"
    assert main(["sweep", str(_sweep_file(tmp_path, body)), "--out", str(tmp_path / "p"), "--workers", "1"]) == 2
    assert "accum" in capsys.readouterr().err
