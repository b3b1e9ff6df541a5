"""Energy: per-action costs applied to the exact counts the cycle model already keeps.

Models the dynamic energy of the engine's actions, like the cycle model a pure cost function of counts: MACs
issued (and, with ``mac_array.zero_gating``, the gated ones), SRAM bytes read and written per buffer, DRAM bytes
read and written, and the bytes moved through the swelling DMA and the output converter. Every stage record's
counters go through :func:`stage_energy`, whatever the stage is, so new traffic a stage reports (psum
read-modify-write, another buffer) is charged without touching this module.

Exact: the table is resolved to integer femtojoules (config values are refused below 1 fJ), every product and
sum is an integer, so a stage's actions add up to its total, its stages to the layer's and its layers to the
network's, with no rounding anywhere; ``*_pj`` figures are those integers divided by 1000 once, for reading.

Deliberately ignored (docs/energy.md): leakage, the clock tree, wires between the blocks, control and sequencing,
PE-internal registers, and the storage of the zero tags; energies do not depend on the data values (no
data-dependent toggling), and DRAM costs the same per byte whatever the burst.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from simulator.config import EnergyConfig, HardwareConfig
from simulator.stages.common import StageCost

FJ_PER_PJ = 1000
# the order of the actions in every breakdown (reports, tables); each is a sum of count x cost in fJ
ACTIONS = ("mac", "mac_gated", "sram_read", "sram_write", "dram", "swell_dma", "output_converter")
# stages whose own datapath has a per-byte cost, and which of their SRAM bytes it applies to: the swelling DMA
# generates every byte it writes (inserted zeros and borders included); the output converter (the
# ``output_convert`` stage of quantized layers) requantizes one int32 accumulator per int8 byte it writes
UNIT_BYTES: dict[str, tuple[str, str]] = {"swell": ("swell_dma", "write"),
                                          "output_convert": ("output_converter", "write")}

# ------------------------------------------------------------------------------------------------ shipped tables
# Every figure's source and derivation is in docs/energy.md; values in pJ, exact decimals.

HOROWITZ45: dict[str, Fraction] = {
    # Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V
    "mac_pj": Fraction("0.2") + Fraction("0.1"),  # 8-bit integer multiply + 32-bit integer add
    "mac_gated_pj": Fraction(0),  # gated: multiplier and adder inputs held, nothing in the table switches
    "sram_read_pj_per_byte": Fraction(10) / 8,  # 8 KB SRAM, 64-bit access: 10 pJ
    "sram_write_pj_per_byte": Fraction(10) / 8,  # the table gives one figure per access: taken for writes too
    "dram_pj_per_byte": Fraction(1300) / 8,  # DRAM 1.3-2.6 nJ per 64-bit access: the low end
    "swell_dma_pj_per_byte": Fraction(0),  # no figure for an address generator: only its SRAM bytes count
    "output_converter_pj_per_byte": Fraction("3.1") + Fraction("0.1"),  # 32-bit mult + add per value
}
# Horowitz's three SRAM points: (capacity bytes, pJ per 64-bit access)
HOROWITZ45_SRAM_POINTS: tuple[tuple[int, Fraction], ...] = ((8 << 10, Fraction(10)), (32 << 10, Fraction(20)),
                                                            (1 << 20, Fraction(100)))
ZIGZAG_TPU_LIKE: dict[str, Fraction] = {
    # ZigZag (KU Leuven MICAS), example accelerator zigzag/inputs/hardware/tpu_like.yaml
    "mac_pj": Fraction("0.04"),  # operational_array unit_energy
    "mac_gated_pj": Fraction(0),
    "sram_read_pj_per_byte": Fraction("416.16") / 256,  # sram_2MB: r_cost per 2048-bit access (rounded to fJ)
    "sram_write_pj_per_byte": Fraction("378.4") / 256,  # w_cost per 2048-bit access (rounded to fJ)
    "dram_pj_per_byte": Fraction(700) / 8,  # dram: r_cost per 64-bit access
    "dram_write_pj_per_byte": Fraction(750) / 8,  # w_cost per 64-bit access
    "swell_dma_pj_per_byte": Fraction(0),
    "output_converter_pj_per_byte": Fraction(0),
}
PRESETS: dict[str, dict[str, Fraction]] = {"horowitz45": HOROWITZ45, "horowitz45_sized": HOROWITZ45,
                                           "zigzag_tpu_like": ZIGZAG_TPU_LIKE}


def sram_pj_per_access_by_size(size_bytes: int) -> float:
    """Horowitz's 64-bit SRAM access energy at any capacity: log-log interpolation between his three points
    (energy ~ capacity^a per segment, a ~ 0.5 and 0.46, CACTI's square-root trend), extended with the end
    segments' slopes below 8 KB and above 1 MB."""
    points = HOROWITZ45_SRAM_POINTS
    (c0, e0), (c1, e1) = next(((a, b) for a, b in itertools.pairwise(points) if size_bytes <= b[0]),
                              points[-2:])
    slope = math.log(e1 / e0) / math.log(c1 / c0)
    return float(e0) * (size_bytes / c0) ** slope


def _fj(pj: Fraction | float) -> int:
    """pJ -> integer fJ, rounded half to even (exact for the tables' and the config's values, which are whole fJ
    or, for two derived figures documented in docs/energy.md, rounded here)."""
    return round(Fraction(pj) * FJ_PER_PJ)


def _decimal(value: float) -> Fraction:
    """A config float as the decimal the user wrote (0.2 -> 1/5, not the nearest binary fraction)."""
    return Fraction(repr(value))


# ----------------------------------------------------------------------------------------------- resolved table


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action in integer femtojoules, resolved from ``hardware.energy`` for one engine."""

    mac_fj: int
    mac_gated_fj: int
    sram_read_fj_per_byte: dict[str, int]  # per buffer; "*" for a buffer the config does not name
    sram_write_fj_per_byte: dict[str, int]
    dram_read_fj_per_byte: int
    dram_write_fj_per_byte: int
    unit_fj_per_byte: dict[str, int]  # swell_dma, output_converter
    zero_gating: bool

    def read_fj(self, buffer: str) -> int:
        return self.sram_read_fj_per_byte.get(buffer, self.sram_read_fj_per_byte["*"])

    def write_fj(self, buffer: str) -> int:
        return self.sram_write_fj_per_byte.get(buffer, self.sram_write_fj_per_byte["*"])

    def as_pj(self) -> dict[str, Any]:
        """The table in pJ, as reports show it."""
        def pj(fj: int) -> float:
            return fj / FJ_PER_PJ

        return {"mac_pj": pj(self.mac_fj), "mac_gated_pj": pj(self.mac_gated_fj), "zero_gating": self.zero_gating,
                "sram_read_pj_per_byte": {b: pj(v) for b, v in self.sram_read_fj_per_byte.items()},
                "sram_write_pj_per_byte": {b: pj(v) for b, v in self.sram_write_fj_per_byte.items()},
                "dram_read_pj_per_byte": pj(self.dram_read_fj_per_byte),
                "dram_write_pj_per_byte": pj(self.dram_write_fj_per_byte),
                **{f"{unit}_pj_per_byte": pj(v) for unit, v in self.unit_fj_per_byte.items()}}


def energy_table(hw: HardwareConfig) -> EnergyTable:
    """Resolve ``hw.energy``: a key given wins, else the preset's value, else 0. ``horowitz45_sized`` sets each
    buffer's SRAM cost from its ``size_bytes`` (:func:`sram_pj_per_access_by_size`, per byte = / 8)."""
    cfg: EnergyConfig = hw.energy
    base = PRESETS.get(cfg.preset or "", {})

    def pick(key: str, fallback: Fraction | None = None) -> Fraction:
        given = getattr(cfg, key)
        if given is not None:
            return _decimal(given)
        return base.get(key, fallback if fallback is not None else Fraction(0))

    read, write = pick("sram_read_pj_per_byte"), pick("sram_write_pj_per_byte")
    reads, writes = {"*": _fj(read)}, {"*": _fj(write)}
    for buffer in ("ifmap", "weight", "psum"):
        r, w = read, write
        if cfg.preset == "horowitz45_sized":
            per_byte = Fraction(sram_pj_per_access_by_size(getattr(hw.sram, buffer).size_bytes)) / 8
            r = per_byte if cfg.sram_read_pj_per_byte is None else r
            w = per_byte if cfg.sram_write_pj_per_byte is None else w
        override = cfg.buffers.get(buffer)  # type: ignore[call-overload]
        if override is not None:
            r = r if override.read_pj_per_byte is None else _decimal(override.read_pj_per_byte)
            w = w if override.write_pj_per_byte is None else _decimal(override.write_pj_per_byte)
        reads[buffer], writes[buffer] = _fj(r), _fj(w)
    dram = pick("dram_pj_per_byte")
    return EnergyTable(
        mac_fj=_fj(pick("mac_pj")), mac_gated_fj=_fj(pick("mac_gated_pj")), sram_read_fj_per_byte=reads,
        sram_write_fj_per_byte=writes, dram_read_fj_per_byte=_fj(dram),
        dram_write_fj_per_byte=_fj(pick("dram_write_pj_per_byte", dram)),
        unit_fj_per_byte={unit: _fj(pick(f"{unit}_pj_per_byte")) for unit, _ in UNIT_BYTES.values()},
        zero_gating=hw.mac_array.zero_gating)


# ------------------------------------------------------------------------------------------------ cost (pure)


@dataclass(frozen=True)
class Energy:
    """Energy of one stage, layer or network, per action, in integer femtojoules (adds up exactly)."""

    fj_by_action: dict[str, int]
    zero_mac_fj: int = 0  # of which: MACs whose operand is a zero the hardware inserted (gated or not)

    @property
    def fj(self) -> int:
        return sum(self.fj_by_action.values())

    @property
    def pj(self) -> float:
        return self.fj / FJ_PER_PJ

    @property
    def pj_by_action(self) -> dict[str, float]:
        return {a: v / FJ_PER_PJ for a, v in self.fj_by_action.items()}

    def __add__(self, other: Energy) -> Energy:
        return Energy({a: self.fj_by_action.get(a, 0) + other.fj_by_action.get(a, 0) for a in ACTIONS},
                      self.zero_mac_fj + other.zero_mac_fj)


ZERO = Energy(dict.fromkeys(ACTIONS, 0))


def sum_energy(energies: list[Energy]) -> Energy:
    return sum(energies, ZERO)


def stage_energy(stage: str, sram_read_bytes: dict[str, int], sram_write_bytes: dict[str, int],
                 dram_read_bytes: int, dram_write_bytes: int, macs_issued: int, macs_useful: int,
                 table: EnergyTable) -> Energy:
    """Energy of one stage from its counters (one tile's or a whole layer's: the cost is linear in the counts).

    MACs: the issued ones that are not useful have a zero the hardware inserted as an operand (a swelled ifmap's
    inserted pixels and border, a phase sub-kernel's padded taps, implicit padding): with zero gating they cost
    ``mac_gated`` each, the useful ones ``mac``; without, every issued MAC costs ``mac``.
    """
    on_zeros = macs_issued - macs_useful
    if table.zero_gating:
        mac, gated, zero_fj = macs_useful * table.mac_fj, on_zeros * table.mac_gated_fj, on_zeros * table.mac_gated_fj
    else:
        mac, gated, zero_fj = macs_issued * table.mac_fj, 0, on_zeros * table.mac_fj
    by_action = dict.fromkeys(ACTIONS, 0)
    by_action["mac"], by_action["mac_gated"] = mac, gated
    by_action["sram_read"] = sum(n * table.read_fj(b) for b, n in sram_read_bytes.items())
    by_action["sram_write"] = sum(n * table.write_fj(b) for b, n in sram_write_bytes.items())
    by_action["dram"] = dram_read_bytes * table.dram_read_fj_per_byte + dram_write_bytes * table.dram_write_fj_per_byte
    unit = UNIT_BYTES.get(stage)
    if unit is not None:
        action, side = unit
        moved = sram_write_bytes if side == "write" else sram_read_bytes
        by_action[action] = sum(moved.values()) * table.unit_fj_per_byte[action]
    return Energy(by_action, zero_fj)


def cost_energy(stage: str, cost: StageCost, table: EnergyTable) -> Energy:
    """Energy of one stage on one tile, from its cost record."""
    return stage_energy(stage, cost.sram_read_bytes, cost.sram_write_bytes, cost.dram_read_bytes,
                        cost.dram_write_bytes, cost.macs_issued, cost.macs_useful, table)


def fmt_nj(fj: int) -> str:
    """fJ as nJ with pJ resolution, for tables: ``12,345.678``."""
    return f"{fj / 1_000_000:,.3f}"
