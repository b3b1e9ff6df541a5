"""What cosim asks the RTL to do for each tile: descriptors, input and expected dump files, model cycles.

Models the engine's sequencer as the RTL sees it: for one dumped tile, the swelling DMA's descriptor (source and
destination regions, stride, where input pixel (0, 0) lands, fill value, set-up cycles) and the MAC array's list
of folds (per job, group, column fold and row fold: operand regions, job geometry, result region). The values
come from the tile plan, the tile's mapping and the layer (the numbers a hardware sequencer is programmed with):
the region the MAC array reads (``mapping.staged``), the weight it executes (``mapping.conv_weight``), where the
first loaded pixel lands (``mapping.canvas_offset``); never a method name. The data come from the dump files,
found through ``index.json`` by :class:`simulator.dump.Dumps` by region name and address (never by hard-coded
paths or stage names: whichever stage wrote a region is in the index).

Input-channel slices: the shipped array has no accumulator preload, so the RTL computes one slice's
contribution from zeroed accumulators; for a later slice the task carries the previous slice's dumped psum (the
plan's :meth:`~simulator.plan.TilePlan.previous_slice`, in either loop order),
which the verdict adds (int32, wrapping) to the RTL's result before comparing it with this slice's dump. The
model cycles the RTL is held to are the array's fold cycles: the cost function's total less its psum
read-modify-write term (:func:`simulator.stages.mac_array.psum_read_cycles`), which the RTL does not run.
Pure functions of the plan, the layer and the dump index: no simulation here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simulator.dump import BufferDump, Dumps
from simulator.errors import ConvsimError
from simulator.geometry import ceil_div
from simulator.mapping.base import IFMAP
from simulator.plan import Tile
from simulator.sram import Region
from simulator.stages import mac_array, swell
from simulator.stages.common import LayerContext

LAYOUT_CODES = {"NCHW": 0, "NHWC": 1, "NC1HWC0": 2}
COSIM_STAGES = ("swell", "mac_array")


@dataclass(frozen=True)
class MemFile:
    """A dump file the harness loads into (or compares with) one SRAM buffer."""

    buffer: str
    path: str
    region: str
    base_addr: int
    size_bytes: int
    shape: tuple[int, ...] = ()
    dtype: str = "int8"
    layout: str = "NHWC"
    c0: int = 16

    def as_region(self) -> Region:
        return Region(self.region, self.buffer, self.base_addr, self.shape, self.dtype, self.layout,  # type: ignore[arg-type]
                      self.c0)


@dataclass(frozen=True)
class SwellTask:
    """One tile for swell_dma."""

    tile: int
    loads: tuple[MemFile, ...]
    expect: tuple[MemFile, ...]
    desc: dict[str, int]
    model_cycles: int


@dataclass(frozen=True)
class MacTask:
    """One tile for mac_fold: every fold of every job and group, in the order the cost model sums them."""

    tile: int
    loads: tuple[MemFile, ...]
    expect: tuple[MemFile, ...]
    folds: tuple[dict[str, int], ...]
    model_cycles: int
    clear: tuple[MemFile, ...] = field(default=())
    # a later input-channel slice: the previous slice's psum dumps, one per ``expect``, added to the RTL's result
    previous: tuple[MemFile, ...] = field(default=())


def _mem(b: BufferDump) -> MemFile:
    e = b.entry
    return MemFile(e["buffer"], str(b.directory / e["hex"]), e["name"], int(e["base_addr"]), int(e["size_bytes"]),
                   tuple(e["region_shape"]), e["dtype"], e["layout"], int(e["c0"]))


def _written(dumps: Dumps, name: str, tile: int, region: Region, before: bool = False) -> BufferDump:
    """The dump of region ``name`` as the tile reads it: written on this tile, or on the latest earlier dumped
    tile that wrote it at the same address (weights stay resident across the row tiles of an output-channel tile).
    ``before``: written by an earlier tile only (the psum a previous input-channel slice left). Whichever stage
    wrote it: a region name is written by one stage (the index says which)."""
    candidates = [b for b in dumps.buffers() if b.name == name and (b.tile < tile if before else b.tile <= tile)
                  and int(b.entry["base_addr"]) == region.base_addr]
    best = max(candidates, key=lambda b: b.tile, default=None)
    if best is None:
        raise LookupError(f"tile {tile}: no dump of {name} at 0x{region.base_addr:x}")
    return best


def swell_task(ctx: LayerContext, tile: Tile, dumps: Dumps) -> SwellTask | None:
    """The swelling DMA's work on one tile, or None when the tile has no swell stage (phase, conv2d)."""
    cost = swell.cost(ctx, tile)
    if cost.skipped:
        return None
    src, dst = tile.region(IFMAP), tile.region(ctx.mapping.staged)
    off_h, off_w = ctx.mapping.canvas_offset(tile)
    desc = {
        "src_base": src.base_addr, "src_bytes": src.size_bytes, "dst_base": dst.base_addr,
        "dst_bytes": dst.size_bytes, "layout": LAYOUT_CODES[src.layout], "c0": src.c0, "channels": src.shape[0],
        "in_h": src.shape[1], "in_w": src.shape[2], "out_h": dst.shape[1], "out_w": dst.shape[2],
        "stride_h": ctx.layer.stride[0], "stride_w": ctx.layer.stride[1], "off_h": off_h, "off_w": off_w,
        "fill": 0, "setup_cycles": ctx.hw.swell_dma.setup_cycles,
    }
    return SwellTask(tile.index, (_mem(_written(dumps, src.name, tile.index, src)),),
                     (_mem(_written(dumps, dst.name, tile.index, dst)),), desc, cost.cycles)


