"""The ``phase`` mapping of a transposed conv: no swelling; one stride-1 conv of the compact input per output
phase, interleaved into the ofmap at write-back.

Models: the weight-transpose unit cuts the flipped, channel-swapped kernel into one sub-kernel per 2-D phase
(``weight_phases``, zero-padded to a common size); the MAC array runs each phase job over the compact ifmap tile
into its own psum region (``psum_p{a}_{b}``); write-back interleaves ``ofmap[s*m + phase] = psum_phase[m]``
(outputs of a phase with no kernel tap are the bias alone). Output tiles start at multiples of the stride, so
every tile starts at phase 0 on both axes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from simulator.config import HardwareConfig, LayerConfig
from simulator.fixedpoint import OverflowPolicy, add_bias_int32
from simulator.geometry import ceil_div
from simulator.mapping.base import (
    OFMAP,
    WEIGHT_PHASES,
    AxisWindow,
    ConvJob,
    Key,
    Mapping,
    RegionDecl,
    phase_psum,
)


@dataclass(frozen=True)
class PhaseAxis:
    """One output phase along one axis of the phase method.

    Outputs ``o = s*m + phase`` (m in [0, out_count)) read input ``m + offset + u*dilation`` with sub-kernel tap
    ``u``; ``taps[u]`` is the original (unflipped) kernel tap feeding it, or None for a zero-padded tap.
    """

    phase: int
    taps: tuple[int | None, ...]
    offset: int
    dilation: int
    out_count: int


def phase_axes(layer: LayerConfig, axis: int) -> tuple[PhaseAxis, ...]:
    """The phases along one axis that have at least one tap (a phase with no tap is bias only).

    Input ``i`` with tap ``t`` feeds output ``o = i*s - p + t*d``. For ``o = s*m + phase`` the taps are those with
    ``t*d = phase + p (mod s)`` and they read ``i = m + (phase + p - t*d)/s``. With ``g = gcd(d, s)`` a phase has
    taps only when ``g`` divides ``phase + p`` (dilation sharing a factor with the stride, or ``k < s``, leaves
    phases empty); its taps repeat every ``P = s/g``, so every phase gets ``ceil(k/P)`` sub-kernel taps
    (zero-padded when it has fewer) with sub-dilation ``d/g``.
    """
    k, s, p, d = layer.kernel_size[axis], layer.stride[axis], layer.padding[axis], layer.dilation[axis]
    out_size = layer.output_hw[axis]
    g = math.gcd(d, s)
    period, sub_dilation = s // g, d // g
    sub_k = ceil_div(k, period)
    phases = []
    for phase in range(min(s, out_size)):
        first = next((t for t in range(k) if (phase + p - t * d) % s == 0), None)
        if first is None:
            continue
        # tap t = first + j*period sits at offset (phase + p - t*d)/s, which falls by sub_dilation per j;
        # sub-kernel tap u = sub_k-1-j runs in increasing offset (the spatial flip)
        top = (phase + p - first * d) // s
        taps = tuple(t if t < k else None for t in (first + (sub_k - 1 - u) * period for u in range(sub_k)))
        phases.append(PhaseAxis(phase, taps, top - (sub_k - 1) * sub_dilation, sub_dilation,
                                ceil_div(out_size - phase, s)))
    return tuple(phases)


def phase_pairs(layer: LayerConfig) -> tuple[tuple[PhaseAxis, PhaseAxis], ...]:
    """Every 2-D phase with taps, in the order of the phase sub-kernels in the weight buffer."""
    return tuple((ph, pw) for ph in phase_axes(layer, 0) for pw in phase_axes(layer, 1))


# ----------------------------------------------------------------------------------------- weight split (pure)


def _swap(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_in, C_out/g, kh, kw) -> (C_out, C_in/g, kh, kw): the per-group channel swap alone (original tap order)."""
    c_in, cout_g, kh, kw = weight.shape
    per_group = weight.reshape(groups, c_in // groups, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)
    return per_group.reshape(groups * cout_g, c_in // groups, kh, kw)


def _phase_from_swapped(swapped: np.ndarray, ph: PhaseAxis, pw: PhaseAxis, pad: int = 0) -> np.ndarray:
    out = np.full((*swapped.shape[:2], len(ph.taps), len(pw.taps)), pad, dtype=swapped.dtype)
    rows = [(u, t) for u, t in enumerate(ph.taps) if t is not None]
    cols = [(v, t) for v, t in enumerate(pw.taps) if t is not None]
    for u, t in rows:
        for v, s in cols:
            out[:, :, u, v] = swapped[:, :, t, s]
    return out


def phase_kernel(weight: np.ndarray, groups: int, ph: PhaseAxis, pw: PhaseAxis, pad: int = 0) -> np.ndarray:
    """The conv weight of one output phase: (C_out, C_in/g, len(ph.taps), len(pw.taps)), ``pad`` (the weight zero
    point of a quantized layer, else 0) where a sub-kernel tap has no original tap. Taps are already in flipped
    (increasing input offset) order."""
    return _phase_from_swapped(_swap(weight, groups), ph, pw, pad)


def split_phases(weight: np.ndarray, groups: int, pairs: tuple[tuple[PhaseAxis, PhaseAxis], ...],
                 pad: int = 0) -> np.ndarray:
    """(C_in, C_out/g, kh, kw) -> (num_phases, C_out, C_in/g, kh', kw'), one sub-kernel per 2-D phase, padded
    with ``pad`` (the weight zero point of a quantized layer: w - w_zp is then 0 there)."""
    if not pairs:
        return np.zeros((0, weight.shape[1] * groups, weight.shape[0] // groups, 1, 1), dtype=weight.dtype)
    swapped = _swap(weight, groups)  # once for all phases
    p, u, v, t, s = _split_taps(pairs)
    out = np.full((len(pairs), *swapped.shape[:2], len(pairs[0][0].taps), len(pairs[0][1].taps)), pad,
                  dtype=swapped.dtype)
    # every (phase, sub-tap) <- original tap in one fancy-indexed copy: (P, kh', kw', O, I) <- (kh, kw, O, I)
    out.transpose(0, 3, 4, 1, 2)[p, u, v] = swapped.transpose(2, 3, 0, 1)[t, s]
    return out


@functools.lru_cache(maxsize=64)
def _split_taps(pairs: tuple[tuple[PhaseAxis, PhaseAxis], ...]) -> tuple[np.ndarray, ...]:
    """(phase, sub-tap row, sub-tap column, original tap row, original tap column) of every sub-kernel tap that
    has an original tap, as index arrays (the same copies :func:`phase_kernel` makes one phase at a time)."""
    rows = [(i, u, v, t, s) for i, (ph, pw) in enumerate(pairs) for u, t in enumerate(ph.taps) if t is not None
            for v, s in enumerate(pw.taps) if s is not None]
    return tuple(np.array(col, dtype=np.intp) for col in zip(*rows, strict=True)) if rows else \
        tuple(np.zeros(0, dtype=np.intp) for _ in range(5))


# ------------------------------------------------------------------------------------------- interleave (pure)


def out_slice(ofmap: np.ndarray, part_shape: tuple[int, ...], job: ConvJob) -> np.ndarray:
    """The strided view of the tile ofmap that a job's output (M, h, w) lands on: ``out_start + (r, c) *
    out_step``."""
    (r0, c0), (sr, sc) = job.out_start, job.out_step
    h, w = part_shape[1:]
    return ofmap[:, r0:r0 + (h - 1) * sr + 1:sr, c0:c0 + (w - 1) * sc + 1:sc]


def interleave(ofmap: np.ndarray, part: np.ndarray, job: ConvJob) -> None:
    """Place a job's output (M, h, w) into the tile ofmap at ``out_start + (r, c) * out_step`` (in place)."""
    out_slice(ofmap, part.shape, job)[...] = part


# ------------------------------------------------------------------------------------------------------ mapping


class Phase(Mapping):
    name = "phase"
    conv_weight = WEIGHT_PHASES

    def __init__(self, layer: LayerConfig, hw: HardwareConfig) -> None:
        super().__init__(layer, hw)
        self.axes = (phase_axes(layer, 0), phase_axes(layer, 1))
        self.pairs = tuple((ph, pw) for ph in self.axes[0] for pw in self.axes[1])
        self.sub = (len(self.pairs[0][0].taps), len(self.pairs[0][1].taps)) if self.pairs else (1, 1)
        self.index = {(a.phase, b.phase): i for i, (a, b) in enumerate(self.pairs)}
        # per axis, per phase: (index, phase, input offset, inputs its taps reach past the first)
        self.reach = tuple(tuple((i, ph.phase, ph.offset, (len(ph.taps) - 1) * ph.dilation)
                                 for i, ph in enumerate(axes)) for axes in self.axes)

    def out_step(self, axis: int) -> int:
        return self.layer.stride[axis]

    def window(self, axis: int, o0: int, o1: int) -> AxisWindow:
        """Outputs [o0, o1) (o0 a multiple of s): per phase with outputs there, phase rows m in [m0, m1) reading
        input rows from ``m0 + offset``; the window is the union of what they read."""
        s, size = self.layer.stride[axis], self.layer.input_shape[2 + axis]
        jobs, lo, hi = [], size, 0
        for i, phase, offset, reach in self.reach[axis]:
            m0, m1 = (o0 - phase + s - 1) // s, (o1 - phase + s - 1) // s  # ceil_div
            if m1 <= m0:
                continue
            first = m0 + offset
            lo = min(lo, max(first, 0))
            hi = max(hi, min(m1 + offset + reach, size))  # one past the last input read
            jobs.append((i, phase, m0, m1, first))
        lo, hi = self.whole(axis, o0, o1, lo, hi)
        size_key = (o1 - o0, hi - lo, tuple((phase, m1 - m0) for _, phase, m0, m1, _ in jobs))
        job_key = tuple((i, lo - first, m1 - m0, m0 * s + phase - o0) for i, phase, m0, m1, first in jobs)
        return AxisWindow((lo, hi), size_key, job_key)

    def jobs(self, rows: Key, cols: Key) -> tuple[ConvJob, ...]:
        out = []
        for i, in_top, m_n, out_top in rows:
            ph = self.axes[0][i]
            for j, in_left, n_n, out_left in cols:
                pw = self.axes[1][j]
                out.append(ConvJob(
                    f"p{ph.phase}_{pw.phase}", self.sub, (1, 1), (ph.dilation, pw.dilation), (in_top, in_left),
                    (m_n, n_n), (out_top, out_left), self.layer.stride, phase_psum(ph.phase, pw.phase),
                    self.index[(ph.phase, pw.phase)], (ph, pw)))
        return tuple(out)

    def weight_regions(self, oc_n: int, icg_n: int) -> list[RegionDecl]:
        return [RegionDecl(WEIGHT_PHASES, "weight", (len(self.pairs), oc_n, icg_n, *self.sub), "int8", "POIHW")]

    def output_regions(self, rows: Key, cols: Key, oc_n: int) -> list[RegionDecl]:
        out = [RegionDecl(phase_psum(a, b), "psum", (oc_n, m_n, n_n), "<i4", self.act)
               for a, m_n in rows[2] for b, n_n in cols[2]]
        return [*out, RegionDecl(OFMAP, "psum", (oc_n, rows[0], cols[0]), "<i4", self.act)]

    def transform_weight(self, weight: np.ndarray, groups: int) -> np.ndarray:
        pad = self.layer.quant.weight.zero_point if self.layer.quant is not None else 0  # w - w_zp = 0 there
        return split_phases(weight, groups, self.pairs, pad)

    def job_weight(self, weights: np.ndarray, job: ConvJob) -> np.ndarray:
        return weights[job.weight_index]

    def write_back(self, parts: list[np.ndarray], jobs: tuple[ConvJob, ...], out_shape: tuple[int, int, int],
                   bias: np.ndarray, policy: OverflowPolicy, safe: bool, origin: tuple[int, ...]) -> np.ndarray:
        # interleave the phase psums into one int32 tile (channels-last memory, as NHWC stores it); outputs of
        # phases with no kernel tap are bias alone. When the add cannot overflow, it is fused into the
        # interleave; otherwise one widening add and one narrowing over the tile (the first overflow reported
        # in NCHW order).
        c, h, w = out_shape
        column = bias[:, None, None]
        out = np.empty((h, w, c), dtype=np.int32).transpose(2, 0, 1)
        if sum(job.out_hw[0] * job.out_hw[1] for job in jobs) != h * w:
            out[...] = column if safe else 0
        for job, part in zip(jobs, parts, strict=True):
            if safe:
                np.add(part, column, out=out_slice(out, part.shape, job))
            else:
                interleave(out, part, job)
        return out if safe else add_bias_int32(out, bias, policy, origin=origin)
