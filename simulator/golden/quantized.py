"""The golden reference of a quantized layer: torch's quantized modules (fbgemm) and an independent integer
reference. Imports torch lazily; never calls the engine's arithmetic (:mod:`simulator.quant`).

- **Accumulators** (int32, bias included): torch's int64 ``conv_transpose2d`` / ``conv2d`` of the zero-point-centred
  tensors, ``sum (x - x_zp)(w - w_zp)`` over the real taps, plus the bias, narrowed under the accumulator policy.
- **fp32_rne with per-tensor weights, and conv2d with per-channel weights**: torch's own quantized module
  (``torch.ao.nn.quantized.ConvTranspose2d`` / ``Conv2d``) on the **fbgemm** engine, pinned explicitly, with
  activations shifted to torch's quint8 (``u = q + 128``, zero point + 128: the same real values) and the float
  bias ``b * s_x * s_w[c]`` (float32) or the layer's ``quant.bias_float``.
- **fp32_rne where torch cannot be used** (per-channel transposed convs, which torch refuses; data on which
  fbgemm's int16 pair sums saturate; shapes torch gets wrong): fbgemm's float formula in exact rational
  arithmetic with every float32 rounding explicit.
- **tflite_double / single_round**: closed forms in exact rational arithmetic (Python ints and fractions), not the
  bit-level gemmlowp steps: SRDHM is ``floor(a*m / 2^31 + 1/2)``, RoundingDivideByPOT rounds half away from zero,
  single rounding is ``floor(x*m / 2^(31-shift) + 1/2)``; QuantizeMultiplier from the exact binary expansion of
  the scale.

Models no hardware block; ignores timing.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from simulator.config import LayerConfig, QuantConfig
from simulator.data import LayerTensors
from simulator.errors import ConvsimError
from simulator.fixedpoint import OverflowPolicy, narrow_to_int32

FBGEMM = "fbgemm"


@contextlib.contextmanager
def quantized_engine(name: str = FBGEMM) -> Iterator[None]:
    """Pin torch's quantized engine for the block (torch's default on x86 is ``x86``, not fbgemm)."""
    import torch

    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def _conv(layer: LayerConfig, x: Any, w: Any) -> Any:
    import torch.nn.functional as F

    if layer.is_transposed:
        return F.conv_transpose2d(x, w, None, layer.stride, layer.padding, layer.output_padding, layer.groups,
                                  layer.dilation)
    return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def accumulators(layer: LayerConfig, tensors: LayerTensors, policy: OverflowPolicy) -> np.ndarray:
    """int32 ``sum (x - x_zp)(w - w_zp) + b`` by torch on int64 (exact), narrowed under ``policy``."""
    import torch

    quant = layer.quant
    assert quant is not None
    if policy == "saturate" and layer.reduction_length * 255 * 255 > 2**31 - 1:
        raise ConvsimError(f"golden: on_overflow=saturate with K={layer.reduction_length} centred products can be "
                           "order-dependent (partial sums may leave int32 and come back); torch's reference cannot "
                           "follow the hardware order: use wrap or error for a golden case")
    x = torch.from_numpy(tensors.ifmap.astype(np.int64) - quant.input.zero_point)
    w = torch.from_numpy(tensors.weight.astype(np.int64) - quant.weight.zero_point)
    psum = narrow_to_int32(_conv(layer, x, w).numpy(), policy, what="golden psum")
    wide = psum.astype(np.int64) + tensors.bias.astype(np.int64)[None, :, None, None]
    return narrow_to_int32(wide, policy, what="golden accumulator (psum + bias)")


def float_bias(quant: QuantConfig, bias: np.ndarray) -> np.ndarray:
    """The float32 bias torch's module gets: ``quant.bias_float``, else ``float32(b) * float32(float32(s_x) *
    float32(s_w[c]))``."""
    if quant.bias_float is not None:
        return np.asarray(quant.bias_float, dtype=np.float32)
    scales = np.asarray(quant.weight.scales(bias.shape[0]), dtype=np.float32)
    atws = (np.float32(quant.input.scale) * scales).astype(np.float32)
    return (bias.astype(np.float32) * atws).astype(np.float32)


def torch_supports(layer: LayerConfig) -> bool:
    """torch's quantized modules run this layer: fp32_rne, and per-tensor weights for a transposed conv."""
    quant = layer.quant
    return (quant is not None and quant.rounding == "fp32_rne"
            and not (layer.is_transposed and quant.weight.per_channel))


