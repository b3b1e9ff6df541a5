"""Tile planner and SRAM allocation: how a layer is cut into tiles that fit the buffers, and where each tile lives.

Models the compiler/sequencer of the engine. A tile is one image, a range of output rows, columns and channels,
and a slice of the input channels of its groups; the loop order is ``plan.LOOP_ORDER`` (slices innermost: they
accumulate in one psum region, weights stay resident only while there is one slice). The tile's mapping
(:mod:`simulator.mapping`) declares its input window, conv jobs and regions; the planner cuts ranges and
bump-allocates the regions on bank-row boundaries in one slot of each buffer (two, ping/pong, under
``double_buffer``). Candidate shapes (greedy for ever finer input-channel slicing, and the whole layer as one
tile in the whole buffer) are ranked by the caller's objective: fewest modelled cycles, then least DRAM traffic.
Deliberately ignored: halo reuse between neighbouring tiles (re-loaded; the DRAM traffic shows it) and loop
orders with the slices outside the spatial tiles.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

from simulator.config import HardwareConfig, LayerConfig
from simulator.errors import ConvsimError
from simulator.geometry import ceil_div
from simulator.mapping import ConvJob, Mapping, RegionDecl
from simulator.plan import Tile, TilePlan, peak_occupancy
from simulator.sram import BUFFERS, Region, physical_shape

Range = tuple[int, int]
_ITEMSIZE = {"int8": 1, "<i4": 4}


Shape = tuple[int, int, int, int]  # rows, cols, output channels, input channels per tile
Objective = Callable[[TilePlan], tuple[int, ...]]  # (cycles, DRAM bytes) of a plan


def _ranges(size: int, step: int) -> list[Range]:
    return [(r, min(size, r + step)) for r in range(0, size, step)]


def _iter_oc_ranges(cout_g: int, groups: int, oc_per_tile: int) -> Iterator[tuple[Range, Range]]:
    """Output-channel tiles as (oc range, group range); a tile never straddles a group boundary partially."""
    if oc_per_tile >= cout_g:
        gpt = oc_per_tile // cout_g
        for g0 in range(0, groups, gpt):
            g1 = min(groups, g0 + gpt)
            yield (g0 * cout_g, g1 * cout_g), (g0, g1)
    else:
        for g in range(groups):
            for j in range(0, cout_g, oc_per_tile):
                yield (g * cout_g + j, g * cout_g + min(cout_g, j + oc_per_tile)), (g, g + 1)


class _Planner:
    """One planning call with ``slots`` slots per buffer. Window, region and job computations are memoised per
    distinct shape for the call's lifetime only."""

    def __init__(self, layer: LayerConfig, hw: HardwareConfig, mapping: Mapping, slots: int) -> None:
        self.layer, self.mapping, self.slots = layer, mapping, slots
        self.c0, self.cols = hw.layout.c0, hw.mac_array.cols
        self.cin_g, self.cout_g, self.out_hw = mapping.cin_g, mapping.cout_g, layer.output_hw
        self.geometry: dict[str, tuple[int, int, int]] = {}  # buffer -> (bank-row bytes, slot bytes, size)
        for buffer in BUFFERS:
            cfg = getattr(hw.sram, buffer)
            row = cfg.bank_width_bytes * cfg.num_banks  # a slot is whole bank rows
            self.geometry[buffer] = (row, cfg.size_bytes // slots // row * row if slots == 2 else cfg.size_bytes,
                                     cfg.size_bytes)
        self._win: dict[tuple[int, int, int], object] = {}
        self._keys: dict[tuple[int, int], list[object]] = {}
        self._specs: dict[tuple[object, ...], tuple[tuple[tuple[RegionDecl, int], ...], str | None]] = {}
        self._regions: dict[tuple[object, ...], tuple[Region, ...]] = {}
        self._jobs: dict[tuple[object, object], tuple[ConvJob, ...]] = {}

    def window(self, axis: int, o0: int, o1: int):  # type: ignore[no-untyped-def]
        if (axis, o0, o1) not in self._win:
            self._win[(axis, o0, o1)] = self.mapping.window(axis, o0, o1)
        return self._win[(axis, o0, o1)]

    def keys(self, axis: int, size: int) -> list[object]:
        """The distinct size keys of the tiles ``size`` long along ``axis``."""
        key = (axis, size)
        if key not in self._keys:
            self._keys[key] = list(dict.fromkeys(self.window(axis, *r).size
                                                 for r in _ranges(self.out_hw[axis], size)))
        return self._keys[key]

    def spec(self, rows: object, cols: object, oc_n: int, ic_n: int) -> tuple[tuple[tuple[RegionDecl, int], ...],
                                                                               str | None]:
        """Every region with its offset inside its slot, and the first buffer it overflows, described."""
        key = (rows, cols, oc_n, ic_n)
        if key in self._specs:
            return self._specs[key]
        ends = dict.fromkeys(BUFFERS, 0)
        placed: list[tuple[RegionDecl, int]] = []
        offsets: dict[str, int] = {}
        for decl in self.mapping.regions(rows, cols, oc_n, ic_n):  # type: ignore[arg-type]
            if decl.alias is not None:
                offsets[decl.name] = offsets[decl.alias]
            else:
                row = self.geometry[decl.buffer][0]
                offsets[decl.name] = base = ceil_div(ends[decl.buffer], row) * row
                ends[decl.buffer] = base + math.prod(physical_shape(decl.shape, decl.layout, self.c0)) * _ITEMSIZE[
                    decl.dtype]  # type: ignore[arg-type]
            placed.append((decl, offsets[decl.name]))
        err = None
        for buffer in sorted(BUFFERS):
            _, room, size = self.geometry[buffer]
            if ends[buffer] > room:
                err = (f"{buffer} needs {ends[buffer]:,} bytes per tile, hardware.sram.{buffer}.size_bytes={size} "
                       f"gives {room:,} per slot ({self.slots} slot(s))")
                break
        self._specs[key] = out = (tuple(placed), err)
        return out

    def fits(self, shape: Shape) -> str | None:
        """None when every tile of ``shape`` fits, else the first overflow. Regions only grow with a tile's
        channels, so the first output-channel tile (the largest; later ones are equal or a smaller tail) decides."""
        rows, cols, oc_per, ic_per = shape
        oc, groups = next(_iter_oc_ranges(self.cout_g, self.layer.groups, oc_per))
        ic_n = (groups[1] - groups[0]) * self.cin_g if ic_per >= self.cin_g else ic_per
        for rk in self.keys(0, rows):
            for ck in self.keys(1, cols):
                err = self.spec(rk, ck, oc[1] - oc[0], ic_n)[1]
                if err:
                    return err
        return None

    def largest(self, options: list[int], shape: Callable[[int], Shape]) -> int | None:
        """The largest of the descending ``options`` whose shape fits (regions grow with every dimension): the
        first when it fits (the common case), else a binary search."""
        lo, hi = (0, 0) if options and self.fits(shape(options[0])) is None else (1, len(options))
        while lo < hi:
            mid = (lo + hi) // 2
            if self.fits(shape(options[mid])) is None:
                hi = mid
            else:
                lo = mid + 1
        return options[lo] if lo < len(options) else None

    def extent_options(self, axis: int) -> list[int]:
        """Tile lengths along ``axis``, largest first: every multiple of the mapping's step."""
        step = self.mapping.out_step(axis)
        return [u * step for u in range(ceil_div(self.out_hw[axis], step), 0, -1)]

    def pick_oc(self, rows: int, cols: int, ic_per: int) -> int | None:
        """Output channels per tile: the first segment with a count that fits, its largest: whole groups (all,
        then fewer; one group under an input-channel slice), then counts within a group that fill the array's
        columns, then any other count. Within a descending segment the counts that fit are a suffix."""
        cout_g, cols_pe = self.cout_g, self.cols
        whole = sorted({cout_g * g for g in range(1, self.layer.groups + 1)}, reverse=True)
        if ic_per < self.cin_g:  # an input-channel slice belongs to one group
            whole = [cout_g]
        aligned = [c for c in range(cout_g - 1, 0, -1) if c % cols_pe == 0]
        others = [c for c in range(cout_g - 1, 0, -1) if c % cols_pe]
        for segment in (whole, aligned, others):
            found = self.largest(segment, lambda c: (rows, cols, c, ic_per))
            if found is not None:
                return found
        return None

    def greedy(self, ic: int, cols_first: bool) -> Shape:
        """With input-channel slices of ``ic``: the widest tile, then the most output channels (or output channels
        first, then width), then the most rows that fit. ``(step, step, 1, ic)`` must fit."""
        rs, cs = self.mapping.out_step(0), self.mapping.out_step(1)
        widths = self.extent_options(1)
        if cols_first:
            cols = self.largest(widths, lambda w: (rs, w, 1, ic)) or cs
            oc = self.pick_oc(rs, cols, ic) or 1
        else:
            oc = self.pick_oc(rs, cs, ic) or 1
            cols = self.largest(widths, lambda w: (rs, w, oc, ic)) or cs
        rows = self.largest(self.extent_options(0), lambda r: (r, cols, oc, ic)) or rs
        return rows, cols, oc, ic

    def candidates(self) -> Iterator[list[Shape]]:
        """Legal tile shapes worth comparing, in rounds of ever finer input-channel slicing: for the fewest slices
        whose smallest tile fits, then twice, four times... as many, the greedy shape width-first and
        channels-first. Nothing when the smallest tile does not fit."""
        rs, cs = self.mapping.out_step(0), self.mapping.out_step(1)
        slices = sorted({ceil_div(self.cin_g, k) for k in range(1, self.cin_g + 1)}, reverse=True)
        ic = self.largest(slices, lambda i: (rs, cs, 1, i))
        if ic is None:
            return
        count, seen = ceil_div(self.cin_g, ic), ic + 1
        while count <= self.cin_g:
            ic = ceil_div(self.cin_g, count)
            if ic < seen:
                seen = ic
                yield list(dict.fromkeys(self.greedy(ic, cols_first) for cols_first in (True, False)))
            count *= 2

    def count(self, shape: Shape) -> int:
        """Number of tiles of ``shape``."""
        rows, cols, oc_per, ic_per = shape
        oc_tiles = sum(1 for _ in _iter_oc_ranges(self.cout_g, self.layer.groups, oc_per))
        slices = 1 if ic_per >= self.cin_g else ceil_div(self.cin_g, ic_per)
        return (oc_tiles * self.mapping.n_img * ceil_div(self.out_hw[0], rows) * ceil_div(self.out_hw[1], cols)
                * slices)

    def regions(self, rk: object, ck: object, oc_n: int, ic_n: int, slots: tuple[int, int, int]) -> tuple[Region, ...]:
        key = (rk, ck, oc_n, ic_n, slots)
        regions = self._regions.get(key)
        if regions is None:
            base = {b: s * self.geometry[b][1] for b, s in zip(BUFFERS, slots, strict=True)}
            regions = self._regions[key] = tuple(
                Region(d.name, d.buffer, base[d.buffer] + off, d.shape, d.dtype, d.layout, self.c0)  # type: ignore
                for d, off in self.spec(rk, ck, oc_n, ic_n)[0])
        return regions

    def iter_tiles(self, shape: Shape) -> Iterator[Tile]:
        """The tiles of ``shape`` in loop order (oc > n > oh > ow > ic)."""
        rows, cols, oc_per, ic_per = shape
        cin_g, slots = self.cin_g, self.slots
        row_ranges, col_ranges = _ranges(self.out_hw[0], rows), _ranges(self.out_hw[1], cols)
        index = spatial = weight_loads = 0
        for oc, groups in _iter_oc_ranges(self.cout_g, self.layer.groups, oc_per):
            if ic_per >= cin_g:
                slices = [(groups[0] * cin_g, groups[1] * cin_g)]
            else:
                slices = [(groups[0] * cin_g + i, groups[0] * cin_g + min(cin_g, i + ic_per))
                          for i in range(0, cin_g, ic_per)]
            first = True
            for n, oh, ow in itertools.product(range(self.mapping.n_img), row_ranges, col_ranges):
                rw, cw = self.window(0, *oh), self.window(1, *ow)
                jobs = self._jobs.get((rw.jobs, cw.jobs))
                if jobs is None:
                    jobs = self._jobs[(rw.jobs, cw.jobs)] = self.mapping.jobs(rw.jobs, cw.jobs)
                for k, ic in enumerate(slices):
                    load = first or len(slices) > 1  # weights stay resident only while there is one slice
                    weight_loads += load
                    slot_ids = (index % slots, (weight_loads - 1) % slots, spatial % slots)
                    regions = self.regions(rw.size, cw.size, oc[1] - oc[0], ic[1] - ic[0], slot_ids)
                    yield Tile(index, n, oh, ow, oc, groups, ic, k, len(slices), rw.inputs, cw.inputs,
                               slot_ids[0], slot_ids[2], slot_ids[1], load, jobs, regions)
                    index += 1
                    first = False
                spatial += 1

    def plan(self, shape: Shape, tiles: tuple[Tile, ...] | None = None) -> TilePlan:
        rows, cols, oc_per, ic_per = shape
        tiles = tuple(self.iter_tiles(shape)) if tiles is None else tiles
        return TilePlan(self.mapping, min(rows, self.out_hw[0]), min(cols, self.out_hw[1]), oc_per,
                        min(ic_per, self.cin_g), self.slots, tiles, peak_occupancy(list(tiles), self.slots))


