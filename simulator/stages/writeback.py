"""Write-back: adds the bias to the accumulators, narrows to int32, and stores the ofmap tile to DRAM.

Models: a streaming adder over the psum buffer (``writeback`` bandwidth; reads psum and bias, writes the ofmap
tile in place for one conv job, or interleaves the phase outputs ``ofmap[s*m + phase] = psum_phase[m]`` into a
separate ofmap region for the phase method), followed by the DRAM store through the DMA (same cost function
as the load). It runs once per spatial tile, after its last input-channel slice (skipped on the others). The bias
add is an int32 addition under the accumulator overflow policy. For a quantized layer the int32 tile stays in
SRAM for the output converter (:mod:`simulator.stages.output_convert`), which stores int8; this stage then does
not touch DRAM. Deliberately ignores activation functions (the converter clamps).
"""

from __future__ import annotations

from simulator.config import DmaConfig
from simulator.errors import AccumulatorOverflowError
from simulator.fixedpoint import bias_add_is_safe
from simulator.geometry import ceil_div
from simulator.mapping.base import BIAS, OFMAP
from simulator.mapping.phase import interleave, out_slice
from simulator.sram import Sram
from simulator.stages.common import SKIPPED, Dram, LayerContext, StageCost
from simulator.stages.dma_load import activation_transfer, dma_cycles
from simulator.tiling import Tile

__all__ = ["bias_add_cycles", "cost", "cost_key", "execute", "interleave", "out_slice"]

# -------------------------------------------------------------------------------------------------- cost (pure)


def bias_add_cycles(psum_bytes: int, cfg: DmaConfig) -> int:
    return cfg.setup_cycles + ceil_div(psum_bytes, cfg.bytes_per_cycle)


# ----------------------------------------------------------------------------------------------------- adapter


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    if not tile.last_slice:  # the psums of a spatial tile are written back once, after its last input slice
        return SKIPPED
    hw, layer = ctx.hw, ctx.layer
    ofmap, bias = tile.region(OFMAP), tile.region(BIAS)
    psum = sum(tile.region(job.psum_region).size_bytes for job in tile.jobs)
    out_h, out_w = layer.output_hw
    desc, conflict = activation_transfer(ofmap, hw.dma, hw.sram.psum, tile.oc == (0, layer.out_channels),
                                         tile.oh == (0, out_h), tile.ow == (0, out_w))
    cycles = bias_add_cycles(max(psum, ofmap.size_bytes), hw.writeback)
    stored = 0 if ctx.layer.quant is not None else ofmap.size_bytes  # a quantized layer's store is int8, later
    cycles += dma_cycles(stored, desc, hw.dma, conflict)
    return StageCost(cycles=cycles,
                     sram_read_bytes={"psum": psum + stored, "weight": bias.size_bytes},
                     sram_write_bytes={"psum": ofmap.size_bytes}, dram_write_bytes=stored,
                     writes=(OFMAP,))


def cost_key(ctx: LayerContext, tile: Tile) -> tuple[object, ...]:
    """Everything :func:`cost` reads from a tile: equal keys, equal costs (see ``dma_load.cost_key``)."""
    out_h, out_w = ctx.layer.output_hw
    return (id(tile.regions), id(tile.jobs), tile.last_slice, tile.oc == (0, ctx.layer.out_channels),
            tile.oh == (0, out_h), tile.ow == (0, out_w))


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    if not tile.last_slice:
        return
    bias = sram.read(tile.region(BIAS))
    region = tile.region(OFMAP)
    safe = bias_add_is_safe(ctx.layer.reduction_length, bias)  # then a plain int32 add is exact
    parts = [sram.read(tile.region(job.psum_region)) for job in tile.jobs]
    origin = (tile.n, tile.oc[0], tile.oh[0], tile.ow[0])
    try:
        result = ctx.mapping.write_back(parts, tile.jobs, region.shape, bias,  # type: ignore[arg-type]
                                        ctx.hw.accumulator.on_overflow, safe, origin)
    except AccumulatorOverflowError as err:  # noted for the layer (raised in NCHW order at its end)
        ctx.overflows.append(err)
        result = ctx.mapping.write_back(parts, tile.jobs, region.shape, bias, "wrap", safe, origin)  # type: ignore
    sram.write(region, result)
    if ctx.layer.quant is None:  # a quantized layer's accumulators go on to the output converter
        dram.ofmap[tile.n, tile.oc[0]:tile.oc[1], tile.oh[0]:tile.oh[1], tile.ow[0]:tile.ow[1]] = sram.read(region)
