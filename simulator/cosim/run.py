"""``convsim cosim``: the layer in convsim with dumps, the same tiles on the shipped (or your) RTL, compared.

Models no hardware. Steps: simulate the layer with per-stage dumps (``<out>/dumps``); for every dumped tile
build the swelling DMA's and the MAC array's work from the tile plan and the dump index
(:mod:`simulator.cosim.tasks`); run them on the RTL under Icarus Verilog through cocotb
(:mod:`simulator.cosim.harness`); compare each output region with the next stage's dump (bytes for swell,
int32 for the psums) and the RTL's busy cycles with the stage's cost function, tile by tile. One line per stage
on stdout; exit 0 when every checked stage passes, 1 on a difference, 2 on bad input (no Icarus: how to install).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from simulator.config import SimConfig, load_config
from simulator.cosim import check, harness
from simulator.cosim.tasks import COSIM_STAGES, MacTask, MemFile, SwellTask, mac_task, rtl_dir, swell_task, to_json
from simulator.data import make_tensors
from simulator.dump import Dumps, DumpWriter, compact, parse_hex
from simulator.errors import ConvsimError
from simulator.files import atomic_write_text, check_writable_dir
from simulator.mapping import mapping_for
from simulator.pipeline import simulate_layer
from simulator.stages.common import LayerContext

EXIT_OK, EXIT_MISMATCH = 0, 1
TB_INPUTS = (
    "mem_sel", "load_stb", "dump_stb", "clear_stb", "dump_lo", "dump_hi", "clear_counters", "swell_start",
    "mac_start", "file_name",
)


@dataclass(frozen=True)
class Fault:
    """Flip bit ``bit`` of the byte at ``addr`` of ``buffer`` in the input the RTL of ``stage`` loads (the
    first checked tile whose input region holds that byte): a test that cosim notices a corrupted input."""

    stage: str
    buffer: str
    addr: int
    bit: int


@dataclass(frozen=True)
class StageVerdict:
    """One stage's outcome: the printed line, and per checked tile (index, RTL cycles, model cycles)."""

    stage: str
    line: str
    passed: bool
    tiles: tuple[tuple[int, int, int], ...] = ()


def _select_layer(cfg: SimConfig, layer: str | None) -> tuple[int, Any]:
    if layer is None:
        if cfg.is_network:
            names = ", ".join(candidate.name for candidate in cfg.layers)
            raise ConvsimError(f"config {cfg.name!r} is a network: pick a layer with --layer (layers: {names})")
        return 0, cfg.layer
    for i, candidate in enumerate(cfg.layers):
        if candidate.name == layer:
            return i, candidate
    raise ConvsimError(f"--layer {layer!r}: no such layer in config {cfg.name!r}")