SAMPLE_TILES = 16  # tiles of a candidate the objective models (then scaled to the candidate's tile count)
MARGIN = 0.02  # a candidate later in order must model this much fewer cycles: the sampled estimate's noise


def plan_tiles(layer: LayerConfig, hw: HardwareConfig, mapping: Mapping,
               objective: Objective | None = None) -> TilePlan:
    """The tile plan of ``layer`` under ``mapping``.

    Candidates (:meth:`_Planner.candidates`, and the whole layer as one tile in the whole buffer under
    ``double_buffer``) are ranked by ``objective`` over their first SAMPLE_TILES tiles, scaled to their tile
    count (fewer slices first; a later candidate must model MARGIN fewer cycles, an equal one less DRAM traffic);
    without an objective, or when the first candidate is the whole layer in one tile, that one is taken.
    When not even the smallest tile fits half of each buffer, the tiles use whole buffers one at a time (the
    plan's ``slots`` is 1 and the pipeline schedules it serially). Refuses only when the smallest tile (one
    output pixel, or one phase period, of one output channel over one input channel) does not fit a whole buffer.
    """
    slots = 2 if hw.pipeline.overlap == "double_buffer" else 1
    planner = _Planner(layer, hw, mapping, slots)
    rounds = planner.candidates()
    first = next(rounds, None)
    if first is None and slots == 2:  # not even the smallest tile fits half a buffer: tiles run one at a time
        slots, planner = 1, _Planner(layer, hw, mapping, 1)
        rounds = planner.candidates()
        first = next(rounds, None)
    if first is None:
        smallest = (mapping.out_step(0), mapping.out_step(1), 1, 1)
        raise ConvsimError(f"hardware.sram cannot hold the smallest tile of layer {layer.name!r} "
                           f"({smallest[0]}x{smallest[1]} output pixel(s) of one output channel over one input "
                           f"channel): {planner.fits(smallest)}")
    if objective is None or planner.count(first[0]) == 1:  # no objective, or the whole layer fits one tile
        return planner.plan(first[0])

    def score(p: _Planner, shape: Shape) -> tuple[float, ...]:
        sample = tuple(itertools.islice(p.iter_tiles(shape), SAMPLE_TILES))
        scale = p.count(shape) / len(sample)
        return tuple(value * scale for value in objective(p.plan(shape, sample)))

    options = [(planner, shape) for shape in first]
    if slots == 2:  # a layer that fits one tile gets the whole buffer
        whole = _Planner(layer, hw, mapping, 1)
        one = (*layer.output_hw, layer.out_channels, layer.in_channels)
        if whole.fits(one) is None:
            options.append((whole, one))
    best = None
    for candidates in itertools.chain([options], ([(planner, s) for s in shapes] for shapes in rounds)):
        improved = False
        for option in candidates:  # in order: a later candidate must beat the best by MARGIN
            cost = score(*option)
            if best is None or cost[0] < best[0][0] * (1 - MARGIN) or (cost[0] == best[0][0] and cost < best[0]):
                best, improved = (cost, option), True
        if not improved:  # the cost falls, then rises, with finer slicing: stop at the first round without gain
            break
    return best[1][0].plan(best[1][1])  # type: ignore[index]


__all__ = ["Tile", "TilePlan", "plan_tiles"]
