"""The MAC array's arithmetic: exact sums of int8 x int8 convs, as the PEs accumulate them (values only).

Models what the array's accumulators hold: every conv job is a conv of the staged ifmap (placed on a zero canvas:
implicit padding or crop) with a conv weight, with stride and kernel dilation, per group. Products are widened
before multiplying and summed exactly (float32 GEMMs over at most 1024 channels hold integers <= 2**24; longer
sums accumulate in float64, exact below 2**53), then narrowed to int32 by :mod:`simulator.fixedpoint` under the
accumulator policy (the in-order scan when the reduction is long enough to overflow mid-sum). Stride-1 jobs run
as row GEMMs over the input rows each kernel row reads, restricted to the grid of rows and columns that holds the
non-zero pixels (a swelled ifmap's grid has the stride as its step, so its inserted zeros are never multiplied),
or, on a deep layer with a small map, as GEMMs over the non-zero pixels only. Both are exact whatever the data:
which pixels are zero is read from the values, never assumed. :func:`reference_conv` is the plain int64
definition every fast path is tested against: read it first.

The fast GEMM paths are in :mod:`simulator.stages.mac_gemm`; several input-channel slices of one spatial tile can
run through them together (``conv_exact_slices``).

Quantized layers (``quant:``): the zero points are subtracted at the PE inputs, ``(x - x_zp) * (w - w_zp)``
(9-bit operands); the values are computed exactly by splitting the centred operands into int8 parts that run
through the same GEMM paths (:func:`conv_centred_i32`, :func:`centred_jobs_shared`).

Deliberately ignores timing (the fold model is in :mod:`simulator.stages.mac_array`) and the order in which the
physical array would form partial sums, except where the overflow policy makes it visible (``saturate`` and
``error`` then run the in-order path).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from simulator.fixedpoint import (
    INT32_MAX,
    OverflowPolicy,
    narrow_to_int32,
    ordered_accumulate,
    raise_overflow,
    reduction_is_order_free,
)
from simulator.stages.mac_gemm import ConvSpec, conv_exact
from simulator.stages.swell import place_on_canvas

Pair = tuple[int, int]
COLS_BUDGET_ELEMENTS = 1 << 22  # at most ~32 MiB of float64 im2col columns at a time
SHIFTED_MIN_CHANNELS = 8  # below this many channels per group the per-tap GEMMs are too thin: use im2col

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


def _conv_shifted(x: np.ndarray, weight: np.ndarray, groups: int, dilation: Pair, in_offset: Pair,
                  out_hw: Pair) -> np.ndarray:
    """Exact sums (M, OH, OW) of one stride-1 conv, float (see :func:`conv_row_gemms`)."""
    return conv_exact(x, [(weight, dilation, in_offset, out_hw)], groups)[0]


def row_gemm_ok(k: int, stride: Pair, cg: int, policy: OverflowPolicy) -> bool:
    """The row-GEMM path applies: stride 1, enough channels for BLAS, and no in-order overflow scan needed."""
    in_order = not reduction_is_order_free(k) and policy != "wrap"
    return not in_order and stride == (1, 1) and cg >= SHIFTED_MIN_CHANNELS


def reference_conv(x: np.ndarray, weight: np.ndarray, groups: int, stride: Pair, dilation: Pair, in_offset: Pair,
                   out_hw: Pair) -> np.ndarray:
    """The plain int64 definition every fast path must equal: exact sums (M, OH, OW) of a grouped conv of x (C, H,
    W) placed at ``in_offset`` of a zero canvas, one kernel tap at a time. Read this first; it is slow."""
    m, cg, kh, kw = weight.shape
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    canvas_hw = ((oh - 1) * sh + dh * (kh - 1) + 1, (ow - 1) * sw + dw * (kw - 1) + 1)
    canvas = place_on_canvas(x, (1, 1), in_offset, canvas_hw, dtype=np.int64)
    out = np.zeros((groups, m // groups, oh, ow), dtype=np.int64)
    w = weight.astype(np.int64).reshape(groups, m // groups, cg, kh, kw)
    for u in range(kh):
        for v in range(kw):
            pixels = canvas[:, u * dh:u * dh + (oh - 1) * sh + 1:sh, v * dw:v * dw + (ow - 1) * sw + 1:sw]
            out += np.einsum("gmc,gchw->gmhw", w[..., u, v], pixels.reshape(groups, cg, oh, ow))
    return out.reshape(m, oh, ow)


def conv_i8_i32(x: np.ndarray, weight: np.ndarray, groups: int, stride: Pair, dilation: Pair, in_offset: Pair,
                out_hw: Pair, policy: OverflowPolicy, origin: tuple[int, ...] = (),
                scale: tuple[int, ...] = (), initial: np.ndarray | None = None,
                reduction: int | None = None, in_order: bool = False) -> np.ndarray:
    """The MAC array's result: int32 psum (M, OH, OW) of conv(x (C, H, W) int8, weight (M, C/g, kh, kw) int8).

    x is placed at ``in_offset`` of a zero canvas (implicit padding; negative crops). ``initial`` (int32, M, OH,
    OW) is the accumulator a later input-channel slice continues from (the psum SRAM's contents): the slice's
    products are added to it in order. ``reduction`` is the whole reduction length of the outputs (all slices;
    default: this weight's), which decides whether any running sum can leave int32. Raises
    AccumulatorOverflowError under ``error``; ``origin``/``scale`` map (m, oh, ow) to the coordinates it names.
    ``in_order`` forces the in-order int64 path (any integer operands, e.g. zero-point-centred ones).
    """
    m, cg, kh, kw = weight.shape
    oh, ow = out_hw
    if min(m, oh, ow) == 0:
        return np.zeros((m, oh, ow), dtype=np.int32) if initial is None else initial.astype(np.int32)
    k = kh * kw * cg
    in_order = in_order or (not reduction_is_order_free(k if reduction is None else reduction) and policy != "wrap")
    what = "accumulator of output"
    if initial is not None and not in_order:  # no running sum can leave int32, or wrap: add the slice's sum
        part = conv_i8_i32(x, weight, groups, stride, dilation, in_offset, out_hw, "wrap")
        return np.add(initial, part, dtype=np.int32)  # exact when order-free; modulo 2**32 under wrap
    if not in_order and row_gemm_ok(k if reduction is None else reduction, stride, cg, policy):
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
    start = None if initial is None else initial.astype(np.int64).reshape(out.shape)
    escaped = np.zeros(out.shape, dtype=np.int64)  # running sum when it first left int32 (where overflowed)
    rows_per_chunk = max(1, COLS_BUDGET_ELEMENTS // max(1, ow * k * groups))
    for r0 in range(0, oh, rows_per_chunk):
        r1 = min(oh, r0 + rows_per_chunk)
        cols = _columns(canvas, (kh, kw), stride, dilation, slice(r0, r1), ow, groups)
        span = slice(r0 * ow, r1 * ow)
        if in_order:
            for g in range(groups):
                out[g, :, span], overflowed[g, :, span], escaped[g, :, span] = ordered_accumulate(
                    w[g], cols[g], policy, None if start is None else start[g, :, span])
        elif groups == 1:
            out[0, :, span] = w[0] @ cols[0].T  # 2-D: numpy's stacked matmul does not use BLAS; exact below 2**53
        else:
            out[:, :, span] = np.matmul(w, cols.transpose(0, 2, 1))  # exact: integers below 2**53
    raise_overflow(overflowed.reshape(m, oh, ow), escaped.reshape(m, oh, ow), "running sum of output", origin, scale)
    return narrow_to_int32(out.reshape(m, oh, ow), policy, what=what, origin=origin, scale=scale)


CENTRED_MAX_PRODUCT = 255 * 255  # |(x - x_zp) * (w - w_zp)| for int8 values and zero points


def int8_parts(x: np.ndarray) -> list[np.ndarray]:
    """Split integers in [-255, 255] into int8 arrays that sum to them: ``clip(x, -128, 127)``, then the same of
    what is left while anything is (at most three parts: 255 = 127 + 127 + 1). Zeros stay zero in every part, so
    the GEMM paths' zero skipping still applies."""
    parts = [np.clip(x, -128, 127).astype(np.int8)]
    rest = x.astype(np.int16) - parts[0]
    while rest.size and rest.any():
        parts.append(np.clip(rest, -128, 127).astype(np.int8))
        rest = rest - parts[-1]
    return parts


def conv_centred_i32(x: np.ndarray, weight: np.ndarray, x_zp: int, w_zp: int, groups: int, stride: Pair,
                     dilation: Pair, in_offset: Pair, out_hw: Pair, policy: OverflowPolicy,
                     origin: tuple[int, ...] = (), scale: tuple[int, ...] = (), initial: np.ndarray | None = None,
                     reduction: int | None = None) -> np.ndarray:
    """The MAC array of a quantized layer: int32 psum of conv(x - x_zp, weight - w_zp), the zero points subtracted
    at the PE inputs (9-bit operands, 18-bit products). Implicit padding is 0 after the subtraction, i.e. real 0.

    Exact: each centred operand is a sum of at most two int8 arrays (:func:`int8_parts`), and the conv is bilinear,
    so the int8 GEMM paths compute every partial product exactly; the partial sums add in int64 and narrow once
    under ``policy``. When a running sum could leave int32 (K * 255^2 >= 2^31) and the policy cares about order,
    the in-order int64 path runs on the centred operands themselves. ``initial`` and ``reduction``: as for
    :func:`conv_i8_i32` (a later input-channel slice continues the psum SRAM's accumulator).
    """
    xc = x.astype(np.int16) - np.int16(x_zp)
    wc = weight.astype(np.int16) - np.int16(w_zp)
    m, cg, kh, kw = weight.shape
    k = kh * kw * cg if reduction is None else reduction
    if policy != "wrap" and k * CENTRED_MAX_PRODUCT > INT32_MAX:
        return conv_i8_i32(xc, wc, groups, stride, dilation, in_offset, out_hw, policy, origin, scale,
                           initial=initial, reduction=k, in_order=True)
    total = np.zeros((m, *out_hw), dtype=np.int64) if initial is None else initial.astype(np.int64)
    for xp in int8_parts(xc):
        for wp in int8_parts(wc):
            total += conv_i8_i32(xp, wp, groups, stride, dilation, in_offset, out_hw, "wrap")
    if policy == "wrap":  # each part wrapped mod 2^32: so is the sum
        return total.astype(np.int32)
    return narrow_to_int32(total, policy, what="accumulator of output", origin=origin, scale=scale)


def centred_jobs_shared(x: np.ndarray, specs: list[ConvSpec], x_zp: int, w_zp: int, groups: int,
                        strides: list[Pair], reductions: list[int]) -> list[np.ndarray] | None:
    """Exact int64 psums of every job of a tile at once (shared band GEMMs, as the int32 path), or None when the
    row-GEMM conditions do not hold or a centred running sum could leave int32 (then :func:`conv_centred_i32`
    runs per job). Same int8-part decomposition as :func:`conv_centred_i32`."""
    if not specs:
        return []
    for (w, _, _, out_hw), stride, k in zip(specs, strides, reductions, strict=True):  # k: all input slices
        if (k * CENTRED_MAX_PRODUCT > INT32_MAX or not row_gemm_ok(k, stride, w.shape[1], "wrap")
                or min(w.shape[0], *out_hw) == 0):
            return None
    x_parts = int8_parts(x.astype(np.int16) - np.int16(x_zp))
    w_parts = [int8_parts(w.astype(np.int16) - np.int16(w_zp)) for w, *_ in specs]
    totals = [np.zeros((w.shape[0], *out_hw), dtype=np.int64) for w, _, _, out_hw in specs]
    for xp in x_parts:
        for p in range(max(len(parts) for parts in w_parts)):
            jobs = [j for j, parts in enumerate(w_parts) if p < len(parts)]
            exact = conv_exact(xp, [(w_parts[j][p], *specs[j][1:]) for j in jobs], groups)
            for j, e in zip(jobs, exact, strict=True):
                totals[j] += e.astype(np.int64)  # exact integers held in floats
    return totals
