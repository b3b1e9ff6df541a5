"""Builds ``rtl/`` with Icarus Verilog and runs the cocotb test :mod:`simulator.cosim.tb` on a job file.

Models no hardware: it is the bridge to the HDL simulator. It finds the tools (a missing Icarus Verilog or
cocotb is a one-line error saying how to install it), builds ``cosim_top`` with the hardware's parameters
through cocotb's Python runner (``cocotb_tools.runner``), runs the test with the job and result files in its
environment, and shows progress on stderr (tqdm) by following the progress file the test writes. The
simulator's own log goes to ``<out>/sim.log``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from simulator.errors import ConvsimError
from simulator.files import atomic_write_json

INSTALL_HINT = ("install Icarus Verilog (Debian/Ubuntu: `apt-get install -y iverilog`) and the cosim extra "
                "(`pip install -e '.[cosim]'`)")
RTL_SOURCES = ("swell_dma.v", "mac_array.v", "mac_fold.v", "tb/cosim_top.v")


def check_tools() -> None:
    """Raise a one-line error when Icarus Verilog or cocotb is missing."""
    missing = [tool for tool in ("iverilog", "vvp") if shutil.which(tool) is None]
    if missing:
        raise ConvsimError(f"cosim needs Icarus Verilog: {' and '.join(missing)} not found on PATH; {INSTALL_HINT}")
    try:
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        raise ConvsimError(f"cosim needs cocotb (Python package) and it is not installed; {INSTALL_HINT}") from None


MODULE = re.compile(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_$]*)", re.MULTILINE)


def sources(user_dir: Path | None) -> list[Path]:
    """The Verilog files of the build. Every ``.v``/``.sv`` file of ``user_dir`` (your RTL) is compiled, and a
    shipped file of ``rtl/`` only when ``user_dir`` defines none of its modules: your ``swell_dma`` replaces the
    shipped one, the rest stays (docs/rtl.md)."""
    from simulator.cosim.tasks import rtl_dir

    shipped = [rtl_dir() / name for name in RTL_SOURCES]
    missing = [p for p in shipped if not p.is_file()]
    if missing:
        raise ConvsimError(f"the shipped RTL is not at {rtl_dir()} (no {missing[0].name}): convsim cosim runs from a "
                           f"source checkout installed with `pip install -e .`")
    if user_dir is None:
        return shipped
    if not user_dir.is_dir():
        raise ConvsimError(f"--rtl-dir {user_dir}: not a directory")
    mine = sorted(p for p in user_dir.rglob("*") if p.suffix in (".v", ".sv") and p.is_file())
    defined = {m for p in mine for m in MODULE.findall(p.read_text(errors="replace"))}
    if not mine:
        raise ConvsimError(f"--rtl-dir {user_dir}: no .v or .sv files")
    kept = [p for p in shipped if not set(MODULE.findall(p.read_text())) & defined]
    return mine + kept


def _runner(vcd: bool) -> Any:
    from cocotb_tools.runner import Icarus

    class _Icarus(Icarus):  # type: ignore[misc]
        """cocotb's Icarus runner, with ``-vcd`` instead of ``-none`` when a VCD is asked for (the harness's
        ``+wave=FILE`` $dumpfile; cocotb's own waves are FST)."""

        def _test_command(self) -> list[list[str]]:
            cmds: list[list[str]] = super()._test_command()
            if vcd:
                cmds = [["-vcd" if arg == "-none" else arg for arg in cmd] for cmd in cmds]
            return cmds

    return _Icarus()


def _follow(progress: Path, total: int, stop: threading.Event) -> None:
    """Mirror the test's progress file (units done) on a tqdm bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=total, desc="cosim", unit="step", file=sys.stderr, leave=False,
              disable=not sys.stderr.isatty()) as bar:
        while not stop.is_set():
            time.sleep(0.2)
            try:
                done = int(progress.read_text() or 0)
            except (OSError, ValueError):
                continue
            bar.update(done - bar.n)


def simulate(job: dict[str, Any], out: Path, parameters: dict[str, int], rtl: Path | None, wave: Path | None,
             total_steps: int) -> list[dict[str, Any]]:
    """Build and run the RTL on ``job``; the test's per-task results (cycles, output files)."""
    check_tools()
    out.mkdir(parents=True, exist_ok=True)
    job_file, result_file, progress = out / "job.json", out / "result.json", out / "progress"
    for stale in (result_file, progress):
        stale.unlink(missing_ok=True)
    atomic_write_json(job_file, job)
    runner = _runner(vcd=wave is not None)
    build_dir = out / "sim_build"
    log = out / "sim.log"
    try:
        runner.build(sources=sources(rtl), hdl_toplevel="cosim_top", parameters=parameters, build_dir=build_dir,
                     always=True, timescale=("1ns", "1ps"), log_file=out / "build.log")
    except RuntimeError:
        raise ConvsimError(f"iverilog could not build the RTL: see {out / 'build.log'}") from None
    env = {"COSIM_JOB": str(job_file), "COSIM_RESULT": str(result_file), "COSIM_PROGRESS": str(progress)}
    plusargs = [f"+wave={wave.resolve()}"] if wave is not None else []
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(progress, total_steps, stop), daemon=True)
    follower.start()
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)  # the runner judges pytest runs itself: we judge here
    try:
        runner.test(test_module="simulator.cosim.tb", hdl_toplevel="cosim_top", build_dir=build_dir,
                    test_dir=build_dir, extra_env=env, plusargs=plusargs, log_file=log)
    except (RuntimeError, SystemExit):
        raise ConvsimError(f"the RTL simulation failed: see {log}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
        stop.set()
        follower.join()
    try:
        results: list[dict[str, Any]] = json.loads(result_file.read_text())["results"]
    except (OSError, ValueError, KeyError):
        raise ConvsimError(f"the RTL simulation wrote no results: see {log}") from None
    if len(results) != len(job["tasks"]):
        raise ConvsimError(f"the RTL simulation stopped after {len(results)} of {len(job['tasks'])} tiles: see {log}")
    return results
