"""Comparison of an RTL output region with convsim's dump of it: byte for byte, or int32 for int32.

Models nothing: a scoreboard. The RTL side is a ``$writememh`` file of the region's words (``x`` digits, bytes
the RTL never wrote, count as differing); the model side is the region's bytes from the dump. The first
difference is reported with its byte address, bank and row in the SRAM buffer and both values (hex for int8,
decimal and hex for int32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.sram import Region, to_physical

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
    where: str = ""

    def describe(self, buffer: str, word_bytes: int, num_banks: int) -> str:
        bank, row = (self.addr // word_bytes) % num_banks, self.addr // (word_bytes * num_banks)
        return (f"{self.region}{self.where} at {buffer} 0x{self.addr:08x} (bank {bank}, row {row}): rtl {self.rtl}, "
                f"model {self.model} ({self.differing_bytes} byte(s) differ)")


def coordinate(region: Region, offset: int) -> str:
    """The logical index ``[c, y, x]`` (activations) of the element at byte ``offset`` of the region, through its
    layout; ``[padding]`` for the zero tail channels of NC1HWC0."""
    count = int(np.prod(region.shape))
    order = to_physical(np.arange(1, count + 1, dtype=np.int64).reshape(region.shape), region.layout, region.c0)
    item = int(order.reshape(-1)[offset // np.dtype(region.dtype).itemsize])
    if item == 0:
        return "[padding]"
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(item - 1, region.shape)) + "]"


def add_int32(rtl: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``rtl`` (bytes as :func:`parse_writememh` returns them) plus ``base`` (uint8 bytes), int32 element by element
    with wrap-around, as the bytes of the sum; an element with an unknown RTL byte stays unknown."""
    words = rtl.reshape(-1, 4)
    unknown = (words < 0).any(axis=1)
    total = (words.clip(0).astype(np.uint8).view("<i4").reshape(-1).astype(np.int64)
             + base.astype(np.uint8).view("<i4").astype(np.int64))
    # mod 2**32: the int32 wrap-around, as little-endian bytes
    out = (total & 0xFFFFFFFF).astype(np.uint32).view(np.uint8).reshape(-1, 4).astype(np.int16)
    out[unknown] = UNKNOWN
    return out.reshape(-1)


def _int32(values: np.ndarray) -> str:
    if (values < 0).any():
        return "unknown (never written)"
    v = int.from_bytes(bytes(values.astype(np.uint8)), "little", signed=True)
    return f"{v} (0x{v & 0xFFFFFFFF:08x})"


def first_difference(region: Region, rtl: np.ndarray, model: np.ndarray) -> Difference | None:
    """None when equal; else the first differing element of the region (int8: a byte, int32: little-endian)."""
    differ = rtl != model.astype(np.int16)
    count = int(differ.sum())
    if not count:
        return None
    itemsize = np.dtype(region.dtype).itemsize
    first = int(np.flatnonzero(differ)[0]) // itemsize * itemsize
    where = coordinate(region, first) if region.shape else ""
    if itemsize == 4:
        return Difference(region.name, region.base_addr + first, _int32(rtl[first:first + 4]),
                          _int32(model[first:first + 4]), count, where)
    r = int(rtl[first])
    return Difference(region.name, region.base_addr + first, "unknown (never written)" if r < 0 else f"0x{r:02x}",
                      f"0x{int(model[first]):02x}", count, where)
