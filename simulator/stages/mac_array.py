"""MAC array: a rows x cols systolic array running conv jobs (int8 x int8 products, int32 accumulation).

Values: :mod:`simulator.stages.mac_values` (with its fast GEMM paths in :mod:`simulator.stages.mac_gemm`)
computes the exact sums of a tile's conv jobs from the staged ifmap and conv weight the array reads from SRAM.
This module is the stage: it reads the regions, keeps the psum SRAM up to date and holds the cycle model, which
charges every zero the array issues.

Input-channel slices: a later slice continues the accumulators the previous one left in the psum SRAM. When
nothing observes the SRAM between stages (no dumps), no running sum can leave int32 and the plan brings the
same slices back on later spatial tiles, a spatial tile's slices are kept and run in one pass at its last
slice over their stacked operands (:func:`_batch_slice`); the final psum is the same exact sum, the intermediate
ones are not materialised. Operands derived from SRAM bytes (float32 GEMM operands) are reused while the bytes
are equal (``LayerContext.derived``).

Cycles: the classic fold model (as SCALE-Sim). A job is, per group, an (E x K) . (K x N) product, with E output
pixels, K = kh*kw*C_in/g, N output channels of the group in the tile.
``os``: (Sr, Sc, T) = (E, N, K); ``ws``: (Sr, Sc, T) = (K, N, E). folds = ceil(Sr/rows) * ceil(Sc/cols).
Cycles per fold: ``T + rows + cols - 2`` (os), ``2*rows + cols + T - 2`` (ws, the first ``rows`` cycles
preloading weights). With ``weight_double_buffer`` (ws only) the preload of a fold hides under the previous
fold: ``rows + folds * (rows + cols + T - 2)``. Groups and phase jobs run one after another. With the input
channels in slices, K is the slice's, and every slice after the first first reloads its accumulators from the
psum SRAM (``psum_read_cycles``: one bank row per cycle) and continues from them, in order. Quantized layers
cost the same (the zero-point subtraction is in the PE's input stage). Deliberately ignores: SRAM read-port
bandwidth limits on feeding the array, clock gating of idle PEs and zero skipping (zeros are issued like any
operand: that is what ``macs_issued`` counts).
``mac_array.zero_gating`` is an energy option (:mod:`simulator.energy`): the tagged zeros are still issued, so it
never changes the cycles here.
"""

from __future__ import annotations

import numpy as np

from simulator.config import BufferConfig, MacArrayConfig
from simulator.errors import AccumulatorOverflowError
from simulator.fixedpoint import OverflowPolicy, exact_sum_to_int32, narrow_to_int32, reduction_is_order_free
from simulator.geometry import ceil_div, useful_macs
from simulator.mapping.base import ConvJob
from simulator.sram import Sram
from simulator.stages.common import Dram, LayerContext, StageCost
from simulator.stages.mac_gemm import ConvSlice, RowOperands, conv_exact_slices
from simulator.stages.mac_values import centred_jobs_shared, conv_centred_i32, conv_i8_i32, row_gemm_ok
from simulator.tiling import Tile

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
    fused = all(row_gemm_ok(k, job.stride, w.shape[1], policy) and min(w.shape[0], *job.out_hw) > 0
                for job, w, k in zip(tile.jobs, job_weights, reductions, strict=True))
    order_free = all(reduction_is_order_free(k) for k in reductions)
    first = tile.first_slice  # this tile writes the psum afresh (no accumulators to continue)
    if fused:  # every job of the tile reads the same staged input: one pass of shared band GEMMs
        operands = _reused_row_operands(ctx, sram.raw(tile.region(mapping.conv_weight)), tile, job_weights)
        if order_free and _batch_slice(ctx, tile, x, job_weights, operands):
            return
        if len(ctx.pending) not in (0, tile.ic_slice):
            raise RuntimeError(f"tile {tile.index}: {len(ctx.pending)} pending slices before slice {tile.ic_slice}")
        # with the earlier slices of this spatial tile, if they were kept: then this is their first psum write
        slices: list[ConvSlice] = [*ctx.pending, (x, job_weights, operands)]
        first = first or bool(ctx.pending)
        ctx.pending.clear()
        exact = conv_exact_slices(slices, [(job.dilation, job.in_offset, job.out_hw) for job in tile.jobs], groups,
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
        initial = None if first else sram.read(region)
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
