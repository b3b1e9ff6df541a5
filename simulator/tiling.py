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
import math
from collections.abc import Callable
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
from simulator.sram import BUFFERS, Region

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
    cout_g = layer.out_channels // layer.groups
    out = []
    if oc_per_tile >= cout_g:
        gpt = oc_per_tile // cout_g
        for g0 in range(0, layer.groups, gpt):
            g1 = min(layer.groups, g0 + gpt)
            out.append(((g0 * cout_g, g1 * cout_g), (g0, g1)))
    else:
        for g in range(layer.groups):
            for j in range(0, cout_g, oc_per_tile):
                out.append(((g * cout_g + j, g * cout_g + min(cout_g, j + oc_per_tile)), (g, g + 1)))
    return out


def _row_ranges(out_h: int, rows: int) -> list[Range]:
    return [(r, min(out_h, r + rows)) for r in range(0, out_h, rows)]


def _jobs_and_window(layer: LayerConfig, method: Method, oh: Range) -> Window:
    """Input rows to load, the MAC jobs, and the staged (swelled) canvas size for output rows ``oh``."""
    kh, kw = layer.kernel_size
    ow = layer.output_hw[1]
    rows = oh[1] - oh[0]
    if method == "direct":
        lo, hi = direct_input_window(layer, *oh)
        top = (lo if hi > lo else 0) - (oh[0] * layer.stride[0] - layer.padding[0])
        job = ConvJob("conv", (kh, kw), layer.stride, layer.dilation, (top, layer.padding[1]),
                      (rows, ow), (0, 0), (1, 1))
        return (lo, hi), (job,), (0, 0)
    if method == "swell":
        # (C, H, W) -> insert s-1 zeros -> (C, (H-1)s+1, (W-1)s+1) -> pad d(k-1)-p (+output_padding far side)
        staged = (rows - 1 + kernel_span(layer, 0), swelled_size(layer, 1))
        window = swell_input_window(layer, *oh)
        job = ConvJob("conv", (kh, kw), (1, 1), layer.dilation, (0, 0), (rows, ow), (0, 0), (1, 1))
        return window, (job,), staged
    # phase: rows of phase a are m in [oh0/s, ...); oh0 is a multiple of s_h
    sh = layer.stride[0]
    window, jobs = _phase_rows(layer, oh)
    index = _phase_index(layer)
    out_jobs = []
    axes_w = phase_axes(layer, 1)
    for (ph, m0, m1, first), pw in ((j, pw) for j in jobs for pw in axes_w):
        out_jobs.append(ConvJob(
            f"p{ph.phase}_{pw.phase}", (len(ph.taps), len(pw.taps)), (1, 1), (ph.dilation, pw.dilation),
            (window[0] - first, -pw.offset), (m1 - m0, pw.out_count),
            (m0 * sh + ph.phase - oh[0], pw.phase), layer.stride, (ph, pw), index[(ph.phase, pw.phase)]))
    return window, tuple(out_jobs), (0, 0)


def _phase_rows(layer: LayerConfig, oh: Range) -> tuple[Range, list[tuple[PhaseAxis, int, int, int]]]:
    """Phase method, output rows ``oh``: the input rows to load, and per row phase with outputs in ``oh`` its
    (phase, first and end phase row m0, m1, first input row read)."""
    sh = layer.stride[0]
    h_in = layer.input_shape[2]
    jobs, lo, hi = [], h_in, 0
    for ph in phase_axes(layer, 0):
        m0 = ceil_div(oh[0] - ph.phase, sh)
        m1 = ceil_div(oh[1] - ph.phase, sh)
        if m1 <= m0:
            continue
        first = m0 + ph.offset
        last = m1 - 1 + ph.offset + (len(ph.taps) - 1) * ph.dilation
        lo, hi = min(lo, max(0, first)), max(hi, min(h_in, last + 1))
        jobs.append((ph, m0, m1, first))
    return ((lo, hi) if hi > lo else (0, 0)), jobs


def _phase_shape(layer: LayerConfig, oh: Range) -> tuple[object, ...]:
    """Everything a phase tile's region sizes follow from (rows, input rows, each row phase's psum height),
    without building its jobs: the planner sizes only tiles of a shape it has not sized yet."""
    window, jobs = _phase_rows(layer, oh)
    return oh[1] - oh[0], window[1] - window[0], tuple((ph.phase, m1 - m0) for ph, m0, m1, _ in jobs)


