"""Per-stage records, layer totals, the printed table and the Chrome/Perfetto trace.

One record per stage (a line-trace-like one-line summary); the CLI table, ``report.json`` and the trace all come
from the same :class:`LayerReport`. Models no hardware.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.config import HardwareConfig, LayerConfig
from simulator.energy import Energy, energy_table, fmt_nj, stage_energy, sum_energy
from simulator.stages.common import StageCost
from simulator.tiling import TilePlan


@dataclass(frozen=True)
class TileEvent:
    stage: str
    tile: int
    start_cycle: int
    end_cycle: int
    energy_fj: int = 0  # this stage's energy on this tile (the stage record's is the exact sum over tiles)


@dataclass(frozen=True)
class StageSummary:
    name: str
    cycles: int
    stall_cycles: int
    sram_read_bytes: dict[str, int]
    sram_write_bytes: dict[str, int]
    dram_read_bytes: int
    dram_write_bytes: int
    skipped: bool
    compute_cycles: int | None = None
    folds: int | None = None
    macs_issued: int | None = None
    macs_useful: int | None = None
    utilization_issued: float | None = None
    utilization_useful: float | None = None
    macs_on_zeros: int | None = None  # MACs issued with an inserted zero as an operand (issued - useful)
    # energy (docs/energy.md): exact integer femtojoules per action, and the same in pJ
    energy_fj: int = 0
    energy_fj_by_action: dict[str, int] = field(default_factory=dict)
    energy_pj: float = 0.0
    energy_pj_by_action: dict[str, float] = field(default_factory=dict)
    zero_mac_energy_fj: int = 0  # MAC energy spent on inserted zeros (gated or not)
    zero_mac_energy_pj: float = 0.0

    def line(self) -> str:
        """One table row: cycles, stall cycles, energy, SRAM bytes per buffer, DRAM bytes."""
        if self.skipped:
            return f"{self.name:<17} {'skipped':>12}"
        return (f"{self.name:<17} {self.cycles:>12,} {self.stall_cycles:>12,} {fmt_nj(self.energy_fj):>14}  "
                f"{_column(_per_buffer(self.sram_read_bytes), 30)}{_column(_per_buffer(self.sram_write_bytes), 30)}"
                f"{self.dram_read_bytes:,}/{self.dram_write_bytes:,}")

    def mac_line(self) -> str:
        """The MAC array's own line: compute cycles, folds, MACs and utilization both ways."""
        ratio = self.macs_useful / self.macs_issued if self.macs_issued else 0.0
        return (f"{self.name}: compute {self.compute_cycles:,} cycles in {self.folds:,} folds; MACs "
                f"{self.macs_issued:,} issued / {self.macs_useful:,} useful (useful/issued {ratio:.4f}); "
                f"utilization {self.utilization_issued:.2%} issued / {self.utilization_useful:.2%} useful")


def _per_buffer(nbytes: dict[str, int]) -> str:
    return " ".join(f"{k} {v:,}" for k, v in nbytes.items()) or "-"


