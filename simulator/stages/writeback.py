"""Write-back: adds the bias to the accumulators, narrows to int32, and stores the ofmap tile to DRAM.

Models: a streaming adder over the psum buffer (``writeback`` bandwidth; reads psum and bias, writes the ofmap
tile in place for one conv job, or interleaves the phase outputs ``ofmap[s*m + phase] = psum_phase[m]`` into a
separate ofmap region for the phase method), followed by the DRAM store through the DMA (same cost function
as the load). The bias add is an int32 addition under the accumulator overflow policy. For a quantized layer
the int32 tile stays in SRAM for the output converter (:mod:`simulator.stages.output_convert`), which stores
int8; this stage then does not touch DRAM. Deliberately ignores activation functions (the converter clamps).
"""

from __future__ import annotations

import numpy as np

from simulator.config import DmaConfig
from simulator.fixedpoint import add_bias_int32, bias_add_is_safe
from simulator.geometry import ceil_div
from simulator.sram import Sram
from simulator.stages.common import Dram, LayerContext, StageCost
from simulator.stages.dma_load import activation_transfer, dma_cycles
from simulator.tiling import ConvJob, Tile

# ------------------------------------------------------------------------------------------------- values (pure)


def out_slice(ofmap: np.ndarray, part_shape: tuple[int, ...], job: ConvJob) -> np.ndarray:
    """The strided view of the tile ofmap that a job's output (M, h, w) lands on: ``out_start + (r, c) *
    out_step``."""
    (r0, c0), (sr, sc) = job.out_start, job.out_step
    h, w = part_shape[1:]
    return ofmap[:, r0:r0 + (h - 1) * sr + 1:sr, c0:c0 + (w - 1) * sc + 1:sc]


def interleave(ofmap: np.ndarray, part: np.ndarray, job: ConvJob) -> None:
    """Place a job's output (M, h, w) into the tile ofmap at ``out_start + (r, c) * out_step`` (in place)."""
    out_slice(ofmap, part.shape, job)[...] = part


# -------------------------------------------------------------------------------------------------- cost (pure)


def bias_add_cycles(psum_bytes: int, cfg: DmaConfig) -> int:
    return cfg.setup_cycles + ceil_div(psum_bytes, cfg.bytes_per_cycle)


# ----------------------------------------------------------------------------------------------------- adapter


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    hw = ctx.hw
    ofmap, bias = tile.region("ofmap"), tile.region("bias")
    psum = sum(tile.region(job.psum_region).size_bytes for job in tile.jobs)
    desc, conflict = activation_transfer(ofmap, hw.dma, hw.sram.psum, tile.oc == (0, ctx.layer.out_channels),
                                         tile.oh == (0, ctx.layer.output_hw[0]))
    cycles = bias_add_cycles(max(psum, ofmap.size_bytes), hw.writeback)
    stored = 0 if ctx.layer.quant is not None else ofmap.size_bytes  # a quantized layer's store is int8, later
    cycles += dma_cycles(stored, desc, hw.dma, conflict)
    return StageCost(cycles=cycles,
                     sram_read_bytes={"psum": psum + stored, "weight": bias.size_bytes},
                     sram_write_bytes={"psum": ofmap.size_bytes}, dram_write_bytes=stored,
                     writes=("ofmap",))


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    policy = ctx.hw.accumulator.on_overflow
    bias = sram.read(tile.region("bias"))
    column = bias[:, None, None]
    region = tile.region("ofmap")
    origin = (tile.n, tile.oc[0], tile.oh[0], 0)
    safe = bias_add_is_safe(ctx.layer.reduction_length, bias)  # then a plain int32 add is exact
    if ctx.plan.method == "phase":
        # interleave the phase psums into one int32 tile (channels-last memory, as NHWC stores it); outputs of
        # phases with no kernel tap are bias alone. When the add cannot overflow, it is fused into the
        # interleave; otherwise one widening add and one narrowing over the tile (the first overflow reported
        # in NCHW order).
        c, h, w = region.shape
        out = np.empty((h, w, c), dtype=np.int32).transpose(2, 0, 1)
        if sum(job.out_hw[0] * job.out_hw[1] for job in tile.jobs) != h * w:
            out[...] = column if safe else 0
        for job in tile.jobs:
            part = sram.read(tile.region(job.psum_region))
            if safe:
                np.add(part, column, out=out_slice(out, part.shape, job))
            else:
                interleave(out, part, job)
        result = out if safe else add_bias_int32(out, bias, policy, origin=origin)
    else:
        psum = sram.read(tile.region("psum"))
        result = np.add(psum, column, dtype=np.int32) if safe else add_bias_int32(psum, bias, policy, origin=origin)
    sram.write(region, result)
    if ctx.layer.quant is None:  # a quantized layer's accumulators go on to the output converter
        dram.ofmap[tile.n, tile.oc[0]:tile.oc[1], tile.oh[0]:tile.oh[1], :] = sram.read(region)
