"""The Pareto front of a sweep: the points no other point beats on every objective, as text and as a plot.

All objectives (cycles, energy, PEs, SRAM bytes: totals over a point's layers) are minimised. The plot is cycles
against energy when energy is an objective, else against PEs; it is skipped when matplotlib is not installed.
Models no hardware; ignores every column of the results that is not an objective.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from simulator.energy import fmt_nj
from simulator.files import atomic_write_bytes


def pareto_front(totals: list[dict[str, Any]], keys: tuple[str, ...] = ("cycles", "pes", "sram_bytes")) -> list[
        dict[str, Any]]:
    """Points no other point beats or equals on every key while beating on one (all keys minimised)."""
    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)

    return [p for p in totals if not any(dominates(q, p) for q in totals)]


def pareto_text(front: list[dict[str, Any]], objectives: tuple[str, ...] = ("cycles", "pes", "sram_bytes")) -> str:
    lines = [f"{'point':>5}  {'cycles':>12}  {'energy nJ':>14}  {'PEs':>6}  {'SRAM bytes':>12}  overrides"]
    for p in sorted(front, key=lambda p: tuple(p[k] for k in (*objectives, "point"))):
        lines.append(f"{p['point']:>5}  {p['cycles']:>12,}  {fmt_nj(p.get('energy_fj', 0)):>14}  {p['pes']:>6}  "
                     f"{p['sram_bytes']:>12,}  "
                     + ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in p["overrides"].items()))
    return "\n".join(lines)


def pareto_png(totals: list[dict[str, Any]], front: list[dict[str, Any]], path: Path, title: str,
               objectives: tuple[str, ...] = ("cycles", "pes", "sram_bytes")) -> bool:
    """Cycles vs energy when energy is an objective, else cycles vs PEs; every point grey, the front labelled;
    False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    energy = "energy_pj" in objectives

    def x_of(p: dict[str, Any]) -> float:
        return p["energy_fj"] / 1e6 if energy else p["pes"]  # energy in nJ

    varying = [k for k in (totals[0]["overrides"] if totals else {})
               if len({json.dumps(p["overrides"][k]) for p in totals}) > 1]  # label with what changes
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    ax.scatter([x_of(p) for p in totals], [p["cycles"] for p in totals], s=14, c="0.75", label="all points")
    ordered = sorted(front, key=lambda p: (x_of(p), p["cycles"]))
    names = {"cycles": "cycles", "energy_pj": "energy", "pes": "PEs", "sram_bytes": "SRAM"}
    ax.plot([x_of(p) for p in ordered], [p["cycles"] for p in ordered], "o-", c="tab:red", ms=5,
            label=f"Pareto front ({', '.join(names[k] for k in objectives)})")
    for p in ordered:
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={p['overrides'][k]}" for k in varying)
        ax.annotate(label, (x_of(p), p["cycles"]), fontsize=6, xytext=(4, 3), textcoords="offset points")
    if not energy:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("energy, nJ (all layers)" if energy else "PEs (rows x cols)")
    ax.set_ylabel("total cycles (all layers)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True
