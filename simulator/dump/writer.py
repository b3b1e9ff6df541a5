"""Writing per-stage dumps: the pipeline observer that dumps every region a stage wrote, tile by tile.

Models the engine's SRAM as a debug port would see it after each stage of each tile: every region the stage
wrote is dumped as its physical view (hex, :mod:`simulator.dump.hexfile`) and its logical view (``.npy``, NCHW for
activations with a leading N axis of 1, the logical order for weights and bias), the latter always decoded from
the same bytes through the region's layout. ``index.json`` records every buffer's address, layout, bank mapping
and the sha256 of both files. Bounded cost: tiles are dumped whole, in order, while the files written plus the
next tile's upper-bound estimate stay within ``budget_bytes`` (64 MiB per layer), or, with ``max_tiles``
(``--dump-tiles N``), the first N tiles within MAX_DUMP_BYTES (1 GiB). The tree is written to a temporary sibling
and renamed into place, so a killed run leaves no half-written ``dumps/``. Ignores SRAM contents outside the
regions a stage wrote, and timing (a dump is free in cycles).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config import HardwareConfig
from simulator.dump.hexfile import HEX_HEADER_BYTES, hex_header, hex_words
from simulator.dump.index import FORMAT
from simulator.errors import ConvsimError
from simulator.files import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    npy_bytes,
    sha256_bytes,
)
from simulator.sram import ACTIVATION_LAYOUTS, Region, Sram, bank_mapping, decode_region
from simulator.stages import output_convert
from simulator.stages.common import StageCost
from simulator.tiling import Tile

STAGE_ORDER = ("load", "swell", "weight_transpose", "mac_array", "writeback", "output_convert")
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024  # per layer; see docs/dumps.md for measured figures
MAX_DUMP_BYTES = 1 << 30  # per layer even with --dump-tiles N: a disk is not unbounded either
NPY_HEADER_BYTES = 128


def logical_view(raw: np.ndarray, region: Region) -> np.ndarray:
    """The ``.npy`` view of a region's bytes: decoded through the layout; activations get a leading N axis."""
    logical = decode_region(raw, region)
    return logical[None] if region.layout in ACTIVATION_LAYOUTS else logical


