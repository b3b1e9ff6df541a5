"""The MAC array's fast arithmetic: exact sums of stride-1 int8 convs by float GEMMs (values only).

Models the same sums as :func:`simulator.stages.mac_values.reference_conv`, computed the way numpy computes them
fast: per kernel-row band of the input, one GEMM of the tile's job weights with the band's pixels, then one
shifted add per tap (:func:`conv_row_gemms_slices`); or, on a sparse input with many channels, one GEMM over
the non-zero pixels only (:func:`conv_pixel_gemms`). Only the input pixels on the grid that holds the non-zero
ones are multiplied, so a swelled ifmap's inserted zeros cost nothing here; which pixels are zero is read from
the values, never assumed. Exact: float32 GEMMs over at most F32_EXACT_CHANNELS channels of int8 products hold
integers of magnitude <= 2**24; longer sums accumulate in float64, exact below 2**53.

Deliberately ignores everything but the sums: the order of additions (callers use these paths only where no
running sum can leave int32, or under ``wrap``) and timing (:mod:`simulator.stages.mac_array`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

Pair = tuple[int, int]
F32_EXACT_CHANNELS = 1024  # 1024 * 2**14 = 2**24: float32 sums of this many int8 products are exact
TAPS_GEMM_BUDGET_ELEMENTS = 1 << 23  # largest float32 product of one band GEMM (32 MiB) before row chunks


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
    concatenated operand of each band GEMM of :func:`conv_row_gemms`. A pure function of the weights: the stage
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
    """One GEMM of :func:`conv_row_gemms`: grid rows [b0, b1) times the (job, kernel row) operands ``taps``
    (concatenated in that order), then one shifted add per (job, q0, q1, n0, n1, rows, cols): product columns
    [n0, n1) of grid columns [q0, q1) into the job's outputs ``rows`` x ``cols``."""

    b0: int
    b1: int
    taps: tuple[tuple[int, int], ...]
    adds: tuple[tuple[int, int, int, int, int, slice, slice], ...]


