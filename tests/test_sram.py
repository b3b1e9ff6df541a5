"""SRAM model (simulator/sram.py): byte orders of every layout written by hand, little-endian int32, banks."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import BufferConfig, SramConfig
from simulator.errors import ConvsimError
from simulator.sram import Region, Sram, bank_of, bank_row_of, from_physical, to_physical

# x[c, h, w] = 4c + 2h + w, C = H = W = 2
X = np.arange(8, dtype=np.int8).reshape(2, 2, 2)


def test_nchw_bytes_are_row_major():
    assert to_physical(X, "NCHW", 16).ravel().tolist() == [0, 1, 2, 3, 4, 5, 6, 7]


def test_nhwc_bytes_interleave_channels():
    # (h, w) = (0,0): c0=0, c1=4; (0,1): 1, 5; (1,0): 2, 6; (1,1): 3, 7
    phys = to_physical(X, "NHWC", 16)
    assert phys.ravel().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    np.testing.assert_array_equal(from_physical(phys, (2, 2, 2), "NHWC"), X)


def test_nc1hwc0_pads_the_channel_tail():
    # C=3, c0=2 (c0 does not divide C): C1 = 2 blocks; x[c, 0, w] = 10c + w
    x = np.array([[[0, 1]], [[10, 11]], [[20, 21]]], dtype=np.int8)
    phys = to_physical(x, "NC1HWC0", 2)
    assert phys.shape == (2, 1, 2, 2)
    # block 0 = channels 0, 1 per pixel; block 1 = channel 2 and a zero pad channel
    assert phys.ravel().tolist() == [0, 10, 1, 11, 20, 0, 21, 0]
    np.testing.assert_array_equal(from_physical(phys, (3, 1, 2), "NC1HWC0"), x)


def test_from_physical_nc1hwc0_by_hand():
    phys = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int8).reshape(1, 2, 1, 4)  # C1=1, H=2, W=1, c0=4
    # channel c of pixel h is phys[0, h, 0, c]; keep 3 channels
    assert from_physical(phys, (3, 2, 1), "NC1HWC0").tolist() == [[[1], [5]], [[2], [6]], [[3], [7]]]


def test_int32_is_stored_little_endian_at_its_address():
    sram = Sram(SramConfig(psum=BufferConfig(size_bytes=64, num_banks=2, bank_width_bytes=4)))
    region = Region("psum", "psum", 8, (2, 1, 1), "<i4", "NHWC")
    sram.write(region, np.array([[[0x01020304]], [[-2]]], dtype=np.int32))
    assert sram.images["psum"][8:16].tolist() == [0x04, 0x03, 0x02, 0x01, 0xFE, 0xFF, 0xFF, 0xFF]
    assert sram.images["psum"][:8].tolist() == [0] * 8
    assert sram.read(region).ravel().tolist() == [0x01020304, -2]


def test_region_past_the_end_is_an_error_naming_the_numbers():
    sram = Sram(SramConfig(ifmap=BufferConfig(size_bytes=16)))
    region = Region("ifmap", "ifmap", 8, (1, 3, 3), "int8", "NCHW")
    with pytest.raises(ConvsimError, match=r"region 'ifmap' needs 9 bytes at 0x8, the ifmap SRAM has 16"):
        sram.write(region, np.zeros((1, 3, 3), np.int8))


def test_bank_of_word_interleaved_by_hand():
    buf = BufferConfig(size_bytes=1024, num_banks=4, bank_width_bytes=16)
    assert [bank_of(a, buf) for a in (0, 15, 16, 63, 64, 100)] == [0, 0, 1, 3, 0, 2]
    assert [bank_row_of(a, buf) for a in (0, 63, 64, 100, 255, 256)] == [0, 0, 1, 1, 3, 4]
    assert bank_of(np.array([32, 48, 80]), buf).tolist() == [2, 3, 1]
