"""Weight-transpose unit: turns a transposed conv's weight into the conv weight(s) the MAC array executes.

Models: for the swelling method, a spatial flip of every kernel and a swap of the in/out channel axes **per
group** (torch's (C_in, C_out/g, kh, kw) -> (C_out, C_in/g, kh, kw)); for the phase method, a phase splitter
that cuts the flipped, channel-swapped kernel into stride_h*stride_w sub-kernels (padded to a common size with
0, or with the weight zero point for a quantized layer, so that w - w_zp is 0 there). It runs on every tile that
loads weights: once per output-channel tile while the reduction is one slice (the weights stay resident across
its spatial tiles), once per slice with the slices outside the spatial tiles, and on every tile with the slices
innermost (each tile reloads its slice). Cycles:
``setup + ceil(max(read, write) / bytes_per_cycle)``. Skipped for conv2d (weights are already conv weights).
Deliberately ignores: weight compression and sparsity.
"""

from __future__ import annotations

import numpy as np

from simulator.config import DmaConfig
from simulator.geometry import ceil_div
from simulator.mapping.base import WEIGHT
from simulator.mapping.phase import phase_kernel, split_phases
from simulator.mapping.swell import flip_and_swap
from simulator.sram import Sram
from simulator.stages.common import SKIPPED, Dram, LayerContext, StageCost
from simulator.tiling import Tile

__all__ = ["cost", "cost_key", "execute", "flip_and_swap", "phase_kernel", "split_phases", "transpose_cycles"]

# The value functions (flip_and_swap, split_phases) belong to the mappings that use them
# (simulator/mapping/swell.py, simulator/mapping/phase.py); this module is the unit that runs them.

# -------------------------------------------------------------------------------------------------- cost (pure)


def transpose_cycles(read_bytes: int, write_bytes: int, cfg: DmaConfig) -> int:
    return cfg.setup_cycles + ceil_div(max(read_bytes, write_bytes), cfg.bytes_per_cycle)


# ----------------------------------------------------------------------------------------------------- adapter


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    out_name = ctx.mapping.conv_weight
    if out_name == WEIGHT or not tile.load_weight:
        return SKIPPED
    src, dst = tile.region(WEIGHT), tile.region(out_name)
    return StageCost(cycles=transpose_cycles(src.size_bytes, dst.size_bytes, ctx.hw.weight_transpose),
                     sram_read_bytes={"weight": src.size_bytes}, sram_write_bytes={"weight": dst.size_bytes},
                     writes=(out_name,))


def cost_key(ctx: LayerContext, tile: Tile) -> tuple[object, ...]:
    """Everything :func:`cost` reads from a tile (its regions' shapes, whether it loads weights)."""
    return id(tile.regions), tile.load_weight


def _owned(converted: np.ndarray | None) -> np.ndarray:
    """The converted weight in memory of its own (a flip is a view of the SRAM image, which later tiles overwrite)."""
    assert converted is not None  # only mappings with a conv-weight region of their own reach the unit
    return converted if converted.base is None else converted.copy()


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    mapping = ctx.mapping
    if mapping.conv_weight == WEIGHT or not tile.load_weight:
        return
    src = tile.region(WEIGHT)
    # a pure function of the loaded bytes: the same slice's weights (reloaded for every spatial tile when the input
    # channels are sliced) are converted once and the result written again
    if ctx.weights_recur:  # kept for a later tile loading the same bytes
        converted = ctx.memo.get(("weight_transpose", tile.num_groups, src.shape), sram.raw(src),
                                 lambda: _owned(mapping.transform_weight(sram.read(src), tile.num_groups)),
                                 lambda out: out.nbytes)
    else:
        converted = mapping.transform_weight(sram.read(src), tile.num_groups)
    sram.write(tile.region(mapping.conv_weight), converted)  # type: ignore[arg-type]