def torch_module_output(layer: LayerConfig, tensors: LayerTensors, engine: str = FBGEMM) -> np.ndarray:
    """int8 ofmap from torch's quantized ConvTranspose2d / Conv2d module on ``engine`` (then ReLU if asked)."""
    import torch
    import torch.ao.nn.quantized as nnq

    quant = layer.quant
    assert quant is not None
    c_out = layer.out_channels
    with quantized_engine(engine), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized tensor creation; the golden still needs it
        x = torch._make_per_tensor_quantized_tensor(torch.from_numpy((tensors.ifmap.astype(np.int16) + 128)
                                                                     .astype(np.uint8)),
                                                    quant.input.scale, quant.input.zero_point + 128)
        w_int = torch.from_numpy(tensors.weight.astype(np.int8))
        if quant.weight.per_channel:
            w = torch._make_per_channel_quantized_tensor(
                w_int, torch.tensor(quant.weight.scales(c_out), dtype=torch.double),
                torch.full((c_out,), quant.weight.zero_point, dtype=torch.long), 0)
        else:
            w = torch._make_per_tensor_quantized_tensor(w_int, float(quant.weight.scale), quant.weight.zero_point)
        kwargs = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                      bias=True)
        if layer.is_transposed:
            module = nnq.ConvTranspose2d(layer.in_channels, c_out, layer.kernel_size,
                                         output_padding=layer.output_padding, **kwargs)
        else:
            module = nnq.Conv2d(layer.in_channels, c_out, layer.kernel_size, **kwargs)
        module.set_weight_bias(w, torch.from_numpy(float_bias(quant, tensors.bias)))
        module.scale = float(quant.output.scale)
        module.zero_point = quant.output.zero_point + 128
        y = module(x)
        if quant.activation == "relu":
            y = torch.relu(y)
        return (y.int_repr().numpy().astype(np.int16) - 128).astype(np.int8)


# --------------------------------------------------------------------------------------- independent arithmetic


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _round_half_away(value: Fraction) -> int:
    return _round_half_up(value) if value >= 0 else -_round_half_up(-value)


def q31_multiplier(real: float, single_round: bool) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier from the exact value of the double: shift = the exponent putting the scale in
    [1/2, 1), multiplier = the scale's fraction times 2^31, rounded half away from zero."""
    exact = Fraction(real)
    if exact == 0:
        return 0, 0
    shift = 0
    while exact / Fraction(2) ** shift >= 1:
        shift += 1
    while exact / Fraction(2) ** shift < Fraction(1, 2):
        shift -= 1
    fixed = _round_half_away(exact / Fraction(2) ** shift * 2**31)
    if fixed == 2**31:
        fixed, shift = fixed // 2, shift + 1
    if shift < -31:
        return 0, 0
    if single_round and shift > 30:
        return 2**31 - 1, 30
    return fixed, shift