class _Allocator:
    """Bump allocator inside one slot of one buffer; every region starts on a bank-row boundary."""

    def __init__(self, hw: HardwareConfig, slots: int, geometry: dict[str, tuple[int, int]] | None = None) -> None:
        self.hw, self.slots = hw, slots
        self.next: dict[tuple[str, int], int] = {}
        # buffer -> (bank-row bytes, slot bytes); shareable by every tile of one plan (same hw, same slots)
        self._geometry = {} if geometry is None else geometry

    def geometry(self, buffer: str) -> tuple[int, int]:
        """(bank-row bytes, capacity of one slot): with two slots, half the buffer rounded down to whole bank rows,
        so every slot starts on a bank-row boundary and has the same room (the planner checks slot 0 only)."""
        if buffer not in self._geometry:
            cfg = getattr(self.hw.sram, buffer)
            row = cfg.bank_width_bytes * cfg.num_banks
            room = cfg.size_bytes if self.slots == 1 else cfg.size_bytes // self.slots // row * row
            self._geometry[buffer] = (row, room)
        return self._geometry[buffer]

    def slot_bytes(self, buffer: str) -> int:
        return self.geometry(buffer)[1]

    def slot_base(self, buffer: str, slot: int) -> int:
        return slot * self.geometry(buffer)[1]

    def alloc(self, name: str, buffer: str, slot: int, shape: tuple[int, ...], dtype: str, layout: str) -> Region:
        row, room = self.geometry(buffer)
        base = self.next.get((buffer, slot), slot * room)
        base = ceil_div(base, row) * row
        region = Region(name, buffer, base, shape, dtype, layout, self.hw.layout.c0)  # type: ignore[arg-type]
        self.next[(buffer, slot)] = region.end_addr
        return region

    def overflow(self) -> str | None:
        """The first (buffer, slot) whose allocations pass the slot's end, described; None when all fit."""
        for (buffer, slot), end in sorted(self.next.items()):
            room = self.slot_bytes(buffer)
            if end > self.slot_base(buffer, slot) + room:
                used = end - self.slot_base(buffer, slot)
                size = getattr(self.hw.sram, buffer).size_bytes
                return (f"{buffer} needs {used:,} bytes per tile, hardware.sram.{buffer}.size_bytes={size} gives "
                        f"{room:,} per slot ({self.slots} slot(s))")
        return None


def _build_tile(layer: LayerConfig, hw: HardwareConfig, method: Method, index: int, n: int, oh: Range,
                oc: Range, groups: Range, slots: int, weight_slot: int, load_weight: bool,
                window: Window | None = None,
                geometry: dict[str, tuple[int, int]] | None = None) -> tuple[Tile, str | None]:
    act = hw.layout.activation
    w_in = layer.input_shape[3]
    kh, kw = layer.kernel_size
    cin_g = layer.in_channels // layer.groups
    cout_g = layer.out_channels // layer.groups
    ic = (groups[0] * cin_g, groups[1] * cin_g)
    ic_n, oc_n = ic[1] - ic[0], oc[1] - oc[0]
    in_rows, jobs, staged = window or _jobs_and_window(layer, method, oh)
    slot = index % slots
    a = _Allocator(hw, slots, geometry)
    regions = [a.alloc("ifmap", "ifmap", slot, (ic_n, in_rows[1] - in_rows[0], w_in), "int8", act)]
    if method == "swell":
        regions.append(a.alloc("ifmap_swelled", "ifmap", slot, (ic_n, *staged), "int8", act))
    # weight as stored in DRAM for the op: (C_in, C_out/g, kh, kw) transposed, (C_out, C_in/g, kh, kw) conv
    if layer.is_transposed:
        j_n = oc_n if oc_n < cout_g else cout_g
        regions.append(a.alloc("weight", "weight", weight_slot, (ic_n, j_n, kh, kw), "int8", "IOHW"))
    else:
        regions.append(a.alloc("weight", "weight", weight_slot, (oc_n, cin_g, kh, kw), "int8", "OIHW"))
    if method == "swell":
        regions.append(a.alloc("weight_conv", "weight", weight_slot, (oc_n, cin_g, kh, kw), "int8", "OIHW"))
    elif method == "phase":
        pairs = phase_pairs(layer)
        sub = (len(pairs[0][0].taps), len(pairs[0][1].taps)) if pairs else (1, 1)
        regions.append(a.alloc("weight_phases", "weight", weight_slot, (len(pairs), oc_n, cin_g, *sub),
                               "int8", "POIHW"))
    regions.append(a.alloc("bias", "weight", weight_slot, (oc_n,), "<i4", "C"))
    ow = layer.output_hw[1]
    if method == "phase":
        for job in jobs:
            regions.append(a.alloc(job.psum_region, "psum", slot, (oc_n, *job.out_hw), "<i4", act))
        regions.append(a.alloc("ofmap", "psum", slot, (oc_n, oh[1] - oh[0], ow), "<i4", act))
    else:
        psum = a.alloc("psum", "psum", slot, (oc_n, oh[1] - oh[0], ow), "<i4", act)
        # write-back adds the bias in place: ofmap aliases psum
        regions += [psum, Region("ofmap", "psum", psum.base_addr, psum.shape, psum.dtype, act, hw.layout.c0)]
    tile = Tile(index, n, oh, oc, groups, ic, in_rows, slot, weight_slot, load_weight, jobs, tuple(regions))
    return tile, a.overflow()


