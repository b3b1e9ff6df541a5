"""Per-stage SRAM dumps (placeholder until the dump writer lands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.config import HardwareConfig


class DumpWriter:
    """Observer for :func:`simulator.pipeline.simulate_layer`; writes nothing yet."""

    def __init__(self, root: Path, hw: HardwareConfig) -> None:
        self.root, self.hw = root, hw

    def __call__(self, stage: str, tile: Any, sram: Any, cost: Any) -> None:
        return None

    def finish(self, result: Any) -> None:
        return None
