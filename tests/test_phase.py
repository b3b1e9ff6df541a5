"""The phase method (``engine.transposed_conv: phase``): phase maths, sub-kernels, MAC counts and bit-exactness.

Every expected sub-kernel and MAC count below is worked out by hand from the transposed-conv definition, per
axis: input ``i`` with (original, unflipped) tap ``t`` feeds output ``o = i*s - p + t*d``. Writing
``o = s*m + phase``, the taps of a phase are those with ``t*d = phase + p (mod s)`` and they read input
``i = m + (phase + p - t*d)/s``. The sub-kernel lists its taps in increasing input offset (the spatial flip);
a tap the phase does not have is a zero (written None in ``PhaseAxis.taps``). The property suite over both
methods lives elsewhere; this file is the hand-worked part.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator import load_config, simulate
from simulator.data import make_tensors
from simulator.mapping.phase import PhaseAxis, phase_axes, phase_pairs
from simulator.pipeline import simulate_layer
from simulator.stages.weight_transpose import split_phases
from tests.conftest import REPO, make_config, torch_reference

DATA = {"seed": 11, "ifmap": "random", "weight": "random", "bias": "random"}
PHASE = {"transposed_conv": "phase"}


def _layer(**kw: object) -> dict[str, object]:
    return {"op": "conv_transpose2d", "in_channels": 1, "out_channels": 1, "bias": True, **kw}


def _axes(cfg_layer: object) -> tuple[tuple[PhaseAxis, ...], tuple[PhaseAxis, ...]]:
    return phase_axes(cfg_layer, 0), phase_axes(cfg_layer, 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- seed CASE_2: k3 s2 p1 op1, 4x6

# o = 2i - 1 + t, output 8x12.
#  phase 0 (o = 2m):   t odd  -> t = 1 reads i = m;            t = 3 does not exist -> a zero tap at i = m-1.
#                      sub-kernel (i = m-1, i = m) = (None, 1), offset -1
#  phase 1 (o = 2m+1): t even -> t = 0 reads i = m+1, t = 2 reads i = m.
#                      sub-kernel (i = m, i = m+1) = (2, 0), offset 0
CASE2_H = (PhaseAxis(0, (None, 1), -1, 1, 4), PhaseAxis(1, (2, 0), 0, 1, 4))
CASE2_W = (PhaseAxis(0, (None, 1), -1, 1, 6), PhaseAxis(1, (2, 0), 0, 1, 6))
# the seed's pattern weight w[i, j] = 3i + j + 1:  [[1, 2, 3], [4, 5, 6], [7, 8, 9]]; sub-kernel[u, v] =
# w[taps_h[u], taps_w[v]] (0 where either is None)
CASE2_SUB = {
    (0, 0): [[0, 0], [0, 5]],  # rows (None, 1) x cols (None, 1)
    (0, 1): [[0, 0], [6, 4]],  # rows (None, 1) x cols (2, 0)
    (1, 0): [[0, 8], [0, 2]],  # rows (2, 0) x cols (None, 1)
    (1, 1): [[9, 7], [3, 1]],  # rows (2, 0) x cols (2, 0)
}
# e.g. out(2m+1, 2n+1) = 9 x[m, n] + 7 x[m, n+1] + 3 x[m+1, n] + 1 x[m+1, n+1]


def _case2():
    return load_config(REPO / "configs" / "seed_case2.yaml")


def test_case2_phase_axes_by_hand():
    assert _axes(_case2().layer) == (CASE2_H, CASE2_W)


def test_case2_sub_kernels_by_hand():
    cfg = _case2()
    weight = make_tensors(cfg.data, cfg.layer, None).weight  # the seed pattern
    pairs = phase_pairs(cfg.layer)
    assert [(a.phase, b.phase) for a, b in pairs] == list(CASE2_SUB)
    sub = split_phases(weight, 1, pairs)
    assert sub.shape == (4, 1, 1, 2, 2)
    for i, key in enumerate(CASE2_SUB):
        np.testing.assert_array_equal(sub[i, 0, 0], CASE2_SUB[key], err_msg=f"phase {key}")
    # every original tap lands in exactly one phase
    assert sorted(int(v) for v in sub[sub != 0]) == list(range(1, 10))


def test_case2_phase_on_a_delta_input_scatters_the_kernel():
    # a single 1 at input (1, 2): output (2*1 - 1 + t, 2*2 - 1 + t') = w[t, t'], so the 3x3 pattern kernel
    # appears at rows 1..3, columns 3..5 and every other output is the bias (zero here)
    cfg = make_config(_layer(input_shape=[1, 1, 4, 6], kernel_size=3, stride=2, padding=1, output_padding=1),
                      data={"seed": 0, "ifmap": "random", "weight": "pattern", "bias": "zeros"}, engine=PHASE)
    x = np.zeros((1, 1, 4, 6), dtype=np.int8)
    x[0, 0, 1, 2] = 1
    out = simulate(cfg, ifmap=x).ofmap
    expected = np.zeros((1, 1, 8, 12), dtype=np.int32)
    expected[0, 0, 1:4, 3:6] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------------------------------------- k4 s2 p1 (DCGAN)

# o = 2i - 1 + t.  phase 0: t = 3 reads i = m-1, t = 1 reads i = m -> (3, 1), offset -1;
#                  phase 1: t = 2 reads i = m, t = 0 reads i = m+1 -> (2, 0), offset 0. No zero taps (s | k).
# pattern w[i, j] = 4i + j + 1
K4_SUB = {
    (0, 0): [[16, 14], [8, 6]],  # rows (3, 1) x cols (3, 1)
    (0, 1): [[15, 13], [7, 5]],  # rows (3, 1) x cols (2, 0)
    (1, 0): [[12, 10], [4, 2]],  # rows (2, 0) x cols (3, 1)
    (1, 1): [[11, 9], [3, 1]],  # rows (2, 0) x cols (2, 0)
}


def test_k4_s2_p1_sub_kernels_by_hand():
    cfg = make_config(_layer(input_shape=[1, 1, 5, 5], kernel_size=4, stride=2, padding=1),
                      data={"seed": 0, "ifmap": "random", "weight": "pattern", "bias": "zeros"}, engine=PHASE)
    h, w = _axes(cfg.layer)
    assert h == w == (PhaseAxis(0, (3, 1), -1, 1, 5), PhaseAxis(1, (2, 0), 0, 1, 5))
    weight = make_tensors(cfg.data, cfg.layer, None).weight
    sub = split_phases(weight, 1, phase_pairs(cfg.layer))
    for i, key in enumerate(K4_SUB):
        np.testing.assert_array_equal(sub[i, 0, 0], K4_SUB[key], err_msg=f"phase {key}")


# ----------------------------------------------------------------------------------- dilation and stride share


def test_dilation_equal_to_stride_leaves_odd_outputs_bias_only():
    # d = s = 2, k3 p0: o = 2i + 2t is always even. Phase 1 has no tap: those outputs are the bias alone.
    # Phase 0 (o = 2m) reads i = m - t for all three taps: P = s/gcd(d, s) = 1, sub-kernel ceil(3/1) = 3 with
    # sub-dilation d/gcd = 1: (2, 1, 0) at offset -2. Output (5-1)*2 + 2*2 + 1 = 13, 7 even rows.
    cfg = make_config(_layer(input_shape=[1, 2, 5, 4], in_channels=2, out_channels=3, kernel_size=3, stride=2,
                             dilation=2), data=DATA, engine=PHASE)
    h, w = _axes(cfg.layer)
    assert h == (PhaseAxis(0, (2, 1, 0), -2, 1, 7),)
    assert w == (PhaseAxis(0, (2, 1, 0), -2, 1, 6),)
    result = simulate(cfg)
    t = result.tensors
    out = result.ofmap
    assert out.shape == (1, 3, 13, 11)
    bias = np.broadcast_to(t.bias[None, :, None, None], out.shape)
    np.testing.assert_array_equal(out[:, :, 1::2, :], bias[:, :, 1::2, :])
    np.testing.assert_array_equal(out[:, :, :, 1::2], bias[:, :, :, 1::2])
    np.testing.assert_array_equal(out, torch_reference(cfg.layer, t.ifmap, t.weight, t.bias))
    # one phase of 7x6 outputs, 3x3 taps, 2 inputs, 3 outputs
    assert result.report.macs_issued == 7 * 6 * 3 * 3 * 2 * 3


def test_dilation_sharing_a_factor_with_stride():
    # d2 s4 k3 p0: o = 4i + 2t. gcd 2, P = 2, sub-kernel ceil(3/2) = 2, sub-dilation 1.
    #  phase 0: t even: t = 2 reads i = m-1, t = 0 reads i = m -> (2, 0) offset -1
    #  phase 2: t = 1 reads i = m (t = 3 does not exist: a zero tap at i = m-1) -> (None, 1) offset -1
    #  phases 1 and 3: no tap (bias only). Output (3-1)*4 + 2*2 + 1 = 13: phase 0 has 4 rows, phase 2 has 3.
    cfg = make_config(_layer(input_shape=[1, 1, 3, 3], kernel_size=3, stride=4, dilation=2), data=DATA,
                      engine=PHASE)
    h, _ = _axes(cfg.layer)
    assert h == (PhaseAxis(0, (2, 0), -1, 1, 4), PhaseAxis(2, (None, 1), -1, 1, 3))
    result = simulate(cfg)
    t = result.tensors
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, t.ifmap, t.weight, t.bias))


def test_coprime_dilation_gives_dilated_sub_kernels():
    # d3 s2 k3 p0: o = 2i + 3t. gcd 1, P = 2, sub-kernel 2, sub-dilation 3.
    #  phase 0: t = 2 reads i = m-3, t = 0 reads i = m -> (2, 0) offset -3
    #  phase 1: t = 1 reads i = m-1; t = 3 does not exist (zero tap at i = m-4) -> (None, 1) offset -4
    cfg = make_config(_layer(input_shape=[1, 1, 4, 4], kernel_size=3, stride=2, dilation=3), data=DATA,
                      engine=PHASE)
    h, _ = _axes(cfg.layer)  # output (4-1)*2 + 3*2 + 1 = 13
    assert h == (PhaseAxis(0, (2, 0), -3, 3, 7), PhaseAxis(1, (None, 1), -4, 3, 6))
    result = simulate(cfg)
    t = result.tensors
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, t.ifmap, t.weight, t.bias))


def test_crop_with_padding_beyond_the_kernel():
    # W axis: k2 s3 p3 op2 d1: o = 3i - 3 + t. phase 0: t = 0 reads i = m+1; phase 1: t = 1 reads i = m+1;
    # phase 2: no tap (k < s) -> bias only. Input pixel 0 never reaches the output (cropped).
    cfg = make_config(_layer(input_shape=[1, 2, 3, 5], in_channels=2, out_channels=2, kernel_size=[2, 2],
                             stride=[1, 3], padding=[0, 3], output_padding=[0, 2]), data=DATA, engine=PHASE)
    _, w = _axes(cfg.layer)  # output width (5-1)*3 - 6 + 1 + 2 + 1 = 10
    assert w == (PhaseAxis(0, (0,), 1, 1, 4), PhaseAxis(1, (1,), 1, 1, 3))
    result = simulate(cfg)
    t = result.tensors
    bias = np.broadcast_to(t.bias[None, :, None, None], result.ofmap.shape)
    np.testing.assert_array_equal(result.ofmap[..., 2::3], bias[..., 2::3])
    np.testing.assert_array_equal(result.ofmap, torch_reference(cfg.layer, t.ifmap, t.weight, t.bias))


def test_output_with_no_tap_at_all_is_bias_only():
    # 1x1 input, k1 s3 p1 op2: o = 3i - 1 -> the only output o = 0 gets no tap; no phase job runs
    cfg = make_config(_layer(input_shape=[1, 2, 1, 1], in_channels=2, out_channels=3, kernel_size=1, stride=3,
                             padding=1, output_padding=2), data=DATA, engine=PHASE)
    assert phase_pairs(cfg.layer) == ()
    result = simulate(cfg)
    np.testing.assert_array_equal(result.ofmap[0, :, 0, 0], result.tensors.bias)
    assert result.report.macs_issued == 0


# ---------------------------------------------------------------------------------------- DCGAN MAC counts

DCGAN = sorted(p for p in (REPO / "configs").glob("dcgan_*.yaml") if "\nlayers:" not in "\n" + p.read_text())


@pytest.mark.parametrize("path", DCGAN, ids=lambda p: p.stem)
def test_dcgan_phase_issues_hand_counted_macs(path):
    cfg = load_config(path)
    layer = cfg.layer
    _, c_in, h, w = layer.input_shape
    c_out = layer.out_channels
    assert (layer.kernel_size, layer.stride, layer.padding, layer.groups) == ((4, 4), (2, 2), (1, 1), 1)
    phase = simulate_layer(layer, cfg.hardware, "phase", None).report
    swell = simulate_layer(layer, cfg.hardware, "swell", None).report
    # phase: 2x2 phases, each M_h x M_w = h x w outputs, 2x2 sub-kernel, C_in x C_out
    assert phase.macs_issued == 4 * (h * w) * (2 * 2) * c_in * c_out
    # swell: every one of the 2h x 2w outputs runs all 4x4 taps
    assert swell.macs_issued == (2 * h) * (2 * w) * (4 * 4) * c_in * c_out
    assert phase.macs_issued * 4 == swell.macs_issued  # 1/stride^2
    # useful, per axis: 2 outputs per input row pair, 2 taps each, minus the two edge taps that fall outside
    # (o = 0 with t = 3 -> i = -1; o = 2h-1 with t = 0 -> i = h): 4h - 2 of 4h
    useful = (4 * h - 2) * (4 * w - 2) * c_in * c_out
    assert phase.macs_useful == swell.macs_useful == useful


@pytest.mark.parametrize("path", DCGAN, ids=lambda p: p.stem)
def test_dcgan_phase_useful_utilization_close_to_issued(path):
    cfg = load_config(path)
    h = cfg.layer.input_shape[2]
    phase = simulate_layer(cfg.layer, cfg.hardware, "phase", None).report
    swell = simulate_layer(cfg.layer, cfg.hardware, "swell", None).report
    ratio = phase.utilization_useful / phase.utilization_issued
    assert ratio == pytest.approx(((4 * h - 2) / (4 * h)) ** 2, rel=1e-12)  # only the edge taps are wasted
    assert ratio >= 0.75
    # swelling wastes about 3/4 of what it issues on inserted zeros
    assert swell.utilization_useful / swell.utilization_issued < 0.25
    assert phase.cycles < swell.cycles


# ----------------------------------------------------------------------------------- all shipped configs

CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if "\nlayers:" not in "\n" + p.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_phase_bit_exact_on_shipped_config(path):
    cfg = load_config(path)
    tensors = make_tensors(cfg.data, cfg.layer, None)
    result = simulate_layer(cfg.layer, cfg.hardware, "phase", tensors)
    q = cfg.layer.quant
    if q is not None:  # a quantized layer: the accumulators, and the int8 ofmap equal to the swell method's
        expected = torch_reference(cfg.layer, tensors.ifmap.astype(np.int16) - q.input.zero_point,
                                   tensors.weight.astype(np.int16) - q.weight.zero_point, tensors.bias)
        np.testing.assert_array_equal(result.acc, expected)
        swell = simulate_layer(cfg.layer, cfg.hardware, "swell", tensors)
        np.testing.assert_array_equal(result.ofmap, swell.ofmap)
        return
    expected = torch_reference(cfg.layer, tensors.ifmap, tensors.weight, tensors.bias)
    assert result.ofmap.dtype == np.int32
    np.testing.assert_array_equal(result.ofmap, expected)