def estimate_tile_bytes(tile: Tile, word_bytes: dict[str, int]) -> int:
    """Upper bound of the files one tile's dump writes if every stage writes every region once."""
    total = 0
    for r in tile.regions:
        w = word_bytes[r.buffer]
        total += NPY_HEADER_BYTES + r.size_bytes + HEX_HEADER_BYTES + -(-r.size_bytes // w) * (2 * w + 1)
    return total


def region_json(region: Region, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": region.name, "shape": list(shape), "dtype": region.dtype, "layout": region.layout,
            "c0": region.c0, "region_shape": list(region.shape), "buffer": region.buffer,
            "base_addr": region.base_addr, "size_bytes": region.size_bytes}


class DumpWriter:
    """Observer for :func:`simulator.pipeline.simulate_layer`: dumps every region a stage wrote, tile by tile.

    Files are written into a temporary sibling of ``root`` that :meth:`finish` renames into place, so a killed run
    never leaves a half-written ``dumps/`` (the temporary directory is removed by :meth:`abort`).
    """

    def __init__(self, root: Path, hw: HardwareConfig, max_tiles: int | None = None,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if max_tiles is not None and max_tiles < 0:
            raise ConvsimError(f"--dump-tiles: {max_tiles}, expected a count >= 0")
        self.root, self.hw = Path(root), hw
        self.max_tiles, self.budget_bytes = max_tiles, budget_bytes
        self._ctx = atomic_directory(self.root)
        self.tmp = self._ctx.__enter__()
        self.word_bytes = {b: getattr(hw.sram, b).bank_width_bytes for b in ("ifmap", "weight", "psum")}
        self.tiles: dict[int, Tile] = {}
        self.dumped: list[int] = []
        self.skipped_tiles: list[int] = []
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        self.bytes_written = 0
        self._current: int | None = None
        self._dump_current = False

    def _start_tile(self, tile: Tile) -> None:
        self._current = tile.index
        estimate = estimate_tile_bytes(tile, self.word_bytes)
        if self.max_tiles is None:  # default: bounded by bytes
            self._dump_current = self.bytes_written + estimate <= self.budget_bytes
        else:  # an explicit count replaces the budget
            self._dump_current = (len(self.dumped) < self.max_tiles
                                  and self.bytes_written + estimate <= MAX_DUMP_BYTES)
        (self.dumped if self._dump_current else self.skipped_tiles).append(tile.index)
        self.tiles[tile.index] = tile

    def __call__(self, stage: str, tile: Tile, sram: Sram, cost: StageCost) -> None:
        if tile.index != self._current:
            self._start_tile(tile)
        if not self._dump_current:
            return
        if cost.skipped:
            self.records[(stage, tile.index)] = {"skipped": True, "buffers": []}
            return
        rel = Path(stage) / f"tile{tile.index:04d}"
        buffers = []
        for name in dict.fromkeys(cost.writes):
            region = output_convert.int8_region(tile) if name == output_convert.REGION else tile.region(name)
            buffers.append(self._dump_region(rel, stage, tile, region, sram.raw(region)))
        self.records[(stage, tile.index)] = {"skipped": False, "buffers": buffers}

    def _dump_region(self, rel: Path, stage: str, tile: Tile, region: Region, raw: np.ndarray) -> dict[str, Any]:
        buf = getattr(self.hw.sram, region.buffer)
        logical = logical_view(raw, region)
        npy = npy_bytes(logical)
        title = f"stage {stage}, tile {tile.index}, region {region.name}"
        hexdata = hex_header(region, buf.bank_width_bytes, buf.num_banks, title).encode("ascii")
        hexdata += hex_words(raw, buf.bank_width_bytes)
        npy_name, hex_name = f"{region.name}.npy", f"{region.name}.hex"
        atomic_write_bytes(self.tmp / rel / npy_name, npy)
        atomic_write_bytes(self.tmp / rel / hex_name, hexdata)
        self.bytes_written += len(npy) + len(hexdata)
        return {**region_json(region, logical.shape), "bank_mapping": bank_mapping(buf),
                "npy": npy_name, "npy_sha256": sha256_bytes(npy), "hex": hex_name,
                "hex_sha256": sha256_bytes(hexdata)}

    def finish(self, result: Any) -> None:
        """Write ``index.json`` and move the dump tree into place (one tile: no ``tileNNNN`` level)."""
        tiled = len(result.plan.tiles) > 1
        stages = []
        for stage in STAGE_ORDER:
            entries = []
            for t in self.dumped:
                rec = self.records.get((stage, t), {"skipped": True, "buffers": []})
                tile = self.tiles[t]
                rel = f"{stage}/tile{t:04d}"
                if not tiled and (self.tmp / rel).is_dir():
                    for f in (self.tmp / rel).iterdir():
                        os.replace(f, self.tmp / stage / f.name)
                    (self.tmp / rel).rmdir()
                entries.append({"tile": t, "dir": rel if tiled else stage, "n": tile.n, "oh": list(tile.oh),
                                "ow": list(tile.ow), "oc": list(tile.oc), "ic": list(tile.ic),
                                "ic_slice": [tile.ic_slice, tile.ic_slices], **rec})
            stages.append({"name": stage, "dir": stage, "skipped": all(e["skipped"] for e in entries),
                           "tiles": entries})
        index = {
            "format": FORMAT,
            "layer": result.layer.name,
            "method": result.plan.method,
            "tile_shape": result.plan.shape(),
            "num_tiles": len(result.plan.tiles),
            "tiled": tiled,
            "policy": {"max_tiles": self.max_tiles,
                       "budget_bytes": self.budget_bytes if self.max_tiles is None else None},
            "dumped_tiles": self.dumped,
            "skipped_tiles": self.skipped_tiles,
            "bytes_written": self.bytes_written,
            "stages": stages,
        }
        atomic_write_json(self.tmp / "index.json", index)
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the temporary tree (the previous ``dumps/``, if any, is untouched)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
