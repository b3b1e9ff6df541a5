"""int32 accumulator overflow under each policy, against values computed here with Python ints.

A product of two int8 is at most 2**14 in magnitude, so only reductions of K = kh*kw*C_in/g >= 2**17 can overflow
mid-sum: the cases below use C_in = 8192 with a 4x4 or 5x5 kernel. The hardware order (documented in
``simulator/fixedpoint.py``) is (kernel row, kernel col, input channel) of the conv weight the MAC array runs,
which for a transposed conv is the FLIPPED kernel; the references below are plain Python loops in that order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from simulator import fixedpoint as fp
from simulator import simulate
from simulator.cli import main
from simulator.errors import AccumulatorOverflowError
from tests.conftest import make_config

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
C_IN = 8192


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def clamp32(v: int) -> int:
    return min(I32_MAX, max(I32_MIN, v))


def conv2d_cfg(policy: str, c_out: int, k: int, hw: tuple[int, int], bias: bool = False,
               sram: dict[str, Any] | None = None) -> Any:
    layer = {"op": "conv2d", "input_shape": [1, C_IN, *hw], "in_channels": C_IN, "out_channels": c_out,
             "kernel_size": k, "bias": bias}
    return make_config(layer, data={"weight": "random"},
                       hardware={"accumulator": {"on_overflow": policy}, "sram": sram or {}})


# ------------------------------------------------------------------ all -128: overflow at a known output, K = 2**17


def all_min_case() -> tuple[np.ndarray, np.ndarray]:
    """ifmap -128 except input column 0 (zeros), weight -128: output column 0 sums 3/4 of K products of 2**14,
    column 1 sums all 2**17 of them = 2**31, one past INT32_MAX."""
    x = np.full((1, C_IN, 4, 5), -128, dtype=np.int8)
    x[..., 0] = 0
    return x, np.full((2, C_IN, 4, 4), -128, dtype=np.int8)


def exact_all_min() -> list[int]:
    """[col 0, col 1] exact sums, with Python ints."""
    k = C_IN * 4 * 4
    return [(-128) * (-128) * (k * 3 // 4), (-128) * (-128) * k]


def test_error_names_first_overflowing_output() -> None:
    x, w = all_min_case()
    with pytest.raises(AccumulatorOverflowError, match=r"at \[0, 0, 0, 1\] reaches 2147483648"):
        simulate(conv2d_cfg("error", 2, 4, (4, 5)), x, w)


def test_error_through_cli_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    x, w = all_min_case()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    raw = {"name": "ovf", "layer": {"op": "conv2d", "input_shape": [1, C_IN, 4, 5], "in_channels": C_IN,
                                    "out_channels": 2, "kernel_size": 4, "bias": False},
           "data": {"ifmap": {"file": "x.npy"}, "weight": {"file": "w.npy"}},
           "hardware": {"accumulator": {"on_overflow": "error"}}}
    (tmp_path / "ovf.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "ovf.yaml"), "--out", str(out), "--golden-dir", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("convsim: error: ")
    assert "[0, 0, 0, 1]" in err and "2147483648" in err and "on_overflow=error" in err
    assert not out.exists()


def test_wrap_is_exact_sum_mod_2_32() -> None:
    x, w = all_min_case()
    got = simulate(conv2d_cfg("wrap", 2, 4, (4, 5)), x, w).ofmap
    expected = [wrap32(v) for v in exact_all_min()]
    assert expected == [1610612736, -(2**31)]
    assert got.tolist() == [[[expected], [expected]]]


def test_saturate_all_min_clamps() -> None:
    x, w = all_min_case()
    got = simulate(conv2d_cfg("saturate", 2, 4, (4, 5)), x, w).ofmap
    expected = [clamp32(v) for v in exact_all_min()]
    assert got.tolist() == [[[expected], [expected]]]


# ------------------------------------------- running sum overflows and comes back: order matters under saturate


def up_then_down_conv2d() -> tuple[np.ndarray, np.ndarray]:
    """Kernel rows 0-3 give +2**14 products (the running sum passes INT32_MAX after row 3), row 4 gives -16256
    products that bring it back inside int32. K = 25 * 8192."""
    x = np.full((1, C_IN, 5, 5), -128, dtype=np.int8)
    w = np.full((1, C_IN, 5, 5), -128, dtype=np.int8)
    w[:, :, 4, :] = 127
    return x, w


def saturating_loop(terms: list[tuple[int, int]]) -> int:
    acc = 0
    for a, b in terms:
        acc = clamp32(acc + a * b)
    return acc


def hardware_order(ic_per_slice: int) -> list[tuple[int, int, int]]:
    """(kernel row, kernel col, input channel) in the engine's order: within an input-channel slice, then slice
    after slice (docs/errors.md)."""
    return [(r, s, c) for c0 in range(0, C_IN, ic_per_slice) for r in range(5) for s in range(5)
            for c in range(c0, min(C_IN, c0 + ic_per_slice))]


@pytest.mark.parametrize("ifmap_bytes", [2**19, 2**15])  # default, and one that forces input-channel slices
def test_saturate_follows_the_hardware_order_conv2d(ifmap_bytes: int) -> None:
    x, w = up_then_down_conv2d()
    cfg = conv2d_cfg("saturate", 1, 5, (5, 5), sram={"ifmap": {"size_bytes": ifmap_bytes}})
    result = simulate(cfg, x, w)
    if ifmap_bytes < 2**19:
        assert result.plan.ic_per_tile < C_IN
    # plain Python ints, in the plan's slice order
    terms = [(int(x[0, c, r, s]), int(w[0, c, r, s])) for r, s, c in hardware_order(result.plan.ic_per_tile)]
    expected = saturating_loop(terms)
    exact = sum(a * b for a, b in terms)
    assert exact == 20 * C_IN * 2**14 - 5 * C_IN * 128 * 127 and I32_MIN <= exact <= I32_MAX
    if result.plan.ic_per_tile == C_IN:  # one slice: the order is visible
        assert expected == I32_MAX - 5 * C_IN * 128 * 127 != clamp32(exact)
    assert int(result.ofmap[0, 0, 0, 0]) == expected


def test_error_on_running_sum_even_if_final_sum_fits() -> None:
    x, w = up_then_down_conv2d()
    # the running sum first leaves int32 at product 2**31 / 2**14 = 131,072: it is then exactly 2**31 (the final
    # sum, 20 * C_IN * 2**14 - 5 * C_IN * 128 * 127, is back inside int32 and must not be what is printed)
    with pytest.raises(AccumulatorOverflowError, match=r"running sum of output at \[0, 0, 0, 0\] reaches 2147483648,"):
        simulate(conv2d_cfg("error", 1, 5, (5, 5)), x, w)


def test_wrap_of_up_then_down_is_the_exact_sum() -> None:
    x, w = up_then_down_conv2d()
    got = simulate(conv2d_cfg("wrap", 1, 5, (5, 5)), x, w).ofmap
    assert int(got[0, 0, 0, 0]) == 20 * C_IN * 2**14 - 5 * C_IN * 128 * 127


@pytest.mark.parametrize("method", ["swell", "phase"])
def test_saturate_follows_the_flipped_kernel_order_transposed(method: str) -> None:
    """conv_transpose2d, stride 1, padding 4, kernel 5, input 5x5 -> one output = sum x[c,r,s] * w[c,0,4-r,4-s]
    taken over input rows r in order (the conv weight is the flipped kernel). Original kernel row 0 (-> input
    row 4, last) brings the saturated sum back; in the unflipped order it would come first and nothing would
    saturate."""
    x = np.full((1, C_IN, 5, 5), -128, dtype=np.int8)
    w = np.full((C_IN, 1, 5, 5), -128, dtype=np.int8)
    w[:, :, 0, :] = 127
    layer = {"op": "conv_transpose2d", "input_shape": [1, C_IN, 5, 5], "in_channels": C_IN, "out_channels": 1,
             "kernel_size": 5, "padding": 4, "bias": False}
    big = {"size_bytes": 2**21}  # the swelled 8192-channel ifmap and the transformed weight need > 256 KiB
    # serial: one slice (double-buffered, the planner slices the reduction to overlap loads, and the sliced
    # order brings the sum back before it saturates)
    hw = {"accumulator": {"on_overflow": "saturate"}, "sram": {"ifmap": big, "weight": big},
          "pipeline": {"overlap": "serial"}}
    cfg = make_config(layer, data={"weight": "random"}, hardware=hw, engine={"transposed_conv": method})
    result = simulate(cfg, x, w)
    assert result.plan.ic_per_tile == C_IN
    terms = [(int(x[0, c, r, s]), int(w[c, 0, 4 - r, 4 - s])) for r, s, c in hardware_order(result.plan.ic_per_tile)]
    expected = saturating_loop(terms)
    unflipped = [(int(x[0, c, r, s]), int(w[c, 0, r, s])) for r in range(5) for s in range(5) for c in range(C_IN)]
    assert expected != saturating_loop(unflipped)
    got = result.ofmap
    assert got.shape == (1, 1, 1, 1)
    assert int(got[0, 0, 0, 0]) == expected


# ------------------------------------------------------------------------------- bias add at write-back


BIAS = 2**31 - 1 - 100


def bias_case(policy: str) -> Any:
    """conv2d 1x1, one channel, psum = 127 * x: [-16256, 16129]; bias INT32_MAX - 100 overflows column 1."""
    layer = {"op": "conv2d", "input_shape": [1, 1, 1, 2], "in_channels": 1, "out_channels": 1, "kernel_size": 1}
    cfg = make_config(layer, data={"weight": "random"}, hardware={"accumulator": {"on_overflow": policy}})
    x = np.array([[[[-128, 127]]]], dtype=np.int8)
    w = np.array([[[[127]]]], dtype=np.int8)
    return cfg, x, w, np.array([BIAS], dtype=np.int32)


def test_bias_overflow_error_names_output() -> None:
    cfg, x, w, b = bias_case("error")
    with pytest.raises(AccumulatorOverflowError, match=rf"psum \+ bias\) at \[0, 0, 0, 1\] reaches {127 * 127 + BIAS}"):
        simulate(cfg, x, w, b)


@pytest.mark.parametrize(("policy", "reduce"), [("wrap", wrap32), ("saturate", clamp32)])
def test_bias_overflow_wrap_and_saturate(policy: str, reduce: Any) -> None:
    cfg, x, w, b = bias_case(policy)
    got = simulate(cfg, x, w, b).ofmap
    assert got.ravel().tolist() == [reduce(-128 * 127 + BIAS), reduce(127 * 127 + BIAS)]


def test_saturated_psum_then_bias_is_clamped_twice() -> None:
    """psum 2**31 saturates to INT32_MAX, then bias -16384 is added with its own clamp: INT32_MAX - 16384,
    one less than clamp(exact psum + bias)."""
    x, w = all_min_case()
    layer = {"op": "conv2d", "input_shape": [1, C_IN, 4, 5], "in_channels": C_IN, "out_channels": 2,
             "kernel_size": 4, "bias": True}
    cfg = make_config(layer, data={"weight": "random"}, hardware={"accumulator": {"on_overflow": "saturate"}})
    bias = np.array([-16384, 0], dtype=np.int32)
    got = simulate(cfg, x, w, bias).ofmap
    col0, col1 = exact_all_min()
    assert got[0, 0, 0].tolist() == [clamp32(col0 - 16384), clamp32(clamp32(col1) - 16384)]
    assert clamp32(clamp32(col1) - 16384) == clamp32(col1 - 16384) - 1
    assert got[0, 1, 0].tolist() == [col0, I32_MAX]


# --------------------------------------------------------------- the in-order path itself, on wide int64 inputs


@pytest.mark.parametrize("budget", [1, 7, 1 << 21])
def test_ordered_accumulate_matches_python_loop(budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values up to 2**31 make overflows frequent with short K; small budgets exercise the block boundaries."""
    monkeypatch.setattr(fp, "ORDERED_BUDGET_ELEMENTS", budget)
    rng = np.random.default_rng(7)
    for trial in range(40):
        m, e, k = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 40))
        w = rng.integers(-(2**16), 2**16, size=(m, k))
        c = rng.integers(-(2**15), 2**15, size=(e, k))
        if trial % 2:
            w = np.abs(w)
            c = np.abs(c)
        sat, _, _ = fp.ordered_accumulate(w, c, "saturate")
        exact, overflowed, escaped = fp.ordered_accumulate(w, c, "error")
        for i in range(m):
            for j in range(e):
                terms = [(int(w[i, t]), int(c[j, t])) for t in range(k)]
                assert int(sat[i, j]) == saturating_loop(terms)
                running, first = 0, None
                for a, b in terms:
                    running += a * b
                    if first is None and not I32_MIN <= running <= I32_MAX:
                        first = running
                assert int(exact[i, j]) == running
                assert bool(overflowed[i, j]) == (first is not None)
                if first is not None:
                    assert int(escaped[i, j]) == first  # the running sum that left int32, not the final one


# ------------------------------------------------------------- the torch golden reference under saturate


def test_golden_saturate_refuses_order_dependent_case() -> None:
    from simulator.data import LayerTensors
    from simulator.errors import ConvsimError
    from simulator.golden import reference

    x, w = up_then_down_conv2d()
    cfg = conv2d_cfg("saturate", 1, 5, (5, 5))
    with pytest.raises(ConvsimError, match=r"order-dependent at output \[0, 0, 0, 0\]"):
        reference(cfg.layer, LayerTensors(x, w, np.zeros(1, dtype=np.int32)), "saturate")


def test_golden_saturate_of_one_signed_products_is_the_clamp() -> None:
    from simulator.data import LayerTensors
    from simulator.golden import reference

    x, w = all_min_case()
    cfg = conv2d_cfg("saturate", 2, 4, (4, 5))
    got = reference(cfg.layer, LayerTensors(x, w, np.zeros(2, dtype=np.int32)), "saturate")
    expected = [clamp32(v) for v in exact_all_min()]
    assert got.tolist() == [[[expected], [expected]]]