def _tflite_double(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    a = min(max(x * 2**left, -(2**31)), 2**31 - 1)
    high = _round_half_up(Fraction(a * m, 2**31))  # SRDHM: the nudge and truncation round ties up
    return _round_half_away(Fraction(high, 2**right))


def _single(x: int, m: int, shift: int) -> int:
    return min(max(_round_half_up(Fraction(x * m, 2 ** (31 - shift))), -(2**31)), 2**31 - 1)


def integer_reference(acc: np.ndarray, quant: QuantConfig) -> np.ndarray:
    """int8 ofmap of the integer profiles from int32 accumulators (N, C, H, W), one exact rational per element."""
    c_out = acc.shape[1]
    if quant.multiplier is not None and quant.shift is not None:
        regs = list(zip(quant.multiplier, quant.shift, strict=True))
        regs = regs * c_out if len(regs) == 1 else regs
    else:
        regs = [q31_multiplier(s, quant.rounding == "single_round") for s in quant.effective_scales(c_out)]
    step = _single if quant.rounding == "single_round" else _tflite_double
    low = max(-128, quant.output.zero_point) if quant.activation == "relu" else -128
    out = np.empty(acc.shape, dtype=np.int8)
    for c, (m, s) in enumerate(regs):
        values, inverse = np.unique(acc[:, c], return_inverse=True)
        mapped = np.array([min(max(step(int(v), m, s) + quant.output.zero_point, low), 127) for v in values])
        out[:, c] = mapped[inverse].reshape(acc[:, c].shape)
    return out


def _f32(value: Fraction) -> Fraction:
    """The float32 nearest to an exact rational (ties to even), as an exact rational."""
    return Fraction(float(np.float32(_nearest_f32(value))))


def _nearest_f32(value: Fraction) -> np.float32:
    guess = np.float32(float(value))  # float() rounds once to double; fix the float32 choice exactly below
    candidates = [guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - value), int(np.float32(c).view(np.int32)) & 1))
    return np.float32(best)


def fp32_reference(acc: np.ndarray, bias: np.ndarray, quant: QuantConfig) -> np.ndarray:
    """fbgemm's float path in exact rational arithmetic, every float32 operation rounded explicitly (for layers
    torch's modules refuse): ``v = f32(bias_f * f32(1/atws) + f32(acc - b))`` (one rounding: the FMA of the
    per-tensor path) or ``f32(f32(acc - b) + f32(bias_f / atws))`` (per channel); ``rne(f32(v * multiplier)) +
    zp``, clamped."""
    c_out = acc.shape[1]
    s_x = Fraction(float(np.float32(quant.input.scale)))
    s_y = Fraction(float(np.float32(quant.output.scale)))
    bias_f = float_bias(quant, bias)
    low = max(-128, quant.output.zero_point) if quant.activation == "relu" else -128
    out = np.empty(acc.shape, dtype=np.int8)
    for c, s_w in enumerate(quant.weight.scales(c_out)):
        atws = _f32(s_x * Fraction(float(np.float32(s_w))))
        multiplier = _f32(atws / s_y)
        b_f = Fraction(float(bias_f[c]))
        raw_all = acc[:, c].astype(np.int64) - int(bias[c])
        values, inverse = np.unique(raw_all, return_inverse=True)
        mapped = []
        for raw in values:
            r = _f32(Fraction(int(raw)))
            if quant.weight.per_channel:
                v = _f32(r + _f32(b_f / atws))
            else:
                reciprocal = Fraction(float(np.float32(1.0 / float(atws))))
                v = _f32(b_f * reciprocal + r)
            scaled = _f32(v * multiplier)
            rounded = math.floor(scaled)
            if scaled - rounded > Fraction(1, 2) or (scaled - rounded == Fraction(1, 2) and rounded % 2):
                rounded += 1
            if not -(2**31) <= rounded <= 2**31 - 1:
                rounded = -(2**31)
            mapped.append(min(max(rounded + quant.output.zero_point, low), 127))
        out[:, c] = np.array(mapped, dtype=np.int64)[inverse].reshape(acc[:, c].shape)
    return out


def _f32_hex(values: np.ndarray) -> list[str]:
    return [f"{int(v):08x}" for v in np.asarray(values, dtype=np.float32).view(np.uint32)]


