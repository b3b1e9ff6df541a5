"""Types shared by the stage adapters: the DRAM image, the per-layer context, and the per-tile cost record.

Models nothing by itself. The DRAM is the host-visible tensors in torch's NCHW order; the SRAM is
:class:`simulator.sram.Sram`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from simulator.config import HardwareConfig, LayerConfig
from simulator.errors import AccumulatorOverflowError
from simulator.mapping import Mapping
from simulator.tiling import TilePlan


@dataclass
class Dram:
    """Off-chip memory: int8 ifmap (N, C_in, H, W), int8 weight (torch layout), int32 bias (C_out,), and the
    ofmap (N, C_out, OH, OW) the store writes: int32 from write-back, or int8 from the output converter of a
    quantized layer (``acc`` then records the int32 accumulators it converted; not a DRAM transfer)."""

    ifmap: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    ofmap: np.ndarray
    acc: np.ndarray | None = None  # quantized layers: a debug tap on the int32 accumulators the converter reads


T = TypeVar("T")
MEMO_BUDGET_BYTES = 64 << 20  # derived operands a layer's memo holds at most (the oldest are dropped first)


class BytesMemo:
    """Values a stage derives from SRAM bytes by a pure function, kept for later tiles: a value is reused only when
    the bytes it came from equal the bytes read now (compared in full, never assumed unchanged). Several images per
    key, most recently used first, so the input-channel slices of one output-channel tile, whose weights alternate,
    all hit. Bounded: at most ``budget`` bytes of images and values; the least recently used of a key go first."""

    def __init__(self, budget: int = MEMO_BUDGET_BYTES) -> None:
        self.budget, self.held = budget, 0
        self._entries: dict[object, list[tuple[bytes, object, int]]] = {}

    def get(self, key: object, raw: np.ndarray, make: Callable[[], T], size: Callable[[T], int]) -> T:
        """``make()``, or the value it gave for the same ``key`` and the same bytes ``raw`` (a uint8 view)."""
        image = raw.tobytes()
        entries = self._entries.setdefault(key, [])
        for i, (seen, value, _) in enumerate(entries):
            if seen == image:  # a length check, then memcmp: no hashing of the image
                if i:
                    entries.insert(0, entries.pop(i))
                return value  # type: ignore[return-value]
        value = make()
        cost = len(image) + size(value)
        if cost > self.budget:
            return value
        entries.insert(0, (image, value, cost))
        self.held += cost
        for victims in (entries, *self._entries.values()):  # the new entry (entries[0]) stays
            while self.held > self.budget and len(victims) > (victims is entries):
                self.held -= victims.pop()[2]
        return value


@dataclass(frozen=True)
class LayerContext:
    """One layer's configuration and tile plan, and ``memo``: operands a stage derives from SRAM bytes and may
    reuse on a later tile (:class:`BytesMemo`)."""

    layer: LayerConfig
    hw: HardwareConfig
    plan: TilePlan
    memo: BytesMemo = field(default_factory=BytesMemo, compare=False, repr=False)
    # whether anything reads the SRAM between stages (dumps, an observer): when nothing does, the MAC array may
    # run a spatial tile's input-channel slices in one pass at the last slice (``pending`` holds the earlier ones)
    observed: bool = True
    pending: list[tuple[np.ndarray, list[np.ndarray], object]] = field(default_factory=list, compare=False, repr=False)
    # stacked operands of recurring slice combinations (the MAC array's, keyed by the slices' operand objects)
    stacked: dict[tuple[int, ...], tuple[tuple[object, ...], object]] = field(default_factory=dict, compare=False,
                                                                               repr=False)
    # accumulator overflows seen under on_overflow=error; the pipeline raises the first in NCHW order at the end
    overflows: list[AccumulatorOverflowError] = field(default_factory=list, compare=False, repr=False)

    @property
    def mapping(self) -> Mapping:
        """The tiles' mapping: the stages ask it, never a method name."""
        return self.plan.mapping

    @functools.cached_property
    def weights_recur(self) -> bool:
        """Whether a tile's weights come back on a later tile: an output-channel tile of more than one spatial
        tile (its weights, or each of its input-channel slices' weights, are used once per spatial tile)."""
        out_h, out_w = self.layer.output_hw
        return (self.layer.input_shape[0] > 1 or self.plan.rows_per_tile < out_h
                or self.plan.cols_per_tile < out_w)

    def derived(self, key: object, raw: np.ndarray, make: Callable[[], T], size: Callable[[T], int]) -> T:
        """``make()``, kept in ``memo`` for later tiles with the same bytes ``raw`` when the plan brings the
        weights back (:attr:`weights_recur`); otherwise made afresh (values kept for nothing would only push
        the tiles' working data out of the caches)."""
        return self.memo.get(key, raw, make, size) if self.weights_recur else make()


@dataclass(frozen=True)
class StageCost:
    """What one stage costs on one tile. Byte counts are per SRAM buffer name."""

    cycles: int
    sram_read_bytes: dict[str, int] = field(default_factory=dict)
    sram_write_bytes: dict[str, int] = field(default_factory=dict)
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    writes: tuple[str, ...] = ()
    folds: int = 0
    macs_issued: int = 0
    macs_useful: int = 0
    skipped: bool = False


SKIPPED = StageCost(cycles=0, skipped=True)
