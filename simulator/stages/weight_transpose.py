"""Weight-transpose unit: turns a transposed conv's weight into the conv weight(s) the MAC array executes.

Models: for the swelling method, a spatial flip of every kernel and a swap of the in/out channel axes **per
group** (torch's (C_in, C_out/g, kh, kw) -> (C_out, C_in/g, kh, kw)); for the phase method, a phase splitter
that cuts the flipped, channel-swapped kernel into stride_h*stride_w sub-kernels (padded to a common size with
0, or with the weight zero point for a quantized layer, so that w - w_zp is 0 there). It runs once per
output-channel tile (weights stay resident across the tile's rows). Cycles:
``setup + ceil(max(read, write) / bytes_per_cycle)``. Skipped for conv2d (weights are already conv weights).
Deliberately ignores: weight compression and sparsity.
"""

from __future__ import annotations

import numpy as np

from simulator.config import DmaConfig
from simulator.geometry import ceil_div
from simulator.sram import Sram
from simulator.stages.common import SKIPPED, Dram, LayerContext, StageCost
from simulator.tiling import PhaseAxis, Tile, phase_pairs

# ------------------------------------------------------------------------------------------------- values (pure)


def flip_and_swap(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_in, C_out/g, kh, kw) -> (C_out, C_in/g, kh, kw), each kernel flipped in both spatial axes."""
    c_in, cout_g, kh, kw = weight.shape
    cin_g = c_in // groups
    # (G*Cin_g, Cout_g, kh, kw) -> (G, Cin_g, Cout_g, kh, kw) -> (G, Cout_g, Cin_g, kh, kw) -> flip kh, kw
    per_group = weight.reshape(groups, cin_g, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return per_group.reshape(groups * cout_g, cin_g, kh, kw)  # a view when groups == 1 (the SRAM write copies)


def phase_kernel(weight: np.ndarray, groups: int, ph: PhaseAxis, pw: PhaseAxis, pad: int = 0) -> np.ndarray:
    """The conv weight of one output phase: (C_out, C_in/g, len(ph.taps), len(pw.taps)), ``pad`` (the weight zero
    point of a quantized layer, else 0) where a sub-kernel tap has no original tap. Taps are already in flipped
    (increasing input offset) order."""
    return _phase_from_swapped(_swap(weight, groups), ph, pw, pad)


def _swap(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_in, C_out/g, kh, kw) -> (C_out, C_in/g, kh, kw): the per-group channel swap alone (original tap order)."""
    return flip_and_swap(weight, groups)[..., ::-1, ::-1]


def _phase_from_swapped(swapped: np.ndarray, ph: PhaseAxis, pw: PhaseAxis, pad: int = 0) -> np.ndarray:
    out = np.full((*swapped.shape[:2], len(ph.taps), len(pw.taps)), pad, dtype=swapped.dtype)
    rows = [(u, t) for u, t in enumerate(ph.taps) if t is not None]
    cols = [(v, t) for v, t in enumerate(pw.taps) if t is not None]
    for u, t in rows:
        for v, s in cols:
            out[:, :, u, v] = swapped[:, :, t, s]
    return out


def split_phases(weight: np.ndarray, groups: int, pairs: tuple[tuple[PhaseAxis, PhaseAxis], ...],
                 pad: int = 0) -> np.ndarray:
    """(C_in, C_out/g, kh, kw) -> (num_phases, C_out, C_in/g, kh', kw'), one sub-kernel per 2-D phase, padded
    with ``pad`` (the weight zero point of a quantized layer: w - w_zp is then 0 there)."""
    if not pairs:
        return np.zeros((0, weight.shape[1] * groups, weight.shape[0] // groups, 1, 1), dtype=weight.dtype)
    swapped = _swap(weight, groups)  # once for all phases
    return np.stack([_phase_from_swapped(swapped, ph, pw, pad) for ph, pw in pairs])


# -------------------------------------------------------------------------------------------------- cost (pure)


def transpose_cycles(read_bytes: int, write_bytes: int, cfg: DmaConfig) -> int:
    return cfg.setup_cycles + ceil_div(max(read_bytes, write_bytes), cfg.bytes_per_cycle)


# ----------------------------------------------------------------------------------------------------- adapter

_OUTPUT = {"swell": "weight_conv", "phase": "weight_phases"}


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    out_name = _OUTPUT.get(ctx.plan.method)
    if out_name is None or not tile.load_weight:
        return SKIPPED
    src, dst = tile.region("weight"), tile.region(out_name)
    return StageCost(cycles=transpose_cycles(src.size_bytes, dst.size_bytes, ctx.hw.weight_transpose),
                     sram_read_bytes={"weight": src.size_bytes}, sram_write_bytes={"weight": dst.size_bytes},
                     writes=(out_name,))


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    out_name = _OUTPUT.get(ctx.plan.method)
    if out_name is None or not tile.load_weight:
        return
    weight = sram.read(tile.region("weight"))
    if ctx.plan.method == "swell":
        sram.write(tile.region(out_name), flip_and_swap(weight, tile.num_groups))
    else:
        pad = ctx.layer.quant.weight.zero_point if ctx.layer.quant is not None else 0
        sram.write(tile.region(out_name), split_phases(weight, tile.num_groups, phase_pairs(ctx.layer), pad))
