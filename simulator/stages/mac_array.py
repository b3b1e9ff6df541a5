"""MAC array: a rows x cols systolic array running conv jobs (int8 x int8 products, int32 accumulation).

Values: every job is a conv of the staged ifmap (placed on a zero canvas: implicit padding or crop) with a conv
weight, with stride and kernel dilation, per group. Products are widened before multiplying and summed exactly
(float32 GEMMs over at most 1024 channels hold integers <= 2**24; longer sums accumulate in float64, exact below
2**53), then narrowed to int32 by :mod:`simulator.fixedpoint` under the accumulator policy (the in-order scan
when the reduction is long enough to overflow mid-sum). Stride-1 jobs run as row GEMMs over the input rows each
kernel row reads, restricted to the grid of rows and columns that holds the non-zero pixels (a swelled ifmap's
grid has the stride as its step, so its inserted zeros are never multiplied), or, on a deep layer with a small
map, as GEMMs over the non-zero pixels only. Both are exact whatever the data: which pixels are zero is read
from the SRAM values, never assumed. The cycle model below still charges every zero the array issues.

Input-channel slices: a later slice continues the accumulators the previous one left in the psum SRAM. When
nothing observes the SRAM between stages (no dumps), no running sum can leave int32 and the plan brings the
same slices back on later spatial tiles, a spatial tile's slices are kept and run in one pass at its last
slice over their stacked operands (:func:`_batch_slice`); the final psum is the same exact sum, the intermediate
ones are not materialised. Operands derived from SRAM bytes (float32 GEMM operands) are reused while the bytes
are equal (``LayerContext.derived``).

Quantized layers (``quant:``): the zero points are subtracted at the PE inputs, ``(x - x_zp) * (w - w_zp)``
(9-bit operands); the values are computed exactly by splitting the centred operands into int8 parts that run
through the same GEMM paths (:func:`conv_centred_i32`, :func:`centred_jobs_shared`). The cycle model is the same.

Cycles: the classic fold model (as SCALE-Sim). A job is, per group, an (E x K) . (K x N) product, with E output
pixels, K = kh*kw*C_in/g, N output channels of the group in the tile.
``os``: (Sr, Sc, T) = (E, N, K); ``ws``: (Sr, Sc, T) = (K, N, E). folds = ceil(Sr/rows) * ceil(Sc/cols).
Cycles per fold: ``T + rows + cols - 2`` (os), ``2*rows + cols + T - 2`` (ws, the first ``rows`` cycles
preloading weights). With ``weight_double_buffer`` (ws only) the preload of a fold hides under the previous
fold: ``rows + folds * (rows + cols + T - 2)``. Groups and phase jobs run one after another. With the input
channels in slices, K is the slice's, and every slice after the first first reloads its accumulators from the
psum SRAM (``psum_read_cycles``: one bank row per cycle) and continues from them, in order. Deliberately
ignores: SRAM read-port bandwidth limits on feeding the array, clock gating of idle PEs and zero skipping (zeros
are issued like any operand: that is what ``macs_issued`` counts).
``mac_array.zero_gating`` is an energy option (:mod:`simulator.energy`): the tagged zeros are still issued, so it
never changes the cycles here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from simulator.config import BufferConfig, MacArrayConfig
from simulator.errors import AccumulatorOverflowError
from simulator.fixedpoint import (
    INT32_MAX,
    OverflowPolicy,
    exact_sum_to_int32,
    narrow_to_int32,
    ordered_accumulate,
    raise_overflow,
    reduction_is_order_free,
)
from simulator.geometry import ceil_div, useful_macs
from simulator.mapping.base import ConvJob
from simulator.sram import Sram
from simulator.stages.common import Dram, LayerContext, StageCost
from simulator.stages.swell import place_on_canvas
from simulator.tiling import Tile

Pair = tuple[int, int]
COLS_BUDGET_ELEMENTS = 1 << 22  # at most ~32 MiB of float64 im2col columns at a time
F32_EXACT_CHANNELS = 1024  # 1024 * 2**14 = 2**24: float32 sums of this many int8 products are exact
TAPS_GEMM_BUDGET_ELEMENTS = 1 << 23  # largest float32 product of one band GEMM (32 MiB) before row chunks
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


ConvSpec = tuple[np.ndarray, Pair, Pair, Pair]  # (weight (M, C/g, kh, kw) int8, dilation, in_offset, out_hw)


def _progression(index: np.ndarray) -> tuple[int, int, int]:
    """(first, step, count) of the shortest arithmetic progression holding every (sorted) index."""
    if index.size == 0:
        return 0, 1, 0
    first = int(index[0])
    step = int(np.gcd.reduce(index[1:] - first)) if index.size > 1 else 1
    return first, step, (int(index[-1]) - first) // step + 1


def nonzero_pixels(x: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of x (C, H, W) with any non-zero channel (read 8 channels at a time when x is a
    view of channels-last memory, as the SRAM's NHWC images are)."""
    hwc = x.transpose(1, 2, 0)
    if hwc.flags.c_contiguous and x.shape[0] % 8 == 0:
        return hwc.view(np.uint64).any(axis=2)
    return x.any(axis=0)


