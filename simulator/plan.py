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

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise KeyError(name)

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


def tile_spans(tile: Tile, buffer: str) -> set[tuple[int, int]]:
    return {(r.base_addr, r.end_addr) for r in tile.regions if r.buffer == buffer}


def peak_occupancy(tiles: list[Tile], slots: int) -> dict[str, int]:
    """Peak bytes live per buffer: one tile (serial) or two consecutive tiles (double-buffered). Regions two
    consecutive tiles share (resident weights, the psum of one spatial tile's slices) are counted once."""
    peak = dict.fromkeys(BUFFERS, 0)
    done: set[tuple[int, int]] = set()  # tiles of one shape share their region tuple: each pair summed once
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