@functools.lru_cache(maxsize=1024)
def _band_gemms(grid: Grid, groups: int, jobs: tuple[JobShape, ...]) -> tuple[_BandGemm, ...]:
    """The GEMMs and shifted adds of :func:`conv_row_gemms`, a pure function of the shapes (tiles of one
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


def conv_row_gemms(x: np.ndarray, specs: list[ConvSpec], groups: int, nonzero: np.ndarray | None = None,
                    operands: RowOperands | None = None) -> list[np.ndarray]:
    """Exact sums of stride-1 convs of one staged input (see :func:`conv_row_gemms_slices`)."""
    geometry = [(d, o, hw) for _, d, o, hw in specs]
    return conv_row_gemms_slices([(x, [w for w, *_ in specs], operands)], geometry, groups,
                                  nonzero_pixels(x) if nonzero is None else nonzero)


def conv_row_gemms_slices(slices: list[ConvSlice], geometry: list[Geometry], groups: int, nonzero: np.ndarray,
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
    # memory order of the products and accumulators, for the shifted adds: output channels outermost when a grid
    # row holds more pixels than a job has output channels (each add then runs along whole rows of pixels),
    # channels innermost otherwise (along a job's channels); the arrays are indexed (channel, row, column) alike
    pixels_inner = nx >= max((w.shape[0] // groups for w in first), default=0)
    for gemm in schedule:
        for g in range(groups):
            prod = None
            for flat, cs, operands in flats:
                for c0 in range(0, cs, F32_EXACT_CHANNELS):
                    c1 = min(cs, c0 + F32_EXACT_CHANNELS)
                    band, pixels = operands.band(gemm.taps, g, c0, c1), flat[gemm.b0 * nx:gemm.b1 * nx,
                                                                                 g * cs + c0:g * cs + c1]
                    part = np.matmul(band, pixels.T) if pixels_inner else np.matmul(pixels, band.T)
                    if prod is None:
                        prod = part if part.dtype == prod_dtype else part.astype(prod_dtype)
                    else:
                        prod += part
            assert prod is not None
            if pixels_inner:  # (products, pixels) -> (product, row, column)
                prod = prod.reshape(-1, gemm.b1 - gemm.b0, nx)
            else:  # (pixels, products) -> (product, row, column), a view of channels-last memory
                prod = prod.reshape(gemm.b1 - gemm.b0, nx, -1).transpose(2, 0, 1)
            for j, q0, q1, n0, n1, rows, cols in gemm.adds:
                part = prod[n0:n1, :, q0:q1]
                acc = accs[j]
                out_hw = geometry[j][2]
                if acc is None and groups == 1 and part.shape[1:] == out_hw and sy == sx == 1:
                    # the whole output at once: keep the product (the rows of this job alone)
                    accs[j] = part if dtypes[j] == part.dtype else part.astype(dtypes[j])
                    continue
                if acc is None:
                    m = first[j].shape[0]
                    acc = accs[j] = (np.zeros((m, *out_hw), dtype=dtypes[j]) if pixels_inner else
                                     np.zeros((*out_hw, m), dtype=dtypes[j]).transpose(2, 0, 1))
                mg = n1 - n0
                acc[g * mg:(g + 1) * mg, rows, cols] += part
    out = []
    for w, (_, _, out_hw), acc, dtype in zip(first, geometry, accs, dtypes, strict=True):
        out.append(np.zeros((w.shape[0], *out_hw), dtype=dtype) if acc is None else acc)  # None: no tap reads x
    return out


SPARSE_MAX_DENSITY = 0.25  # below this fraction of non-zero input pixels, GEMM only those pixels
PIXEL_OUTPUTS_PER_CHANNEL = 4  # the pixel path's scatter GEMM then costs <= 1/4 of its products GEMM
SCATTER_BUDGET_ELEMENTS = 1 << 20  # largest 0/1 scatter matrix (4-8 MiB) before per-element adds


def conv_pixel_gemms(x: np.ndarray, specs: list[ConvSpec], groups: int, pixels: np.ndarray) -> list[np.ndarray]:
    """Exact sums of stride-1 convs of one staged input, by GEMMs over its non-zero pixels only.

    A pixel whose channels are all zero contributes nothing to any output, so skipping it is exact whatever the
    data (the check is on the values read from SRAM, not on where zeros are expected to be): a swelled ifmap is
    mostly such pixels. Per output channel m one GEMM ``pixels (P, C) @ W[m] (C, kh*kw)`` (the weight in its own
    memory order: no reordering copy) gives every product; tap (u, v) moves input pixel (y, x) to output
    (y - su, x - sv) (see :func:`conv_row_gemms`). The products reach their outputs through a 0/1 scatter
    matrix (P*kh*kw, OH*OW), one more GEMM, when the tile has no more outputs than channels (the scatter GEMM
    then costs less than the products); otherwise by one fancy-indexed add per tap (a one-to-one map: no
    collisions). Same exactness rules and return value as :func:`conv_row_gemms`."""
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


def conv_exact(x: np.ndarray, specs: list[ConvSpec], groups: int,
                operands: RowOperands | None = None) -> list[np.ndarray]:
    """Exact float sums of the jobs ``specs`` over one staged input (see :func:`conv_exact_slices`)."""
    return conv_exact_slices([(x, [w for w, *_ in specs], operands)], [(d, o, hw) for _, d, o, hw in specs], groups)


def conv_exact_slices(slices: list[ConvSlice], geometry: list[Geometry], groups: int,
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
        sums = [conv_pixel_gemms(x, [(w, *geo) for w, geo in zip(weights, geometry, strict=True)], groups, pixels)
                for x, weights, _ in slices]
        if len(sums) == 1:
            return sums[0]
        return [np.sum([s[j] for s in sums], axis=0, dtype=np.float64) for j in range(len(geometry))]
    return conv_row_gemms_slices(slices, geometry, groups, nonzero, stacked)
