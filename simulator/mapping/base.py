"""What every mapping of a layer onto the stride-1 conv engine declares: its conv jobs, its regions, and the
region names all stages share.

Models the compiler's view of one way to run a layer on the engine (which input window an output range reads,
which conv jobs the MAC array runs, which regions each stage writes, how the weight is transformed and how the
job outputs interleave into the ofmap). A mapping is an object with plain ints pulled from the layer; the planner
(``simulator/tiling.py``) only cuts ranges and allocates what a mapping declares, and the stages call the tile's
mapping instead of branching on a method name. Deliberately ignored: anything about timing (that is in the
stages' cost functions).

Per axis (``0`` rows, ``1`` columns) a mapping turns an output range ``[o0, o1)`` into an :class:`AxisWindow`:
the compact input range to load, a *size key* (everything region shapes follow from) and a *job key*
(everything the conv jobs follow from, relative to ``o0``). A tile covering the whole output width loads whole
input rows (one DMA run per row); narrower tiles load exactly the columns they read, halo included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from simulator.config import HardwareConfig, LayerConfig
from simulator.fixedpoint import OverflowPolicy, add_bias_int32

Pair = tuple[int, int]
Range = tuple[int, int]
Key = tuple[Any, ...]

# ---------------------------------------------------------------------------------- region names (declared once)
IFMAP = "ifmap"  # ifmap buffer: the compact ifmap rows/columns/channels a tile loads
IFMAP_SWELLED = "ifmap_swelled"  # ifmap buffer: the swelled tile (swell mapping)
WEIGHT = "weight"  # weight buffer: the weight slice as DRAM holds it (torch layout for the op)
WEIGHT_CONV = "weight_conv"  # weight buffer: flipped, channel-swapped conv weight (swell mapping)
WEIGHT_PHASES = "weight_phases"  # weight buffer: one sub-kernel per 2-D phase (phase mapping)
BIAS = "bias"  # weight buffer: int32 bias of the tile's output channels
PSUM = "psum"  # psum buffer: int32 accumulators of the tile's one conv job
OFMAP = "ofmap"  # psum buffer: int32 ofmap tile after the bias add (aliases PSUM for one-job mappings)


def phase_psum(row_phase: int, col_phase: int) -> str:
    """psum buffer: the accumulators of one 2-D phase job (phase mapping)."""
    return f"psum_p{row_phase}_{col_phase}"


@dataclass(frozen=True)
class RegionDecl:
    """A region a mapping declares: name, buffer, logical shape, dtype, layout; ``alias`` names an earlier region
    whose bytes it shares (not allocated again)."""

    name: str
    buffer: str
    shape: tuple[int, ...]
    dtype: str
    layout: str
    alias: str | None = None


@dataclass(frozen=True)
class ConvJob:
    """One conv the MAC array runs for a tile.

    The staged input (C, h, w) is placed at ``in_offset`` of a zero canvas (negative: cropped); outputs
    ``psum[r, c] = sum w[u, v] * canvas[r*stride + u*dil, c*stride + v*dil]`` land in the tile's ofmap at
    ``out_start + (r, c) * out_step``; ``weight_index`` selects its kernel in a stacked conv weight.
    """

    name: str
    kernel_hw: Pair
    stride: Pair
    dilation: Pair
    in_offset: Pair
    out_hw: Pair
    out_start: Pair
    out_step: Pair
    psum_region: str = PSUM
    weight_index: int = 0
    phase: tuple[Any, Any] | None = None  # a phase job's (row, column) PhaseAxis: which original taps it holds


@dataclass(frozen=True)
class AxisWindow:
    """Outputs ``[o0, o1)`` along one axis: the compact input range ``inputs`` they read (loaded), the size key and
    the job key."""

    inputs: Range
    size: Key
    jobs: Key


class Mapping:
    """Base of the mappings: the declarations every mapping shares (ifmap, weight, bias) and the one-job output
    (psum, with the ofmap aliasing it and the bias added in place)."""

    name: ClassVar[str]
    staged: ClassVar[str] = IFMAP  # the region the MAC array reads
    conv_weight: ClassVar[str] = WEIGHT  # the region holding the weight the MAC array executes
    swells: ClassVar[bool] = False  # the swelling DMA runs

    def __init__(self, layer: LayerConfig, hw: HardwareConfig) -> None:
        self.layer = layer
        self.act = hw.layout.activation
        self.n_img, _, self.h_in, self.w_in = layer.input_shape
        self.out_hw = layer.output_hw
        self.kh, self.kw = layer.kernel_size
        self.groups = layer.groups
        self.cin_g = layer.in_channels // layer.groups
        self.cout_g = layer.out_channels // layer.groups

    # ------------------------------------------------------------------------------------------ windows, jobs

    def out_step(self, axis: int) -> int:
        """Output tiles start at multiples of this along ``axis``."""
        return 1

    def window(self, axis: int, o0: int, o1: int) -> AxisWindow:
        raise NotImplementedError

    def whole(self, axis: int, o0: int, o1: int, lo: int, hi: int) -> Range:
        """The input range loaded: whole input rows when the tile covers the whole width, else what is read."""
        if axis == 1 and (o0, o1) == (0, self.out_hw[1]):
            return 0, self.w_in
        return (lo, hi) if hi > lo else (0, 0)

    def jobs(self, rows: Key, cols: Key) -> tuple[ConvJob, ...]:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ regions

    def regions(self, rows: Key, cols: Key, oc_n: int, ic_n: int) -> list[RegionDecl]:
        """Every region of a tile with size keys ``rows``/``cols``, ``oc_n`` output and ``ic_n`` input channels,
        in allocation order."""
        icg_n = ic_n if ic_n < self.cin_g else self.cin_g  # an input-channel slice is one group's
        out = [RegionDecl(IFMAP, "ifmap", (ic_n, rows[1], cols[1]), "int8", self.act)]
        out += self.staged_regions(rows, cols, ic_n)
        # weight as stored in DRAM for the op: (C_in, C_out/g, kh, kw) transposed, (C_out, C_in/g, kh, kw) conv
        if self.layer.is_transposed:
            j_n = oc_n if oc_n < self.cout_g else self.cout_g
            out.append(RegionDecl(WEIGHT, "weight", (ic_n, j_n, self.kh, self.kw), "int8", "IOHW"))
        else:
            out.append(RegionDecl(WEIGHT, "weight", (oc_n, icg_n, self.kh, self.kw), "int8", "OIHW"))
        out += self.weight_regions(oc_n, icg_n)
        out.append(RegionDecl(BIAS, "weight", (oc_n,), "<i4", "C"))
        out += self.output_regions(rows, cols, oc_n)
        return out

    def staged_regions(self, rows: Key, cols: Key, ic_n: int) -> list[RegionDecl]:
        return []

    def weight_regions(self, oc_n: int, icg_n: int) -> list[RegionDecl]:
        return []

    def output_regions(self, rows: Key, cols: Key, oc_n: int) -> list[RegionDecl]:
        # write-back adds the bias in place: ofmap aliases psum (same bytes, not allocated again)
        shape = (oc_n, rows[0], cols[0])
        return [RegionDecl(PSUM, "psum", shape, "<i4", self.act), RegionDecl(OFMAP, "psum", shape, "<i4", self.act,
                                                                               alias=PSUM)]

    # ------------------------------------------------------------------------------------------------- values

    def transform_weight(self, weight: np.ndarray, groups: int) -> np.ndarray | None:
        """The conv weight(s) the MAC array executes, from the DRAM-layout weight slice; None: it is that slice."""
        return None

    def job_weight(self, weights: np.ndarray, job: ConvJob) -> np.ndarray:
        """The (M, C/g, kh, kw) weight of one job, from the conv-weight region."""
        return weights

    def canvas_offset(self, tile: Any) -> Pair:
        """Where the tile's first loaded input pixel lands on its staged canvas (swelling mappings)."""
        raise NotImplementedError

    def write_back(self, parts: list[np.ndarray], jobs: tuple[ConvJob, ...], out_shape: tuple[int, int, int],
                   bias: np.ndarray, policy: OverflowPolicy, safe: bool, origin: tuple[int, ...]) -> np.ndarray:
        """The int32 ofmap tile from the jobs' psums and the bias (``safe``: the add cannot overflow)."""
        (psum,) = parts
        if safe:
            return np.add(psum, bias[:, None, None], dtype=np.int32)
        return add_bias_int32(psum, bias, policy, origin=origin)
