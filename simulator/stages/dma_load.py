"""DMA load: moves a tile's ifmap rows, and (on the tiles the plan marks ``load_weight``: the first of an
output-channel tile, or of each input-channel slice, per the loop order) its weights and bias, from DRAM into
the ifmap and weight SRAM buffers.

Models: sustained bandwidth (``bytes_per_cycle``), a fixed set-up cost per descriptor (one per contiguous DRAM
run), and SRAM bank conflicts when a layout conversion scatters a DRAM burst over few banks
(``dram_layout: NCHW`` into an NHWC or NC1HWC0 buffer). The same cost function serves the output store of the
write-back stage. Deliberately ignores: DRAM page/row-buffer effects, refresh, outstanding-request limits and
contention with other masters.
"""

from __future__ import annotations

import numpy as np

from simulator.config import BufferConfig, DmaConfig, DramDmaConfig
from simulator.geometry import ceil_div
from simulator.mapping.base import BIAS, IFMAP, WEIGHT
from simulator.sram import Region, Sram, element_stride_bytes
from simulator.stages.common import Dram, LayerContext, StageCost
from simulator.tiling import Tile

# ------------------------------------------------------------------------------------------------- cost (pure)


def bank_conflict_factor(stride_bytes: int, bytes_per_cycle: int, itemsize: int, buf: BufferConfig) -> int:
    """Cycles one DMA beat needs when its ``bytes_per_cycle // itemsize`` elements land ``stride_bytes`` apart.

    Each bank serves one word per cycle; elements sharing a word merge. 1 means conflict-free.
    """
    n = max(1, bytes_per_cycle // itemsize)
    words = np.unique(np.arange(n, dtype=np.int64) * stride_bytes // buf.bank_width_bytes)
    return int(np.bincount(words % buf.num_banks).max())


def dma_cycles(num_bytes: int, descriptors: int, cfg: DmaConfig, conflict_factor: int = 1) -> int:
    """setup_cycles * descriptors + ceil(bytes / bytes_per_cycle) * conflict_factor (0 for nothing to move)."""
    if num_bytes == 0:
        return 0
    return cfg.setup_cycles * descriptors + ceil_div(num_bytes, cfg.bytes_per_cycle) * conflict_factor


def activation_transfer(region: Region, dma: DramDmaConfig, buf: BufferConfig, full_channels: bool,
                        full_height: bool = False, full_width: bool = True) -> tuple[int, int]:
    """(descriptors, conflict factor) of moving an activation region between DRAM and SRAM.

    One descriptor per contiguous DRAM run: NCHW rows of one channel are contiguous across channels only when
    the region spans the whole height; NHWC rows only when it spans all channels. A region narrower than the
    tensor (a width tile) is one run per row of each channel (NCHW, NC1HWC0 block) or per row (NHWC).
    """
    c, h, w = region.shape
    itemsize = np.dtype(region.dtype).itemsize
    rows = 1 if full_width else h
    if dma.dram_layout == "NCHW":
        stride = element_stride_bytes(region.layout, region.shape, region.c0, itemsize)
        return c * rows, bank_conflict_factor(stride, dma.bytes_per_cycle, itemsize, buf)
    if region.layout == "NHWC":
        return (rows if full_channels else h * w), 1
    if region.layout == "NC1HWC0":
        return ceil_div(c, region.c0) * rows, 1
    if not full_width:
        return c * h, 1
    return (1 if full_height else c), 1


# ---------------------------------------------------------------------------------------------------- adapter


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    hw = ctx.hw
    ifmap = tile.region(IFMAP)
    _, c_in, h_in, w_in = ctx.layer.input_shape
    desc, conflict = activation_transfer(ifmap, hw.dma, hw.sram.ifmap, tile.ic == (0, c_in),
                                         tile.in_rows == (0, h_in), tile.in_cols == (0, w_in))
    cycles = dma_cycles(ifmap.size_bytes, desc, hw.dma, conflict)
    written = {"ifmap": ifmap.size_bytes}
    writes = [IFMAP]
    if tile.load_weight:
        weight, bias = tile.region(WEIGHT), tile.region(BIAS)
        wbytes = weight.size_bytes + bias.size_bytes
        cycles += dma_cycles(weight.size_bytes, weight_descriptors(ctx, weight.shape), hw.dma)
        cycles += dma_cycles(bias.size_bytes, 1, hw.dma)
        written["weight"] = wbytes
        writes += [WEIGHT, BIAS]
    return StageCost(cycles=cycles, sram_write_bytes=written, dram_read_bytes=sum(written.values()),
                     writes=tuple(writes))


def cost_key(ctx: LayerContext, tile: Tile) -> tuple[object, ...]:
    """Everything :func:`cost` reads from a tile: tiles with equal keys cost the same (the pipeline computes the
    cost once per key). Region tuples are shared by the tiles of one shape and slot, so their identity stands
    for their shapes."""
    _, c_in, h_in, w_in = ctx.layer.input_shape
    return (id(tile.regions), tile.ic == (0, c_in), tile.in_rows == (0, h_in), tile.in_cols == (0, w_in),
            tile.load_weight)


def weight_descriptors(ctx: LayerContext, shape: tuple[int, ...]) -> int:
    """Contiguous DRAM runs of a tile's weight slice: a conv weight's output-channel slice is one run (one per
    output channel when it holds a slice of the input channels); a transposed weight (C_in, C_out/g, kh, kw)
    sliced to fewer than C_out/g columns is one run per input channel."""
    layer = ctx.layer
    if layer.is_transposed:
        return shape[0] if shape[1] < layer.out_channels // layer.groups else 1
    return shape[0] if shape[1] < layer.in_channels // layer.groups else 1


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    (i0, i1), (j0, j1), (c0, c1) = tile.in_rows, tile.in_cols, tile.ic
    sram.write(tile.region(IFMAP), dram.ifmap[tile.n, c0:c1, i0:i1, j0:j1])
    if tile.load_weight:
        sram.write(tile.region(WEIGHT), weight_slice(ctx, tile, dram.weight))
        sram.write(tile.region(BIAS), dram.bias[tile.oc[0]:tile.oc[1]])


def weight_slice(ctx: LayerContext, tile: Tile, weight: np.ndarray) -> np.ndarray:
    """The part of the DRAM weight a tile needs, in torch's layout for the op."""
    layer = ctx.layer
    if not layer.is_transposed:  # (C_out, C_in/g, kh, kw): the tile's input channels within their group
        i0 = tile.ic[0] - tile.groups[0] * (layer.in_channels // layer.groups)
        return weight[tile.oc[0]:tile.oc[1], i0:i0 + tile.region(WEIGHT).shape[1]]
    cout_g = layer.out_channels // layer.groups
    j0 = tile.oc[0] - tile.groups[0] * cout_g
    j_n = tile.region(WEIGHT).shape[1]
    return weight[tile.ic[0]:tile.ic[1], j0:j0 + j_n]
