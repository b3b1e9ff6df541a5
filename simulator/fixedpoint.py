"""int8 / int32 arithmetic of the engine, and the accumulator overflow policy.

Models the int32 accumulators of the MAC array and the write-back adder. This is the only module that narrows a
wide integer to int32; everything else widens first (numpy's ``int8 * int8`` stays int8 and wraps silently).

Policies (``hardware.accumulator.on_overflow``):

- ``wrap``: two's-complement modulo 2**32. Associative, so order does not matter.
- ``saturate``: clamp to [-2**31, 2**31 - 1] after **every** addition, in the hardware accumulation order: the
  K products of one output in (kernel row, kernel column, input channel) order of the conv weight the MAC array
  executes (zero products from inserted zeros leave a clamped accumulator unchanged, so both transposed-conv
  methods give the same result). With the input channels in slices the order is within a slice, then across
  slices (a slice continues from the psum the previous one left). Bias is added once more, with a clamp, at
  write-back.
- ``error``: raise :class:`AccumulatorOverflowError` naming the first output (in NCHW order) whose running sum
  leaves int32.

A product of two int8 values is at most 2**14 in magnitude, so a reduction of K < 2**17 products can never leave
int32 whatever the order: then the exact sum *is* the in-order result and only one final check is needed. Longer
reductions take the in-order path in :func:`ordered_accumulate` (vectorised: prefix sums for ``error``, a
composition of clamp maps for ``saturate``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from simulator.errors import AccumulatorOverflowError

OverflowPolicy = Literal["wrap", "saturate", "error"]
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT8_MIN, INT8_MAX = -128, 127
MAX_PRODUCT = 2**14
SAFE_REDUCTION = (INT32_MAX + 1) // MAX_PRODUCT  # K below this can never overflow mid-sum


def reduction_is_order_free(k: int) -> bool:
    """True when no partial sum of k int8*int8 products can leave int32."""
    return k < SAFE_REDUCTION


Coord = tuple[int, ...]


def _global(local: Coord, origin: Coord, scale: Coord) -> list[int]:
    """Local index -> whole-tensor coordinate: origin + local * scale (a leading origin axis has no local)."""
    lead = len(origin) - len(local)
    tail = [o + i * s for o, i, s in zip(origin[lead:], local, scale[lead:] or (1,) * len(local), strict=True)]
    return [*origin[:lead], *tail]


def raise_overflow(mask: np.ndarray, values: np.ndarray, what: str, origin: Coord = (), scale: Coord = ()) -> None:
    """Raise AccumulatorOverflowError for the first True of ``mask`` (row-major), if any."""
    if not mask.any():
        return
    local = tuple(int(i) for i in np.unravel_index(int(np.argmax(mask.ravel())), mask.shape))
    coord = _global(local, origin, scale) if origin else list(local)
    raise AccumulatorOverflowError(
        f"accumulator overflow (on_overflow=error): {what} at {coord} reaches {int(values[local])}, "
        f"outside int32 [{INT32_MIN}, {INT32_MAX}]", tuple(coord))


def narrow_to_int32(values: np.ndarray, policy: OverflowPolicy, what: str = "value",
                    origin: Coord = (), scale: Coord = ()) -> np.ndarray:
    """Reduce exact integer values (int64, or floats holding exact integers) to int32 under ``policy``.

    ``origin`` and ``scale`` map an index of ``values`` to whole-tensor coordinates for the ``error`` message
    (global = origin + index * scale; an extra leading origin entry, e.g. the image n, is passed through).
    """
    values = np.asarray(values)
    if policy != "error" or values.dtype.kind != "f":  # floats of exact integers (BLAS sums) are checked as they are
        values = values.astype(np.int64, copy=False)
    if policy == "wrap":
        return values.astype(np.int32)  # int64 -> int32 cast is two's-complement truncation
    if policy == "saturate":
        return np.clip(values, INT32_MIN, INT32_MAX).astype(np.int32)
    if values.size and (values.min() < INT32_MIN or values.max() > INT32_MAX):  # two reductions, no mask
        raise_overflow((values < INT32_MIN) | (values > INT32_MAX), values, what, origin, scale)
    return values.astype(np.int32)


def exact_sum_to_int32(values: np.ndarray) -> np.ndarray:
    """int32 of exact sums of fewer than SAFE_REDUCTION int8 products (int64, or floats holding exact integers).

    Such a sum lies in int32 whatever the policy, so nothing is checked, clamped or wrapped: the cast is exact.
    """
    return np.asarray(values).astype(np.int32)


ORDERED_BUDGET_ELEMENTS = 1 << 21  # products held at once by the in-order path (M * E * block)


def _compose_saturating(prods: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose the steps ``a -> clamp(a + p, INT32_MIN, INT32_MAX)`` along the last axis into one (b, lo, hi).

    Maps of the form ``a -> clamp(a + b, lo, hi)`` (lo <= hi) are closed under composition: f then g is
    ``b = b_f + b_g, lo = clamp(lo_f + b_g, lo_g, hi_g), hi = clamp(hi_f + b_g, lo_g, hi_g)``, so a pairwise tree
    gives the exact in-order saturating sum in log2(K) vector steps. Values stay far inside int64.
    """
    b = prods
    lo = np.full(b.shape, INT32_MIN, dtype=np.int64)
    hi = np.full(b.shape, INT32_MAX, dtype=np.int64)
    while b.shape[-1] > 1:
        if b.shape[-1] % 2:  # pad with the identity map (b=0, no clamp)
            pad = [(0, 0)] * (b.ndim - 1) + [(0, 1)]
            b = np.pad(b, pad)
            lo, hi = np.pad(lo, pad, constant_values=-(2**62)), np.pad(hi, pad, constant_values=2**62)
        b1, b2, lo1, lo2, hi1, hi2 = b[..., ::2], b[..., 1::2], lo[..., ::2], lo[..., 1::2], hi[..., ::2], hi[..., 1::2]
        lo, hi = np.clip(lo1 + b2, lo2, hi2), np.clip(hi1 + b2, lo2, hi2)
        b = b1 + b2
    return b[..., 0], lo[..., 0], hi[..., 0]


