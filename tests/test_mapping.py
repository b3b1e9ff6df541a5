"""Mappings (simulator/mapping/) and the MAC array's fast paths against its plain int64 reference.

The reference (``mac_values.reference_conv``) is read first and trusted by inspection; it is itself checked against
torch once here. Every fast path (row GEMMs over the non-zero grid, GEMMs over the non-zero pixels, the im2col
path, the in-order overflow path, the fused multi-job pass, the accumulation of a later input-channel slice) is
compared with it in one parametrised suite. A fourth mapping registered in a test runs end to end, bit-exact with
torch, without a line outside ``simulator/mapping`` knowing it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simulator.mapping import MAPPINGS, register
from simulator.mapping.phase import Phase
from simulator.pipeline import simulate_layer
from simulator.stages import mac_gemm as gemm
from simulator.stages import mac_values as mac
from tests.conftest import REPO, make_config, torch_reference

# (C, H, W, M, groups, kernel, dilation, in_offset, out_hw, grid step of the non-zero input pixels)
CASES = {
    "dense_3x3_pad1": (16, 6, 7, 8, 1, (3, 3), (1, 1), (1, 1), (6, 7), 1),
    "grouped_dilated": (16, 7, 6, 6, 2, (2, 3), (2, 1), (2, 0), (8, 5), 1),
    "crop_negative_offset": (8, 9, 9, 4, 1, (3, 2), (1, 2), (-2, -1), (5, 4), 1),
    "swelled_stride2_grid": (24, 11, 13, 5, 1, (4, 4), (1, 1), (0, 0), (8, 10), 2),
    "deep_small_map_sparse": (64, 5, 5, 3, 1, (3, 3), (1, 1), (0, 0), (3, 3), 2),
    "wide_k_float64": (1100, 3, 3, 2, 1, (1, 1), (1, 1), (0, 0), (3, 3), 1),
    # more output channels than pixels in a grid row: the GEMM paths keep channels innermost
    "many_channels_narrow": (16, 4, 3, 40, 1, (3, 3), (1, 1), (1, 1), (4, 3), 1),
    "grouped_many_channels": (32, 5, 4, 48, 2, (2, 2), (1, 1), (1, 0), (5, 4), 1),
    "swelled_many_channels": (24, 7, 5, 32, 1, (3, 3), (1, 1), (0, 0), (5, 3), 2),
}


def _case(name: str) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int], tuple[int, int], tuple[int, int]]:
    c, h, w, m, groups, kernel, dilation, offset, out_hw, step = CASES[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    x = rng.integers(-128, 128, size=(c, h, w), dtype=np.int8)
    if step > 1:  # only every step-th row and column non-zero, as in a swelled ifmap
        mask = np.zeros((h, w), dtype=bool)
        mask[1::step, ::step] = True
        x = np.where(mask, x, 0).astype(np.int8)
    weight = rng.integers(-128, 128, size=(m, c // groups, *kernel), dtype=np.int8)
    return x, weight, groups, dilation, offset, out_hw


def _as_int(values: np.ndarray) -> np.ndarray:
    out = np.asarray(values)
    assert np.array_equal(out, np.round(out)), "a fast path produced a non-integer"
    return out.astype(np.int64)


PATHS = {
    "row_gemms": lambda x, w, g, d, o, hw: gemm.conv_row_gemms(x, [(w, d, o, hw)], g)[0],
    "pixel_gemms": lambda x, w, g, d, o, hw: gemm.conv_pixel_gemms(
        x, [(w, d, o, hw)], g, np.flatnonzero(gemm.nonzero_pixels(x)))[0],
    "dispatch": lambda x, w, g, d, o, hw: gemm.conv_exact(x, [(w, d, o, hw)], g)[0],
    "conv_i8_i32_wrap": lambda x, w, g, d, o, hw: mac.conv_i8_i32(x, w, g, (1, 1), d, o, hw, "wrap"),
    "im2col_few_channels": lambda x, w, g, d, o, hw: _im2col_in_chunks(x, w, g, d, o, hw),
    "in_order_saturate": lambda x, w, g, d, o, hw: mac.conv_i8_i32(x, w, g, (1, 1), d, o, hw, "saturate",
                                                                    reduction=2**20),
    "in_order_error": lambda x, w, g, d, o, hw: mac.conv_i8_i32(x, w, g, (1, 1), d, o, hw, "error",
                                                                 reduction=2**20),
    "row_gemms_three_slices": lambda x, w, g, d, o, hw: _row_gemm_slices(x, w, g, d, o, hw, stacked=False),
    "row_gemms_three_slices_stacked": lambda x, w, g, d, o, hw: _row_gemm_slices(x, w, g, d, o, hw, stacked=True),
    "two_slices_accumulated": lambda x, w, g, d, o, hw: _two_slices(x, w, g, d, o, hw),
    "two_slices_in_order": lambda x, w, g, d, o, hw: _two_slices(x, w, g, d, o, hw, reduction=2**20),
}


def _im2col_in_chunks(x: np.ndarray, w: np.ndarray, g: int, d: tuple[int, int], o: tuple[int, int],
                      hw: tuple[int, int]) -> np.ndarray:
    """Below SHIFTED_MIN_CHANNELS channels per group conv_i8_i32 takes the im2col path: sum chunks of 4."""
    if g > 1:
        return mac.conv_i8_i32(x, w, g, (1, 1), d, o, hw, "error")
    return sum(mac.conv_i8_i32(x[i:i + 4], w[:, i:i + 4], 1, (1, 1), d, o, hw, "wrap").astype(np.int64)
               for i in range(0, x.shape[0], 4))


def _row_gemm_slices(x: np.ndarray, w: np.ndarray, g: int, d: tuple[int, int], o: tuple[int, int],
                     hw: tuple[int, int], stacked: bool) -> np.ndarray:
    """The input channels in three unequal slices through the row GEMMs at once, as the MAC array runs the slices
    of a spatial tile it kept (one group: slices never straddle groups): one GEMM per slice and band, or one per
    band over the slices' stacked operands."""
    if g > 1 or x.shape[0] < 3:
        return gemm.conv_row_gemms(x, [(w, d, o, hw)], g)[0]
    cuts = [0, x.shape[0] // 3, x.shape[0] // 2, x.shape[0]]
    slices = [(x[a:b], [w[:, a:b]], gemm.RowOperands([w[:, a:b]], 1)) for a, b in itertools.pairwise(cuts)]
    nonzero = np.logical_or.reduce([gemm.nonzero_pixels(xs) for xs, _, _ in slices])
    both = gemm.RowOperands.stacked([ops for _, _, ops in slices]) if stacked else None
    return gemm.conv_row_gemms_slices(slices, [(d, o, hw)], 1, nonzero, both)[0]


def _two_slices(x: np.ndarray, w: np.ndarray, g: int, d: tuple[int, int], o: tuple[int, int],
                hw: tuple[int, int], reduction: int | None = None) -> np.ndarray:
    """The first half of the input channels, then the second continuing from its psum (``reduction`` >= 2**17:
    through the in-order path a long reduction takes)."""
    if g > 1 or x.shape[0] < 2:
        return mac.conv_i8_i32(x, w, g, (1, 1), d, o, hw, "error")
    k, half = reduction or w[0].size, x.shape[0] // 2
    first = mac.conv_i8_i32(x[:half], w[:, :half], 1, (1, 1), d, o, hw, "saturate", reduction=k)
    return mac.conv_i8_i32(x[half:], w[:, half:], 1, (1, 1), d, o, hw, "saturate", initial=first, reduction=k)


def test_a_later_slice_continues_from_a_saturated_psum() -> None:
    from simulator.fixedpoint import INT32_MAX, ordered_accumulate
    # products +10 then -3 from an accumulator at INT32_MAX - 5: clamp after each addition, by hand
    acc, _, _ = ordered_accumulate(np.array([[10, -3]]), np.array([[1, 1]]), "saturate",
                                   np.array([[INT32_MAX - 5]]))
    assert int(acc[0, 0]) == INT32_MAX - 3  # (INT32_MAX - 5 + 10 -> INT32_MAX) - 3
    acc, overflowed, escaped = ordered_accumulate(np.array([[10, -3]]), np.array([[1, 1]]), "error",
                                                  np.array([[INT32_MAX - 5]]))
    assert int(escaped[0, 0]) == INT32_MAX + 5  # the running sum when it first left int32
    assert bool(overflowed[0, 0]) and int(acc[0, 0]) == INT32_MAX + 2  # the running sum left int32 on the way


def test_reference_conv_is_torch() -> None:
    x, w, groups, dilation, offset, out_hw = _case("grouped_dilated")
    ref = mac.reference_conv(x, w, groups, (2, 1), dilation, offset, out_hw)
    # torch: pad by the offset (all offsets here >= 0), then a plain grouped conv; crop to out_hw
    padded = np.pad(x.astype(np.int64), ((0, 0), (offset[0], 20), (offset[1], 20)))
    y = F.conv2d(torch.from_numpy(padded[None]), torch.from_numpy(w.astype(np.int64)), None, (2, 1), 0, dilation,
                 groups).numpy()[0]
    np.testing.assert_array_equal(ref, y[:, :out_hw[0], :out_hw[1]])


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_paths_equal_the_reference(case: str, path: str) -> None:
    x, w, groups, dilation, offset, out_hw = _case(case)
    expected = mac.reference_conv(x, w, groups, (1, 1), dilation, offset, out_hw)
    got = _as_int(PATHS[path](x, w, groups, dilation, offset, out_hw))
    np.testing.assert_array_equal(got, expected)


def test_strided_im2col_equals_the_reference() -> None:
    x, w, groups, dilation, offset, _ = _case("dense_3x3_pad1")
    for stride, out_hw in (((2, 3), (3, 3)), ((3, 1), (2, 6))):
        expected = mac.reference_conv(x, w, groups, stride, dilation, offset, out_hw)
        got = mac.conv_i8_i32(x, w, groups, stride, dilation, offset, out_hw, "error")
        np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------------------------------------ a 4th mapping


class ReversedPhase(Phase):
    """The phase mapping with its jobs in the opposite order: jobs are independent, so values must not move."""

    name = "phase_reversed"

    def jobs(self, rows, cols):  # type: ignore[no-untyped-def]
        return tuple(reversed(super().jobs(rows, cols)))


def test_a_fourth_mapping_needs_only_the_mapping_folder() -> None:
    layer = {"op": "conv_transpose2d", "input_shape": [2, 6, 5, 7], "in_channels": 6, "out_channels": 4,
             "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1, "bias": True}
    small = {b: {"size_bytes": 1024, "num_banks": 2, "bank_width_bytes": 4} for b in ("ifmap", "weight", "psum")}
    cfg = make_config(layer, hardware={"sram": small}, data={"ifmap": "random", "weight": "random", "bias": "random"})
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=cfg.layer.input_shape, dtype=np.int8)
    w = rng.integers(-128, 128, size=cfg.layer.weight_shape, dtype=np.int8)
    b = rng.integers(-1000, 1000, size=4, dtype=np.int32)
    register(ReversedPhase)
    try:
        from simulator.data import LayerTensors
        result = simulate_layer(cfg.layer, cfg.hardware, "phase_reversed", LayerTensors(x, w, b))
    finally:
        del MAPPINGS["phase_reversed"]
    assert result.plan.method == "phase_reversed" and len(result.plan.tiles) > 1
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, x, w, b))


# ---------------------------------------------------------------------------------------------- the architecture


def test_no_method_string_branches_outside_the_mappings() -> None:
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "simulator").rglob("*.py")
                 if "mapping" not in p.parts for i, line in enumerate(p.read_text().splitlines(), 1)
                 if "method ==" in line or "method !=" in line]
    assert offenders == []


def test_the_planner_module_stays_small() -> None:
    assert len(Path(REPO / "simulator" / "tiling.py").read_text().splitlines()) < 300