@dataclass(frozen=True)
class LayerReport:
    layer: str
    op: str
    method: str
    num_tiles: int
    rows_per_tile: int
    oc_per_tile: int
    cycles: int
    time_us: float
    clock_mhz: float
    dram_read_bytes: int
    dram_write_bytes: int
    peak_sram_bytes: dict[str, int]
    macs_issued: int
    macs_useful: int
    utilization_issued: float
    utilization_useful: float
    stages: tuple[StageSummary, ...] = field(default_factory=tuple)
    tile_shape: str = ""  # the planner's choice: channels x input channels x rows x columns, loop order, slots
    # energy: the sum of the stages' (exact in fJ), the MACs and MAC energy on inserted zeros, the table used
    macs_on_zeros: int = 0
    energy_fj: int = 0
    energy_fj_by_action: dict[str, int] = field(default_factory=dict)
    energy_pj: float = 0.0
    energy_pj_by_action: dict[str, float] = field(default_factory=dict)
    zero_mac_energy_fj: int = 0
    zero_mac_energy_pj: float = 0.0
    energy_table: dict[str, Any] = field(default_factory=dict)
    quant: str | None = None  # a quantized layer: what its output converter does and that the store moves int8

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["quant"] is None:  # an int32 layer's report is as before
            del out["quant"]
        return out

    def stage(self, name: str) -> StageSummary:
        return next(s for s in self.stages if s.name == name)

    def table(self) -> str:
        head = (f"layer {self.layer} ({self.op}, method {self.method}): {self.num_tiles} tile(s) of "
                f"{self.tile_shape}")
        columns = (f"{'stage':<17} {'cycles':>12} {'stall':>12} {'energy nJ':>14}  {'SRAM read bytes':<30}"
                   f"{'SRAM write bytes':<30}DRAM r/w bytes")
        macs = [s.mac_line() for s in self.stages if s.macs_issued is not None and not s.skipped]
        total = (f"total: {self.num_tiles} tile(s), {self.cycles:,} cycles = {self.time_us:,.3f} us at "
                 f"{self.clock_mhz:g} MHz; DRAM {self.dram_read_bytes:,} B read / {self.dram_write_bytes:,} B "
                 "written; peak SRAM " + ", ".join(f"{k} {v:,} B" for k, v in self.peak_sram_bytes.items()))
        quant = [f"quantized: {self.quant}"] if self.quant else []
        return "\n".join([head, columns, *(s.line() for s in self.stages), *macs, *quant, total,
                          self.energy_line()])

    def energy_line(self) -> str:
        """Energy in total and by action, and what the MACs on inserted zeros cost."""
        parts = ", ".join(f"{a} {fmt_nj(v)}" for a, v in self.energy_fj_by_action.items() if v)
        gating = "gated" if self.energy_table.get("zero_gating") else "not gated"
        return (f"energy: {fmt_nj(self.energy_fj)} nJ ({parts or 'all actions cost 0'}); MACs on inserted zeros "
                f"{self.macs_on_zeros:,} ({gating}) cost {fmt_nj(self.zero_mac_energy_fj)} nJ")