def ordered_accumulate(weight_rows: np.ndarray, cols: np.ndarray, policy: OverflowPolicy,
                       initial: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-order int32 accumulation of ``weight_rows @ cols.T`` for one group: the exact, order-aware path.

    weight_rows: (M, K) int64, cols: (E, K) int64 -> ((M, E) accumulator contents, (M, E) mask of outputs whose
    running sum left int32 at some step, (M, E) the running sum at the first step that left int32, meaningful
    where the mask is set). Under ``saturate`` the accumulator clamps at every step (computed by composing the
    clamp steps, see :func:`_compose_saturating`); under ``error`` it keeps the exact sum and the mask says which
    outputs' prefix sums left int32 on the way. Blocks of K are processed in order. ``initial`` (M, E) is the
    accumulator to continue from (a previous input-channel slice's psums; default zero).
    """
    m, e, k = weight_rows.shape[0], cols.shape[0], weight_rows.shape[1]
    acc = np.zeros((m, e), dtype=np.int64) if initial is None else initial.astype(np.int64)
    overflowed = np.zeros(acc.shape, dtype=bool)
    escaped = np.zeros(acc.shape, dtype=np.int64)
    block = max(1, min(k, ORDERED_BUDGET_ELEMENTS // max(1, m * e)))
    for k0 in range(0, k, block):
        prods = weight_rows[:, None, k0:k0 + block] * cols[None, :, k0:k0 + block]  # (M, E, block)
        if policy == "saturate":
            b, lo, hi = _compose_saturating(prods)
            acc = np.clip(acc + b, lo, hi)
        else:
            running = acc[..., None] + np.cumsum(prods, axis=-1)
            outside = (running < INT32_MIN) | (running > INT32_MAX)
            first_time = outside.any(axis=-1) & ~overflowed
            if first_time.any():  # the value the running sum had when it first left int32
                step = np.argmax(outside, axis=-1)[..., None]
                escaped[first_time] = np.take_along_axis(running, step, axis=-1)[..., 0][first_time]
                overflowed |= first_time
            acc = running[..., -1]
    return acc, overflowed, escaped


def bias_add_is_safe(reduction_length: int, bias: np.ndarray) -> bool:
    """True when ``psum + bias`` cannot leave int32 for any psum the MAC array can hold: an order-free
    reduction (exact under every policy) of ``reduction_length`` int8 products is at most that many times
    MAX_PRODUCT in magnitude. Then the bias add needs no widening and no check (see :func:`add_bias_int32`)."""
    if not reduction_is_order_free(reduction_length) or bias.size == 0:
        return reduction_is_order_free(reduction_length)
    return reduction_length * MAX_PRODUCT + int(np.abs(bias.astype(np.int64)).max()) <= INT32_MAX


def add_bias_int32(psum: np.ndarray, bias: np.ndarray, policy: OverflowPolicy,
                   origin: Coord = (), scale: Coord = ()) -> np.ndarray:
    """Write-back adder: int32 psum (C, H, W) + int32 bias (C,) -> int32, under ``policy``."""
    wide = np.add(psum, bias[:, None, None], dtype=np.int64)  # widened in the one pass
    return narrow_to_int32(wide, policy, what="output (psum + bias)", origin=origin, scale=scale)


def check_int8(values: np.ndarray, what: str) -> np.ndarray:
    """Return ``values`` as int8 if every element is in range; raise ValueError naming the first offender."""
    values = np.asarray(values)
    if values.dtype == np.int8:
        return values
    bad = (values < INT8_MIN) | (values > INT8_MAX)
    if bad.any():
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.ravel())), values.shape))
        raise ValueError(f"{what} value {values[where]} at {list(where)} is outside int8 [-128, 127]")
    return values.astype(np.int8)
