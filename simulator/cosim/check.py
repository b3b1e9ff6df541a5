"""Comparison of an RTL output region with convsim's dump of it: byte for byte, or int32 for int32.

Models nothing: a scoreboard. The RTL side is a ``$writememh`` file of the region's words (``x`` digits, bytes
the RTL never wrote, count as differing); the model side is the region's bytes from the dump. The first
difference is reported with its byte address, bank and row in the SRAM buffer and both values (hex for int8,
decimal and hex for int32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNKNOWN = -1


def parse_writememh(text: str, size_bytes: int) -> np.ndarray:
    """``$writememh`` words (most significant byte first) -> int16 bytes in address order, -1 where unknown."""
    out: list[int] = []
    for line in text.splitlines():
        line = line.split("//", 1)[0].strip()
        if not line or line.startswith("@"):
            continue
        digits = line.lower()
        word = [UNKNOWN if any(ch not in "0123456789abcdef" for ch in digits[i:i + 2]) else int(digits[i:i + 2], 16)
                for i in range(0, len(digits), 2)]
        out.extend(reversed(word))
    data = np.array(out[:size_bytes], dtype=np.int16)
    if data.size < size_bytes:
        data = np.concatenate([data, np.full(size_bytes - data.size, UNKNOWN, dtype=np.int16)])
    return data


@dataclass(frozen=True)
class Difference:
    """The first differing element of a region and how many bytes differ."""

    region: str
    addr: int
    rtl: str
    model: str
    differing_bytes: int

    def describe(self, buffer: str, word_bytes: int, num_banks: int) -> str:
        bank, row = (self.addr // word_bytes) % num_banks, self.addr // (word_bytes * num_banks)
        return (f"{self.region} at {buffer} 0x{self.addr:08x} (bank {bank}, row {row}): rtl {self.rtl}, "
                f"model {self.model} ({self.differing_bytes} byte(s) differ)")


def _int32(values: np.ndarray) -> str:
    if (values < 0).any():
        return "unknown (never written)"
    v = int.from_bytes(bytes(values.astype(np.uint8)), "little", signed=True)
    return f"{v} (0x{v & 0xFFFFFFFF:08x})"


def first_difference(region: str, base_addr: int, rtl: np.ndarray, model: np.ndarray,
                     itemsize: int) -> Difference | None:
    """None when equal; else the first differing element (``itemsize`` 1: bytes, 4: little-endian int32)."""
    differ = rtl != model.astype(np.int16)
    count = int(differ.sum())
    if not count:
        return None
    first = int(np.flatnonzero(differ)[0]) // itemsize * itemsize
    if itemsize == 4:
        return Difference(region, base_addr + first, _int32(rtl[first:first + 4]), _int32(model[first:first + 4]),
                          count)
    r = int(rtl[first])
    return Difference(region, base_addr + first, "unknown (never written)" if r < 0 else f"0x{r:02x}",
                      f"0x{int(model[first]):02x}", count)
