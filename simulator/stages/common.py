"""Types shared by the stage adapters: the DRAM image, the per-layer context, and the per-tile cost record.

Models nothing by itself. The DRAM is the host-visible tensors in torch's NCHW order; the SRAM is
:class:`simulator.sram.Sram`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class LayerContext:
    """One layer's configuration and tile plan, and ``memo``: operands a stage derives from SRAM bytes and may
    reuse on a later tile, each stored with the bytes it came from and reused only while they are equal."""

    layer: LayerConfig
    hw: HardwareConfig
    plan: TilePlan
    memo: dict[object, tuple[bytes, object]] = field(default_factory=dict, compare=False, repr=False)
    # accumulator overflows seen under on_overflow=error; the pipeline raises the first in NCHW order at the end
    overflows: list[AccumulatorOverflowError] = field(default_factory=list, compare=False, repr=False)

    @property
    def mapping(self) -> Mapping:
        """The tiles' mapping: the stages ask it, never a method name."""
        return self.plan.mapping


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
