"""Requantization arithmetic of the output converter: int32 accumulators -> int8, three rounding profiles.

Models the arithmetic of the engine's output converter (the block after the MAC array and the write-back
adder): a per-output-channel scale, rounding, the output zero point and the clamp (``relu`` clamps at the output
zero point). Pure functions of arrays and numbers; no config objects, no timing. docs/quantization.md gives every
formula with its source.

Profiles:

- ``fp32_rne``: fbgemm's float requantization (what torch's quantized conv modules run on the fbgemm engine):
  the bias-free accumulator converted to float32, plus the float bias brought to the accumulator's scale (a fused
  multiply-add by the reciprocal scale for per-tensor weights, a division for per-channel ones), times a float32
  multiplier, rounded to nearest even, plus the output zero point, clamped. Every step is the float32 operation
  fbgemm's AVX2 code performs.
- ``tflite_double``: TFLite's reference ``QuantizeMultiplier`` (a Q31 multiplier and a power-of-two shift from
  the double-precision scale) and ``MultiplyByQuantizedMultiplier`` of the default build: gemmlowp's
  SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT (two roundings).
- ``single_round``: the same multiplier with TFLITE_SINGLE_ROUNDING: ``(x*m + 2^(total-1)) >> total`` with
  ``total = 31 - shift`` (one rounding, half up), as TOSA RESCALE does.

``clamp_output`` is the engine's one int32 -> int8 narrowing (saturating, as the converter's clamp is); the int32
narrowing under the accumulator policy stays in :mod:`simulator.fixedpoint`.

Deliberately ignored: int16/int4 outputs, asymmetric clamps other than ReLU (ReLU6 and friends), and the
"default build" undefined behaviour of a left shift that overflows int32 (modelled as a saturating shift).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

Rounding = Literal["fp32_rne", "tflite_double", "single_round"]
Activation = Literal["none", "relu"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT8_MIN, INT8_MAX = -128, 127
Q31 = 1 << 31

# ------------------------------------------------------------------------------------------- integer multipliers


def quantize_multiplier(real: float, single_round: bool = False) -> tuple[int, int]:
    """(multiplier, shift) with ``real ~= multiplier * 2^(shift - 31)``, multiplier in [2^30, 2^31) (TFLite's
    QuantizeMultiplier: frexp, round half away from zero, renormalise 2^31; shifts below -31 flush to 0; with
    ``single_round`` a shift above 30 saturates to (2^31 - 1, 30))."""
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"effective scale {real!r} must be a finite number >= 0")
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)  # real = fraction * 2**shift, fraction in [0.5, 1)
    scaled = fraction * Q31  # exact: a power-of-two product
    fixed = int(scaled)  # std::round: half away from zero (scaled > 0; its fraction is exact in a double)
    if scaled - fixed >= 0.5:
        fixed += 1
    if fixed == Q31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if single_round and shift > 30:
        return Q31 - 1, 30
    return fixed, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's SRDHM on int32 values (as int64 arrays): the high 32 bits of ``2*a*b``, rounded half away from
    zero: ``(a*b + nudge) / 2^31`` truncated toward zero, nudge ``2^30`` (product >= 0) or ``1 - 2^30``; the one
    overflow (a = b = INT32_MIN) saturates to INT32_MAX."""
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    ab = a64 * b64  # |a*b| <= 2^62: exact in int64
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    quotient = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # C's '/' truncates toward zero
    return np.where((a64 == INT32_MIN) & (b64 == INT32_MIN), INT32_MAX, quotient)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: ``x / 2^exponent`` rounded to nearest, ties away from zero, for
    0 <= exponent <= 31: ``(x >> e) + (remainder > threshold)`` with ``threshold = mask/2 + (x < 0)``."""
    x64 = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0)
    return (x64 >> e) + (remainder > threshold)


def multiply_double_rounding(x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """TFLite's default MultiplyByQuantizedMultiplier: left shift (shift > 0), SRDHM, then a rounding right shift
    (shift < 0). The left-shifted value saturates to int32 (C leaves its overflow undefined)."""
    s = np.asarray(shift, dtype=np.int64)
    left = np.maximum(s, 0)
    shifted = np.clip(np.asarray(x, dtype=np.int64) << left, INT32_MIN, INT32_MAX)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), np.maximum(-s, 0))


def multiply_single_rounding(x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier with TFLITE_SINGLE_ROUNDING (TOSA RESCALE's rounding):
    ``(x*m + 2^(total-1)) >> total``, ``total = 31 - shift`` (arithmetic shift: ties go up), clamped to int32."""
    total = 31 - np.asarray(shift, dtype=np.int64)
    wide = np.asarray(x, dtype=np.int64) * np.asarray(multiplier, dtype=np.int64)  # < 2^62
    return np.clip((wide + (np.int64(1) << (total - 1))) >> total, INT32_MIN, INT32_MAX)


# ---------------------------------------------------------------------------------------------- fp32 (fbgemm)


