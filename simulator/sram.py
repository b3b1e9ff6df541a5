"""On-chip SRAM: byte images, named regions, activation layouts and bank mapping. All address maths lives here.

Models the engine's three SRAM buffers (``ifmap``, ``weight``, ``psum``) as little-endian byte images. A
:class:`Region` is a named tensor at a byte address inside one buffer, stored in one layout:

- activations (``C, H, W`` per image): ``NCHW`` (C, H, W order), ``NHWC`` (H, W, C order) or ``NC1HWC0``
  (C1 = ceil(C / c0) blocks of (H, W, c0), the channel tail zero-padded);
- weights, row-major in their logical order: ``IOHW`` (a transposed conv's weight as torch holds it),
  ``OIHW`` (a conv weight), ``POIHW`` (the phase method's sub-kernels, phase-major); bias: ``C``.

Banks are word-interleaved: byte address ``a`` lives in bank ``(a // bank_width_bytes) % num_banks`` at row
``a // (bank_width_bytes * num_banks)``.

Bytes are the truth: a region's logical array is always derived from the image through its layout
(:meth:`Sram.read`). Deliberately ignored: ECC, port arbitration between stages (timing is in the stage cost
functions), and address wrap-around (an allocation past the end is an error, never a wrap).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from simulator.config import BufferConfig, SramConfig
from simulator.errors import ConvsimError

Layout = Literal["NCHW", "NHWC", "NC1HWC0", "OIHW", "IOHW", "POIHW", "C"]
ACTIVATION_LAYOUTS: tuple[Layout, ...] = ("NCHW", "NHWC", "NC1HWC0")
# stored in the logical array's own (row-major) order
ROW_MAJOR_LAYOUTS: tuple[Layout, ...] = ("NCHW", "OIHW", "IOHW", "POIHW", "C")
BUFFERS = ("ifmap", "weight", "psum")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------------------------ layouts (pure)


def physical_shape(shape: tuple[int, ...], layout: Layout, c0: int) -> tuple[int, ...]:
    """The array shape in storage order for a logical ``shape``."""
    if layout in ROW_MAJOR_LAYOUTS:
        return shape
    c, h, w = shape
    if layout == "NHWC":
        return h, w, c
    return ceil_div(c, c0), h, w, c0


def layout_size_bytes(shape: tuple[int, ...], dtype: np.dtype, layout: Layout, c0: int) -> int:
    return math.prod(physical_shape(shape, layout, c0)) * np.dtype(dtype).itemsize  # math.prod: ~20x np.prod


def to_physical(logical: np.ndarray, layout: Layout, c0: int) -> np.ndarray:
    """Logical array -> contiguous array in storage order (same dtype), as :func:`store_physical` lays it out."""
    physical = np.empty(physical_shape(logical.shape, layout, c0), dtype=logical.dtype)
    store_physical(physical, logical, layout)
    return physical


def store_physical(physical: np.ndarray, logical: np.ndarray, layout: Layout) -> None:
    """Write ``logical`` into ``physical`` (an array in storage order, e.g. a view of an SRAM image) in place, in
    one pass: row-major layouts as they are, NHWC as (H, W, C), NC1HWC0 as (C1, H, W, c0) with the channel tail of
    the last block zero-filled."""
    if layout in ROW_MAJOR_LAYOUTS:
        physical[...] = logical
    elif layout == "NHWC":
        physical[...] = logical.transpose(1, 2, 0)
    else:
        c0 = physical.shape[3]
        blocks = physical.transpose(0, 3, 1, 2)  # (C1, c0, H, W), a view
        full, rem = divmod(logical.shape[0], c0)
        blocks[:full] = logical[:full * c0].reshape(full, c0, *logical.shape[1:])
        if rem:
            blocks[full, :rem] = logical[full * c0:]
            blocks[full, rem:] = 0


def from_physical(physical: np.ndarray, shape: tuple[int, ...], layout: Layout) -> np.ndarray:
    """Array in storage order -> logical view (a view where the layout allows; no copy)."""
    if layout in ROW_MAJOR_LAYOUTS:
        return physical.reshape(shape)
    c, h, w = shape
    if layout == "NHWC":
        return physical.transpose(2, 0, 1)
    c1, _, _, c0 = physical.shape
    # (C1, H, W, c0) -> (C1, c0, H, W) -> (C1*c0, H, W) -> drop padded channels
    return physical.transpose(0, 3, 1, 2).reshape(c1 * c0, h, w)[:c]


def element_stride_bytes(layout: Layout, shape: tuple[int, ...], c0: int, itemsize: int) -> int:
    """Byte distance in SRAM between two horizontally adjacent pixels of one channel (what a NCHW DRAM row
    scatters to). Used by the DMA bank-conflict model."""
    if layout in ROW_MAJOR_LAYOUTS:
        return itemsize
    if layout == "NHWC":
        return shape[0] * itemsize
    return c0 * itemsize


# ------------------------------------------------------------------------------------------------------- banking


def bank_of(addr: int | np.ndarray, buf: BufferConfig) -> int | np.ndarray:
    return (addr // buf.bank_width_bytes) % buf.num_banks


def bank_row_of(addr: int | np.ndarray, buf: BufferConfig) -> int | np.ndarray:
    return addr // (buf.bank_width_bytes * buf.num_banks)


def bank_mapping(buf: BufferConfig) -> dict[str, int | str]:
    """The bank mapping of a buffer, as recorded in dumps."""
    return {
        "scheme": "word_interleaved",
        "num_banks": buf.num_banks,
        "bank_width_bytes": buf.bank_width_bytes,
        "formula": "bank = (addr // bank_width_bytes) % num_banks; row = addr // (bank_width_bytes * num_banks)",
    }


# ------------------------------------------------------------------------------------------------- regions, image


@dataclass(frozen=True)
class Region:
    """A named tensor at ``base_addr`` in ``buffer``, stored in ``layout``."""

    name: str
    buffer: str
    base_addr: int
    shape: tuple[int, ...]
    dtype: str  # numpy dtype string, little-endian: "int8" or "<i4"
    layout: Layout
    c0: int = 16

    @functools.cached_property  # frozen: computed once (the cost model and the tiler ask for it per tile)
    def size_bytes(self) -> int:
        return layout_size_bytes(self.shape, np.dtype(self.dtype), self.layout, self.c0)

    @functools.cached_property
    def end_addr(self) -> int:
        return self.base_addr + self.size_bytes

    @functools.cached_property
    def physical_shape(self) -> tuple[int, ...]:
        """The shape of the region's bytes in storage order (see :func:`physical_shape`)."""
        return physical_shape(self.shape, self.layout, self.c0)

    @functools.cached_property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


