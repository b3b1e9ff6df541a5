"""``convsim compare``: the two transposed-conv methods (swell, phase) on the same engine, side by side.

Models no hardware: runs each layer of a config twice through :func:`simulator.pipeline.simulate_layer` (timing
and values), checks the two ofmaps bit-exactly against each other and, when a golden case exists, against it,
and lines up their costs: busy cycles per stage and the scheduled total, MACs issued vs useful, utilization
both ways, the staged ifmap's SRAM footprint, DRAM and SRAM traffic, and energy per action (what the phase
method saves, and how much of it swell spends on MACs on inserted zeros). Conv2d layers run the direct method
under either switch (the two columns are then the same run twice).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from simulator.batch import run_batch
from simulator.compare import compare
from simulator.config import HardwareConfig, LayerConfig, SimConfig, load_config
from simulator.data import LayerTensors, make_tensors
from simulator.energy import ACTIONS, fmt_nj
from simulator.golden import load_case
from simulator.mapping.base import IFMAP, IFMAP_SWELLED
from simulator.pipeline import STAGE_NAMES, SimResult, simulate_layer
from simulator.runner import layer_dirs
from simulator.verdicts import Verdict

EXIT_OK, EXIT_MISMATCH = 0, 1
METHODS: tuple[Literal["swell", "phase"], ...] = ("swell", "phase")
STAGED_IFMAP = (IFMAP, IFMAP_SWELLED)  # the regions the MAC array's input occupies in the ifmap buffer


@dataclass(frozen=True)
class MethodCosts:
    """The costs of one layer under one method, as ``compare`` shows them."""

    method: str
    num_tiles: int
    stage_cycles: dict[str, int | None]  # busy cycles per stage; None when the stage is skipped
    cycles: int  # scheduled total (stages overlap across tiles)
    macs_issued: int
    macs_useful: int
    utilization_issued: float
    utilization_useful: float
    staged_ifmap_bytes: int  # largest per-tile ifmap (+ ifmap_swelled) region bytes
    peak_sram_bytes: dict[str, int]  # per buffer, both slots when double-buffered
    dram_read_bytes: int
    dram_write_bytes: int
    sram_read_bytes: int
    sram_write_bytes: int
    energy_fj: int = 0  # exact, integer femtojoules (docs/energy.md)
    energy_fj_by_action: dict[str, int] | None = None
    zero_mac_energy_fj: int = 0  # MAC energy on inserted zeros


def method_costs(result: SimResult) -> MethodCosts:
    rep = result.report
    staged = max((sum(r.size_bytes for r in t.regions if r.name in STAGED_IFMAP) for t in result.plan.tiles),
                 default=0)
    return MethodCosts(
        method=rep.method, num_tiles=rep.num_tiles,
        stage_cycles={s.name: None if s.skipped else s.cycles for s in rep.stages}, cycles=rep.cycles,
        macs_issued=rep.macs_issued, macs_useful=rep.macs_useful, utilization_issued=rep.utilization_issued,
        utilization_useful=rep.utilization_useful, staged_ifmap_bytes=staged, peak_sram_bytes=dict(rep.peak_sram_bytes),
        dram_read_bytes=rep.dram_read_bytes, dram_write_bytes=rep.dram_write_bytes,
        sram_read_bytes=sum(sum(s.sram_read_bytes.values()) for s in rep.stages),
        sram_write_bytes=sum(sum(s.sram_write_bytes.values()) for s in rep.stages), energy_fj=rep.energy_fj,
        energy_fj_by_action=dict(rep.energy_fj_by_action), zero_mac_energy_fj=rep.zero_mac_energy_fj)


@dataclass(frozen=True)
class LayerComparison:
    """Both methods on one layer: their costs, whether their values agree, and each against the golden case."""

    layer: str
    op: str
    swell: MethodCosts
    phase: MethodCosts
    methods_agree: bool
    mismatch_report: str | None  # scoreboard of phase vs swell when they disagree
    golden: dict[str, bool] | None  # method -> bit-exact with the golden ofmap; None without a golden case
    golden_dir: str

    @property
    def ok(self) -> bool:
        return self.methods_agree and (self.golden is None or all(self.golden.values()))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def table(self) -> str:
        a, b = self.swell, self.phase
        rows: list[tuple[str, float | None, float | None, str]] = [("tiles", a.num_tiles, b.num_tiles, "d")]
        rows += [(f"cycles {n} (busy)", a.stage_cycles[n], b.stage_cycles[n], "d") for n in STAGE_NAMES]
        rows += [("cycles total (scheduled)", a.cycles, b.cycles, "d"),
                 ("MACs issued", a.macs_issued, b.macs_issued, "d"),
                 ("MACs useful", a.macs_useful, b.macs_useful, "d"),
                 ("utilization issued", a.utilization_issued, b.utilization_issued, "%"),
                 ("utilization useful", a.utilization_useful, b.utilization_useful, "%"),
                 ("staged ifmap B/tile", a.staged_ifmap_bytes, b.staged_ifmap_bytes, "d")]
        rows += [(f"peak SRAM {k} B", a.peak_sram_bytes[k], b.peak_sram_bytes[k], "d") for k in a.peak_sram_bytes]
        rows += [("DRAM read B", a.dram_read_bytes, b.dram_read_bytes, "d"),
                 ("DRAM write B", a.dram_write_bytes, b.dram_write_bytes, "d"),
                 ("SRAM read B", a.sram_read_bytes, b.sram_read_bytes, "d"),
                 ("SRAM write B", a.sram_write_bytes, b.sram_write_bytes, "d"),
                 ("energy nJ", a.energy_fj, b.energy_fj, "nJ")]
        by_a, by_b = a.energy_fj_by_action or {}, b.energy_fj_by_action or {}
        rows += [(f"  {action} nJ", by_a.get(action, 0), by_b.get(action, 0), "nJ") for action in ACTIONS
                 if by_a.get(action) or by_b.get(action)]
        rows += [("  of it MACs on inserted zeros nJ", a.zero_mac_energy_fj, b.zero_mac_energy_fj, "nJ")]
        title = f"layer {self.layer} ({self.op})"
        one_mapping = len({a.method, b.method}) == 1  # conv2d: both switches run the direct mapping
        if one_mapping:
            title += f": both switches run the {a.method} method"
        lines = [title, f"{'':<32}{'swell':>16}{'phase':>16}{'phase/swell':>14}"]
        lines += [f"{name:<32}{_cell(x, fmt):>16}{_cell(y, fmt):>16}{_ratio(x, y):>14}" for name, x, y, fmt in rows]
        if not one_mapping:
            lines.append(self.energy_saving())
        lines.append(self.verdict())
        if self.mismatch_report:
            lines.append(self.mismatch_report)
        return "\n".join(lines)

    def energy_saving(self) -> str:
        """One line: what phase saves against swell, and the share swell spent on MACs on inserted zeros."""
        a, b = self.swell, self.phase
        saved = a.energy_fj - b.energy_fj
        share = f" ({saved / a.energy_fj:.1%} of swell's)" if a.energy_fj else ""
        return (f"energy: phase {'saves' if saved >= 0 else 'costs'} {fmt_nj(abs(saved))} nJ{share}; swell spends "
                f"{fmt_nj(a.zero_mac_energy_fj)} nJ on MACs on inserted zeros, phase {fmt_nj(b.zero_mac_energy_fj)}")

    def verdict(self) -> str:
        values = "swell and phase bit-exact" if self.methods_agree else "swell and phase DISAGREE"
        if self.golden is None:
            return f"values: {values}; no golden case at {self.golden_dir}"
        gold = ", ".join(f"{m} {'PASS' if ok else 'FAIL'}" for m, ok in self.golden.items())
        return f"values: {values}; against {self.golden_dir}: {gold}"


def _cell(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "nJ":
        return fmt_nj(int(value))
    return f"{value:.2%}" if fmt == "%" else f"{int(value):,}"


def _ratio(swell: float | None, phase: float | None) -> str:
    if swell is None or phase is None or swell == 0:
        return "-"
    return f"{phase / swell:.3f}"


def compare_layer(layer: LayerConfig, hw: HardwareConfig, tensors: LayerTensors, golden: np.ndarray | None,
                  golden_dir: Path) -> LayerComparison:
    """Run ``layer`` with both methods on the same tensors and compare values and costs."""
    results = {m: simulate_layer(layer, hw, m, tensors) for m in METHODS}
    swell, phase = (results[m].ofmap for m in METHODS)
    between = compare(swell, phase)  # type: ignore[arg-type]
    against = None if golden is None else {m: compare(golden, results[m].ofmap).equal  # type: ignore[arg-type]
                                           for m in METHODS}
    return LayerComparison(layer.name, layer.op, method_costs(results["swell"]), method_costs(results["phase"]),
                           between.equal, None if between.equal else between.report("phase vs swell"), against,
                           str(golden_dir))


def compare_config(cfg: SimConfig, golden_dir: Path) -> list[LayerComparison]:
    """Both methods on every layer of ``cfg``, on the golden case's tensors when there is one."""
    out = []
    for index, layer, case_dir in layer_dirs(cfg, golden_dir / cfg.name):
        case = load_case(case_dir)
        tensors = case.tensors if case else make_tensors(
            cfg.layer_data(layer), layer, index if cfg.is_network else None)
        out.append(compare_layer(layer, cfg.hardware, tensors, case.ofmap if case else None, case_dir))
    return out


