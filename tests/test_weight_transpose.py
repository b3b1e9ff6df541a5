"""Weight-transpose unit (simulator/stages/weight_transpose.py): flip + per-group channel swap, phase split."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from simulator.config import DmaConfig
from simulator.mapping.phase import phase_axes, phase_pairs
from simulator.stages.swell import swell
from simulator.stages.weight_transpose import flip_and_swap, phase_kernel, split_phases, transpose_cycles
from tests.conftest import make_config

# A 2-group ConvTranspose2d weight, torch layout (C_in=2, C_out/g=2, 2, 2): w[ci, j] holds 100*ci + 10*j + tap
W2G = np.array([
    [[[1, 2], [3, 4]], [[11, 12], [13, 14]]],  # ci=0 (group 0), j=0, 1
    [[[101, 102], [103, 104]], [[111, 112], [113, 114]]],  # ci=1 (group 1), j=0, 1
], dtype=np.int8)
# The conv weight (C_out=4, C_in/g=1, 2, 2): out channel g*2 + j reads input ci = g, kernel flipped in both axes
W2G_CONV = np.array([
    [[[4, 3], [2, 1]]],  # out 0 = group 0, j=0  <- w[0, 0] flipped
    [[[14, 13], [12, 11]]],  # out 1 = group 0, j=1  <- w[0, 1] flipped
    [[[104, 103], [102, 101]]],  # out 2 = group 1, j=0  <- w[1, 0] flipped
    [[[114, 113], [112, 111]]],  # out 3 = group 1, j=1  <- w[1, 1] flipped
], dtype=np.int8)


def test_flip_and_swap_two_groups_by_hand():
    np.testing.assert_array_equal(flip_and_swap(W2G, groups=2), W2G_CONV)


def test_seed_plain_permute_is_wrong_for_two_groups():
    # the seed's swap: permute(1, 0, 2, 3) + flip gives (C_out/g, C_in) = (2, 2, 2, 2), not (C_out, C_in/g)
    seed = W2G.transpose(1, 0, 2, 3)[..., ::-1, ::-1]
    assert seed.shape == (2, 2, 2, 2)
    assert not np.array_equal(seed.reshape(4, 1, 2, 2), W2G_CONV)  # out 1 would read group 1's kernel
    # and the consequence: the stride-1 conv of the swelled input equals conv_transpose2d only with ours
    x = np.arange(1, 2 * 3 * 3 + 1, dtype=np.int64).reshape(1, 2, 3, 3)
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(W2G.astype(np.int64)), groups=2).numpy()
    swelled = torch.from_numpy(swell(x[0].astype(np.int8), (1, 1), (1, 1), (1, 1))[None].astype(np.int64))  # pad 1
    ours = F.conv2d(swelled, torch.from_numpy(W2G_CONV.astype(np.int64)), groups=2).numpy()
    theirs = F.conv2d(swelled, torch.from_numpy(seed.reshape(4, 1, 2, 2).astype(np.int64)), groups=2).numpy()
    np.testing.assert_array_equal(ours, want)
    assert not np.array_equal(theirs, want)


def test_groups_one_is_the_plain_flip_and_swap():
    w = np.arange(2 * 3 * 1 * 2, dtype=np.int8).reshape(2, 3, 1, 2)  # (C_in=2, C_out=3, 1, 2)
    out = flip_and_swap(w, groups=1)
    assert out.shape == (3, 2, 1, 2)
    assert out[2, 1].tolist() == [[w[1, 2, 0, 1], w[1, 2, 0, 0]]]


def test_phase_taps_k3_s2_p1_by_hand():
    # outputs o = 2m + phase. phase 0 gets tap 1 only (zero-padded to 2 taps), phase 1 gets taps 2, 0 (flipped)
    layer = make_config({"input_shape": [1, 1, 4, 4], "in_channels": 1, "out_channels": 1, "kernel_size": 3,
                         "stride": 2, "padding": 1, "output_padding": 1}).layer
    axes = phase_axes(layer, 0)
    assert [(a.phase, a.taps) for a in axes] == [(0, (None, 1)), (1, (2, 0))]


def test_phase_sub_kernels_k3_s2_p1_by_hand():
    layer = make_config({"input_shape": [1, 1, 4, 4], "in_channels": 1, "out_channels": 1, "kernel_size": 3,
                         "stride": 2, "padding": 1, "output_padding": 1}).layer
    w = np.arange(1, 10, dtype=np.int8).reshape(1, 1, 3, 3)  # the seed's pattern [[1 2 3] [4 5 6] [7 8 9]]
    subs = split_phases(w, 1, phase_pairs(layer))
    expected = np.array([
        [[0, 0], [0, 5]],  # phase (0, 0): tap (1, 1)
        [[0, 0], [6, 4]],  # phase (0, 1): taps (1, 2), (1, 0)
        [[0, 8], [0, 2]],  # phase (1, 0): taps (2, 1), (0, 1)
        [[9, 7], [3, 1]],  # phase (1, 1): taps (2,2) (2,0) (0,2) (0,0)
    ], dtype=np.int8)
    np.testing.assert_array_equal(subs[:, 0, 0], expected)
    ph, pw = phase_pairs(layer)[3]
    np.testing.assert_array_equal(phase_kernel(w, 1, ph, pw)[0, 0], expected[3])


def test_phase_kernel_swaps_channels_per_group():
    layer = make_config({"input_shape": [1, 2, 2, 2], "in_channels": 2, "out_channels": 4, "kernel_size": 2,
                         "stride": 2, "groups": 2}).layer
    # k = s = 2, p = 0: each phase holds exactly one tap, so phase (a, b) is the unflipped tap (a, b)
    subs = split_phases(W2G, 2, phase_pairs(layer))
    assert subs.shape == (4, 4, 1, 1, 1)
    assert subs[:, :, 0, 0, 0].tolist() == [[1, 11, 101, 111], [2, 12, 102, 112], [3, 13, 103, 113],
                                            [4, 14, 104, 114]]


def test_transpose_cycles_by_hand():
    assert transpose_cycles(64, 64, DmaConfig(bytes_per_cycle=32, setup_cycles=8)) == 8 + 2
