"""Swelling DMA: turns the compact ifmap tile into the zero-inserted, padded (or cropped) ifmap a stride-1
conv needs for a transposed conv.

Models: a streaming unit that reads the compact tile from the ifmap buffer and writes the whole swelled tile,
inserted zeros and border included, back into it, so its SRAM footprint and write traffic are ~stride^2 larger
than the input's. Cycles: ``setup + ceil(max(read, write) / bytes_per_cycle)`` (separate read and write ports).
Skipped (0 cycles) for conv2d and for the phase method. For a quantized layer the inserted pixels and the
border hold the input zero point (the int8 code of real 0), not 0. With ``mac_array.zero_gating`` the zeros it
inserts are tagged so the MAC array gates them: energy only (:mod:`simulator.energy`), the tags' storage is not
modelled. Deliberately ignores: zero-skipping compression and any reuse of overlapping rows between tiles.
"""

from __future__ import annotations

import numpy as np

from simulator.config import DmaConfig
from simulator.geometry import ceil_div, scatter_map
from simulator.mapping.base import IFMAP
from simulator.sram import Sram
from simulator.stages.common import SKIPPED, Dram, LayerContext, StageCost
from simulator.tiling import Tile

Pair = tuple[int, int]

# ------------------------------------------------------------------------------------------------- values (pure)


def place_on_canvas(x: np.ndarray, stride: Pair, offset: Pair, canvas_hw: Pair,
                    dtype: np.dtype | type = np.int8, fill: int = 0) -> np.ndarray:
    """(C, H, W) -> a (C, *canvas_hw) canvas of ``fill`` with x[:, i, j] at (offset + (i, j) * stride).

    stride > 1 inserts stride-1 fill values between pixels; a negative offset crops. Pixels falling outside the
    canvas are dropped. This is the swelling DMA's address pattern, and the MAC array's implicit-padding one.
    ``fill`` is the input zero point of a quantized layer (the int8 code of real 0), else 0.
    """
    c, h, w = x.shape
    if c > 1 and x.strides[0] == x.itemsize:  # x is channels-last in memory (read from NHWC): keep it so
        canvas = np.full((*canvas_hw, c), fill, dtype=dtype).transpose(2, 0, 1)
    else:
        canvas = np.full((c, *canvas_hw), fill, dtype=dtype)
    rows = scatter_map(0, h, 0, canvas_hw[0], stride[0], offset[0])
    cols = scatter_map(0, w, 0, canvas_hw[1], stride[1], offset[1])
    if rows.count and cols.count:
        canvas[:, rows.first_out:rows.first_out + (rows.count - 1) * stride[0] + 1:stride[0],
               cols.first_out:cols.first_out + (cols.count - 1) * stride[1] + 1:stride[1]] = \
            x[:, rows.first_in:rows.first_in + rows.count, cols.first_in:cols.first_in + cols.count]
    return canvas


def swell(x: np.ndarray, stride: Pair, pad_before: Pair, pad_after: Pair, fill: int = 0) -> np.ndarray:
    """Whole-tensor swelling: (C, H, W) -> insert s-1 ``fill`` values -> pad with ``fill`` (negative: crop)
    -> (C, H', W')."""
    _, h, w = x.shape
    hw = tuple((n - 1) * s + 1 + a + b for n, s, a, b in zip((h, w), stride, pad_before, pad_after, strict=True))
    return place_on_canvas(x, stride, pad_before, hw, fill=fill)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------------- cost (pure)


def swell_cycles(read_bytes: int, write_bytes: int, cfg: DmaConfig) -> int:
    return cfg.setup_cycles + ceil_div(max(read_bytes, write_bytes), cfg.bytes_per_cycle)


# ----------------------------------------------------------------------------------------------------- adapter


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    mapping = ctx.mapping
    if not mapping.swells:
        return SKIPPED
    src, dst = tile.region(IFMAP), tile.region(mapping.staged)
    return StageCost(cycles=swell_cycles(src.size_bytes, dst.size_bytes, ctx.hw.swell_dma),
                     sram_read_bytes={"ifmap": src.size_bytes}, sram_write_bytes={"ifmap": dst.size_bytes},
                     writes=(mapping.staged,))


def cost_key(ctx: LayerContext, tile: Tile) -> tuple[object, ...]:
    """Everything :func:`cost` reads from a tile (its regions' shapes): equal keys, equal costs."""
    return (id(tile.regions),)


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    mapping = ctx.mapping
    if not mapping.swells:
        return
    dst = tile.region(mapping.staged)
    fill = ctx.layer.quant.input.zero_point if ctx.layer.quant is not None else 0  # real 0 in the int8 code
    staged = place_on_canvas(sram.read(tile.region(IFMAP)), ctx.layer.stride, mapping.canvas_offset(tile),
                             dst.shape[1:], fill=fill)  # type: ignore[arg-type]
    sram.write(dst, staged)