def fp32_scales(input_scale: float, weight_scales: Sequence[float], output_scale: float) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """(act_times_w_scale, multiplier) per channel, float32, as fbgemm derives them: every scale rounded to
    float32 first, ``atws = s_x * s_w[c]`` and ``multiplier = atws / s_y``, each a float32 operation."""
    s_x, s_y = np.float32(input_scale), np.float32(output_scale)
    atws = (s_x * np.asarray(weight_scales, dtype=np.float32)).astype(np.float32)
    return atws, (atws / s_y).astype(np.float32)


def default_float_bias(bias: np.ndarray, atws: np.ndarray) -> np.ndarray:
    """The float bias of an int32 bias b: ``float32(b) * atws[c]`` (float32), the ``b * s_x * s_w[c]`` handed to
    torch's quantized module for the golden case."""
    return (np.asarray(bias).astype(np.float32) * atws).astype(np.float32)


def fma_f32(a: np.ndarray, b: np.ndarray | np.float32, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add: ``a*b + c`` rounded once to float32 (nearest, ties to even), as an FMA
    instruction does. a*b of two float32 is exact in float64; the float64 sum's rounding error is recovered
    exactly (TwoSum) and decides the one case a double rounding could get wrong: a float64 sum that lands exactly
    halfway between two float32 values."""
    p = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
    c64 = np.asarray(c, dtype=np.float64)
    s = p + c64
    v = s - p
    err = (p - (s - v)) + (c64 - v)  # s + err == p + c exactly
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    neighbour = np.where(s > r64, np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf)))
    midpoint = (s != r64) & (2 * s == r64 + neighbour.astype(np.float64))
    toward = np.where(err > 0, np.maximum(r, neighbour), np.minimum(r, neighbour))
    return np.where(midpoint & (err != 0), toward, r).astype(np.float32)


def requantize_fp32(acc_no_bias: np.ndarray, bias_float: np.ndarray, atws: np.ndarray, multiplier: np.ndarray,
                    per_channel: bool) -> np.ndarray:
    """fbgemm's float path on a (C, ...) accumulator without bias, as int64 before the zero point:

    - per-tensor weights: ``v = fma(bias_f, float32(1.0 / atws), float32(acc))`` (the reciprocal computed in
      double; fbgemm's AVX2 code multiplies the bias by it and adds the converted accumulator, which the compiler
      fuses into one FMA: one rounding);
    - per-channel weights: ``v = float32(acc) + float32(bias_f[c] / atws[c])`` (a division, then an add);

    then ``rne(float32(v * multiplier[c]))``. An out-of-range conversion gives INT32_MIN, as x86's CVTPS2DQ does.
    """
    shape = (-1,) + (1,) * (acc_no_bias.ndim - 1)
    raw = np.asarray(acc_no_bias).astype(np.float32)
    bias = np.asarray(bias_float, dtype=np.float32)
    if per_channel:
        term = (bias / np.asarray(atws, dtype=np.float32)).astype(np.float32)
        value = (raw + term.reshape(shape)).astype(np.float32)
    else:
        reciprocal = np.float32(1.0 / float(atws[0]))
        value = fma_f32(np.broadcast_to(bias.reshape(shape), raw.shape), reciprocal, raw)
    value = (value * np.asarray(multiplier, dtype=np.float32).reshape(shape)).astype(np.float32)
    rounded = np.rint(value.astype(np.float64))  # rint: round half to even, like MXCSR's default mode
    out_of_range = ~((rounded >= INT32_MIN) & (rounded <= INT32_MAX))
    return np.where(out_of_range, INT32_MIN, np.nan_to_num(rounded)).astype(np.int64)


# ------------------------------------------------------------------------------------------------ the converter


def clamp_output(scaled: np.ndarray, zero_point: int, activation: Activation) -> np.ndarray:
    """``clamp(scaled + zp, lo, 127)`` as int8, ``lo = zp`` under relu (real 0), else -128. Widened first."""
    low = max(INT8_MIN, zero_point) if activation == "relu" else INT8_MIN
    return np.clip(np.asarray(scaled, dtype=np.int64) + zero_point, low, INT8_MAX).astype(np.int8)


def requantize_integer(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, rounding: Rounding) -> np.ndarray:
    """The integer profiles on a (C, ...) int32 accumulator (bias included): per-channel Q31 multiplier and shift,
    before the zero point."""
    shape = (-1,) + (1,) * (acc.ndim - 1)
    m = np.asarray(multiplier, dtype=np.int64).reshape(shape)
    s = np.asarray(shift, dtype=np.int64).reshape(shape)
    if rounding == "tflite_double":
        return multiply_double_rounding(acc, m, s)
    if rounding == "single_round":
        return multiply_single_rounding(acc, m, s)
    raise ValueError(f"rounding {rounding!r} is not an integer profile")


__all__ = [
    "clamp_output",
    "default_float_bias",
    "fma_f32",
    "fp32_scales",
    "multiply_double_rounding",
    "multiply_single_rounding",
    "quantize_multiplier",
    "requantize_fp32",
    "requantize_integer",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
]