def _column(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` characters, or followed by one space when it is that long (a large layer's
    byte counts), so that two columns never run together."""
    return f"{text:<{width}}" if len(text) < width else text + " "


def _add(into: dict[str, int], more: dict[str, int], times: int = 1) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value * times


def summarize(layer: LayerConfig, hw: HardwareConfig, plan: TilePlan, names: tuple[str, ...],
              costs: list[list[StageCost]], starts: list[list[int]], ends: list[list[int]]) -> LayerReport:
    """Fold per-tile costs and the schedule into one record per stage and the layer totals."""
    pes = hw.mac_array.rows * hw.mac_array.cols
    table = energy_table(hw)
    stages = []
    energies: list[Energy] = []
    for s, name in enumerate(names):
        column = [row[s] for row in costs]
        active = [t for t, c in enumerate(column) if not c.skipped]
        span = (max(ends[t][s] for t in active) - min(starts[t][s] for t in active)) if active else 0
        # the tiles of one shape share their cost record: sum each distinct record once, times its count
        counts = Counter(map(id, column))
        distinct = {id(c): c for c in column}.values()

        def total(field: str, records: Iterable[StageCost] = distinct, counts: Counter[int] = counts) -> int:
            return sum(getattr(c, field) * counts[id(c)] for c in records)

        reads: dict[str, int] = {}
        writes: dict[str, int] = {}
        for c in distinct:
            _add(reads, c.sram_read_bytes, counts[id(c)])
            _add(writes, c.sram_write_bytes, counts[id(c)])
        busy = total("cycles")
        extra: dict[str, Any] = {}
        issued, useful = total("macs_issued"), total("macs_useful")
        if name == "mac_array":
            extra = dict(compute_cycles=busy, folds=total("folds"), macs_issued=issued,
                         macs_useful=useful, utilization_issued=issued / (pes * busy) if busy else 0.0,
                         utilization_useful=useful / (pes * busy) if busy else 0.0, macs_on_zeros=issued - useful)
        dram_r, dram_w = total("dram_read_bytes"), total("dram_write_bytes")
        energy = stage_energy(name, reads, writes, dram_r, dram_w, issued, useful, table)
        energies.append(energy)
        stages.append(StageSummary(name, busy, span - busy, reads, writes, dram_r, dram_w, not active, **extra,
                                   **_energy_fields(energy)))
    mac = next(s for s in stages if s.name == "mac_array")
    total = max((row[-1] for row in ends), default=0)
    return LayerReport(
        layer=layer.name, op=layer.op, method=plan.method, num_tiles=len(plan.tiles),
        rows_per_tile=plan.rows_per_tile, oc_per_tile=plan.oc_per_tile, cycles=total,
        time_us=total / hw.clock_mhz, clock_mhz=hw.clock_mhz,
        dram_read_bytes=sum(s.dram_read_bytes for s in stages),
        dram_write_bytes=sum(s.dram_write_bytes for s in stages),
        peak_sram_bytes=dict(plan.peak_bytes), macs_issued=mac.macs_issued or 0, macs_useful=mac.macs_useful or 0,
        utilization_issued=mac.utilization_issued or 0.0, utilization_useful=mac.utilization_useful or 0.0,
        stages=tuple(stages), tile_shape=plan.shape(), macs_on_zeros=(mac.macs_issued or 0) - (mac.macs_useful or 0),
        **_energy_fields(sum_energy(energies)), energy_table=table.as_pj(), quant=_quant_line(layer))


def _energy_fields(energy: Energy) -> dict[str, Any]:
    return dict(energy_fj=energy.fj, energy_fj_by_action=dict(energy.fj_by_action), energy_pj=energy.pj,
                energy_pj_by_action=energy.pj_by_action, zero_mac_energy_fj=energy.zero_mac_fj,
                zero_mac_energy_pj=energy.zero_mac_fj / 1000)


def _quant_line(layer: LayerConfig) -> str | None:
    q = layer.quant
    if q is None:
        return None
    weights = "per-channel" if q.weight.per_channel else "per-tensor"
    return (f"int8 in (zero point {q.input.zero_point}), {weights} int8 weights (zero point {q.weight.zero_point}), "
            f"int32 accumulators -> output_convert ({q.rounding}, zero point {q.output.zero_point}, activation "
            f"{q.activation}) -> int8 ofmap; the DRAM store moves int8")


def chrome_trace(events: tuple[TileEvent, ...], names: tuple[str, ...], clock_mhz: float,
                 process: str = "convsim") -> dict[str, Any]:
    """Chrome/Perfetto trace JSON: one track (thread) per stage, one complete event per tile; time in us."""
    tid = {name: i for i, name in enumerate(names)}
    out: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": 0, "args": {"name": process}}]
    out += [{"name": "thread_name", "ph": "M", "pid": 0, "tid": i, "args": {"name": n}} for n, i in tid.items()]
    out += [{"name": f"tile {e.tile}", "ph": "X", "pid": 0, "tid": tid[e.stage], "ts": e.start_cycle / clock_mhz,
             "dur": (e.end_cycle - e.start_cycle) / clock_mhz,
             "args": {"tile": e.tile, "start_cycle": e.start_cycle, "end_cycle": e.end_cycle,
                      "energy_pj": e.energy_fj / 1000}} for e in events]
    return {"traceEvents": out, "displayTimeUnit": "ns"}


# ------------------------------------------------------------------------------------------------------ networks


def network_totals(reports: list[LayerReport], num_pes: int) -> dict[str, Any]:
    """Totals of a network whose layers run one after another on the engine (no overlap between layers).

    cycles, time, MACs and DRAM bytes are sums over layers; ``peak_sram_bytes`` is per buffer the maximum over
    layers (each layer's tiles are released before the next layer starts). The utilizations are
    ``MACs / (num_pes * total MAC compute cycles)``: the share of the PE slots the array had while it was busy
    computing, over the whole network, so large layers weigh more than small ones (not a mean of per-layer
    percentages). Cycles the array waits on DMA do not count against it; ``cycles`` shows those. Energies are
    sums over layers, exact in fJ.
    """
    compute = sum(_compute_cycles(r) for r in reports)
    issued, useful = sum(r.macs_issued for r in reports), sum(r.macs_useful for r in reports)
    cycles = sum(r.cycles for r in reports)
    clock = reports[0].clock_mhz if reports else 0.0
    peak = {buf: max(r.peak_sram_bytes.get(buf, 0) for r in reports) for buf in (reports[0].peak_sram_bytes
                                                                                 if reports else {})}
    return {
        "layers": len(reports), "cycles": cycles, "time_us": cycles / clock if clock else 0.0, "clock_mhz": clock,
        "mac_compute_cycles": compute, "num_pes": num_pes, "macs_issued": issued, "macs_useful": useful,
        "utilization_issued": issued / (num_pes * compute) if compute else 0.0,
        "utilization_useful": useful / (num_pes * compute) if compute else 0.0,
        "dram_read_bytes": sum(r.dram_read_bytes for r in reports),
        "dram_write_bytes": sum(r.dram_write_bytes for r in reports),
        "peak_sram_bytes": peak,
        "peak_sram_total_bytes": max((sum(r.peak_sram_bytes.values()) for r in reports), default=0),
        **_energy_fields(sum_energy([Energy(r.energy_fj_by_action, r.zero_mac_energy_fj) for r in reports])),
    }


def _compute_cycles(report: LayerReport) -> int:
    return next((s.compute_cycles or 0 for s in report.stages if s.name == "mac_array"), 0)


NETWORK_COLUMNS = ("layer", "op", "method", "tiles", "cycles", "energy nJ", "time us", "MACs issued",
                   "MACs useful", "util iss", "util use", "DRAM r+w B", "peak SRAM B", "verdict")


def network_table(reports: list[LayerReport], verdicts: list[str], num_pes: int) -> str:
    """One row per layer and a totals row (see :func:`network_totals` for what the totals mean).

    ``peak SRAM B`` of a layer is the sum of its ifmap, weight and psum buffer peaks; of the network, the
    largest layer's. The totals verdict is PASS only when every layer passed.
    """
    totals = network_totals(reports, num_pes)
    rows = [[r.layer, r.op, r.method, f"{r.num_tiles:,}", f"{r.cycles:,}", fmt_nj(r.energy_fj),
             f"{r.time_us:,.3f}", f"{r.macs_issued:,}", f"{r.macs_useful:,}", f"{r.utilization_issued:.1%}",
             f"{r.utilization_useful:.1%}", f"{r.dram_read_bytes + r.dram_write_bytes:,}",
             f"{sum(r.peak_sram_bytes.values()):,}", v] for r, v in zip(reports, verdicts, strict=True)]
    overall = "PASS" if verdicts and all(v == "PASS" for v in verdicts) else (
        "FAIL" if "FAIL" in verdicts else "-")
    rows.append(["total", "", "", f"{sum(r.num_tiles for r in reports):,}", f"{totals['cycles']:,}",
                 fmt_nj(totals["energy_fj"]), f"{totals['time_us']:,.3f}", f"{totals['macs_issued']:,}",
                 f"{totals['macs_useful']:,}",
                 f"{totals['utilization_issued']:.1%}", f"{totals['utilization_useful']:.1%}",
                 f"{totals['dram_read_bytes'] + totals['dram_write_bytes']:,}",
                 f"{totals['peak_sram_total_bytes']:,}", overall])
    widths = [max(len(NETWORK_COLUMNS[c]), *(len(row[c]) for row in rows)) for c in range(len(NETWORK_COLUMNS))]
    left = {0, 1, 2, len(NETWORK_COLUMNS) - 1}

    def fmt(row: list[str] | tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) if c in left else cell.rjust(w)
                         for c, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    clock = f"{totals['clock_mhz']:g} MHz" if reports else "-"
    head = (f"{len(reports)} layer(s) at {clock} on {num_pes} PEs; utilization = MACs / (PEs x MAC compute "
            "cycles); DRAM = bytes read + written")
    return "\n".join([head, fmt(NETWORK_COLUMNS), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1])])
