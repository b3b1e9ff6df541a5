"""Tiling and SRAM allocation: how a layer is cut into tiles that fit the buffers, and where each tile lives.

Models the compiler/sequencer of the engine: it splits the output over output rows (and output channels when
the weights do not fit), computes for each tile the input rows the DMA must load, the conv jobs the MAC array
runs, and the SRAM regions (buffer, base address, shape, layout) every stage reads and writes. With
``pipeline.overlap: double_buffer`` every buffer is split into two slots (ping/pong) and consecutive tiles
alternate between them.

Three mappings of a layer onto the stride-1 engine:

- ``swell`` (transposed conv): load compact rows, swell them (zero insertion + border), one stride-1 conv job
  of the flipped, channel-swapped kernel;
- ``phase`` (transposed conv): no swelling; stride_h*stride_w phase jobs, each a stride-1 conv of the compact
  input with a sub-kernel, interleaved into the ofmap at write-back;
- ``direct`` (conv2d): one conv job with the layer's own stride and implicit zero padding.

Deliberately ignored: tiling of the width or of the reduction (K) dimension (a layer whose single output row
does not fit is rejected with the numbers), and re-use of halo rows between consecutive tiles (they are
re-loaded, and the DRAM traffic shows it).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from simulator.config import HardwareConfig, LayerConfig
from simulator.errors import ConvsimError
from simulator.geometry import (
    ceil_div,
    direct_input_window,
    kernel_span,
    swell_input_window,
    swelled_size,
)
from simulator.sram import BUFFERS, Region, physical_shape

Method = Literal["swell", "phase", "direct"]
Pair = tuple[int, int]
Range = tuple[int, int]
Window = tuple[Range, tuple["ConvJob", ...], Pair]  # input rows to load, the MAC jobs, the staged canvas size


def method_for(layer: LayerConfig, transposed_conv: Literal["swell", "phase"]) -> Method:
    return transposed_conv if layer.is_transposed else "direct"


# ---------------------------------------------------------------------------------------------------- phase maths


@dataclass(frozen=True)
class PhaseAxis:
    """One output phase along one axis of the phase method.

    Outputs ``o = s*m + phase`` (m in [0, out_count)) read input ``m + offset + u*dilation`` with sub-kernel tap
    ``u``; ``taps[u]`` is the original (unflipped) kernel tap feeding it, or None for a zero-padded tap.
    """

    phase: int
    taps: tuple[int | None, ...]
    offset: int
    dilation: int
    out_count: int


@functools.lru_cache(maxsize=64)  # pure in (layer, axis), and the tiler asks for every tile it sizes
def phase_axes(layer: LayerConfig, axis: int) -> tuple[PhaseAxis, ...]:
    """The phases along one axis that have at least one tap (a phase with no tap is bias only).

    Input ``i`` with tap ``t`` feeds output ``o = i*s - p + t*d``. For ``o = s*m + phase`` the taps are those with
    ``t*d = phase + p (mod s)`` and they read ``i = m + (phase + p - t*d)/s``. With ``g = gcd(d, s)`` a phase has
    taps only when ``g`` divides ``phase + p`` (dilation sharing a factor with the stride, or ``k < s``, leaves
    phases empty); its taps repeat every ``P = s/g``, so every phase gets ``ceil(k/P)`` sub-kernel taps
    (zero-padded when it has fewer) with sub-dilation ``d/g``.
    """
    k, s, p, d = layer.kernel_size[axis], layer.stride[axis], layer.padding[axis], layer.dilation[axis]
    out_size = layer.output_hw[axis]
    g = math.gcd(d, s)
    period, sub_dilation = s // g, d // g
    sub_k = ceil_div(k, period)
    phases = []
    for phase in range(min(s, out_size)):
        first = next((t for t in range(k) if (phase + p - t * d) % s == 0), None)
        if first is None:
            continue
        # tap t = first + j*period sits at offset (phase + p - t*d)/s, which falls by sub_dilation per j;
        # sub-kernel tap u = sub_k-1-j runs in increasing offset (the spatial flip)
        top = (phase + p - first * d) // s
        taps = tuple(
            t if t < k else None for t in (first + (sub_k - 1 - u) * period for u in range(sub_k))
        )
        phases.append(PhaseAxis(phase, taps, top - (sub_k - 1) * sub_dilation, sub_dilation,
                                ceil_div(out_size - phase, s)))
    return tuple(phases)


@functools.lru_cache(maxsize=64)
def phase_pairs(layer: LayerConfig) -> tuple[tuple[PhaseAxis, PhaseAxis], ...]:
    """Every 2-D phase with taps, in the order of the phase sub-kernels in the weight buffer."""
    return tuple((ph, pw) for ph in phase_axes(layer, 0) for pw in phase_axes(layer, 1))


@functools.lru_cache(maxsize=64)
def _phase_index(layer: LayerConfig) -> dict[Pair, int]:
    """(phase_h, phase_w) -> index of its sub-kernel in the weight buffer."""
    return {(a.phase, b.phase): i for i, (a, b) in enumerate(phase_pairs(layer))}


# ---------------------------------------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class ConvJob:
    """One conv the MAC array runs for a tile.

    The staged input (C, h, w) is placed at ``in_offset`` of a zero canvas (negative: cropped); outputs
    ``psum[r, c] = sum w[u, v] * canvas[r*stride + u*dil, c*stride + v*dil]`` land in the tile's ofmap at
    ``out_start + (r, c) * out_step``.
    """

    name: str
    kernel_hw: Pair
    stride: Pair
    dilation: Pair
    in_offset: Pair
    out_hw: Pair
    out_start: Pair
    out_step: Pair
    phase: tuple[PhaseAxis, PhaseAxis] | None = None
    weight_index: int = 0

    @property
    def psum_region(self) -> str:
        return "psum" if self.phase is None else f"psum_{self.name}"


@dataclass(frozen=True)
class Tile:
    """One tile: image ``n``, output rows ``oh``, output channels ``oc`` (groups ``groups``, inputs ``ic``)."""

    index: int
    n: int
    oh: Range
    oc: Range
    groups: Range
    ic: Range
    in_rows: Range
    slot: int
    weight_slot: int
    load_weight: bool
    jobs: tuple[ConvJob, ...]
    regions: tuple[Region, ...]

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def out_rows(self) -> int:
        return self.oh[1] - self.oh[0]

    @property
    def oc_count(self) -> int:
        return self.oc[1] - self.oc[0]

    @property
    def num_groups(self) -> int:
        return self.groups[1] - self.groups[0]


@dataclass(frozen=True)
class TilePlan:
    method: Method
    rows_per_tile: int
    oc_per_tile: int
    tiles: tuple[Tile, ...]
    peak_bytes: dict[str, int]


def _oc_ranges(layer: LayerConfig, oc_per_tile: int) -> list[tuple[Range, Range]]:
    """Output-channel tiles as (oc range, group range); a tile never straddles a group boundary partially."""
    return list(_iter_oc_ranges(layer.out_channels // layer.groups, layer.groups, oc_per_tile))


def _iter_oc_ranges(cout_g: int, groups: int, oc_per_tile: int) -> Iterator[tuple[Range, Range]]:
    if oc_per_tile >= cout_g:
        gpt = oc_per_tile // cout_g
        for g0 in range(0, groups, gpt):
            g1 = min(groups, g0 + gpt)
            yield (g0 * cout_g, g1 * cout_g), (g0, g1)
    else:
        for g in range(groups):
            for j in range(0, cout_g, oc_per_tile):
                yield (g * cout_g + j, g * cout_g + min(cout_g, j + oc_per_tile)), (g, g + 1)


def _row_ranges(out_h: int, rows: int) -> list[Range]:
    return [(r, min(out_h, r + rows)) for r in range(0, out_h, rows)]


_ITEMSIZE = {"int8": 1, "<i4": 4}  # np.dtype(d).itemsize of the two dtypes regions use
RegionSpec = tuple[str, str, int, tuple[int, ...], str, str, bool]  # name, buffer, base in slot, shape, dtype, layout,
# in the weight slot
ShapeKey = tuple[object, ...]


class _Planner:
    """One :func:`plan_tiles` call. The layer and hardware numbers are pulled into plain ints once, and everything
    that follows from a tile's shape alone (region offsets and sizes, the overflow verdict, the Region objects of
    one slot pair, the conv jobs of one relative row window) is computed once per distinct shape. The memos live
    only as long as one call: every call pays its own planning.

    Regions are bump-allocated inside one slot of one buffer, each on a bank-row boundary. A slot starts on a
    bank-row boundary (slot 0 at 0; with two slots each is half the buffer rounded down to whole bank rows), so a
    region's offset inside its slot does not depend on the slot, and neither does the overflow verdict.
    """

    def __init__(self, layer: LayerConfig, hw: HardwareConfig, method: Method) -> None:
        self.layer, self.method = layer, method
        self.slots = slots = 2 if hw.pipeline.overlap == "double_buffer" else 1
        self.n_img, _, self.h_in, self.w_in = layer.input_shape
        self.out_h, self.out_w = layer.output_hw
        self.kh, self.kw = layer.kernel_size
        self.stride = layer.stride
        self.cin_g = layer.in_channels // layer.groups
        self.cout_g = layer.out_channels // layer.groups
        self.transposed = layer.is_transposed
        self.act, self.c0, self.cols = hw.layout.activation, hw.layout.c0, hw.mac_array.cols
        # buffer -> (bank-row bytes, capacity of one slot, buffer size)
        self.geometry: dict[str, tuple[int, int, int]] = {}
        for buffer in BUFFERS:
            cfg = getattr(hw.sram, buffer)
            row = cfg.bank_width_bytes * cfg.num_banks
            room = cfg.size_bytes if slots == 1 else cfg.size_bytes // slots // row * row
            self.geometry[buffer] = (row, room, cfg.size_bytes)
        if method == "phase":
            self.axes_h, self.axes_w = phase_axes(layer, 0), phase_axes(layer, 1)
            # per row phase: (index, phase, input offset, rows its taps reach past the first)
            self.row_phases = [(i, ph.phase, ph.offset, (len(ph.taps) - 1) * ph.dilation)
                               for i, ph in enumerate(self.axes_h)]
            pairs = phase_pairs(layer)
            self.n_pairs = len(pairs)
            self.sub = (len(pairs[0][0].taps), len(pairs[0][1].taps)) if pairs else (1, 1)
            self.phase_index = _phase_index(layer)
        elif method == "swell":
            self.span_h, self.staged_w = kernel_span(layer, 0), swelled_size(layer, 1)
        self._rows: dict[Range, tuple[Range, ShapeKey, ShapeKey]] = {}
        self._shapes: dict[int, list[ShapeKey]] = {}
        self._specs: dict[tuple[ShapeKey, int, int], tuple[tuple[RegionSpec, ...], str | None]] = {}
        self._regions: dict[tuple[ShapeKey, int, int, int, int], tuple[Region, ...]] = {}
        self._jobs: dict[ShapeKey, tuple[ConvJob, ...]] = {}

    # ---------------------------------------------------------------------------------------- row windows, jobs

    def rows(self, oh: Range) -> tuple[Range, ShapeKey, ShapeKey]:
        """Output rows ``oh`` -> (input rows to load, the key every region size follows from, the key the conv
        jobs follow from)."""
        info = self._rows.get(oh)
        if info is None:
            info = self._rows[oh] = self._window(oh)
        return info

    def _window(self, oh: Range) -> tuple[Range, ShapeKey, ShapeKey]:
        layer, rows = self.layer, oh[1] - oh[0]
        if self.method == "direct":
            lo, hi = direct_input_window(layer, *oh)
            top = (lo if hi > lo else 0) - (oh[0] * self.stride[0] - layer.padding[0])
            return (lo, hi), (rows, hi - lo, None), (rows, top)
        if self.method == "swell":
            # (C, H, W) -> insert s-1 zeros -> (C, (H-1)s+1, (W-1)s+1) -> pad d(k-1)-p (+output_padding far side)
            lo, hi = swell_input_window(layer, *oh)
            return (lo, hi), (rows, hi - lo, (rows - 1 + self.span_h, self.staged_w)), (rows,)
        window, jobs = self._phase_rows(*oh)
        phases, sh = self.row_phases, self.stride[0]
        shape = (rows, window[1] - window[0], tuple((phases[i][1], m1 - m0) for i, m0, m1, _ in jobs))
        job_key = tuple((i, window[0] - first, m1 - m0, m0 * sh + phases[i][1] - oh[0]) for i, m0, m1, first in jobs)
        return window, shape, job_key

    def _phase_rows(self, o0: int, o1: int) -> tuple[Range, list[tuple[int, int, int, int]]]:
        """Phase method, output rows [o0, o1): the input rows to load, and per row phase with outputs there its
        (index, first and end phase row m0, m1, first input row read). Rows of phase a are m in [o0/s, ...); o0 is
        a multiple of s_h."""
        sh, h_in = self.stride[0], self.h_in
        jobs, lo, hi = [], h_in, 0
        for i, phase, offset, reach in self.row_phases:
            m0, m1 = (o0 - phase + sh - 1) // sh, (o1 - phase + sh - 1) // sh  # ceil_div
            if m1 <= m0:
                continue
            first = m0 + offset
            lo = min(lo, first if first > 0 else 0)
            last = m1 + offset + reach  # one past the last input row read
            hi = max(hi, last if last < h_in else h_in)
            jobs.append((i, m0, m1, first))
        return ((lo, hi) if hi > lo else (0, 0)), jobs

    def _shape(self, oh: Range) -> ShapeKey:
        """The region-size key of output rows ``oh`` alone (what the search needs; no jobs, no memo)."""
        if self.method != "phase":
            return self._window(oh)[1]
        window, jobs = self._phase_rows(*oh)
        phases = self.row_phases
        return oh[1] - oh[0], window[1] - window[0], tuple((phases[i][1], m1 - m0) for i, m0, m1, _ in jobs)

    def jobs(self, key: ShapeKey) -> tuple[ConvJob, ...]:
        """The MAC jobs of a tile, from its job key (relative to the tile's first output row)."""
        jobs = self._jobs.get(key)
        if jobs is None:
            jobs = self._jobs[key] = self._make_jobs(key)
        return jobs

    def _make_jobs(self, key: ShapeKey) -> tuple[ConvJob, ...]:
        layer, kernel, ow = self.layer, (self.kh, self.kw), self.out_w
        if self.method == "direct":
            rows, top = key
            return (ConvJob("conv", kernel, layer.stride, layer.dilation, (top, layer.padding[1]),  # type: ignore
                            (rows, ow), (0, 0), (1, 1)),)
        if self.method == "swell":
            return (ConvJob("conv", kernel, (1, 1), layer.dilation, (0, 0), (key[0], ow), (0, 0), (1, 1)),)  # type: ignore
        out = []
        for i, in_top, m_n, out_top in key:  # type: ignore[misc]
            ph = self.axes_h[i]
            for pw in self.axes_w:
                out.append(ConvJob(
                    f"p{ph.phase}_{pw.phase}", (len(ph.taps), len(pw.taps)), (1, 1), (ph.dilation, pw.dilation),
                    (in_top, -pw.offset), (m_n, pw.out_count), (out_top, pw.phase), layer.stride, (ph, pw),
                    self.phase_index[(ph.phase, pw.phase)]))
        return tuple(out)

    def shapes(self, rows: int) -> list[ShapeKey]:
        """The distinct region-size keys of the tiles ``rows`` output rows high, in tile order."""
        keys = self._shapes.get(rows)
        if keys is None:
            seen: dict[ShapeKey, None] = {}
            for oh in _row_ranges(self.out_h, rows):
                seen.setdefault(self._shape(oh), None)
            keys = self._shapes[rows] = list(seen)
        return keys

    # ------------------------------------------------------------------------------------------------- regions

    def spec(self, shape: ShapeKey, oc_n: int, ic_n: int) -> tuple[tuple[RegionSpec, ...], str | None]:
        """Every region of a tile (offset inside its slot), and the first buffer it overflows, described."""
        key = (shape, oc_n, ic_n)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = self._make_spec(shape, oc_n, ic_n)
        return spec

    def _make_spec(self, shape: ShapeKey, oc_n: int, ic_n: int) -> tuple[tuple[RegionSpec, ...], str | None]:
        act, c0, method, kh, kw, cin_g = self.act, self.c0, self.method, self.kh, self.kw, self.cin_g
        rows, in_n, extra = shape
        ends = dict.fromkeys(BUFFERS, 0)
        specs: list[RegionSpec] = []

        def alloc(name: str, buffer: str, shape: tuple[int, ...], dtype: str, layout: str) -> None:
            row = self.geometry[buffer][0]
            base = ceil_div(ends[buffer], row) * row
            ends[buffer] = base + math.prod(physical_shape(shape, layout, c0)) * _ITEMSIZE[dtype]  # type: ignore
            specs.append((name, buffer, base, shape, dtype, layout, buffer == "weight"))

        alloc("ifmap", "ifmap", (ic_n, in_n, self.w_in), "int8", act)  # type: ignore[arg-type]
        if method == "swell":
            alloc("ifmap_swelled", "ifmap", (ic_n, *extra), "int8", act)  # type: ignore[misc]
        # weight as stored in DRAM for the op: (C_in, C_out/g, kh, kw) transposed, (C_out, C_in/g, kh, kw) conv
        if self.transposed:
            j_n = oc_n if oc_n < self.cout_g else self.cout_g
            alloc("weight", "weight", (ic_n, j_n, kh, kw), "int8", "IOHW")
        else:
            alloc("weight", "weight", (oc_n, cin_g, kh, kw), "int8", "OIHW")
        if method == "swell":
            alloc("weight_conv", "weight", (oc_n, cin_g, kh, kw), "int8", "OIHW")
        elif method == "phase":
            alloc("weight_phases", "weight", (self.n_pairs, oc_n, cin_g, *self.sub), "int8", "POIHW")
        alloc("bias", "weight", (oc_n,), "<i4", "C")
        ow = self.out_w
        if method == "phase":
            for phase, m_n in extra:  # type: ignore[union-attr]
                for pw in self.axes_w:
                    alloc(f"psum_p{phase}_{pw.phase}", "psum", (oc_n, m_n, pw.out_count), "<i4", act)  # type: ignore
            alloc("ofmap", "psum", (oc_n, rows, ow), "<i4", act)  # type: ignore[arg-type]
        else:
            alloc("psum", "psum", (oc_n, rows, ow), "<i4", act)  # type: ignore[arg-type]
            # write-back adds the bias in place: ofmap aliases psum (same bytes, not allocated again)
            specs.append(("ofmap", *specs[-1][1:]))  # type: ignore[arg-type]
        err = None
        for buffer in sorted(BUFFERS):
            _, room, size = self.geometry[buffer]
            if ends[buffer] > room:
                err = (f"{buffer} needs {ends[buffer]:,} bytes per tile, hardware.sram.{buffer}.size_bytes={size} "
                       f"gives {room:,} per slot ({self.slots} slot(s))")
                break
        return tuple(specs), err

    def regions(self, shape: ShapeKey, oc_n: int, ic_n: int, slot: int, weight_slot: int) -> tuple[Region, ...]:
        key = (shape, oc_n, ic_n, slot, weight_slot)
        regions = self._regions.get(key)
        if regions is None:
            base = {b: (weight_slot if b == "weight" else slot) * self.geometry[b][1] for b in BUFFERS}
            regions = self._regions[key] = tuple(
                Region(name, buffer, base[buffer] + offset, shape_, dtype, layout, self.c0)  # type: ignore[arg-type]
                for name, buffer, offset, shape_, dtype, layout, _ in self.spec(shape, oc_n, ic_n)[0])
        return regions

    # ------------------------------------------------------------------------------------------------- planning

    def fits(self, rows: int, oc_per_tile: int) -> str | None:
        """None when every tile ``rows`` high and ``oc_per_tile`` wide fits, else the first overflow."""
        # the first two output-channel tiles: a full one and (when there is one) the next, maybe a tail
        for oc, groups in itertools.islice(_iter_oc_ranges(self.cout_g, self.layer.groups, oc_per_tile), 2):
            oc_n, ic_n = oc[1] - oc[0], (groups[1] - groups[0]) * self.cin_g
            for shape in self.shapes(rows):
                err = self.spec(shape, oc_n, ic_n)[1]
                if err:
                    return err
        return None

    def plan(self) -> TilePlan:
        """Choose the largest output-channel tile whose weights fit (preferring multiples of the array's
        columns), then the most output rows that fit."""
        layer, cout_g, out_h = self.layer, self.cout_g, self.out_h
        row_step = self.stride[0] if self.method == "phase" else 1
        # whole groups first, then within-group tiles that fill the array's columns, then any other width
        cols = self.cols
        whole = sorted({cout_g * g for g in range(1, layer.groups + 1)}, reverse=True)
        aligned = [c for c in range(cout_g - 1, 0, -1) if c % cols == 0]
        others = [c for c in range(cout_g - 1, 0, -1) if c % cols]
        for segment in (whole, aligned, others):
            # Every region of a tile only grows with its output channels, so in a descending segment the
            # candidates that fit are a suffix: binary search for its first element (the one trying them in order
            # would pick).
            lo, hi = 0, len(segment)
            while lo < hi:
                mid = (lo + hi) // 2
                if self.fits(row_step, segment[mid]) is None:
                    hi = mid
                else:
                    lo = mid + 1
            if lo == len(segment):
                continue
            oc_per_tile = segment[lo]
            lo, hi = 1, ceil_div(out_h, row_step)  # in units of row_step; lo always fits
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.fits(mid * row_step, oc_per_tile) is None:
                    lo = mid
                else:
                    hi = mid - 1
            return self.assemble(lo * row_step, oc_per_tile)
        raise ConvsimError(f"hardware.sram cannot hold one tile of layer {layer.name!r} "
                           f"(one output row, one output channel): {self.fits(row_step, whole[0])}")

    def assemble(self, rows: int, oc_per_tile: int) -> TilePlan:
        tiles: list[Tile] = []
        slots, cin_g = self.slots, self.cin_g
        row_ranges = _row_ranges(self.out_h, rows)
        for oc_index, (oc, groups) in enumerate(_oc_ranges(self.layer, oc_per_tile)):
            ic = (groups[0] * cin_g, groups[1] * cin_g)
            oc_n, ic_n, weight_slot = oc[1] - oc[0], ic[1] - ic[0], oc_index % slots
            first = True
            for n in range(self.n_img):
                for oh in row_ranges:
                    in_rows, shape, job_key = self.rows(oh)
                    index = len(tiles)
                    slot = index % slots
                    tiles.append(Tile(index, n, oh, oc, groups, ic, in_rows, slot, weight_slot, first,
                                      self.jobs(job_key), self.regions(shape, oc_n, ic_n, slot, weight_slot)))
                    first = False
        return TilePlan(self.method, rows, oc_per_tile, tuple(tiles), peak_occupancy(tiles, slots))


def plan_tiles(layer: LayerConfig, hw: HardwareConfig, method: Method) -> TilePlan:
    """Choose the largest output-channel tile whose weights fit (preferring multiples of the array's columns),
    then the most output rows that fit."""
    return _Planner(layer, hw, method).plan()


def tile_spans(tile: Tile, buffer: str) -> set[tuple[int, int]]:
    return {(r.base_addr, r.end_addr) for r in tile.regions if r.buffer == buffer}


def tile_bytes(tile: Tile, buffer: str) -> int:
    """Bytes a tile occupies in one buffer (aliased regions counted once)."""
    return sum(end - base for base, end in tile_spans(tile, buffer))


def peak_occupancy(tiles: list[Tile], slots: int) -> dict[str, int]:
    """Peak bytes live per buffer: one tile (serial) or two consecutive tiles (double-buffered). Regions two
    consecutive tiles share (the weights of one output-channel tile stay in one slot) are counted once."""
    peak = dict.fromkeys(BUFFERS, 0)
    # tiles of one shape share their region tuple: sum each distinct (previous, this) pair of tuples once
    done: set[tuple[int, int]] = set()
    prev: tuple[Region, ...] = ()
    for i, tile in enumerate(tiles):
        pair = (id(prev), id(tile.regions)) if slots == 2 and i > 0 else (0, id(tile.regions))
        if pair not in done:
            done.add(pair)
            for buffer in BUFFERS:
                spans = {(r.base_addr, r.end_addr) for r in tile.regions if r.buffer == buffer}
                if slots == 2 and i > 0:
                    spans |= {(r.base_addr, r.end_addr) for r in prev if r.buffer == buffer}
                peak[buffer] = max(peak[buffer], sum(end - base for base, end in spans))
        prev = tile.regions
    return peak