def compare_verdicts(config: Path, cfg: SimConfig, layers: list[LayerComparison]) -> list[Verdict]:
    """One verdict per layer: PASS when the two methods agree (and match the golden case when there is one)."""
    out = []
    for c in layers:
        detail = "" if c.ok else (c.mismatch_report or c.verdict())
        out.append(Verdict(str(config), cfg.name, c.layer, "PASS" if c.ok else "FAIL", detail=detail,
                           golden=c.golden_dir if c.golden is not None else None))
    return out


def run_compare(configs: list[Path], golden_dir: Path, as_json: bool = False, junit: Path | None = None) -> int:
    """What ``convsim compare`` does: the side-by-side table (or JSON) of every config; the exit code of the
    worst verdict (1 if any layer's methods disagree or differ from its golden case)."""
    documents: list[dict[str, Any]] = []

    def one(config: Path) -> list[Verdict]:
        cfg = load_config(config)
        layers = compare_config(cfg, golden_dir)
        if as_json:
            documents.append({"name": cfg.name, "ok": all(c.ok for c in layers),
                              "layers": [c.to_dict() for c in layers]})
        else:
            print("\n\n".join(c.table() for c in layers))
        return compare_verdicts(config, cfg, layers)

    code = run_batch(configs, one, junit=junit, summary=not as_json)
    if as_json:
        doc = documents[0] if len(configs) == 1 else {"ok": code == EXIT_OK, "configs": documents}
        print(json.dumps(doc, indent=2))
    return code
