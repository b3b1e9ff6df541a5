"""Verdicts of a run or a batch of runs, and their machine-readable forms: a summary table, JUnit XML, JSON.

Models no hardware. One :class:`Verdict` per layer (a network contributes one per layer; a config that could not
be run contributes one ``ERROR``). The exit code of a batch is that of its worst verdict, in the order
PASS = NOT COMPARED < NO GOLDEN < FAIL < ERROR; the codes are documented in docs/errors.md. JUnit XML is written
with the standard library's ElementTree (one ``testsuite`` per config, one ``testcase`` per layer), so any CI
that reads JUnit shows a failing layer with its scoreboard summary.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from simulator.errors import ConvsimError
from simulator.files import atomic_write_bytes, atomic_write_text, check_writable_dir

Outcome = Literal["PASS", "NOT COMPARED", "NO GOLDEN", "FAIL", "ERROR"]
EXIT_CODES: dict[str, int] = {"PASS": 0, "NOT COMPARED": 0, "NO GOLDEN": 3, "FAIL": 1, "ERROR": 2}
SEVERITY: tuple[str, ...] = ("PASS", "NOT COMPARED", "NO GOLDEN", "FAIL", "ERROR")  # best to worst


@dataclass(frozen=True)
class Verdict:
    """The outcome of one layer of one config (``layer`` is empty for a config that failed before its layers).

    ``detail`` is the scoreboard summary of a FAIL, the error line of an ERROR, the reason of NO GOLDEN."""

    config: str
    name: str
    layer: str
    outcome: Outcome
    detail: str = ""
    golden: str | None = None
    cycles: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(verdicts: Sequence[Verdict]) -> str:
    """The worst outcome of a batch (PASS for an empty one)."""
    return max((v.outcome for v in verdicts), key=SEVERITY.index, default="PASS")


def exit_code(verdicts: Sequence[Verdict]) -> int:
    return EXIT_CODES[worst(verdicts)]


def summary_table(verdicts: Sequence[Verdict]) -> str:
    """One row per layer: config, layer, verdict, cycles; then the overall verdict and its exit code."""
    rows = [(v.config, v.layer or "-", v.outcome, f"{v.cycles:,}" if v.cycles is not None else "-")
            for v in verdicts]
    head = ("config", "layer", "verdict", "cycles")
    widths = [max(len(head[c]), *(len(r[c]) for r in rows)) for c in range(4)]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(cell.rjust(w) if c == 3 else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths,
                                                                                                 strict=True)))

    counts = ", ".join(f"{sum(v.outcome == o for v in verdicts)} {o}" for o in SEVERITY
                       if any(v.outcome == o for v in verdicts))
    lines = [fmt(head).rstrip(), "  ".join("-" * w for w in widths), *(fmt(r).rstrip() for r in rows),
             f"overall: {worst(verdicts)} ({counts or 'nothing run'}; exit {exit_code(verdicts)})"]
    return "\n".join(lines)


def junit_xml(verdicts: Sequence[Verdict], suite: str = "convsim") -> bytes:
    """JUnit XML: ``testsuites`` > one ``testsuite`` per config > one ``testcase`` per layer.

    FAIL is a ``failure`` carrying the scoreboard summary; NO GOLDEN a ``failure`` of type ``no-golden`` (it
    fails CI, exit 3); ERROR an ``error``; NOT COMPARED is ``skipped``."""
    root = ET.Element("testsuites", name=suite)
    by_config: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_config.setdefault(v.config, []).append(v)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for config, items in by_config.items():
        counts = {"tests": len(items), "failures": sum(v.outcome in ("FAIL", "NO GOLDEN") for v in items),
                  "errors": sum(v.outcome == "ERROR" for v in items),
                  "skipped": sum(v.outcome == "NOT COMPARED" for v in items)}
        for key, value in counts.items():
            totals[key] += value
        ts = ET.SubElement(root, "testsuite", name=config, **{k: str(n) for k, n in counts.items()},
                           time=f"{sum(v.seconds for v in items):.3f}")
        for v in items:
            case = ET.SubElement(ts, "testcase", classname=f"convsim.{v.name or config}", name=v.layer or config,
                                 time=f"{v.seconds:.3f}")
            first = v.detail.splitlines()[0] if v.detail else v.outcome
            if v.outcome == "FAIL":
                ET.SubElement(case, "failure", type="mismatch", message=first).text = v.detail
            elif v.outcome == "NO GOLDEN":
                ET.SubElement(case, "failure", type="no-golden", message=first).text = v.detail
            elif v.outcome == "ERROR":
                ET.SubElement(case, "error", type="error", message=first).text = v.detail
            elif v.outcome == "NOT COMPARED":
                ET.SubElement(case, "skipped", message=first)
            if v.golden:
                props = ET.SubElement(case, "properties")
                ET.SubElement(props, "property", name="golden", value=v.golden)
    root.attrib.update({k: str(n) for k, n in totals.items()})
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def json_document(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    return {"verdict": worst(verdicts), "exit_code": exit_code(verdicts), "layers": [v.to_dict() for v in verdicts]}


def check_report_paths(junit: Path | None, json_path: Path | None) -> None:
    """Before any work: the report files' directories must be creatable (never fail after the work is done)."""
    for flag, path in (("--junit", junit), ("--json", json_path)):
        if path is not None:
            if path.is_dir():
                raise ConvsimError(f"{flag} {path}: is a directory, expected a file name")
            check_writable_dir(path.parent if path.exists() else path, flag)


def write_reports(verdicts: Sequence[Verdict], junit: Path | None, json_path: Path | None) -> None:
    if junit is not None:
        atomic_write_bytes(junit, junit_xml(verdicts))
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(json_document(verdicts), indent=2) + "\n")
