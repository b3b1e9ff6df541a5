"""Per-stage SRAM dumps: the writer (a pipeline observer), the ``$readmemh`` hex format and the reader.

Models the engine's SRAM as a debug port would see it: after each stage of each tile, every region the stage
wrote is dumped twice, as the **physical view** (the region's bytes exactly as laid out in its SRAM buffer, a
``$readmemh`` hex file of one line per bank word) and the **logical view** (``.npy``, NCHW for activations with a
leading N axis of 1, the logical order for weights and bias), the latter always decoded from the same bytes
through the region's layout (:func:`simulator.sram.decode_region`). ``index.json`` records every buffer's
address, layout, bank mapping and the sha256 of both files; the reader checks those checksums on every load.

Bounded cost: tiles are dumped whole, in order, while the files written plus the next tile's upper-bound estimate
stay within ``budget_bytes`` (64 MiB per layer), or, when ``max_tiles`` is given (``--dump-tiles N``), the
first N tiles within MAX_DUMP_BYTES (1 GiB); the tiles not dumped are listed in the index (and ``run`` says so).
Ignores: SRAM contents outside the regions a stage wrote (stale data in other regions is not dumped), and timing
(a dump is free in cycles).
See ``docs/dumps.md`` for the tree, the index fields and the hex format.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config import HardwareConfig
from simulator.dump_index import validate_index
from simulator.errors import ConfigError, ConvsimError, IntegrityError
from simulator.files import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    npy_bytes,
    sha256_bytes,
)
from simulator.inputs import MAX_JSON_BYTES, npy_from_bytes, read_bytes
from simulator.sram import ACTIVATION_LAYOUTS, Region, Sram, bank_mapping, decode_region
from simulator.stages import output_convert
from simulator.stages.common import StageCost
from simulator.tiling import Tile

FORMAT = "convsim-dumps/1"
STAGE_ORDER = ("load", "swell", "weight_transpose", "mac_array", "writeback", "output_convert")
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024  # per layer; see docs/dumps.md for measured figures
MAX_DUMP_BYTES = 1 << 30  # per layer even with --dump-tiles N: a disk is not unbounded either
NPY_HEADER_BYTES = 128
HEX_HEADER_BYTES = 1024  # upper bound of the comment header


# ------------------------------------------------------------------------------------------------ hex (pure)


def hex_header(region: Region, word_bytes: int, num_banks: int, title: str) -> str:
    """The ``//`` comment header and the ``@`` word-address line of a region's hex file."""
    row_bytes = word_bytes * num_banks
    lines = [
        f"// convsim dump: {title}",
        f"// buffer {region.buffer}, base_addr 0x{region.base_addr:08x}, size_bytes {region.size_bytes}, "
        f"layout {region.layout}, shape {list(region.shape)}, dtype {region.dtype}, c0 {region.c0}",
        f"// bank mapping: word_interleaved, {num_banks} banks x {word_bytes} bytes; "
        f"bank = (addr // {word_bytes}) % {num_banks}; row = addr // {row_bytes}",
        f"// one line per {word_bytes}-byte bank word, ascending addresses; a line is the word as one hex number,",
        "// most significant byte first: the byte at the word's lowest address is the last two hex digits",
        "// (little-endian); bytes past size_bytes in the last word are written as 00",
        f"// @ is the first word's address in units of {word_bytes}-byte words from the start of the buffer",
        f"@{region.base_addr // word_bytes:08x}",
    ]
    return "\n".join(lines) + "\n"


def hex_words(raw: np.ndarray, word_bytes: int) -> bytes:
    """Region bytes -> ``$readmemh`` data lines: one word per line, most significant (highest-address) byte first."""
    pad = (-raw.size) % word_bytes
    data = np.concatenate([raw.astype(np.uint8, copy=False), np.zeros(pad, dtype=np.uint8)])
    # (words, word_bytes) in address order -> reversed per word: MSB first as $readmemh reads a number
    words = np.ascontiguousarray(data.reshape(-1, word_bytes)[:, ::-1])
    text = np.frombuffer(words.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(-1, 2 * word_bytes)
    out = np.empty((text.shape[0], 2 * word_bytes + 1), dtype=np.uint8)
    out[:, :-1] = text
    out[:, -1] = ord("\n")
    return out.tobytes()


_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint8)
HEX_ROWS_PER_STEP = 1 << 20
SLOW_PARSE_BYTES = 16 << 20


