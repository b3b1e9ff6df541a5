"""The physical view of a dump: a region's bytes as a ``$readmemh`` hex file, written and parsed.

Models the SRAM buffer as an RTL testbench loads it: one line per bank word in ascending addresses, each word one
hex number with its most significant (highest-address) byte first, so the little-endian bytes read back in
order; an ``@`` line gives the first word's address in words from the buffer start, ``//`` lines describe the
region and its bank mapping. The parser takes the layout the writer emits in vectorised steps and falls back to
a line-by-line reading for hand-edited files (bounded by ``SLOW_PARSE_BYTES``). Ignores the logical view and the
index: a hex file is only bytes at an address.
"""

from __future__ import annotations

import numpy as np

from simulator.errors import IntegrityError
from simulator.sram import Region

HEX_HEADER_BYTES = 1024  # upper bound of the comment header


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