def _flip(mem: MemFile, fault: Fault, out: Path, word_bytes: int) -> MemFile:
    """A copy of ``mem``'s hex file with one bit flipped (the fault), or ``mem`` when the byte is not in it."""
    if mem.buffer != fault.buffer or not mem.base_addr <= fault.addr < mem.base_addr + mem.size_bytes:
        return mem
    lines = Path(mem.path).read_text().splitlines()
    data = [i for i, line in enumerate(lines) if line and not line.startswith(("//", "@"))]
    offset = fault.addr - mem.base_addr
    i = data[offset // word_bytes]
    word = int(lines[i], 16) ^ (1 << (8 * (offset % word_bytes) + fault.bit))
    lines[i] = f"{word:0{2 * word_bytes}x}"
    path = out / f"fault_{Path(mem.path).parent.name}_{Path(mem.path).name}"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return replace(mem, path=str(path))


def _apply_fault(tasks: list[Any], fault: Fault | None, out: Path, word_bytes: dict[str, int]) -> list[Any]:
    if fault is None:
        return tasks
    for k, task in enumerate(tasks):
        flipped = tuple(_flip(m, fault, out, word_bytes[m.buffer]) for m in task.loads)
        if flipped != task.loads:
            tasks[k] = replace(task, loads=flipped)
            return tasks
    raise ConvsimError(f"fault: no checked tile of stage {fault.stage} loads {fault.buffer} byte 0x{fault.addr:x}")


def _verdict(stage: str, tasks: list[SwellTask | MacTask], results: list[dict[str, Any]], hw: Any) -> StageVerdict:
    compared = rtl_cycles = model_cycles = 0
    first: str | None = None
    cycle_miss: str | None = None
    for task, result in zip(tasks, results, strict=True):
        rtl_cycles += result["rtl_cycles"]
        model_cycles += task.model_cycles
        if result["rtl_cycles"] != task.model_cycles and cycle_miss is None:
            cycle_miss = f"tile {task.tile}: rtl {result['rtl_cycles']} cycles, model {task.model_cycles}"
        previous = getattr(task, "previous", ()) or (None,) * len(task.expect)
        for mem, output, before in zip(task.expect, result["outputs"], previous, strict=True):
            buf = getattr(hw.sram, mem.buffer)
            _, model = parse_hex(Path(mem.path).read_text(), mem.size_bytes, mem.path)
            rtl = check.parse_writememh(Path(output["path"]).read_text(), mem.size_bytes)
            if before is not None:  # a later input-channel slice: the RTL computed this slice's contribution
                _, prior = parse_hex(Path(before.path).read_text(), before.size_bytes, before.path)
                rtl = check.add_int32(rtl, prior)
            compared += mem.size_bytes
            diff = check.first_difference(mem.as_region(), rtl, model)
            if diff is not None and first is None:
                first = f"tile {task.tile}, {diff.describe(mem.buffer, buf.bank_width_bytes, buf.num_banks)}"
    cycles = f"rtl {rtl_cycles} cycles, model {model_cycles} cycles"
    per_tile = tuple((task.tile, result["rtl_cycles"], task.model_cycles)
                     for task, result in zip(tasks, results, strict=True))
    if first is not None:
        return StageVerdict(stage, f"cosim {stage}: FAIL at {first}; {cycles}", False, per_tile)
    if cycle_miss is not None:
        return StageVerdict(stage, f"cosim {stage}: FAIL cycles ({len(tasks)} tiles, {compared} bytes compared "
                                   f"equal; first differing {cycle_miss}), {cycles}", False, per_tile)
    return StageVerdict(stage, f"cosim {stage}: PASS ({len(tasks)} tiles, {compared} bytes compared), {cycles}", True,
                        per_tile)


def run_cosim(config: Path, stage: str = "all", tiles: int | None = None, wave: Path | None = None,
              out: Path | None = None, method: str | None = None, layer: str | None = None,
              rtl: Path | None = None, fault: Fault | None = None) -> int:
    """Run ``convsim cosim``; print one line per stage; return the exit code (0 pass, 1 a difference)."""
    verdicts = cosim(config, stage, tiles, wave, out, method, layer, rtl, fault)
    return EXIT_OK if all(v.passed for v in verdicts) else EXIT_MISMATCH


def cosim(config: Path, stage: str = "all", tiles: int | None = None, wave: Path | None = None,
          out: Path | None = None, method: str | None = None, layer: str | None = None,
          rtl: Path | None = None, fault: Fault | None = None) -> list[StageVerdict]:
    """The work of ``convsim cosim``: prints one line per stage and returns the verdicts of the checked stages."""
    if tiles is not None and tiles < 1:
        raise ConvsimError(f"--tiles: {tiles}, expected a count >= 1")
    if stage not in (*COSIM_STAGES, "all"):
        raise ConvsimError(f"--stage {stage!r}: expected swell, mac_array or all")
    cfg = load_config(config)
    if method is not None:
        cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"transposed_conv": method})})
    index, chosen = _select_layer(cfg, layer)
    mapping = mapping_for(chosen, cfg.hardware, cfg.engine.transposed_conv)
    hw = cfg.hardware
    if stage in ("all", "mac_array") and hw.mac_array.dataflow != "os":
        raise ConvsimError(f"hardware.mac_array.dataflow={hw.mac_array.dataflow!r}: the shipped mac_array RTL is "
                           f"output-stationary (os) only")
    if stage == "swell" and not mapping.swells:
        raise ConvsimError(f"--stage swell: method {mapping.name} has no swell stage to check")
    harness.check_tools()
    harness.sources(Path(rtl) if rtl is not None else None)  # missing RTL fails here, before anything is written
    # absolute: the simulator runs in the build directory and reads the dump files by these paths
    out = (Path(out) if out is not None else Path("runs") / cfg.name / "cosim").resolve()
    check_writable_dir(out, "output directory")
    if wave is not None:
        check_writable_dir(Path(wave).resolve().parent, "--wave directory")

    tensors = make_tensors(cfg.data, chosen, index if cfg.is_network else None)
    writer = DumpWriter(out / "dumps", hw, max_tiles=tiles)
    try:
        result = simulate_layer(chosen, hw, cfg.engine.transposed_conv, tensors, writer)
    except BaseException:
        writer.abort()
        raise
    writer.finish(result)
    dumps = Dumps.open(out)
    ctx = LayerContext(chosen, hw, result.plan)
    checked = [t for t in dumps.index["dumped_tiles"] if tiles is None or t < tiles]
    print(f"cosim: layer {chosen.name}, method {result.plan.method}: checking {len(checked)} of "
          f"{len(result.plan.tiles)} tile(s) ({compact(checked)}) on {rtl or rtl_dir()}",
          file=sys.stderr)

    wanted = COSIM_STAGES if stage == "all" else (stage,)
    per_stage: dict[str, list[Any]] = {}
    for name in wanted:
        if name == "swell":
            found = [swell_task(ctx, result.plan.tiles[t], dumps) for t in checked]
            per_stage[name] = [task for task in found if task is not None]
        else:
            per_stage[name] = [mac_task(ctx, result.plan.tiles[t], dumps, hw.mac_array.rows, hw.mac_array.cols)
                               for t in checked]
    word_bytes = {b: getattr(hw.sram, b).bank_width_bytes for b in ("ifmap", "weight", "psum")}
    if fault is not None:
        per_stage[fault.stage] = _apply_fault(per_stage.get(fault.stage, []), fault, out, word_bytes)
    ordered = [task for name in wanted for task in per_stage[name]]
    parameters = {
        "BPC": hw.swell_dma.bytes_per_cycle, "R": hw.mac_array.rows, "C": hw.mac_array.cols,
        **{f"{b[0].upper()}_WB": word_bytes[b] for b in word_bytes},
        **{f"{b[0].upper()}_DEPTH": -(-getattr(hw.sram, b).size_bytes // word_bytes[b]) for b in word_bytes},
    }
    job = {"out_dir": str(out.resolve()), "word_bytes": word_bytes, "inputs": list(TB_INPUTS),
           "tasks": [to_json(task) for task in ordered]}
    steps = sum(1 if isinstance(task, SwellTask) else len(task.folds) for task in ordered)
    results = harness.simulate(job, out.resolve(), parameters, Path(rtl).resolve() if rtl else None, wave,
                               steps) if ordered else []
    verdicts = []
    start = 0
    for name in wanted:
        tasks = per_stage[name]
        if not tasks:
            print(f"cosim {name}: SKIPPED (method {result.plan.method} has no {name} stage)")
            continue
        verdict = _verdict(name, tasks, results[start:start + len(tasks)], hw)
        start += len(tasks)
        verdicts.append(verdict)
        print(verdict.line)
    print(f"cosim: {len(checked)} of {len(result.plan.tiles)} tile(s) checked; RTL log {out / 'sim.log'}"
          + (f"; waves {wave}" if wave is not None else ""), file=sys.stderr)
    return verdicts


__all__ = ["Fault", "StageVerdict", "cosim", "run_cosim"]
