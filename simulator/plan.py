"""A tile plan as data: the tiles a layer is cut into, their loop order, their regions, which earlier tile
frees the buffer area each tile reuses, and the peak SRAM they occupy.

Models nothing by itself: the planner (:mod:`simulator.tiling`) builds a :class:`TilePlan`; the pipeline, the
stages, the report and the dumps read it. Two loop orders (outermost first):

- ``SLICES_INNER`` (``oc > n > oh > ow > ic``): the input-channel slices of one spatial tile run back to back
  and accumulate in one psum region (two, ping/pong, under double buffering); the weights stay resident across
  the spatial tiles only while there is one slice, else every tile reloads its slice's weights.
- ``SLICES_OUTER`` (``oc > ic > n > oh > ow``): for each output-channel tile, each slice's weights are loaded
  (and transformed) once, at the slice's first spatial tile, and stay resident across its spatial tiles; every
  spatial tile keeps its own psum region resident across the slices (legal only when they all fit the psum
  buffer together).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.mapping import ConvJob, Mapping
from simulator.sram import BUFFERS, Region

Range = tuple[int, int]
SLICES_INNER = "oc > n > oh > ow > ic"  # outermost first: output-channel tiles, images, rows, columns, input slices
SLICES_OUTER = "oc > ic > n > oh > ow"  # input slices outside the spatial tiles: weights resident per slice
LOOP_ORDER = SLICES_INNER  # the default (and the choice on a tie)
LOOP_ORDERS = (SLICES_INNER, SLICES_OUTER)


@dataclass(frozen=True)
class Tile:
    """One tile: image ``n``, output rows ``oh`` and columns ``ow``, output channels ``oc`` (groups ``groups``),
    input-channel slice ``ic`` (number ``ic_slice`` of ``ic_slices``), the compact input window it loads.
    ``slot``/``weight_slot``: its ifmap and weight slots; ``psum_slot``: its psum area (a slot under
    ``SLICES_INNER``, the spatial tile's own area under ``SLICES_OUTER``)."""

    index: int
    n: int
    oh: Range
    ow: Range
    oc: Range
    groups: Range
    ic: Range
    ic_slice: int
    ic_slices: int
    in_rows: Range
    in_cols: Range
    slot: int
    psum_slot: int
    weight_slot: int
    load_weight: bool
    jobs: tuple[ConvJob, ...]
    regions: tuple[Region, ...]

    @classmethod
    def make(cls, index: int, n: int, oh: Range, ow: Range, oc: Range, groups: Range, ic: Range, ic_slice: int,
             ic_slices: int, in_rows: Range, in_cols: Range, slot: int, psum_slot: int, weight_slot: int,
             load_weight: bool, jobs: tuple[ConvJob, ...], regions: tuple[Region, ...]) -> Tile:
        """``Tile(...)``, built faster: a frozen dataclass's ``__init__`` sets each field through
        ``object.__setattr__``, one call per field; the planner builds thousands of tiles, so this sets the new
        instance's field dict at once (the same object: equal to, and hashing as, ``Tile(...)``)."""
        tile = object.__new__(cls)
        object.__setattr__(tile, "__dict__", {
            "index": index, "n": n, "oh": oh, "ow": ow, "oc": oc, "groups": groups, "ic": ic, "ic_slice": ic_slice,
            "ic_slices": ic_slices, "in_rows": in_rows, "in_cols": in_cols, "slot": slot, "psum_slot": psum_slot,
            "weight_slot": weight_slot, "load_weight": load_weight, "jobs": jobs, "regions": regions})
        return tile

    def region(self, name: str) -> Region:
        return _by_name(self.regions)[name]

    @property
    def first_slice(self) -> bool:
        return self.ic_slice == 0

    @property
    def last_slice(self) -> bool:
        return self.ic_slice == self.ic_slices - 1

    @property
    def oc_count(self) -> int:
        return self.oc[1] - self.oc[0]

    @property
    def num_groups(self) -> int:
        return self.groups[1] - self.groups[0]


@dataclass(frozen=True)
class TilePlan:
    mapping: Mapping
    rows_per_tile: int
    cols_per_tile: int
    oc_per_tile: int
    ic_per_tile: int
    slots: int
    tiles: tuple[Tile, ...]
    peak_bytes: dict[str, int]
    loop_order: str = LOOP_ORDER

    @property
    def method(self) -> str:
        return self.mapping.name

    def releases(self) -> list[tuple[int | None, int | None]] | None:
        """Per tile, the earlier tiles whose buffer areas it reuses: (the tile whose MAC array must have read its
        ifmap and weight slot before this tile's load overwrites it, the tile whose psum area must have been
        written back before this tile's MAC array writes it); None: the other tile's stage need not finish.
        None for ``SLICES_INNER``: the pipeline's rule (tile t-2 holds the other slot) is exact there."""
        if self.loop_order == SLICES_INNER:
            return None
        out: list[tuple[int | None, int | None]] = []
        owner: dict[int, int] = {}  # psum area (its base: areas sit at multiples of one stride) -> last tile in it
        for t, tile in enumerate(self.tiles):
            area = _psum_base(tile)
            previous = owner.get(area)
            # a later slice continues its own spatial tile's accumulators: the MAC array's order covers it
            psum_after = previous if tile.first_slice else None
            owner[area] = t
            out.append((t - 2 if t >= 2 else None, psum_after))
        return out

    def previous_slice(self, tile: Tile) -> Tile | None:
        """The tile of the same spatial tile and output channels one input-channel slice earlier (its psum is
        the one this tile continues), or None for a first slice."""
        if tile.first_slice:
            return None
        for earlier in reversed(self.tiles[:tile.index]):
            if (earlier.n, earlier.oh, earlier.ow, earlier.oc, earlier.ic_slice) == (
                    tile.n, tile.oh, tile.ow, tile.oc, tile.ic_slice - 1):
                return earlier
        return None

    def shape(self) -> str:
        """The tile shape and loop order, as the report states them."""
        return (f"{self.oc_per_tile} oc x {self.ic_per_tile} ic x {self.rows_per_tile} rows x {self.cols_per_tile} "
                f"cols, loop {self.loop_order}, {self.slots} slot(s)")


_BY_NAME: dict[int, tuple[tuple[Region, ...], dict[str, Region]]] = {}


def _by_name(regions: tuple[Region, ...]) -> dict[str, Region]:
    """A tile's regions by name, one dict per region tuple (the tiles of one shape and slot share theirs). Keyed
    by identity (hashing the regions would cost more than the lookup saves); the tuple is held with its dict, so
    an identity is never reused while its entry lives."""
    seen = _BY_NAME.get(id(regions))
    if seen is None or seen[0] is not regions:
        if len(_BY_NAME) >= 4096:
            _BY_NAME.clear()
        seen = _BY_NAME[id(regions)] = (regions, {r.name: r for r in regions})
    return seen[1]


def tile_spans(tile: Tile, buffer: str) -> set[tuple[int, int]]:
    return {(r.base_addr, r.end_addr) for r in tile.regions if r.buffer == buffer}


def _psum_base(tile: Tile) -> int:
    """Where a tile's psum area starts in the psum buffer."""
    return min(r.base_addr for r in tile.regions if r.buffer == "psum")


def peak_occupancy(tiles: list[Tile], slots: int, loop_order: str = LOOP_ORDER) -> dict[str, int]:
    """Peak bytes live per buffer: one tile (serial) or two consecutive tiles (double-buffered). Regions two
    consecutive tiles share (resident weights, the psum of one spatial tile's slices) are counted once. Under
    ``SLICES_OUTER`` every spatial tile of an output-channel tile holds its psum area from its first slice to its
    last: the psum peak is the largest sum of one output-channel tile's areas."""
    peak = dict.fromkeys(BUFFERS, 0)
    # tiles of one shape share their region tuple: each distinct (previous, current) pair is summed once
    by_id = {id(t.regions): t.regions for t in tiles}
    ids = [id(t.regions) for t in tiles]
    if slots == 2:
        pairs = dict.fromkeys(zip([None, *ids[:-1]], ids, strict=True))
    else:
        pairs = dict.fromkeys((None, i) for i in ids)
    for prev_id, cur_id in pairs:
        regions = by_id[cur_id] + (by_id[prev_id] if prev_id is not None else ())
        for buffer in BUFFERS:
            spans = {(r.base_addr, r.end_addr) for r in regions if r.buffer == buffer}
            peak[buffer] = max(peak[buffer], sum(end - base for base, end in spans))
    if loop_order == SLICES_OUTER:
        # output-channel tiles of one size lay their spatial tiles' areas out alike: one set of spans per size
        resident: dict[int, set[tuple[int, int]]] = {}
        for oc_n, regions in {id(t.regions): (t.oc_count, t.regions) for t in tiles}.values():
            resident.setdefault(oc_n, set()).update((r.base_addr, r.end_addr) for r in regions if r.buffer == "psum")
        peak["psum"] = max([peak["psum"], *(sum(e - b for b, e in spans) for spans in resident.values())])
    return peak