class Sram:
    """The byte images of the engine's SRAM buffers and the regions currently allocated in them."""

    def __init__(self, cfg: SramConfig) -> None:
        self.cfg = cfg
        self.images = {name: np.zeros(getattr(cfg, name).size_bytes, dtype=np.uint8) for name in BUFFERS}
        self.peak_bytes = dict.fromkeys(BUFFERS, 0)
        # per region (by identity; the region is held, so its id is not reused while the entry lives): its bytes
        # in storage order and its logical array, both views of the image (None where decoding copies)
        self._views: dict[int, tuple[Region, np.ndarray, np.ndarray | None]] = {}

    def buffer_cfg(self, name: str) -> BufferConfig:
        return getattr(self.cfg, name)

    def check_fits(self, region: Region) -> None:
        capacity = self.buffer_cfg(region.buffer).size_bytes
        if region.end_addr > capacity:
            raise ConvsimError(
                f"region {region.name!r} needs {region.size_bytes:,} bytes at {region.base_addr:#x}, "
                f"the {region.buffer} SRAM has {capacity:,}"
            )

    def _view(self, region: Region) -> tuple[np.ndarray, np.ndarray | None]:
        """The region's (physical, logical) views of the image, derived once per region (the images are never
        replaced, so views stay the bytes' own)."""
        seen = self._views.get(id(region))
        if seen is not None and seen[0] is region:
            return seen[1], seen[2]
        self.check_fits(region)
        raw = self.raw(region)
        physical = raw.view(region.np_dtype).reshape(region.physical_shape)
        logical: np.ndarray | None = from_physical(physical, region.shape, region.layout)
        if not np.may_share_memory(logical, raw):  # a copy (NC1HWC0 drops its padded channels): decode per read
            logical = None
        if len(self._views) >= 4096:
            self._views.clear()
        self._views[id(region)] = (region, physical, logical)
        return physical, logical

    def write(self, region: Region, logical: np.ndarray) -> None:
        """Store a logical array into the region's bytes through its layout (one pass: the layout permutation
        and the cast to the region's dtype happen in the copy into the image)."""
        if tuple(logical.shape) != region.shape:
            raise ValueError(f"region {region.name!r}: writing shape {logical.shape}, region is {region.shape}")
        store_physical(self._view(region)[0], logical, region.layout)
        if region.end_addr > self.peak_bytes[region.buffer]:
            self.peak_bytes[region.buffer] = region.end_addr

    def raw(self, region: Region) -> np.ndarray:
        """The region's bytes (a view into the image)."""
        return self.images[region.buffer][region.base_addr:region.end_addr]

    def read(self, region: Region) -> np.ndarray:
        """The region's logical array, derived from its bytes (a view where the layout allows)."""
        physical, logical = self._view(region)
        return logical if logical is not None else from_physical(physical, region.shape, region.layout)


def decode_region(raw: np.ndarray, region: Region) -> np.ndarray:
    """Bytes of a region -> logical array. Shared by the SRAM model and the dump reader."""
    phys = raw.view(region.np_dtype).reshape(region.physical_shape)
    return from_physical(phys, region.shape, region.layout)
