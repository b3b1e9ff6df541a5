"""MAC array: a rows x cols systolic array running conv jobs (int8 x int8 products, int32 accumulation).

Values: every job is a conv of the staged ifmap (placed on a zero canvas: implicit padding or crop) with a conv
weight, with stride and kernel dilation, per group. Products are widened before multiplying; sums are exact
(float64 BLAS is exact for integer sums below 2**53, far above any int8 reduction) and narrowed to int32 by
:mod:`simulator.fixedpoint` under the accumulator policy (the in-order scan when the reduction is long enough
to overflow mid-sum).

Cycles: the classic fold model (as SCALE-Sim). A job is, per group, an (E x K) . (K x N) product, with E output
pixels, K = kh*kw*C_in/g, N output channels of the group in the tile.
``os``: (Sr, Sc, T) = (E, N, K); ``ws``: (Sr, Sc, T) = (K, N, E). folds = ceil(Sr/rows) * ceil(Sc/cols).
Cycles per fold: ``T + rows + cols - 2`` (os), ``2*rows + cols + T - 2`` (ws, the first ``rows`` cycles
preloading weights). With ``weight_double_buffer`` (ws only) the preload of a fold hides under the previous
fold: ``rows + folds * (rows + cols + T - 2)``. Groups and phase jobs run one after another. Deliberately
ignores: SRAM read-port bandwidth limits on feeding the array, partial-sum spills (K is never tiled), clock
gating of idle PEs and zero skipping (zeros are issued like any operand: that is what ``macs_issued`` counts).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from simulator.config import MacArrayConfig
from simulator.fixedpoint import (
    OverflowPolicy,
    narrow_to_int32,
    ordered_accumulate,
    raise_overflow,
    reduction_is_order_free,
)
from simulator.geometry import ceil_div, scatter_map, useful_macs
from simulator.sram import Sram
from simulator.stages.common import Dram, LayerContext, StageCost
from simulator.stages.swell import place_on_canvas
from simulator.tiling import ConvJob, Tile

Pair = tuple[int, int]
COLS_BUDGET_ELEMENTS = 1 << 22  # at most ~32 MiB of float64 im2col columns at a time
F32_EXACT_CHANNELS = 1024  # 1024 * 2**14 = 2**24: float32 sums of this many int8 products are exact
TAPS_GEMM_BUDGET_ELEMENTS = 1 << 23  # largest all-taps float32 product (32 MiB) before going tap by tap
SHIFTED_MIN_CHANNELS = 8  # below this many channels per group the per-tap GEMMs are too thin: use im2col

# ------------------------------------------------------------------------------------------------- values (pure)


def _columns(canvas: np.ndarray, kernel_hw: Pair, stride: Pair, dilation: Pair, rows: slice, out_w: int,
             groups: int) -> np.ndarray:
    """im2col of output rows ``rows``: (G, E, K) with K ordered (kernel row, kernel col, channel)."""
    kh, kw = kernel_hw
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    win = sliding_window_view(canvas, span, axis=(1, 2))  # (C, Hc', Wc', span_h, span_w), a view
    win = win[:, rows.start * stride[0]:(rows.stop - 1) * stride[0] + 1:stride[0],
              :(out_w - 1) * stride[1] + 1:stride[1], ::dilation[0], ::dilation[1]]
    c, e_h, e_w = win.shape[:3]
    # (G*Cg, Eh, Ew, kh, kw) -> (G, Eh, Ew, kh, kw, Cg) -> (G, E, K)
    win = win.reshape(groups, c // groups, e_h, e_w, kh, kw).transpose(0, 2, 3, 4, 5, 1)
    return win.reshape(groups, e_h * e_w, kh * kw * (c // groups))


def _canvas_hwc(x: np.ndarray, offset: Pair, canvas_hw: Pair) -> np.ndarray:
    """(C, H, W) int8 -> a zero (Hc, Wc, C) float32 canvas with x[:, i, j] at offset + (i, j) (negative crops).

    The address pattern of :func:`simulator.stages.swell.place_on_canvas` at stride 1, channels last, so that
    the operands of one kernel tap for consecutive output pixels are consecutive rows of channel vectors.
    """
    c, h, w = x.shape
    canvas = np.zeros((*canvas_hw, c), dtype=np.float32)
    rows = scatter_map(0, h, 0, canvas_hw[0], 1, offset[0])
    cols = scatter_map(0, w, 0, canvas_hw[1], 1, offset[1])
    if rows.count and cols.count:
        canvas[rows.first_out:rows.first_out + rows.count, cols.first_out:cols.first_out + cols.count] = \
            x[:, rows.first_in:rows.first_in + rows.count, cols.first_in:cols.first_in + cols.count].transpose(1, 2, 0)
    return canvas


def _conv_shifted(x: np.ndarray, weight: np.ndarray, groups: int, dilation: Pair, in_offset: Pair,
                  out_hw: Pair) -> np.ndarray:
    """Exact int64 sums (M, OH, OW) of a stride-1 conv by shifted GEMMs on a channels-last canvas (no im2col).

    On the canvas flattened to (Hc*Wc, C), tap (u, v) of output (r, c) reads row ``r*Wc + c + shift(u, v)``,
    ``shift = u*dh*Wc + v*dw``: the outputs are ``sum over taps of (canvas @ W_tap)[q + shift]`` for q = r*Wc + c
    < P = (OH-1)*Wc + OW (columns c >= OW are computed and dropped). Per group and channel chunk, one GEMM
    ``canvas @ [W_tap for every tap]`` (N = taps * M/g: wide enough for BLAS to run near its peak), then one
    shifted add per tap; when that product would exceed TAPS_GEMM_BUDGET_ELEMENTS, one (P, C) x (C, M/g) GEMM per
    tap on the shifted canvas slice instead.
    Exact: a float32 GEMM over at most F32_EXACT_CHANNELS channels of int8 x int8 products only ever holds
    partial sums of products of magnitude <= 2**14, so integers of magnitude <= 2**24 (exactly representable);
    the float64 accumulator over taps and chunks stays far below 2**53.
    """
    m, cg, kh, kw = weight.shape
    oh, ow = out_hw
    canvas_hw = (oh + dilation[0] * (kh - 1), ow + dilation[1] * (kw - 1))
    wc = canvas_hw[1]
    flat = _canvas_hwc(x, in_offset, canvas_hw).reshape(-1, x.shape[0])
    mg = m // groups
    # (M, Cg, kh, kw) -> (kh, kw, M, Cg): per tap an (M, Cg) operand used transposed, group g in rows g*Mg:(g+1)*Mg
    # (this gather keeps Cg innermost-but-one and runs ~3x faster than producing (kh, kw, Cg, M))
    w = np.ascontiguousarray(weight.transpose(2, 3, 0, 1), dtype=np.float32)
    shifts = [u * dilation[0] * wc + v * dilation[1] for u in range(kh) for v in range(kw)]
    p = (oh - 1) * wc + ow
    acc = np.zeros((oh * wc, m), dtype=np.float64)
    all_taps = flat.shape[0] * len(shifts) * mg <= TAPS_GEMM_BUDGET_ELEMENTS
    part = np.empty((p, mg), dtype=np.float32)
    for g in range(groups):
        out_cols = slice(g * mg, (g + 1) * mg)
        for c0 in range(0, cg, F32_EXACT_CHANNELS):
            c1 = min(cg, c0 + F32_EXACT_CHANNELS)
            xs = flat[:, g * cg + c0:g * cg + c1]
            if all_taps:
                # (Hc*Wc, cc) @ (cc, taps*Mg) -> (Hc*Wc, taps, Mg)
                taps = w[:, :, out_cols, c0:c1].reshape(len(shifts) * mg, c1 - c0)
                r = np.matmul(xs, taps.T).reshape(flat.shape[0], len(shifts), mg)
                for i, shift in enumerate(shifts):
                    acc[:p, out_cols] += r[shift:shift + p, i]
            else:
                for i, shift in enumerate(shifts):
                    np.matmul(xs[shift:shift + p], w[i // kw, i % kw, out_cols, c0:c1].T, out=part)
                    acc[:p, out_cols] += part
    # (OH*Wc, M) -> (OH, Wc, M) -> drop columns >= OW -> (M, OH, OW)
    return acc.reshape(oh, wc, m)[:, :ow].transpose(2, 0, 1).astype(np.int64)


def conv_i8_i32(x: np.ndarray, weight: np.ndarray, groups: int, stride: Pair, dilation: Pair, in_offset: Pair,
                out_hw: Pair, policy: OverflowPolicy, origin: tuple[int, ...] = (),
                scale: tuple[int, ...] = ()) -> np.ndarray:
    """The MAC array's result: int32 psum (M, OH, OW) of conv(x (C, H, W) int8, weight (M, C/g, kh, kw) int8).

    x is placed at ``in_offset`` of a zero canvas (implicit padding; negative crops). Raises
    AccumulatorOverflowError under ``error``; ``origin``/``scale`` map (m, oh, ow) to the coordinates it names.
    """
    m, cg, kh, kw = weight.shape
    oh, ow = out_hw
    if min(m, oh, ow) == 0:
        return np.zeros((m, oh, ow), dtype=np.int32)
    k = kh * kw * cg
    in_order = not reduction_is_order_free(k) and policy != "wrap"
    what = "accumulator of output"
    if not in_order and stride == (1, 1) and cg >= SHIFTED_MIN_CHANNELS:
        exact = _conv_shifted(x, weight, groups, dilation, in_offset, out_hw)
        return narrow_to_int32(exact, policy, what=what, origin=origin, scale=scale)
    canvas_hw = ((oh - 1) * stride[0] + dilation[0] * (kh - 1) + 1, (ow - 1) * stride[1] + dilation[1] * (kw - 1) + 1)
    dtype = np.int64 if in_order else np.float64
    canvas = place_on_canvas(x, (1, 1), in_offset, canvas_hw, dtype=dtype)
    # (M, Cg, kh, kw) -> (G, Mg, kh, kw, Cg) -> (G, Mg, K): the same K order as the columns
    w = weight.astype(dtype).reshape(groups, m // groups, cg, kh, kw).transpose(0, 1, 3, 4, 2)
    w = w.reshape(groups, m // groups, k)
    out = np.empty((groups, m // groups, oh * ow), dtype=np.int64)
    overflowed = np.zeros(out.shape, dtype=bool)
    rows_per_chunk = max(1, COLS_BUDGET_ELEMENTS // max(1, ow * k * groups))
    for r0 in range(0, oh, rows_per_chunk):
        r1 = min(oh, r0 + rows_per_chunk)
        cols = _columns(canvas, (kh, kw), stride, dilation, slice(r0, r1), ow, groups)
        span = slice(r0 * ow, r1 * ow)
        if in_order:
            for g in range(groups):
                out[g, :, span], overflowed[g, :, span] = ordered_accumulate(w[g], cols[g], policy)
        elif groups == 1:
            out[0, :, span] = w[0] @ cols[0].T  # 2-D: numpy's stacked matmul does not use BLAS; exact below 2**53
        else:
            out[:, :, span] = np.matmul(w, cols.transpose(0, 2, 1))  # exact: integers below 2**53
    raise_overflow(overflowed.reshape(m, oh, ow), out.reshape(m, oh, ow), "running sum of output", origin, scale)
    return narrow_to_int32(out.reshape(m, oh, ow), policy, what=what, origin=origin, scale=scale)


# -------------------------------------------------------------------------------------------------- cost (pure)


def fold_model(e: int, k: int, n: int, mac: MacArrayConfig) -> tuple[int, int]:
    """(cycles, folds) of one (E x K) . (K x N) product on the array."""
    if min(e, k, n) == 0:
        return 0, 0
    rows, cols = mac.rows, mac.cols
    if mac.dataflow == "os":
        sr, sc, t = e, n, k
    else:
        sr, sc, t = k, n, e
    folds = ceil_div(sr, rows) * ceil_div(sc, cols)
    if mac.dataflow == "os":
        return folds * (t + rows + cols - 2), folds
    if mac.weight_double_buffer:
        return rows + folds * (rows + cols + t - 2), folds
    return folds * (2 * rows + cols + t - 2), folds


def job_gemm(job: ConvJob, in_channels_per_group: int) -> tuple[int, int]:
    """(E, K) of a job."""
    return job.out_hw[0] * job.out_hw[1], job.kernel_hw[0] * job.kernel_hw[1] * in_channels_per_group


# ----------------------------------------------------------------------------------------------------- adapter


def _staged(ctx: LayerContext, tile: Tile) -> str:
    return "ifmap_swelled" if ctx.plan.method == "swell" else "ifmap"


def _weight(ctx: LayerContext) -> str:
    return {"swell": "weight_conv", "phase": "weight_phases", "direct": "weight"}[ctx.plan.method]


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    layer = ctx.layer
    cin_g = layer.in_channels // layer.groups
    n_per_group = tile.oc_count // tile.num_groups
    cycles = folds = issued = 0
    for job in tile.jobs:
        e, k = job_gemm(job, cin_g)
        c, f = fold_model(e, k, n_per_group, ctx.hw.mac_array)
        cycles += c * tile.num_groups
        folds += f * tile.num_groups
        issued += e * k * tile.oc_count
    staged = tile.region(_staged(ctx, tile)).size_bytes
    weights = tile.region(_weight(ctx)).size_bytes
    psum = sum(tile.region(job.psum_region).size_bytes for job in tile.jobs)
    return StageCost(
        cycles=cycles, sram_read_bytes={"ifmap": staged, "weight": weights}, sram_write_bytes={"psum": psum},
        writes=tuple(dict.fromkeys(job.psum_region for job in tile.jobs)), folds=folds, macs_issued=issued,
        macs_useful=useful_macs(layer, tile.oh[0], tile.oh[1], tile.oc_count))


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    x = sram.read(tile.region(_staged(ctx, tile)))
    weights = sram.read(tile.region(_weight(ctx)))
    policy = ctx.hw.accumulator.on_overflow
    for job in tile.jobs:
        w = weights[job.weight_index] if ctx.plan.method == "phase" else weights
        origin = (tile.n, tile.oc[0], tile.oh[0] + job.out_start[0], job.out_start[1])
        psum = conv_i8_i32(x, w, tile.num_groups, job.stride, job.dilation, job.in_offset, job.out_hw, policy,
                           origin=origin, scale=(1, 1, *job.out_step))
        sram.write(tile.region(job.psum_region), psum)
