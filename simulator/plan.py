"""A tile plan as data: the tiles a layer is cut into, their regions, and the peak SRAM they occupy.

Models nothing by itself: the planner (:mod:`simulator.tiling`) builds a :class:`TilePlan`; the pipeline, the
stages, the report and the dumps read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.mapping import ConvJob, Mapping
from simulator.sram import BUFFERS, Region

Range = tuple[int, int]
LOOP_ORDER = "oc > n > oh > ow > ic"  # outermost first: output-channel tiles, images, rows, columns, input slices


@dataclass(frozen=True)
class Tile:
    """One tile: image ``n``, output rows ``oh`` and columns ``ow``, output channels ``oc`` (groups ``groups``),
    input-channel slice ``ic`` (number ``ic_slice`` of ``ic_slices``), the compact input window it loads."""

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


def peak_occupancy(tiles: list[Tile], slots: int) -> dict[str, int]:
    """Peak bytes live per buffer: one tile (serial) or two consecutive tiles (double-buffered). Regions two
    consecutive tiles share (resident weights, the psum of one spatial tile's slices) are counted once."""
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
    return peak
