"""The cocotb test that drives ``rtl/tb/cosim_top.v`` (runs inside Icarus Verilog, started by cocotb's runner).

Models the engine's sequencer and host: a free-running clock, a reset, then for every task of the job file
(``COSIM_JOB``, written by :mod:`simulator.cosim.run`): load the task's input dump files into the SRAM models
with ``$readmemh``, program the unit's descriptor, start it, wait for ``done``, read the harness's busy-cycle
counter, and write the unit's output region back out with ``$writememh``. The MAC array's folds are issued one
after another (the idle cycles this Python sequencer spends between folds are not counted: the counter counts
busy cycles only). No checking here: the results file (``COSIM_RESULT``) goes back to the caller, which compares.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, Timer

from simulator.files import atomic_write_json, atomic_write_text

MEM_SEL = {"ifmap": 0, "weight": 1, "psum": 2}
FILE_NAME_BYTES = 1024


def _set_file(dut: Any, path: str) -> None:
    raw = path.encode()
    if len(raw) > FILE_NAME_BYTES:
        raise ValueError(f"path longer than {FILE_NAME_BYTES} bytes: {path}")
    dut.file_name.value = int.from_bytes(raw, "big")


async def _strobe(dut: Any, name: str) -> None:
    getattr(dut, name).value = 1
    await Timer(1, unit="ns")
    getattr(dut, name).value = 0
    await Timer(1, unit="ns")


async def _load(dut: Any, mem: dict[str, Any]) -> None:
    if not Path(mem["path"]).is_file():  # $readmemh would only warn and leave the memory as it was
        raise FileNotFoundError(f"dump file {mem['path']} not found")
    dut.mem_sel.value = MEM_SEL[mem["buffer"]]
    _set_file(dut, mem["path"])
    await _strobe(dut, "load_stb")


async def _region_words(dut: Any, mem: dict[str, Any], word_bytes: dict[str, int]) -> None:
    wb = word_bytes[mem["buffer"]]
    dut.mem_sel.value = MEM_SEL[mem["buffer"]]
    dut.dump_lo.value = mem["base_addr"] // wb
    dut.dump_hi.value = (mem["base_addr"] + mem["size_bytes"] - 1) // wb


async def _dump(dut: Any, mem: dict[str, Any], word_bytes: dict[str, int], path: Path) -> None:
    await _region_words(dut, mem, word_bytes)
    _set_file(dut, str(path))
    await _strobe(dut, "dump_stb")


def _program(dut: Any, prefix: str, desc: dict[str, int], previous: dict[str, int]) -> None:
    for key, value in desc.items():
        if previous.get(key) != value:
            getattr(dut, f"{prefix}{key}").value = value


async def _run_unit(dut: Any, start: str, done: str) -> None:
    await FallingEdge(dut.clk)  # act between edges (the memory strobes before may end on an edge)
    dut.clear_counters.value = 1
    await RisingEdge(dut.clk)
    dut.clear_counters.value = 0
    getattr(dut, start).value = 1
    await RisingEdge(dut.clk)
    getattr(dut, start).value = 0
    await RisingEdge(getattr(dut, done))
    await FallingEdge(dut.clk)  # every register of the last busy edge has settled


@cocotb.test()
async def cosim(dut: Any) -> None:
    job = json.loads(Path(os.environ["COSIM_JOB"]).read_text())
    out_dir = Path(job["out_dir"])
    word_bytes: dict[str, int] = job["word_bytes"]
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    for name in job["inputs"]:
        getattr(dut, name).value = 0
    dut.rst_n.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst_n.value = 1
    await RisingEdge(dut.clk)
    results = []
    progress = Path(os.environ["COSIM_PROGRESS"])
    steps = 0
    for task in job["tasks"]:
        for mem in task["loads"]:
            await _load(dut, mem)
        outputs = []
        if task["kind"] == "swell":
            _program(dut, "sw_", task["desc"], {})
            await _run_unit(dut, "swell_start", "swell_done")
            cycles = int(dut.swell_cycles.value)
            steps += 1
            atomic_write_text(progress, str(steps))
        else:
            for mem in task["clear"]:  # the psum region starts zeroed (NC1HWC0 tail channels stay 0)
                await _region_words(dut, mem, word_bytes)
                await _strobe(dut, "clear_stb")
            cycles = 0
            previous: dict[str, int] = {}
            for fold in task["folds"]:
                _program(dut, "mf_", fold, previous)
                previous = fold
                await _run_unit(dut, "mac_start", "mac_done")
                cycles += int(dut.mac_cycles.value)
                await RisingEdge(dut.clk)  # the result port writes the psums at this edge
                steps += 1
                atomic_write_text(progress, str(steps))
        for mem in task["expect"]:
            path = out_dir / f"rtl_{task['kind']}_tile{task['tile']:04d}_{mem['region']}.hex"
            await _dump(dut, mem, word_bytes, path)
            outputs.append({"region": mem["region"], "path": str(path)})
        results.append({"kind": task["kind"], "tile": task["tile"], "rtl_cycles": cycles, "outputs": outputs})
        atomic_write_json(Path(os.environ["COSIM_RESULT"]), {"results": results})
