"""What cosim asks the RTL to do for each tile: descriptors, input and expected dump files, model cycles.

Models the engine's sequencer as the RTL sees it: for one dumped tile, the swelling DMA's descriptor (source and
destination regions, stride, where input pixel (0, 0) lands, fill value, set-up cycles) and the MAC array's list
of folds (per job, group, column fold and row fold: operand regions, job geometry, result region). The values
come from the tile plan and the layer (the numbers a hardware sequencer is programmed with); the data come from
the dump files, found through ``index.json`` by :class:`simulator.dump.Dumps` (never by hard-coded paths).
Pure functions of the plan, the layer and the dump index: no simulation here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simulator.dump import BufferDump, Dumps
from simulator.geometry import ceil_div
from simulator.sram import Region
from simulator.stages import mac_array, swell
from simulator.stages.common import LayerContext
from simulator.tiling import Tile

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


def _mem(b: BufferDump) -> MemFile:
    e = b.entry
    return MemFile(e["buffer"], str(b.directory / e["hex"]), e["name"], int(e["base_addr"]), int(e["size_bytes"]),
                   tuple(e["region_shape"]), e["dtype"], e["layout"], int(e["c0"]))


def _written(dumps: Dumps, stage: str, name: str, tile: int, region: Region) -> BufferDump:
    """The dump of region ``name`` as the tile reads it: written on this tile, or on the latest earlier dumped
    tile that wrote it at the same address (weights stay resident across the row tiles of an output-channel tile)."""
    candidates = [b for b in dumps.buffers() if b.stage == stage and b.name == name and b.tile <= tile
                  and int(b.entry["base_addr"]) == region.base_addr]
    best = max(candidates, key=lambda b: b.tile, default=None)
    if best is None:
        raise LookupError(f"tile {tile}: no dump of {stage}/{name} at 0x{region.base_addr:x}")
    return best


def swell_task(ctx: LayerContext, tile: Tile, dumps: Dumps) -> SwellTask | None:
    """The swelling DMA's work on one tile, or None when the tile has no swell stage (phase, conv2d)."""
    cost = swell.cost(ctx, tile)
    if cost.skipped:
        return None
    src, dst = tile.region("ifmap"), tile.region("ifmap_swelled")
    off_h, off_w = swell.tile_offset(ctx, tile)
    desc = {
        "src_base": src.base_addr, "src_bytes": src.size_bytes, "dst_base": dst.base_addr,
        "dst_bytes": dst.size_bytes, "layout": LAYOUT_CODES[src.layout], "c0": src.c0, "channels": src.shape[0],
        "in_h": src.shape[1], "in_w": src.shape[2], "out_h": dst.shape[1], "out_w": dst.shape[2],
        "stride_h": ctx.layer.stride[0], "stride_w": ctx.layer.stride[1], "off_h": off_h, "off_w": off_w,
        "fill": 0, "setup_cycles": ctx.hw.swell_dma.setup_cycles,
    }
    return SwellTask(tile.index, (_mem(_written(dumps, "load", "ifmap", tile.index, src)),),
                     (_mem(_written(dumps, "swell", "ifmap_swelled", tile.index, dst)),), desc, cost.cycles)


def _weight_source(method: str) -> tuple[str, str]:
    """(stage, region) holding the conv weight the MAC array reads."""
    return {"swell": ("weight_transpose", "weight_conv"), "phase": ("weight_transpose", "weight_phases"),
            "direct": ("load", "weight")}[method]


def mac_task(ctx: LayerContext, tile: Tile, dumps: Dumps, rows: int, cols: int) -> MacTask:
    """The MAC array's work on one tile: its folds, with the staged ifmap and weight as the dumps hold them."""
    method = ctx.plan.method
    staged = tile.region("ifmap_swelled" if method == "swell" else "ifmap")
    w_stage, w_name = _weight_source(method)
    weight = tile.region(w_name)
    loads = (_mem(_written(dumps, "swell" if method == "swell" else "load", staged.name, tile.index, staged)),
             _mem(_written(dumps, w_stage, w_name, tile.index, weight)))
    groups = tile.num_groups
    cg = ctx.layer.in_channels // ctx.layer.groups
    mg = tile.oc_count // groups
    w_m = weight.shape[1] if weight.layout == "POIHW" else weight.shape[0]
    folds: list[dict[str, int]] = []
    expect: list[MemFile] = []
    for job in tile.jobs:
        psum = tile.region(job.psum_region)
        expect.append(_mem(_written(dumps, "mac_array", psum.name, tile.index, psum)))
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
    cost = mac_array.cost(ctx, tile)
    return MacTask(tile.index, loads, tuple(expect), tuple(folds), cost.cycles, clear=tuple(expect))


def to_json(task: SwellTask | MacTask) -> dict[str, Any]:
    return {"kind": "swell" if isinstance(task, SwellTask) else "mac_array", **asdict(task)}


def words(mem: MemFile, word_bytes: int) -> tuple[int, int]:
    """First and last word index of a region in its buffer (regions start on word boundaries)."""
    return mem.base_addr // word_bytes, (mem.base_addr + mem.size_bytes - 1) // word_bytes


def rtl_dir() -> Path:
    """The shipped RTL: ``rtl/`` at the repository root."""
    return Path(__file__).resolve().parents[2] / "rtl"