def support_grid(nonzero: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The coarsest grid of rows x columns holding every non-zero pixel of the (H, W) mask: ((first, step, count)
    of the rows, same of the columns). A swelled ifmap's grid has the stride as its step; dense data has step 1."""
    if nonzero.size and nonzero.all():  # dense data (the common case without swelling): every row and column
        return (0, 1, nonzero.shape[0]), (0, 1, nonzero.shape[1])
    return (_progression(np.flatnonzero(nonzero.any(axis=1))),
            _progression(np.flatnonzero(nonzero.any(axis=0))))


def _span(first: int, step: int, count: int, shift: int, size: int) -> tuple[int, int]:
    """Grid indices [lo, hi) whose coordinate ``first + i*step - shift`` lands in [0, size)."""
    lo = max(0, -((first - shift) // step))  # ceil((shift - first) / step)
    hi = min(count, -((first - shift - size) // step))  # ceil((size + shift - first) / step)
    return lo, max(lo, hi)


def row_operand(weight: np.ndarray, groups: int) -> np.ndarray:
    """(M, Cg, kh, kw) int8 -> float32 (kh, G, kw, Mg, Cg): per kernel row and group an (kw*Mg, Cg) operand."""
    m, cg, kh, kw = weight.shape
    return np.ascontiguousarray(weight.reshape(groups, m // groups, cg, kh, kw).transpose(3, 0, 4, 1, 2),
                                dtype=np.float32)


class RowOperands:
    """The float32 GEMM operands of a tile's job weights: :func:`row_operand` of each, and, built on first use, the
    concatenated operand of each band GEMM of :func:`_conv_row_gemms`. A pure function of the weights: the stage
    keeps it while the conv-weight bytes it came from are unchanged (:class:`simulator.stages.common.BytesMemo`)."""

    def __init__(self, weights: list[np.ndarray], groups: int, keep_bands: bool = True) -> None:
        self.rows = [row_operand(w, groups) for w in weights]
        # band operands are kept only when the operands are (kept bands of a one-off tile only churn the heap)
        self._bands: dict[tuple[object, ...], np.ndarray] | None = {} if keep_bands else None

    @classmethod
    def stacked(cls, parts: list[RowOperands]) -> RowOperands:
        """The operands of one group's weights stacked along the input channels: each job's rows of every part,
        joined along C (the parts' channel order)."""
        ops = cls.__new__(cls)
        ops.rows = [np.concatenate([p.rows[j] for p in parts], axis=-1) for j in range(len(parts[0].rows))]
        ops._bands = {}
        return ops

    @property
    def nbytes(self) -> int:
        """Bytes held: the row operands and at most as much again in band operands."""
        return 2 * sum(r.nbytes for r in self.rows)

    def band(self, taps: tuple[tuple[int, int], ...], g: int, c0: int, c1: int) -> np.ndarray:
        """(sum of kw*Mg over ``taps``, c1 - c0): the (job, kernel row) operands of group g, channels [c0, c1),
        stacked in ``taps`` order."""
        key = (taps, g, c0, c1)
        band = None if self._bands is None else self._bands.get(key)
        if band is None:
            parts = [self.rows[j][u, g].reshape(-1, self.rows[j].shape[-1])[:, c0:c1] for j, u in taps]
            band = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if self._bands is not None:
                self._bands[key] = band
        return band


JobShape = tuple[tuple[int, int, int, int], Pair, Pair, Pair]  # (weight shape, dilation, in_offset, out_hw)
Grid = tuple[tuple[int, int, int], tuple[int, int, int]]  # support_grid: (first, step, count) of rows, columns


@dataclass(frozen=True)
class _BandGemm:
    """One GEMM of :func:`_conv_row_gemms`: grid rows [b0, b1) times the (job, kernel row) operands ``taps``
    (concatenated in that order), then one shifted add per (job, q0, q1, n0, n1, rows, cols): product columns
    [n0, n1) of grid columns [q0, q1) into the job's outputs ``rows`` x ``cols``."""

    b0: int
    b1: int
    taps: tuple[tuple[int, int], ...]
    adds: tuple[tuple[int, int, int, int, int, slice, slice], ...]


@functools.lru_cache(maxsize=1024)
def _band_gemms(grid: Grid, groups: int, jobs: tuple[JobShape, ...]) -> tuple[_BandGemm, ...]:
    """The GEMMs and shifted adds of :func:`_conv_row_gemms`, a pure function of the shapes (tiles of one
    shape share it: the per-tile work is then only the numpy calls)."""
    (y0, sy, ny), (x0, sx, nx) = grid
    bands: dict[Pair, list[tuple[int, int, int]]] = {}  # grid rows -> (job, kernel row, output row of grid row 0)
    for j, ((_, _, kh, _), dilation, in_offset, out_hw) in enumerate(jobs):
        for u in range(kh):
            su = u * dilation[0] - in_offset[0]
            lo, hi = _span(y0, sy, ny, su, out_hw[0])
            if hi > lo and out_hw[1] > 0:
                bands.setdefault((lo, hi), []).append((j, u, y0 - su))
    gemms = []
    for (lo, hi), items in bands.items():
        n_total = sum(jobs[j][0][3] * (jobs[j][0][0] // groups) for j, _, _ in items)  # kw * M/g per operand
        step = max(1, TAPS_GEMM_BUDGET_ELEMENTS // max(1, nx * n_total))
        for b0 in range(lo, hi, step):
            b1 = min(hi, b0 + step)
            adds = []
            n0 = 0
            for j, _, row0 in items:
                (m, _, _, kw), dilation, in_offset, out_hw = jobs[j]
                mg = m // groups
                rows = slice(row0 + b0 * sy, row0 + (b1 - 1) * sy + 1, sy)
                for v in range(kw):
                    sv = v * dilation[1] - in_offset[1]
                    q0, q1 = _span(x0, sx, nx, sv, out_hw[1])
                    if q1 > q0:
                        cols = slice(x0 - sv + q0 * sx, x0 - sv + (q1 - 1) * sx + 1, sx)
                        adds.append((j, q0, q1, n0 + v * mg, n0 + (v + 1) * mg, rows, cols))
                n0 += kw * mg
            gemms.append(_BandGemm(b0, b1, tuple((j, u) for j, u, _ in items), tuple(adds)))
    return tuple(gemms)


ConvSlice = tuple[np.ndarray, list[np.ndarray], "RowOperands | None"]  # staged input, its job weights, operands
Geometry = tuple[Pair, Pair, Pair]  # a job's (dilation, in_offset, out_hw)


def _conv_row_gemms(x: np.ndarray, specs: list[ConvSpec], groups: int, nonzero: np.ndarray | None = None,
                    operands: RowOperands | None = None) -> list[np.ndarray]:
    """Exact sums of stride-1 convs of one staged input (see :func:`_conv_row_gemms_slices`)."""
    geometry = [(d, o, hw) for _, d, o, hw in specs]
    return _conv_row_gemms_slices([(x, [w for w, *_ in specs], operands)], geometry, groups,
                                  nonzero_pixels(x) if nonzero is None else nonzero)


def _conv_row_gemms_slices(slices: list[ConvSlice], geometry: list[Geometry], groups: int, nonzero: np.ndarray,
                           stacked: RowOperands | None = None) -> list[np.ndarray]:
    """Exact sums of stride-1 convs over the input-channel slices of one staged input, by GEMMs per kernel row
    over its non-zero grid.

    Each slice's x (C_s, H, W) int8 is placed at ``in_offset`` of each job's zero canvas, so output (r, c) of
    kernel tap (u, v) reads ``x[r + su, c + sv]`` with ``(su, sv) = (u*dh, v*dw) - in_offset`` (zero outside x).
    Only the input pixels on :func:`support_grid` of ``nonzero`` (every slice's non-zero pixels; rows
    ``y0 + i*sy``, columns ``x0 + j*sx``) can be non-zero, so only they are multiplied: a swelled ifmap's inserted
    zeros cost nothing here (the cycle model still charges them), and the check reads the SRAM values, so it is
    exact whatever the data. For kernel row u the grid rows read form one contiguous band: per slice one GEMM
    ``[W_uv for every v] (kw*M/g, C_s) @ band (C_s, rows*cols)`` gives every product of that row of taps, the
    slices' products add up, and one strided 2-D add per tap (cropped to the outputs) accumulates them. Kernel
    rows of several jobs that read the same band (the phase jobs of one tile) share one GEMM. The GEMMs cover only
    the input rows the outputs read (no halo rows, no padding zeros). Bands whose product would exceed
    TAPS_GEMM_BUDGET_ELEMENTS run in row chunks. Exact: float32 GEMMs over at most F32_EXACT_CHANNELS channels of
    int8 x int8 products hold integers of magnitude <= 2**24; the products of all slices add in float32 while the
    channels of a group are that few, in float64 (exact below 2**53) otherwise, and a job's accumulator is float32
    when its whole reduction (kh*kw*C/g products over every slice) is that short, float64 otherwise.
    Returns one float array (M, OH, OW) of exact integers per job.
    """
    grid = support_grid(nonzero)
    (y0, sy, ny), (x0, sx, nx) = grid

    def on_grid(x: np.ndarray) -> np.ndarray:  # (rows, cols, C) view of the grid pixels
        return (x[:, y0:y0 + (ny - 1) * sy + 1:sy, x0:x0 + (nx - 1) * sx + 1:sx] if ny and nx
                else x[:, :0, :0]).transpose(1, 2, 0)

    flats = []  # (pixels on the grid, channels) float32, its channels per group, its operands
    if stacked is not None:  # one group: every slice's channels side by side, one GEMM per band
        total = sum(x.shape[0] for x, _, _ in slices)
        flat = np.empty((ny, nx, total), dtype=np.float32)
        c = 0
        for x, _, _ in slices:
            flat[:, :, c:c + x.shape[0]] = on_grid(x)
            c += x.shape[0]
        flats.append((flat.reshape(ny * nx, total), total, stacked))
    else:
        for x, weights, operands in slices:
            flat = np.ascontiguousarray(on_grid(x), dtype=np.float32).reshape(ny * nx, x.shape[0])
            if operands is None:
                operands = RowOperands(weights, groups, keep_bands=False)
            flats.append((flat, x.shape[0] // groups, operands))
    first = slices[0][1]
    cg = sum(c for _, c, _ in flats)  # input channels of a group, every slice
    prod_dtype = np.float32 if cg <= F32_EXACT_CHANNELS else np.float64
    # a job's whole reduction (kh*kw*C/g products) in float32 when exact there, else float64
    dtypes = [np.float32 if w.shape[2] * w.shape[3] * cg <= F32_EXACT_CHANNELS else np.float64 for w in first]
    accs: list[np.ndarray | None] = [None] * len(first)  # allocated at the first add (taken over if it is whole)
    schedule = _band_gemms(grid, groups, tuple((w.shape, *geo) for w, geo in zip(first, geometry, strict=True)))
    for gemm in schedule:
        for g in range(groups):
            # (products, pixels): output channels outermost, so every shifted add below runs along whole rows of
            # pixels (contiguous), not along a tile's few output channels
            prod = None
            for flat, cs, operands in flats:
                for c0 in range(0, cs, F32_EXACT_CHANNELS):
                    c1 = min(cs, c0 + F32_EXACT_CHANNELS)
                    part = np.matmul(operands.band(gemm.taps, g, c0, c1),
                                     flat[gemm.b0 * nx:gemm.b1 * nx, g * cs + c0:g * cs + c1].T)
                    if prod is None:
                        prod = part if part.dtype == prod_dtype else part.astype(prod_dtype)
                    else:
                        prod += part
            assert prod is not None
            prod = prod.reshape(-1, gemm.b1 - gemm.b0, nx)
            for j, q0, q1, n0, n1, rows, cols in gemm.adds:
                part = prod[n0:n1, :, q0:q1]
                acc = accs[j]
                out_hw = geometry[j][2]
                if acc is None and groups == 1 and part.shape[1:] == out_hw and sy == sx == 1:
                    # the whole output at once: keep the product (the rows of this job alone)
                    accs[j] = part if dtypes[j] == part.dtype else part.astype(dtypes[j])
                    continue
                if acc is None:
                    acc = accs[j] = np.zeros((first[j].shape[0], *out_hw), dtype=dtypes[j])
                mg = n1 - n0
                acc[g * mg:(g + 1) * mg, rows, cols] += part
    out = []
    for w, (_, _, out_hw), acc, dtype in zip(first, geometry, accs, dtypes, strict=True):
        out.append(np.zeros((w.shape[0], *out_hw), dtype=dtype) if acc is None else acc)  # None: no tap reads x
    return out


SPARSE_MAX_DENSITY = 0.25  # below this fraction of non-zero input pixels, GEMM only those pixels
PIXEL_OUTPUTS_PER_CHANNEL = 4  # the pixel path's scatter GEMM then costs <= 1/4 of its products GEMM
SCATTER_BUDGET_ELEMENTS = 1 << 20  # largest 0/1 scatter matrix (4-8 MiB) before per-element adds


def _conv_pixel_gemms(x: np.ndarray, specs: list[ConvSpec], groups: int, pixels: np.ndarray) -> list[np.ndarray]:
    """Exact sums of stride-1 convs of one staged input, by GEMMs over its non-zero pixels only.

    A pixel whose channels are all zero contributes nothing to any output, so skipping it is exact whatever the
    data (the check is on the values read from SRAM, not on where zeros are expected to be): a swelled ifmap is
    mostly such pixels. Per output channel m one GEMM ``pixels (P, C) @ W[m] (C, kh*kw)`` (the weight in its own
    memory order: no reordering copy) gives every product; tap (u, v) moves input pixel (y, x) to output
    (y - su, x - sv) (see :func:`_conv_row_gemms`). The products reach their outputs through a 0/1 scatter
    matrix (P*kh*kw, OH*OW), one more GEMM, when the tile has no more outputs than channels (the scatter GEMM
    then costs less than the products); otherwise by one fancy-indexed add per tap (a one-to-one map: no
    collisions). Same exactness rules and return value as :func:`_conv_row_gemms`."""
    c, h, w_in = x.shape
    cg = c // groups
    ys, xs = np.divmod(pixels, w_in)
    flat = np.ascontiguousarray(x.reshape(c, h * w_in)[:, pixels].T, dtype=np.float32)  # (P, C)
    out = []
    for weight, dilation, in_offset, out_hw in specs:
        m, _, kh, kw = weight.shape
        mg, taps, outputs = m // groups, kh * kw, out_hw[0] * out_hw[1]
        dtype = np.float32 if taps * cg <= F32_EXACT_CHANNELS else np.float64
        acc = np.zeros((m, outputs), dtype=dtype)
        wf = weight.astype(np.float32).reshape(groups, mg, cg, taps)  # contiguous cast, no reorder
        su = np.repeat(np.arange(kh) * dilation[0] - in_offset[0], kw)  # per tap t = u*kw + v
        sv = np.tile(np.arange(kw) * dilation[1] - in_offset[1], kh)
        oy, ox = ys[:, None] - su, xs[:, None] - sv  # (P, T): the output each product lands on
        hits = np.flatnonzero((oy >= 0) & (oy < out_hw[0]) & (ox >= 0) & (ox < out_hw[1]))  # into P*T
        targets = (oy * out_hw[1] + ox).ravel()[hits]
        scatter = None
        if outputs <= cg and pixels.size * taps * outputs <= SCATTER_BUDGET_ELEMENTS:  # cheaper than the products
            scatter = np.zeros((pixels.size * taps, outputs), dtype=dtype)
            scatter[hits, targets] = 1
        else:  # (products of tap t, their outputs), computed once for every group and channel chunk
            per_tap = [(hits[hits % taps == t], targets[hits % taps == t]) for t in range(taps)]
        for g in range(groups):
            for c0 in range(0, cg, F32_EXACT_CHANNELS):
                c1 = min(cg, c0 + F32_EXACT_CHANNELS)
                prod = np.matmul(flat[:, g * cg + c0:g * cg + c1], wf[g, :, c0:c1]).reshape(mg, -1)  # (Mg, P*T)
                if scatter is not None:
                    acc[g * mg:(g + 1) * mg] += prod.astype(dtype, copy=False) @ scatter
                else:
                    for mine, where in per_tap:  # within one tap the map is one-to-one: a plain fancy-indexed add
                        acc[g * mg:(g + 1) * mg, where] += prod[:, mine]
        out.append(acc.reshape(m, *out_hw))
    return out


def _conv_exact(x: np.ndarray, specs: list[ConvSpec], groups: int,
                operands: RowOperands | None = None) -> list[np.ndarray]:
    """Exact float sums of the jobs ``specs`` over one staged input (see :func:`_conv_exact_slices`)."""
    return _conv_exact_slices([(x, [w for w, *_ in specs], operands)], [(d, o, hw) for _, d, o, hw in specs], groups)


def _conv_exact_slices(slices: list[ConvSlice], geometry: list[Geometry], groups: int,
                       stacked: RowOperands | None = None) -> list[np.ndarray]:
    """Exact float sums of the jobs over the input-channel slices of one staged input. Both paths skip all-zero
    pixels; the pixel path when under SPARSE_MAX_DENSITY of the pixels are non-zero and its 0/1 scatter GEMM costs
    at most 1/PIXEL_OUTPUTS_PER_CHANNEL of the products (deep layers on a small map), else the row GEMMs on the
    grid (over the ``stacked`` operands of every slice when given). Several slices' pixel-path sums add in float64
    (exact below 2**53)."""
    nonzero = nonzero_pixels(slices[0][0])
    for x, _, _ in slices[1:]:
        nonzero |= nonzero_pixels(x)
    outputs = max((hw[0] * hw[1] for _, _, hw in geometry), default=0)
    pixels = np.flatnonzero(nonzero)
    if (pixels.size < SPARSE_MAX_DENSITY * nonzero.size
            and outputs * PIXEL_OUTPUTS_PER_CHANNEL <= sum(x.shape[0] for x, _, _ in slices) // groups):
        sums = [_conv_pixel_gemms(x, [(w, *geo) for w, geo in zip(weights, geometry, strict=True)], groups, pixels)
                for x, weights, _ in slices]
        if len(sums) == 1:
            return sums[0]
        return [np.sum([s[j] for s in sums], axis=0, dtype=np.float64) for j in range(len(geometry))]
    return _conv_row_gemms_slices(slices, geometry, groups, nonzero, stacked)


def _conv_shifted(x: np.ndarray, weight: np.ndarray, groups: int, dilation: Pair, in_offset: Pair,
                  out_hw: Pair) -> np.ndarray:
    """Exact sums (M, OH, OW) of one stride-1 conv, float (see :func:`_conv_row_gemms`)."""
    return _conv_exact(x, [(weight, dilation, in_offset, out_hw)], groups)[0]


def _row_gemm_ok(k: int, stride: Pair, cg: int, policy: OverflowPolicy) -> bool:
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
    if not in_order and _row_gemm_ok(k if reduction is None else reduction, stride, cg, policy):
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
        if (k * CENTRED_MAX_PRODUCT > INT32_MAX or not _row_gemm_ok(k, stride, w.shape[1], "wrap")
                or min(w.shape[0], *out_hw) == 0):
            return None
    x_parts = int8_parts(x.astype(np.int16) - np.int16(x_zp))
    w_parts = [int8_parts(w.astype(np.int16) - np.int16(w_zp)) for w, *_ in specs]
    totals = [np.zeros((w.shape[0], *out_hw), dtype=np.int64) for w, _, _, out_hw in specs]
    for xp in x_parts:
        for p in range(max(len(parts) for parts in w_parts)):
            jobs = [j for j, parts in enumerate(w_parts) if p < len(parts)]
            exact = _conv_exact(xp, [(w_parts[j][p], *specs[j][1:]) for j in jobs], groups)
            for j, e in zip(jobs, exact, strict=True):
                totals[j] += e.astype(np.int64)  # exact integers held in floats
    return totals


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


def psum_read_cycles(psum_bytes: int, buf: BufferConfig) -> int:
    """Cycles to preload the accumulators of a later input-channel slice from the psum SRAM: one bank row
    (``num_banks * bank_width_bytes``) per cycle."""
    return ceil_div(psum_bytes, buf.num_banks * buf.bank_width_bytes)


# ----------------------------------------------------------------------------------------------------- adapter


def cost(ctx: LayerContext, tile: Tile) -> StageCost:
    layer, mapping = ctx.layer, ctx.mapping
    icg = (tile.ic[1] - tile.ic[0]) // tile.num_groups  # input channels of one group in this slice
    n_per_group = tile.oc_count // tile.num_groups
    cycles = folds = issued = 0
    for job in tile.jobs:
        e, k = job_gemm(job, icg)
        c, f = fold_model(e, k, n_per_group, ctx.hw.mac_array)
        cycles += c * tile.num_groups
        folds += f * tile.num_groups
        issued += e * k * tile.oc_count
    staged = tile.region(mapping.staged).size_bytes
    weights = tile.region(mapping.conv_weight).size_bytes
    psum = sum(tile.region(job.psum_region).size_bytes for job in tile.jobs)
    reads = {"ifmap": staged, "weight": weights}
    if not tile.first_slice:  # read-modify-write of the accumulators a previous slice left
        reads["psum"] = psum
        cycles += psum_read_cycles(psum, ctx.hw.sram.psum)
    return StageCost(
        cycles=cycles, sram_read_bytes=reads, sram_write_bytes={"psum": psum},
        writes=tuple(dict.fromkeys(job.psum_region for job in tile.jobs)), folds=folds, macs_issued=issued,
        macs_useful=useful_macs(layer, tile.oh, tile.ow, tile.oc_count, icg))


def cost_key(ctx: LayerContext, tile: Tile) -> tuple[object, ...]:
    """Everything :func:`cost` reads from a tile: equal keys, equal costs (see ``dma_load.cost_key``; the output
    rows and columns for the useful MACs at the layer's borders)."""
    return (id(tile.regions), id(tile.jobs), tile.ic[1] - tile.ic[0], tile.num_groups, tile.oc_count,
            tile.first_slice, tile.oh, tile.ow)


def _reused_row_operands(ctx: LayerContext, raw: np.ndarray, tile: Tile, weights: list[np.ndarray]) -> RowOperands:
    """The GEMM operands of the tile's job weights, converted once per conv-weight image: the spatial tiles of one
    output-channel tile read the same weight bytes from SRAM (those of each input-channel slice in turn). Reused
    only while the region's bytes ``raw`` are equal (compared, not assumed unchanged) and for the same jobs (the
    planner shares one jobs tuple among the tiles of one shape; the plan keeps it alive)."""
    return ctx.derived(("mac_array.operands", tile.num_groups, id(tile.jobs)), raw,
                       lambda: RowOperands(weights, tile.num_groups, ctx.weights_recur), lambda ops: ops.nbytes)


def _batch_slice(ctx: LayerContext, tile: Tile, x: np.ndarray, job_weights: list[np.ndarray],
                 operands: RowOperands) -> bool:
    """Keep this input-channel slice's operands for the last slice of its spatial tile instead of running it now
    (True), when nothing reads the psum SRAM between slices (no dumps, no observer), the next tile is the next
    slice of the same spatial tile (slices innermost) and the same slices come back on the output-channel tile's
    later spatial tiles (so their stacked operands are built once). The caller has checked that no running sum can
    leave int32, so the psum after the last slice is the same exact sum however the slices are grouped; the
    intermediate psums, which only the next slice would read, are then not materialised. Timing is not affected
    (cost functions)."""
    if (ctx.observed or not ctx.weights_recur or tile.last_slice or tile.num_groups != 1
            or len(ctx.pending) != tile.ic_slice):
        return False
    tiles = ctx.plan.tiles
    after = tiles[tile.index + 1] if tile.index + 1 < len(tiles) else None
    if after is None or after.ic_slice != tile.ic_slice + 1 or _spatial(after) != _spatial(tile):
        return False
    # copies: the next-but-one tile reuses these SRAM slots (the operands are already the memo's own memory)
    ctx.pending.append((x.transpose(1, 2, 0).copy().transpose(2, 0, 1), [w.copy() for w in job_weights], operands))
    return True


STACKED_ENTRIES = 16  # slice combinations whose stacked operands a layer keeps


def _stacked_operands(ctx: LayerContext, slices: list[ConvSlice], groups: int) -> RowOperands | None:
    """One set of operands for every slice of a spatial tile (one GEMM per band over all the channels instead of
    one per slice), when the same slices come back on the output-channel tile's later spatial tiles, so that the
    stacking is paid once: kept per combination of the slices' memoised operand objects (held, so their
    identities stay theirs). None: run one GEMM per slice."""
    if len(slices) < 2 or groups != 1 or not ctx.weights_recur:
        return None
    parts = tuple(operands for _, _, operands in slices)
    key = tuple(map(id, parts))
    seen = ctx.stacked.get(key)
    if seen is not None and all(a is b for a, b in zip(seen[0], parts, strict=True)):
        return seen[1]  # type: ignore[return-value]
    if len(ctx.stacked) >= STACKED_ENTRIES:
        ctx.stacked.clear()
    stacked = RowOperands.stacked(list(parts))  # type: ignore[arg-type]
    ctx.stacked[key] = (parts, stacked)
    return stacked


def _spatial(tile: Tile) -> tuple[object, ...]:
    return tile.n, tile.oh, tile.ow, tile.oc


def _execute_centred(sram: Sram, ctx: LayerContext, tile: Tile, x: np.ndarray, job_weights: list[np.ndarray],
                     reductions: list[int], x_zp: int, w_zp: int) -> None:
    """The MAC array of a quantized layer: the jobs' centred convs, continuing the psum SRAM's accumulator on a
    later input-channel slice; an overflow under ``error`` is noted for the layer (as the int32 path does)."""
    policy, groups = ctx.hw.accumulator.on_overflow, tile.num_groups
    specs = [(w, job.dilation, job.in_offset, job.out_hw) for job, w in zip(tile.jobs, job_weights, strict=True)]
    shared = centred_jobs_shared(x, specs, x_zp, w_zp, groups, [job.stride for job in tile.jobs], reductions)
    for i, (job, w, k) in enumerate(zip(tile.jobs, job_weights, reductions, strict=True)):
        region = tile.region(job.psum_region)
        initial = None if tile.first_slice else sram.read(region)
        if shared is not None:  # K * 255^2 < 2^31 over every slice: the exact sum is within int32
            total = shared[i] if initial is None else shared[i] + initial.astype(np.int64)
            sram.write(region, exact_sum_to_int32(total))
            continue
        origin = (tile.n, tile.oc[0], tile.oh[0] + job.out_start[0], tile.ow[0] + job.out_start[1])
        args = (x, w, x_zp, w_zp, groups, job.stride, job.dilation, job.in_offset, job.out_hw)
        try:
            psum = conv_centred_i32(*args, policy, origin, (1, 1, *job.out_step), initial, k)
        except AccumulatorOverflowError as err:  # noted for the layer; the other outputs stay exact
            ctx.overflows.append(err)
            psum = conv_centred_i32(*args, "wrap", origin, (1, 1, *job.out_step), initial, k)
        sram.write(region, psum)


def execute(sram: Sram, dram: Dram, ctx: LayerContext, tile: Tile) -> None:
    mapping = ctx.mapping
    x = sram.read(tile.region(mapping.staged))
    weights = sram.read(tile.region(mapping.conv_weight))
    policy = ctx.hw.accumulator.on_overflow
    groups = tile.num_groups
    job_weights = [mapping.job_weight(weights, job) for job in tile.jobs]
    # the whole reduction of an output (every input-channel slice) decides whether a running sum can leave int32
    reductions = [w.shape[2] * w.shape[3] * mapping.cin_g for w in job_weights]
    quant = ctx.layer.quant
    if quant is not None:  # zero points subtracted at the PE inputs
        _execute_centred(sram, ctx, tile, x, job_weights, reductions, quant.input.zero_point,
                         quant.weight.zero_point)
        return
    fused = all(_row_gemm_ok(k, job.stride, w.shape[1], policy) and min(w.shape[0], *job.out_hw) > 0
                for job, w, k in zip(tile.jobs, job_weights, reductions, strict=True))
    order_free = all(reduction_is_order_free(k) for k in reductions)
    if fused:  # every job of the tile reads the same staged input: one pass of shared band GEMMs
        operands = _reused_row_operands(ctx, sram.raw(tile.region(mapping.conv_weight)), tile, job_weights)
        if order_free and _batch_slice(ctx, tile, x, job_weights, operands):
            return
        if len(ctx.pending) not in (0, tile.ic_slice):
            raise RuntimeError(f"tile {tile.index}: {len(ctx.pending)} pending slices before slice {tile.ic_slice}")
        # with the earlier slices of this spatial tile, if they were kept: then this is their first psum write
        slices: list[ConvSlice] = [*ctx.pending, (x, job_weights, operands)]
        first = tile.first_slice or bool(ctx.pending)
        ctx.pending.clear()
        exact = _conv_exact_slices(slices, [(job.dilation, job.in_offset, job.out_hw) for job in tile.jobs], groups,
                                   _stacked_operands(ctx, slices, groups))
        if order_free:
            # no running sum can leave int32 (K < 2**17 products of magnitude <= 2**14): the exact sums are the
            # psums, plus the accumulators a previous slice left (their sum is within int32 too)
            for job, part in zip(tile.jobs, exact, strict=True):
                region = tile.region(job.psum_region)
                psum = exact_sum_to_int32(part)
                if not first:
                    np.add(sram.read(region), psum, out=psum)
                sram.write(region, psum)
            return
    for i, (job, w, k) in enumerate(zip(tile.jobs, job_weights, reductions, strict=True)):
        region = tile.region(job.psum_region)
        initial = None if tile.first_slice else sram.read(region)
        origin = (tile.n, tile.oc[0], tile.oh[0] + job.out_start[0], tile.ow[0] + job.out_start[1])
        scale = (1, 1, *job.out_step)

        def accumulate(policy: OverflowPolicy, job: ConvJob = job, w: np.ndarray = w, k: int = k,
                       i: int = i, initial: np.ndarray | None = initial,
                       origin: tuple[int, ...] = origin, scale: tuple[int, ...] = scale) -> np.ndarray:
            if fused:
                part = narrow_to_int32(exact[i], policy, what="accumulator of output", origin=origin, scale=scale)
            else:
                return conv_i8_i32(x, w, groups, job.stride, job.dilation, job.in_offset, job.out_hw, policy,
                                   origin=origin, scale=scale, initial=initial, reduction=k)
            return part if initial is None else np.add(initial, part, dtype=np.int32)  # exact, or wrap

        try:
            psum = accumulate(policy)
        except AccumulatorOverflowError as err:  # noted for the layer; the other outputs stay exact
            ctx.overflows.append(err)
            psum = accumulate("wrap")
        sram.write(region, psum)