def mac_task(ctx: LayerContext, tile: Tile, dumps: Dumps, rows: int, cols: int) -> MacTask:
    """The MAC array's work on one tile: its folds, with the staged ifmap and weight as the dumps hold them."""
    staged, weight = tile.region(ctx.mapping.staged), tile.region(ctx.mapping.conv_weight)
    loads = (_mem(_written(dumps, staged.name, tile.index, staged)),
             _mem(_written(dumps, weight.name, tile.index, weight)))
    groups = tile.num_groups
    cg = (tile.ic[1] - tile.ic[0]) // groups  # input channels of one group in this slice
    mg = tile.oc_count // groups
    w_m = weight.shape[1] if weight.layout == "POIHW" else weight.shape[0]
    folds: list[dict[str, int]] = []
    expect: list[MemFile] = []
    previous: list[MemFile] = []
    for job in tile.jobs:
        psum = tile.region(job.psum_region)
        expect.append(_mem(_written(dumps, psum.name, tile.index, psum)))
        if not tile.first_slice:
            previous.append(_previous_slice(dumps, tile, psum, ctx.plan.previous_slice(tile)))
        e_len = job.out_hw[0] * job.out_hw[1]
        base = {
            "x_base": staged.base_addr, "x_layout": LAYOUT_CODES[staged.layout], "x_c0": staged.c0,
            "x_channels": staged.shape[0], "x_h": staged.shape[1], "x_w": staged.shape[2],
            "kh": job.kernel_hw[0], "kw": job.kernel_hw[1], "stride_h": job.stride[0], "stride_w": job.stride[1],
            "dil_h": job.dilation[0], "dil_w": job.dilation[1], "off_h": job.in_offset[0],
            "off_w": job.in_offset[1], "out_h": job.out_hw[0], "out_w": job.out_hw[1], "cg": cg, "mg": mg,
            "w_base": weight.base_addr, "w_m": w_m, "w_index": job.weight_index if weight.layout == "POIHW" else 0,
            "p_base": psum.base_addr, "p_layout": LAYOUT_CODES[psum.layout], "p_c0": psum.c0,
        }
        for g in range(groups):
            for n0 in range(0, ceil_div(mg, cols) * cols, cols):
                for e0 in range(0, ceil_div(e_len, rows) * rows, rows):
                    folds.append({**base, "group": g, "n0": n0, "e0": e0})
    return MacTask(tile.index, loads, tuple(expect), tuple(folds), array_cycles(ctx, tile), clear=tuple(expect),
                   previous=tuple(previous))


def _previous_slice(dumps: Dumps, tile: Tile, psum: Region, before: Tile | None) -> MemFile:
    """The psum the previous input-channel slice of the tile left (``before``, the plan's tile of that slice:
    the tile just before it when the slices are the innermost loop, one output-channel tile's spatial tiles
    earlier when they are outside), as dumped after that slice's MAC array stage."""
    try:
        found: BufferDump | None = _written(dumps, psum.name, tile.index, psum, before=True)
    except LookupError:
        found = None
    if before is None or found is None or found.tile != before.index:
        where = f"tile {before.index}" if before is not None else "its tile"
        raise ConvsimError(f"tile {tile.index} (input-channel slice {tile.ic_slice + 1} of {tile.ic_slices}): the "
                           f"previous slice, {where}, was not dumped (dump budget): check fewer "
                           f"tiles with --tiles N")
    return _mem(found)


def array_cycles(ctx: LayerContext, tile: Tile) -> int:
    """The MAC array's busy cycles on the tile by the cost function: its cycles less the psum read-modify-write
    preload of a later input-channel slice (the psum SRAM's port, not the array's folds)."""
    cycles = mac_array.cost(ctx, tile).cycles
    if tile.first_slice:
        return cycles
    psum_bytes = sum(tile.region(job.psum_region).size_bytes for job in tile.jobs)
    return cycles - mac_array.psum_read_cycles(psum_bytes, ctx.hw.sram.psum)


def to_json(task: SwellTask | MacTask) -> dict[str, Any]:
    return {"kind": "swell" if isinstance(task, SwellTask) else "mac_array", **asdict(task)}


def words(mem: MemFile, word_bytes: int) -> tuple[int, int]:
    """First and last word index of a region in its buffer (regions start on word boundaries)."""
    return mem.base_addr // word_bytes, (mem.base_addr + mem.size_bytes - 1) // word_bytes


def rtl_dir() -> Path:
    """The shipped RTL: ``rtl/`` at the repository root."""
    return Path(__file__).resolve().parents[2] / "rtl"
