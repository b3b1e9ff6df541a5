"""Reading a dump tree: ``index.json`` checked against its schema, then buffers found and loaded on demand.

Every load verifies the file's sha256 against the index and every read is bounded; the logical view must match
the index's shape and dtype, the physical view's ``@`` address the index's base address, so an edited or
corrupt dump fails in one line (:class:`IntegrityError`) instead of showing wrong data. ``decoded`` re-derives the
logical view from the physical bytes, which is what the logical file must equal. Ignores how the dump was
produced: it trusts nothing but the index and the checksums.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.dump.hexfile import HEX_HEADER_BYTES, parse_hex
from simulator.dump.index import FORMAT, validate_index
from simulator.dump.writer import NPY_HEADER_BYTES, logical_view
from simulator.errors import ConfigError, ConvsimError, IntegrityError
from simulator.files import sha256_bytes
from simulator.inputs import MAX_JSON_BYTES, npy_from_bytes, read_bytes
from simulator.sram import Region


@dataclass(frozen=True)
class BufferDump:
    """One dumped buffer: its index entry and where its files are."""

    stage: str
    tile: int
    entry: dict[str, Any]
    directory: Path

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def region(self) -> Region:
        e = self.entry
        return Region(e["name"], e["buffer"], int(e["base_addr"]), tuple(e["region_shape"]), e["dtype"],
                      e["layout"], int(e["c0"]))

    def _read(self, key: str) -> bytes:
        path = self.directory / self.entry[key]
        limit = NPY_HEADER_BYTES + HEX_HEADER_BYTES + 3 * int(self.entry["size_bytes"]) + 64 * 1024
        data = read_bytes(path, "dump", limit)
        if sha256_bytes(data) != self.entry[f"{key}_sha256"]:
            raise IntegrityError(f"dump {path}: sha256 differs from index.json (file changed or corrupt)")
        return data

    def logical(self) -> np.ndarray:
        """The ``.npy`` view, checksum verified."""
        path = self.directory / self.entry["npy"]
        try:
            array = npy_from_bytes(self._read("npy"), f"dump {path}")
        except ConfigError as exc:
            raise IntegrityError(str(exc)) from None
        if list(array.shape) != list(self.entry["shape"]) or array.dtype != np.dtype(self.entry["dtype"]):
            raise IntegrityError(f"dump {path}: shape {list(array.shape)} {array.dtype}, index says "
                                 f"{self.entry['shape']} {self.entry['dtype']}")
        return array

    def physical(self) -> np.ndarray:
        """The region's bytes in address order, parsed from the hex file (checksum verified)."""
        path = self.directory / self.entry["hex"]
        addr, raw = parse_hex(self._read("hex"), int(self.entry["size_bytes"]), f"dump {path}")
        word = int(self.entry["bank_mapping"]["bank_width_bytes"])
        if addr is not None and addr * word != int(self.entry["base_addr"]):
            raise IntegrityError(f"dump {path}: @{addr:x} is byte 0x{addr * word:x}, index says base_addr "
                                 f"0x{int(self.entry['base_addr']):x}")
        return raw

    def decoded(self) -> np.ndarray:
        """The logical view decoded from the physical bytes (what :meth:`logical` must equal)."""
        return logical_view(self.physical(), self.region)


class Dumps:
    """A dump tree opened for reading: ``index.json`` and its buffers."""

    def __init__(self, root: Path, index: dict[str, Any]) -> None:
        self.root, self.index = root, index

    @classmethod
    def open(cls, path: Path) -> Dumps:
        """``path`` is a run directory (holding ``dumps/``) or the ``dumps/`` directory itself."""
        path = Path(path)
        root = path / "dumps" if os.path.lexists(path / "dumps" / "index.json") else path
        index_path = root / "index.json"
        if not os.path.lexists(index_path):
            layers = sorted(p.name for p in path.iterdir() if (p / "dumps" / "index.json").is_file()) \
                if path.is_dir() else []
            if layers:
                raise ConvsimError(f"{path} is a network run: inspect one layer, {path}/<layer> "
                                   f"(layers: {', '.join(layers)})")
            raise ConvsimError(f"{path}: no dumps/index.json (was the run made with --no-dumps?)")
        try:
            index = json.loads(read_bytes(index_path, "dump index", MAX_JSON_BYTES))
        except (ValueError, RecursionError):
            raise IntegrityError(f"{index_path}: not valid JSON (edited or truncated)") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise IntegrityError(f"{index_path}: format {index.get('format') if isinstance(index, dict) else None!r}"
                                 f", expected {FORMAT!r}")
        return cls(root, validate_index(index, index_path))

    def check_stage(self, stage: str) -> None:
        names = [s["name"] for s in self.index["stages"]]
        if stage not in names:
            raise ConvsimError(f"--stage {stage!r}: not a stage, expected one of {', '.join(names)}")

    def buffers(self) -> Iterator[BufferDump]:
        """Every dumped buffer in pipeline order (stage, then tile, then the order the stage wrote them)."""
        for stage in self.index["stages"]:
            for t in stage["tiles"]:
                for b in t["buffers"]:
                    yield BufferDump(stage["name"], int(t["tile"]), b, self.root / t["dir"])

    def find(self, stage: str, buffer: str, tile: int | None = None) -> BufferDump:
        self.check_stage(stage)
        candidates = [b for b in self.buffers() if b.stage == stage]
        if tile is not None:
            if tile not in self.index["dumped_tiles"]:
                raise ConvsimError(f"--tile {tile}: not dumped (dumped tiles: {compact(self.index['dumped_tiles'])})")
            candidates = [b for b in candidates if b.tile == tile]
        for b in candidates:
            if b.name == buffer:
                return b
        written = sorted({b.name for b in candidates})
        raise ConvsimError(f"--buffer {buffer!r}: stage {stage} wrote no such buffer"
                           f" (it wrote: {', '.join(written) or 'nothing, the stage was skipped'})")


def compact(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts: list[str] = []
    for i in indices:
        if parts and i == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts) or "none"
