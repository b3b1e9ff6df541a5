"""The ``direct`` mapping: a conv2d runs as itself, one conv job with the layer's stride and dilation.

Models the engine's address generator producing implicit zero padding: the tile loads the compact input rows and
columns its outputs read, and the job places them at ``in_offset`` of a zero canvas. Nothing is swelled, the
weight is executed as DRAM holds it (OIHW), and the one psum region becomes the ofmap in place.
"""

from __future__ import annotations

from simulator.geometry import direct_input_window
from simulator.mapping.base import AxisWindow, ConvJob, Key, Mapping


class Direct(Mapping):
    name = "direct"

    def window(self, axis: int, o0: int, o1: int) -> AxisWindow:
        layer = self.layer
        lo, hi = self.whole(axis, o0, o1, *direct_input_window(layer, o0, o1, axis))
        # input row lo lands at canvas row lo - (o0*s - p): the first row output o0's first tap reads
        offset = lo - (o0 * layer.stride[axis] - layer.padding[axis])
        return AxisWindow((lo, hi), (o1 - o0, hi - lo), (o1 - o0, offset))

    def jobs(self, rows: Key, cols: Key) -> tuple[ConvJob, ...]:
        layer = self.layer
        return (ConvJob("conv", (self.kh, self.kw), layer.stride, layer.dilation, (rows[1], cols[1]),
                        (rows[0], cols[0]), (0, 0), (1, 1)),)