def plan_tiles(layer: LayerConfig, hw: HardwareConfig, method: Method) -> TilePlan:
    """Choose the largest output-channel tile whose weights fit (preferring multiples of the array's columns),
    then the most output rows that fit."""
    slots = 2 if hw.pipeline.overlap == "double_buffer" else 1
    n_img = layer.input_shape[0]
    out_h = layer.output_hw[0]
    cout_g = layer.out_channels // layer.groups
    geometry: dict[int, dict[str, tuple[int, int]]] = {slots: {}}  # buffer geometry, shared by every tile
    row_step = layer.stride[0] if method == "phase" else 1
    # whole groups first, then within-group tiles that fill the array's columns, then any other width
    cols = hw.mac_array.cols
    whole = sorted({cout_g * g for g in range(1, layer.groups + 1)}, reverse=True)
    aligned = [c for c in range(cout_g - 1, 0, -1) if c % cols == 0]
    others = [c for c in range(cout_g - 1, 0, -1) if c % cols]

    windows: dict[Range, Window] = {}

    def window(oh: Range) -> Window:  # the search and the final plan size the same row ranges again and again
        if oh not in windows:
            windows[oh] = _jobs_and_window(layer, method, oh)
        return windows[oh]

    def fits(rows: int, oc_per_tile: int) -> str | None:
        for oc, groups in _oc_ranges(layer, oc_per_tile)[:2]:
            sized: set[tuple[object, ...]] = set()
            for oh in _row_ranges(out_h, rows):
                # every region size of a tile follows from these: a tile like one already sized fits as well
                if method == "phase":
                    shape = _phase_shape(layer, oh)
                else:
                    in_rows, jobs, staged = window(oh)
                    shape = (oh[1] - oh[0], in_rows[1] - in_rows[0], staged, tuple(job.out_hw for job in jobs))
                if shape in sized:
                    continue
                sized.add(shape)
                _, err = _build_tile(layer, hw, method, 0, 0, oh, oc, groups, slots, 0, True, window(oh),
                                     geometry[slots])
                if err:
                    return err
        return None

    for segment in (whole, aligned, others):
        # Every region of a tile only grows with its output channels, so in a descending segment the candidates
        # that fit are a suffix: binary search for its first element (the one trying them in order would pick).
        lo, hi = 0, len(segment)
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(row_step, segment[mid]) is None:
                hi = mid
            else:
                lo = mid + 1
        if lo == len(segment):
            continue
        oc_per_tile = segment[lo]
        lo, hi = 1, ceil_div(out_h, row_step)  # in units of row_step; lo always fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid * row_step, oc_per_tile) is None:
                lo = mid
            else:
                hi = mid - 1
        return _assemble(layer, hw, method, lo * row_step, oc_per_tile, slots, n_img, window, geometry[slots])
    raise ConvsimError(f"hardware.sram cannot hold one tile of layer {layer.name!r} "
                       f"(one output row, one output channel): {fits(row_step, whole[0])}")


def _assemble(layer: LayerConfig, hw: HardwareConfig, method: Method, rows: int, oc_per_tile: int,
              slots: int, n_img: int, window: Callable[[Range], Window],
              geometry: dict[str, tuple[int, int]]) -> TilePlan:
    tiles: list[Tile] = []
    for oc_index, (oc, groups) in enumerate(_oc_ranges(layer, oc_per_tile)):
        first = True
        for n in range(n_img):
            for oh in _row_ranges(layer.output_hw[0], rows):
                tile, _ = _build_tile(layer, hw, method, len(tiles), n, oh, oc, groups, slots,
                                      oc_index % slots, first, window(oh), geometry)
                first = False
                tiles.append(tile)
    return TilePlan(method, rows, oc_per_tile, tuple(tiles), peak_occupancy(tiles, slots))


def tile_spans(tile: Tile, buffer: str) -> set[tuple[int, int]]:
    return {(r.base_addr, r.end_addr) for r in tile.regions if r.buffer == buffer}


def tile_bytes(tile: Tile, buffer: str) -> int:
    """Bytes a tile occupies in one buffer (aliased regions counted once)."""
    return sum(end - base for base, end in tile_spans(tile, buffer))


def peak_occupancy(tiles: list[Tile], slots: int) -> dict[str, int]:
    """Peak bytes live per buffer: one tile (serial) or two consecutive tiles (double-buffered). Regions two
    consecutive tiles share (the weights of one output-channel tile stay in one slot) are counted once."""
    peak = dict.fromkeys(BUFFERS, 0)
    for buffer in BUFFERS:
        for i, tile in enumerate(tiles):
            spans = tile_spans(tile, buffer)
            if slots == 2 and i > 0:
                spans |= tile_spans(tiles[i - 1], buffer)
            peak[buffer] = max(peak[buffer], sum(end - base for base, end in spans))
    return peak