def _parse_hex_fast(data: bytes, size_bytes: int) -> tuple[int | None, np.ndarray] | None:
    """The layout the writer emits (``//`` header lines, one ``@`` line, fixed-width data lines), parsed with numpy
    in steps; None when the file is laid out otherwise (then the line-by-line parser decides)."""
    at = 0 if data.startswith(b"@") else data.find(b"\n@") + 1
    if at <= 0 and not data.startswith(b"@"):
        return None
    if any(line and not line.startswith(b"//") for line in data[:at].split(b"\n")):
        return None
    end = data.find(b"\n", at)
    if end < 0:
        return None
    try:
        addr = int(data[at + 1:end], 16)
    except ValueError:
        return None
    body = np.frombuffer(data, dtype=np.uint8, offset=end + 1)
    newline = np.flatnonzero(body[:4096] == ord("\n"))
    if body.size == 0 or newline.size == 0 or newline[0] == 0 or newline[0] % 2 or body.size % (newline[0] + 1):
        return None
    width = int(newline[0])
    rows = body.reshape(-1, width + 1)
    out = np.empty((rows.shape[0], width // 2), dtype=np.uint8)
    for r0 in range(0, rows.shape[0], HEX_ROWS_PER_STEP):
        part = rows[r0:r0 + HEX_ROWS_PER_STEP]
        nibbles = _NIBBLE[part[:, :width]]
        if (part[:, width] != ord("\n")).any() or (nibbles == 255).any():
            return None
        # each line is one word, most significant byte first: reverse to address order
        out[r0:r0 + part.shape[0]] = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2])[:, ::-1]
    return addr, out.reshape(-1)[:size_bytes].copy() if out.size >= size_bytes else out.reshape(-1)


def parse_hex(text: str | bytes, size_bytes: int, what: str) -> tuple[int | None, np.ndarray]:
    """A dump hex file -> (``@`` word address or None, the first ``size_bytes`` bytes in address order)."""
    data = text.encode("ascii", errors="replace") if isinstance(text, str) else text
    fast = _parse_hex_fast(data, size_bytes)
    if fast is not None:
        addr, raw = fast
        if raw.size < size_bytes:
            raise IntegrityError(f"{what}: {raw.size} bytes of data, index says {size_bytes}")
        return addr, raw
    if len(data) > SLOW_PARSE_BYTES:
        raise IntegrityError(f"{what}: not laid out as convsim writes dumps (one @ line, fixed-width lines)")
    text = data.decode("ascii", errors="replace")
    addr = None
    data: list[str] = []
    width = None
    for line in text.splitlines():
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):
            if addr is None and not data:
                addr = int(line[1:], 16)
                continue
            raise IntegrityError(f"{what}: more than one @address line (a dump holds one contiguous region)")
        if width is None:
            width = len(line)
        if len(line) != width:
            raise IntegrityError(f"{what}: hex line {line!r} has {len(line)} digits, expected {width}")
        data.append(line)
    if width is None or width % 2:
        raise IntegrityError(f"{what}: no hex data lines")
    try:
        raw = np.frombuffer(bytes.fromhex("".join(data)), dtype=np.uint8)
    except ValueError:
        raise IntegrityError(f"{what}: not a hex file") from None
    raw = raw.reshape(-1, width // 2)[:, ::-1].reshape(-1)
    if raw.size < size_bytes:
        raise IntegrityError(f"{what}: {raw.size} bytes of data, index says {size_bytes}")
    return addr, raw[:size_bytes].copy()


# ------------------------------------------------------------------------------------------------------ writer


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


# ------------------------------------------------------------------------------------------------------ reader


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
        names = [s["name"] for s in self.index["stages"]]
        if stage not in names:
            raise ConvsimError(f"--stage {stage!r}: not a stage, expected one of {', '.join(names)}")
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

