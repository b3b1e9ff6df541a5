"""Index maths of mapping a layer onto the conv engine: swelling offsets, input row windows, MAC counts.

Pure functions of integers (per spatial axis) shared by the tiler, the stages and the cost model. No arrays of
tensor data, no hardware config.

Per axis, with input size ``H``, kernel ``k``, stride ``s``, padding ``p``, output padding ``op``, dilation ``d``:

- transposed conv, swelling method: input pixel ``i`` lands at swelled coordinate ``q + i*s`` with
  ``q = d*(k-1) - p`` (negative: a crop); the swelled length is ``(H-1)*s + 1 + 2q + op``; the MAC array runs a
  stride-1 conv of the flipped kernel with dilation ``d`` over it.
- conv2d: output ``o`` reads input rows ``o*s - p + t*d`` for taps ``t``; out-of-range rows are implicit zero
  padding produced by the MAC array's address generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.config import LayerConfig


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class AxisMap:
    """``count`` input indices, from ``first_in``, land at ``first_out + j*step`` of an output window."""

    first_out: int
    first_in: int
    count: int
    step: int


def scatter_map(in_lo: int, in_hi: int, out_lo: int, out_hi: int, step: int, offset: int) -> AxisMap:
    """Input index ``i`` in [in_lo, in_hi) lands at ``offset + i*step``; keep those in [out_lo, out_hi).

    Coordinates in the result are relative to ``in_lo`` and ``out_lo``.
    """
    i_min = max(in_lo, ceil_div(out_lo - offset, step))
    i_max = min(in_hi - 1, (out_hi - 1 - offset) // step)
    count = max(0, i_max - i_min + 1)
    if count == 0:
        return AxisMap(0, 0, 0, step)
    return AxisMap(offset + i_min * step - out_lo, i_min - in_lo, count, step)


def swell_offset(layer: LayerConfig, axis: int) -> int:
    """q = d*(k-1) - p: zeros added before the first input pixel (negative: rows cropped)."""
    return layer.dilation[axis] * (layer.kernel_size[axis] - 1) - layer.padding[axis]


def swelled_size(layer: LayerConfig, axis: int) -> int:
    """(H-1)*s + 1 + 2q + output_padding."""
    size = layer.input_shape[2 + axis]
    return (size - 1) * layer.stride[axis] + 1 + 2 * swell_offset(layer, axis) + layer.output_padding[axis]


def kernel_span(layer: LayerConfig, axis: int) -> int:
    """d*(k-1) + 1: rows of input one output reads (dilated kernel extent)."""
    return layer.dilation[axis] * (layer.kernel_size[axis] - 1) + 1


def swell_input_window(layer: LayerConfig, out_lo: int, out_hi: int, axis: int = 0) -> tuple[int, int]:
    """Compact input rows whose swelled image falls in the swelled rows read by outputs [out_lo, out_hi)."""
    size, s, q = layer.input_shape[2 + axis], layer.stride[axis], swell_offset(layer, axis)
    m = scatter_map(0, size, out_lo, out_hi - 1 + kernel_span(layer, axis), s, q)
    return (m.first_in, m.first_in + m.count) if m.count else (0, 0)


def direct_input_window(layer: LayerConfig, out_lo: int, out_hi: int, axis: int = 0) -> tuple[int, int]:
    """Input rows read (excluding implicit padding) by conv2d outputs [out_lo, out_hi)."""
    size, s, p = layer.input_shape[2 + axis], layer.stride[axis], layer.padding[axis]
    lo = max(0, out_lo * s - p)
    hi = min(size, (out_hi - 1) * s - p + kernel_span(layer, axis))
    return (lo, hi) if hi > lo else (0, 0)


def useful_taps(layer: LayerConfig, out_lo: int, out_hi: int, axis: int) -> int:
    """Number of (output, tap) pairs along one axis whose ifmap operand is a real input pixel.

    Transposed conv: output ``o`` gets tap ``t`` from input ``i`` when ``o = i*s - p + t*d``.
    Conv2d: output ``o`` reads input ``i = o*s - p + t*d``. Inserted zeros and padding do not count.
    Closed form per tap: the outputs a tap reaches form an arithmetic progression, intersected with [lo, hi).
    """
    size = layer.input_shape[2 + axis]
    k, s, p, d = layer.kernel_size[axis], layer.stride[axis], layer.padding[axis], layer.dilation[axis]
    total = 0
    for t in range(k):
        if layer.is_transposed:
            # o = first + i*s for inputs i in [0, size): i in [ceil((lo - first)/s), floor((hi-1 - first)/s)]
            first = t * d - p
            i_lo, i_hi = max(0, ceil_div(out_lo - first, s)), min(size - 1, (out_hi - 1 - first) // s)
        else:
            # i = o*s - p + t*d in [0, size): o in [ceil((p - t*d)/s), floor((size-1 + p - t*d)/s)]
            i_lo = max(out_lo, ceil_div(p - t * d, s))
            i_hi = min(out_hi - 1, (size - 1 + p - t * d) // s)
        total += max(0, i_hi - i_lo + 1)
    return total


def useful_macs(layer: LayerConfig, oh: tuple[int, int], ow: tuple[int, int], oc_count: int,
                ic_per_group: int | None = None, n_images: int = 1) -> int:
    """Real MACs (ifmap operand a real input pixel) for output rows ``oh`` and columns ``ow``, ``oc_count``
    channels, over ``ic_per_group`` input channels of their group (default: all of them)."""
    cin_g = layer.in_channels // layer.groups if ic_per_group is None else ic_per_group
    return n_images * oc_count * cin_g * useful_taps(layer, *oh, 0) * useful_taps(layer, *ow, 1)
