"""Tile cutting and SRAM allocation: the tiles of one tile shape in one loop order, and where each tile lives.

Models the compiler/sequencer of the engine for a chosen tile shape (output channels x input channels x rows x
columns per tile): which tiles there are, in which order (``SLICES_INNER`` or ``SLICES_OUTER``,
:mod:`simulator.plan`), which slot or area of each buffer each uses, and when a tile loads its weights. The
tile's mapping (:mod:`simulator.mapping`) declares its input window, conv jobs and regions; the tiler cuts
ranges and bump-allocates the regions on bank-row boundaries in one slot of each buffer (two, ping/pong, under
``double_buffer``; under ``SLICES_OUTER`` one psum area per spatial tile of an output-channel tile, all resident
together). It also proposes the greedy candidate shapes the planner (:mod:`simulator.tiling`) ranks.
Deliberately ignored: halo reuse between neighbouring tiles (re-loaded; the DRAM traffic shows it) and ifmap
reuse across output-channel tiles.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

from simulator.config import HardwareConfig, LayerConfig
from simulator.geometry import ceil_div
from simulator.mapping import ConvJob, Mapping, RegionDecl
from simulator.plan import SLICES_INNER, Tile, TilePlan, peak_occupancy
from simulator.sram import BUFFERS, Region, physical_shape

Range = tuple[int, int]
_ITEMSIZE = {"int8": 1, "<i4": 4}


Shape = tuple[int, int, int, int]  # rows, cols, output channels, input channels per tile


def _ranges(size: int, step: int) -> list[Range]:
    return [(r, min(size, r + step)) for r in range(0, size, step)]


def iter_oc_ranges(cout_g: int, groups: int, oc_per_tile: int) -> Iterator[tuple[Range, Range]]:
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


class Tiler:
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
        oc, groups = next(iter_oc_ranges(self.cout_g, self.layer.groups, oc_per))
        ic_n = (groups[1] - groups[0]) * self.cin_g if ic_per >= self.cin_g else ic_per
        for rk in self.keys(0, rows):
            for ck in self.keys(1, cols):
                err = self.spec(rk, ck, oc[1] - oc[0], ic_n)[1]
                if err:
                    return err
        return None

    def largest(self, options: list[int], shape: Callable[[int], Shape],
                ok: Callable[[Shape], bool] | None = None) -> int | None:
        """The largest of the descending ``options`` whose shape fits (regions grow with every dimension), or
        passes ``ok``: the first when it does (the common case), else a binary search."""
        ok = ok or (lambda sh: self.fits(sh) is None)
        lo, hi = (0, 0) if options and ok(shape(options[0])) else (1, len(options))
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(shape(options[mid])):
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
        oc_tiles = sum(1 for _ in iter_oc_ranges(self.cout_g, self.layer.groups, oc_per))
        slices = 1 if ic_per >= self.cin_g else ceil_div(self.cin_g, ic_per)
        return (oc_tiles * self.mapping.n_img * ceil_div(self.out_hw[0], rows) * ceil_div(self.out_hw[1], cols)
                * slices)

    def regions(self, rk: object, ck: object, oc_n: int, ic_n: int, slots: tuple[int, int, int],
                psum_stride: int | None = None) -> tuple[Region, ...]:
        """The tile's regions in ifmap, weight and psum slots ``slots``; with ``psum_stride``, the psum slot is
        an area of that many bytes (``SLICES_OUTER``) instead of half the buffer."""
        key = (rk, ck, oc_n, ic_n, slots) if psum_stride is None else (rk, ck, oc_n, ic_n, slots, psum_stride)
        regions = self._regions.get(key)
        if regions is None:
            base = {b: s * self.geometry[b][1] for b, s in zip(BUFFERS, slots, strict=True)}
            if psum_stride is not None:
                base["psum"] = slots[2] * psum_stride
            regions = self._regions[key] = tuple(
                Region(d.name, d.buffer, base[d.buffer] + off, d.shape, d.dtype, d.layout, self.c0)  # type: ignore
                for d, off in self.spec(rk, ck, oc_n, ic_n)[0])
        return regions

    def slices(self, groups: Range, ic_per: int) -> list[Range]:
        """The input-channel slices of an output-channel tile over ``groups``."""
        g0 = groups[0] * self.cin_g
        if ic_per >= self.cin_g:
            return [(g0, groups[1] * self.cin_g)]
        return [(g0 + i, g0 + min(self.cin_g, i + ic_per)) for i in range(0, self.cin_g, ic_per)]

    def spatial(self, shape: Shape) -> list[tuple[int, Range, Range]]:
        """The spatial tiles (image, output rows, output columns) of ``shape``, in loop order."""
        return list(itertools.product(range(self.mapping.n_img), _ranges(self.out_hw[0], shape[0]),
                                      _ranges(self.out_hw[1], shape[1])))

    def spatial_count(self, shape: Shape) -> int:
        """The number of spatial tiles of ``shape``."""
        return self.mapping.n_img * ceil_div(self.out_hw[0], shape[0]) * ceil_div(self.out_hw[1], shape[1])

    def psum_stride(self, shape: Shape) -> int:
        """Bytes between two spatial tiles' psum areas under ``SLICES_OUTER``: the largest tile's psum-buffer
        regions, in whole bank rows."""
        rows, cols, oc_per, ic_per = shape
        oc, groups = next(iter_oc_ranges(self.cout_g, self.layer.groups, oc_per))
        ic_n = (groups[1] - groups[0]) * self.cin_g if ic_per >= self.cin_g else ic_per
        row, end = self.geometry["psum"][0], 0
        for rk in self.keys(0, rows):
            for ck in self.keys(1, cols):
                for d, off in self.spec(rk, ck, oc[1] - oc[0], ic_n)[0]:
                    if d.buffer == "psum":
                        end = max(end, off + math.prod(physical_shape(d.shape, d.layout, self.c0)) * _ITEMSIZE[
                            d.dtype])  # type: ignore[arg-type]
        return ceil_div(end, row) * row

    def outer_fits(self, shape: Shape) -> bool:
        """``SLICES_OUTER`` is legal for ``shape``: its tiles fit, and so do all spatial tiles' psum areas of one
        output-channel tile together, in the whole psum buffer."""
        return self.fits(shape) is None and self.spatial_count(shape) * self.psum_stride(shape) <= self.geometry[
            "psum"][2]

    def outer_shape(self, shape: Shape) -> Shape | None:
        """The ``SLICES_OUTER`` shape derived from a candidate: its output channels cut until every spatial tile's
        psum area fits the psum buffer, then its rows grown back; None when one channel does not fit."""
        rows, cols, oc_per, ic = shape
        if not self.outer_fits((rows, cols, 1, ic)):  # (the common refusal, checked once)
            return None
        oc = self.largest(list(range(oc_per, 0, -1)), lambda c: (rows, cols, c, ic), self.outer_fits)
        if oc is None:
            return None
        rows = self.largest(self.extent_options(0), lambda r: (r, cols, oc, ic), self.outer_fits) or rows
        return rows, cols, oc, ic

    def jobs(self, rw: object, cw: object) -> tuple[ConvJob, ...]:
        key = (rw.jobs, cw.jobs)  # type: ignore[attr-defined]
        jobs = self._jobs.get(key)
        if jobs is None:
            jobs = self._jobs[key] = self.mapping.jobs(*key)
        return jobs

    def iter_tiles(self, shape: Shape) -> Iterator[Tile]:
        """The tiles of ``shape`` in loop order ``SLICES_INNER`` (oc > n > oh > ow > ic): one spatial tile's
        slices accumulate in one psum slot; the weights are reloaded on every tile when there is more than one
        slice."""
        oc_per, ic_per = shape[2:]
        slots, index, spatial, weight_loads = self.slots, 0, 0, 0
        spatial_tiles = self.spatial(shape)
        for oc, groups in iter_oc_ranges(self.cout_g, self.layer.groups, oc_per):
            slices = self.slices(groups, ic_per)
            first, n_slices, oc_n = True, len(slices), oc[1] - oc[0]
            for n, oh, ow in spatial_tiles:
                rw, cw = self.window(0, *oh), self.window(1, *ow)
                jobs = self.jobs(rw, cw)
                psum_slot = spatial % slots  # (one spatial tile's input-channel slices share its psum)
                for k, ic in enumerate(slices):
                    load = first or n_slices > 1  # weights stay resident only while there is one slice
                    weight_loads += load
                    slot, weight_slot = index % slots, (weight_loads - 1) % slots
                    key = (rw.size, cw.size, oc_n, ic[1] - ic[0], (slot, weight_slot, psum_slot))
                    regions = self._regions.get(key) or self.regions(*key)
                    yield Tile.make(index, n, oh, ow, oc, groups, ic, k, n_slices, rw.inputs, cw.inputs, slot,
                                    psum_slot, weight_slot, load, jobs, regions)
                    index += 1
                    first = False
                spatial += 1

    def iter_outer(self, shape: Shape, n_spatial: int | None = None,
                   picks: Callable[[int], list[int]] | None = None, oc_tiles: int | None = None) -> Iterator[Tile]:
        """The tiles of ``shape`` in loop order ``SLICES_OUTER`` (oc > ic > n > oh > ow): each slice's weights
        are loaded once, at its first spatial tile, into the next weight slot and stay resident for the slice;
        spatial tile ``s`` accumulates in its own psum area at ``s * psum_stride``. The objective's samples
        take the first ``n_spatial`` spatial tiles, the slices ``picks(count)`` and the first ``oc_tiles``."""
        slots, index, weight_loads = self.slots, 0, 0
        stride = self.psum_stride(shape)
        spatial = self.spatial(shape)[:n_spatial]
        for oc, groups in itertools.islice(iter_oc_ranges(self.cout_g, self.layer.groups, shape[2]), oc_tiles):
            slices, oc_n = self.slices(groups, shape[3]), oc[1] - oc[0]
            for k in range(len(slices)) if picks is None else picks(len(slices)):
                ic = slices[k]
                for s, (n, oh, ow) in enumerate(spatial):
                    rw, cw = self.window(0, *oh), self.window(1, *ow)
                    weight_loads += s == 0
                    slot, weight_slot = index % slots, (weight_loads - 1) % slots
                    regions = self.regions(rw.size, cw.size, oc_n, ic[1] - ic[0], (slot, weight_slot, s), stride)
                    yield Tile.make(index, n, oh, ow, oc, groups, ic, k, len(slices), rw.inputs, cw.inputs, slot,
                                    s, weight_slot, s == 0, self.jobs(rw, cw), regions)
                    index += 1

    def plan(self, shape: Shape, order: str = SLICES_INNER, tiles: tuple[Tile, ...] | None = None) -> TilePlan:
        """The plan of ``shape`` in ``order``: all its tiles, or (the objective's samples) ``tiles``, whose peak
        occupancy is then not computed (the objective does not read it)."""
        rows, cols, oc_per, ic_per = shape
        peak: dict[str, int] = {}
        if tiles is None:
            tiles = tuple(self.iter_tiles(shape) if order == SLICES_INNER else self.iter_outer(shape))
            peak = peak_occupancy(list(tiles), self.slots, order)
        return TilePlan(self.mapping, min(rows, self.out_hw[0]), min(cols, self.out_hw[1]), oc_per,
                        min(ic_per, self.cin_g), self.slots, tiles, peak, order)


__all__ = ["Range", "Shape", "Tiler", "iter_oc_ranges"]