def converter_registers(layer: LayerConfig, bias: np.ndarray) -> dict[str, Any]:
    """What an RTL testbench loads into the output converter for this layer, per output channel, computed here
    independently of the engine: Q31 ``multiplier`` and ``shift`` (integer profiles), or the float32 bit patterns
    of ``atws``, ``multiplier`` and the float bias (fp32_rne)."""
    quant = layer.quant
    assert quant is not None
    c_out = layer.out_channels
    out: dict[str, Any] = {"rounding": quant.rounding, "zero_point": quant.output.zero_point,
                           "activation": quant.activation, "per_channel": quant.weight.per_channel}
    if quant.rounding == "fp32_rne":
        scales = np.asarray(quant.weight.scales(c_out), dtype=np.float32)
        atws = (np.float32(quant.input.scale) * scales).astype(np.float32)
        out.update(atws_f32=_f32_hex(atws), multiplier_f32=_f32_hex(atws / np.float32(quant.output.scale)),
                   bias_f32=_f32_hex(float_bias(quant, bias)))
        return out
    if quant.multiplier is not None and quant.shift is not None:
        regs = list(zip(quant.multiplier, quant.shift, strict=True))
        regs = regs * c_out if len(regs) == 1 else regs
    else:
        regs = [q31_multiplier(s, quant.rounding == "single_round") for s in quant.effective_scales(c_out)]
    out.update(multiplier=[m for m, _ in regs], shift=[s for _, s in regs])
    return out


def fbgemm_pairs_can_saturate(tensors: LayerTensors) -> bool:
    """fbgemm's AVX2/AVX-512 kernels multiply uint8 activations by int8 weights with VPMADDUBSW, which sums two
    adjacent products into a **saturating int16**: a pair can leave int16 once ``2 * max(u) * max|w| > 32767``
    (u = q + 128). torch's fbgemm qconfig avoids it with 7-bit activations (reduce_range); full-range data need
    not."""
    u_max = int(tensors.ifmap.max()) + 128 if tensors.ifmap.size else 0
    w_max = int(np.abs(tensors.weight.astype(np.int16)).max()) if tensors.weight.size else 0
    return 2 * u_max * w_max > 32767


TORCH = "torch.ao.nn.quantized module, fbgemm engine"
INDEPENDENT_FP32 = "independent fp32 reference (fbgemm's float formula, exact rationals rounded to float32)"
INDEPENDENT_INT = "independent integer reference (exact rationals)"


def quantized_reference(layer: LayerConfig, tensors: LayerTensors, policy: OverflowPolicy) -> tuple[
        np.ndarray, np.ndarray, str]:
    """(int8 ofmap, int32 accumulators, which reference) of a quantized layer.

    fp32_rne uses torch's fbgemm module where torch runs the layer and its kernels cannot saturate, and keeps it
    only if it agrees with the independent fp32 reference: on torch 2.13 the fbgemm (and x86) transposed conv is
    wrong for kernel 2, stride 2, padding 0 with 8 or more input channels (docs/quantization.md), and a golden
    case must not record a library bug. Every other case uses the independent references."""
    quant = layer.quant
    assert quant is not None
    acc = accumulators(layer, tensors, policy)
    if quant.rounding != "fp32_rne":
        return integer_reference(acc, quant), acc, INDEPENDENT_INT
    independent = fp32_reference(acc, tensors.bias, quant)
    if not torch_supports(layer):
        return independent, acc, f"{INDEPENDENT_FP32}: torch has no per-channel quantized transposed conv"
    if fbgemm_pairs_can_saturate(tensors):
        return independent, acc, f"{INDEPENDENT_FP32}: fbgemm's int16 pair sums can saturate on this data"
    from_torch = torch_module_output(layer, tensors)
    if np.array_equal(from_torch, independent):
        return from_torch, acc, TORCH
    wrong = int((from_torch != independent).sum())
    return independent, acc, f"{INDEPENDENT_FP32}: torch's fbgemm module differs at {wrong} outputs (a torch bug)"
