"""Output converter: requantizes a quantized layer's int32 accumulators to int8 and stores the int8 ofmap tile.

Models: a streaming unit after the write-back adder. Per output channel it applies the rounding profile's scale
(fbgemm's float32 path, or TFLite's Q31 multiplier and shift), adds the output zero point and clamps to int8
(ReLU clamps at the output zero point, the code of real 0). It reads the tile's int32 accumulators from the psum
buffer and writes the int8 tile **in place** at the same base address (each int8 lands at or below the int32 word
it came from, so a streaming converter never overwrites a word it has not read), then the DMA stores the int8
tile to DRAM (same cost function as the load). Cycles: ``writeback.setup_cycles + ceil(max(int32 bytes read,
int8 bytes written) / writeback.bytes_per_cycle)`` (it shares the write-back datapath's bandwidth), plus the
store. Skipped (0 cycles) for a layer without ``quant:``. The arithmetic is :mod:`simulator.quant`.

Deliberately ignores: a separate converter clock, per-channel register reload cost (the registers are loaded
with the bias, once per output-channel tile), and activation functions other than ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from simulator.config import DmaConfig, QuantConfig
from simulator.geometry import ceil_div
from simulator.quant import (
    clamp_output,
    default_float_bias,
    fp32_scales,
    requantize_fp32,
    requantize_integer,
)
from simulator.sram import Region, Sram
from simulator.stages.common import SKIPPED, Dram, LayerContext, StageCost
from simulator.stages.dma_load import activation_transfer, dma_cycles
from simulator.tiling import Tile

REGION = "ofmap_int8"

# ------------------------------------------------------------------------------------------------- values (pure)


@dataclass(frozen=True)
class ConverterRegisters:
    """The converter's per-output-channel registers. ``fp32_rne``: float32 ``multiplier``, ``bias_float`` and
    ``atws`` (s_x * s_w[c]), and whether the weights are per channel; integer profiles: Q31 ``multiplier`` and
    ``shift`` (int64)."""

    rounding: str
    zero_point: int
    activation: str
    multiplier: np.ndarray
    shift: np.ndarray | None = None
    bias_float: np.ndarray | None = None
    atws: np.ndarray | None = None
    per_channel: bool = False


def registers(quant: QuantConfig, bias: np.ndarray) -> ConverterRegisters:
    """The registers a compiler would load for this layer (bias: the layer's int32 bias, (C_out,))."""
    c_out = bias.shape[0]
    out = quant.output
    if quant.rounding == "fp32_rne":
        atws, multiplier = fp32_scales(quant.input.scale, quant.weight.scales(c_out), out.scale)
        bias_float = (np.asarray(quant.bias_float, dtype=np.float32) if quant.bias_float is not None
                      else default_float_bias(bias, atws))
        return ConverterRegisters(quant.rounding, out.zero_point, quant.activation, multiplier,
                                  bias_float=bias_float, atws=atws, per_channel=quant.weight.per_channel)
    mult, shift = quant.registers(c_out)
    return ConverterRegisters(quant.rounding, out.zero_point, quant.activation, np.asarray(mult, dtype=np.int64),
                              np.asarray(shift, dtype=np.int64))


def convert(acc: np.ndarray, bias: np.ndarray, regs: ConverterRegisters, channels: slice) -> np.ndarray:
    """int32 accumulators (C, H, W) of output channels ``channels`` (bias included) -> int8 (C, H, W).

    fp32_rne adds the bias in float32 as fbgemm does, so it takes the bias-free sum ``acc - bias`` (exact in
    int64) and the float32 bias; the integer profiles scale the int32 accumulator itself."""
    if regs.rounding == "fp32_rne":
        assert regs.bias_float is not None and regs.atws is not None
        no_bias = acc.astype(np.int64) - bias.astype(np.int64)[:, None, None]
        atws = regs.atws[channels] if regs.per_channel else regs.atws
        scaled = requantize_fp32(no_bias, regs.bias_float[channels], atws, regs.multiplier[channels],
                                 regs.per_channel)
    else:
        assert regs.shift is not None
        scaled = requantize_integer(acc, regs.multiplier[channels], regs.shift[channels], regs.rounding)  # type: ignore[arg-type]
    return clamp_output(scaled, regs.zero_point, regs.activation)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------- cost (pure)


def convert_cycles(read_bytes: int, write_bytes: int, cfg: DmaConfig) -> int:
    """The converter streams on the write-back datapath: its set-up and bandwidth (``hardware.writeback``)."""
    return cfg.setup_cycles + ceil_div(max(read_bytes, write_bytes), cfg.bytes_per_cycle)


# ----------------------------------------------------------------------------------------------------- adapter


def int8_region(tile: Tile) -> Region:
    """The int8 ofmap tile: the int32 ``ofmap`` region's shape and layout, narrowed in place at its address."""
    return replace(tile.region("ofmap"), name=REGION, dtype="int8")


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    if ctx.layer.quant is None or not tile.last_slice:  # converts once per spatial tile, after its last slice
        return SKIPPED
    hw, layer = ctx.hw, ctx.layer
    src, dst = tile.region("ofmap"), int8_region(tile)
    out_h, out_w = layer.output_hw
    desc, conflict = activation_transfer(dst, hw.dma, hw.sram.psum, tile.oc == (0, layer.out_channels),
                                         tile.oh == (0, out_h), tile.ow == (0, out_w))
    cycles = convert_cycles(src.size_bytes, dst.size_bytes, hw.writeback)
    cycles += dma_cycles(dst.size_bytes, desc, hw.dma, conflict)
    return StageCost(cycles=cycles, sram_read_bytes={"psum": src.size_bytes + dst.size_bytes},
                     sram_write_bytes={"psum": dst.size_bytes}, dram_write_bytes=dst.size_bytes, writes=(REGION,))


def cost_key(ctx: LayerContext, tile: Tile) -> tuple[object, ...]:
    """Everything :func:`cost` reads from a tile (the ofmap region's shape and slot, whether this is the last
    input-channel slice, which ofmap axes the tile spans whole): equal keys, equal costs (see
    ``dma_load.cost_key``)."""
    out_h, out_w = ctx.layer.output_hw
    return (id(tile.regions), tile.last_slice, tile.oc == (0, ctx.layer.out_channels), tile.oh == (0, out_h),
            tile.ow == (0, out_w))


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    quant = ctx.layer.quant
    if quant is None or not tile.last_slice:
        return
    bias = sram.read(tile.region("bias"))
    regs = registers(quant, _full_bias(dram, bias, tile))  # per channel: a few scalar operations each
    acc = np.array(sram.read(tile.region("ofmap")))  # read before the in-place int8 write
    out = convert(acc, bias, regs, slice(tile.oc[0], tile.oc[1]))
    region = int8_region(tile)
    sram.write(region, out)
    rows, cols = slice(tile.oh[0], tile.oh[1]), slice(tile.ow[0], tile.ow[1])
    if dram.acc is not None:
        dram.acc[tile.n, tile.oc[0]:tile.oc[1], rows, cols] = acc
    dram.ofmap[tile.n, tile.oc[0]:tile.oc[1], rows, cols] = sram.read(region)


def _full_bias(dram: Dram, tile_bias: np.ndarray, tile: Tile) -> np.ndarray:
    """The whole layer's bias with this tile's SRAM copy in place (registers are indexed by output channel)."""
    full = np.array(dram.bias, dtype=np.int32)
    full[tile.oc[0]:tile.oc[1]] = tile_bias
    return full
