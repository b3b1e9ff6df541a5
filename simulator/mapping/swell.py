"""The ``swell`` mapping of a transposed conv (the seed's method): swell the input, flip and channel-swap the
weight, run one stride-1 conv with the layer's dilation.

Models: the swelling DMA writes the tile's zero-inserted, padded canvas (``ifmap_swelled``, ~s_h*s_w times the
compact tile) into the ifmap buffer; the weight-transpose unit writes ``weight_conv``. Per axis, input pixel ``i``
lands at swelled coordinate ``q + i*s`` (``q = d(k-1) - p``); outputs ``[o0, o1)`` read swelled coordinates
``[o0, o1 - 1 + d(k-1) + 1)``, so the staged canvas of a tile is ``o1 - o0 - 1 + d(k-1) + 1`` long (halo
included) and its first loaded pixel lands at ``q + lo*s - o0``.
"""

from __future__ import annotations

import numpy as np

from simulator.geometry import kernel_span, swell_input_window, swell_offset
from simulator.mapping.base import IFMAP_SWELLED, WEIGHT_CONV, AxisWindow, ConvJob, Key, Mapping, Pair, RegionDecl


def flip_and_swap(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_in, C_out/g, kh, kw) -> (C_out, C_in/g, kh, kw), each kernel flipped in both spatial axes."""
    c_in, cout_g, kh, kw = weight.shape
    cin_g = c_in // groups
    # (G*Cin_g, Cout_g, kh, kw) -> (G, Cin_g, Cout_g, kh, kw) -> (G, Cout_g, Cin_g, kh, kw) -> flip kh, kw
    per_group = weight.reshape(groups, cin_g, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return per_group.reshape(groups * cout_g, cin_g, kh, kw)  # a view when groups == 1 (the SRAM write copies)


class Swell(Mapping):
    name = "swell"
    staged = IFMAP_SWELLED
    conv_weight = WEIGHT_CONV
    swells = True

    def window(self, axis: int, o0: int, o1: int) -> AxisWindow:
        # (C, H, W) -> insert s-1 zeros -> (C, (H-1)s+1, (W-1)s+1) -> pad d(k-1)-p (+output_padding far side)
        lo, hi = self.whole(axis, o0, o1, *swell_input_window(self.layer, o0, o1, axis))
        return AxisWindow((lo, hi), (o1 - o0, hi - lo, o1 - o0 - 1 + kernel_span(self.layer, axis)), (o1 - o0,))

    def jobs(self, rows: Key, cols: Key) -> tuple[ConvJob, ...]:
        return (ConvJob("conv", (self.kh, self.kw), (1, 1), self.layer.dilation, (0, 0), (rows[0], cols[0]),
                        (0, 0), (1, 1)),)

    def staged_regions(self, rows: Key, cols: Key, ic_n: int) -> list[RegionDecl]:
        return [RegionDecl(IFMAP_SWELLED, "ifmap", (ic_n, rows[2], cols[2]), "int8", self.act)]

    def weight_regions(self, oc_n: int, icg_n: int) -> list[RegionDecl]:
        return [RegionDecl(WEIGHT_CONV, "weight", (oc_n, icg_n, self.kh, self.kw), "int8", "OIHW")]

    def transform_weight(self, weight: np.ndarray, groups: int) -> np.ndarray:
        return flip_and_swap(weight, groups)

    def canvas_offset(self, tile: object) -> Pair:
        layer = self.layer
        t = tile  # a simulator.tiling.Tile
        return (swell_offset(layer, 0) + t.in_rows[0] * layer.stride[0] - t.oh[0],  # type: ignore[attr-defined]
                swell_offset(layer, 1) + t.in_cols[0] * layer.stride[1] - t.ow[0])  # type: ignore[attr-defined]
