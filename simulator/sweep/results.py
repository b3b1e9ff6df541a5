"""The durable results of a sweep: ``results.jsonl`` (append-only, one line per finished point) and the tables
derived from it.

Each finished point is appended as one line (one ``write`` of a complete line, flushed and fsynced), so a killed
sweep loses at most the points in flight; reading skips a torn last line and refuses a line that is not a sweep
record. ``results.csv`` rows and per-point totals (energy summed exactly in fJ) are derived from the records,
sorted by point and layer, so two runs of the same sweep give identical tables whatever the executor or order.
Models no hardware.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from simulator.errors import ConvsimError
from simulator.inputs import read_bytes

MAX_RESULTS_BYTES = 1 << 30

COLUMNS = ("point", "layer", "method", "pes", "sram_bytes", "cycles", "time_us", "macs_issued", "macs_useful",
           "utilization_issued", "utilization_useful", "dram_read_bytes", "dram_write_bytes", "sram_read_bytes",
           "sram_write_bytes", "peak_sram_bytes", "num_tiles", "verified", "energy_pj", "energy_fj")


def read_jsonl(path: Path) -> dict[int, dict[str, Any]]:
    """Completed points by index; a torn (unterminated or unparsable) line is ignored."""
    done: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return done
    text = read_bytes(path, "sweep results", MAX_RESULTS_BYTES).decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if not line.endswith("\n"):
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not _is_record(rec):
            raise ConvsimError(f"--resume: {path} line {number}: not a sweep record (edited, or not written by "
                               "convsim sweep); fix or remove the line, or choose another --out")
        done[rec["point"]] = rec
    return done


ROW_INTS = ("pes", "sram_bytes", "cycles", "macs_useful")


def _is_record(rec: Any) -> bool:
    """A line of results.jsonl as :func:`run_sweep` writes it: a point's rows, or the reason it did not run."""
    if not (isinstance(rec, dict) and type(rec.get("point")) is int and rec["point"] >= 0
            and isinstance(rec.get("key"), str) and isinstance(rec.get("overrides"), dict)):
        return False
    if isinstance(rec.get("problem"), str):
        return True
    rows = rec.get("rows")
    return isinstance(rows, list) and all(isinstance(r, dict) and all(type(r.get(k)) is int for k in ROW_INTS)
                                          for r in rows)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def table_rows(records: dict[int, dict[str, Any]], grid_keys: list[str]) -> list[dict[str, Any]]:
    rows = []
    for index in sorted(records):
        rec = records[index]
        for row in rec.get("rows", []):
            rows.append({"point": index, **{k: rec["overrides"].get(k) for k in grid_keys}, **row})
    return rows


def csv_text(rows: list[dict[str, Any]], grid_keys: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["point", *grid_keys, *COLUMNS[1:]], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def point_totals(records: dict[int, dict[str, Any]], grid_keys: list[str]) -> list[dict[str, Any]]:
    """Per point: total cycles and energy over its layers (energy summed exactly in fJ), PEs and SRAM bytes
    (overrides in the grid's key order)."""
    out = []
    for index in sorted(records):
        rows = records[index].get("rows")
        if rows:
            overrides = {k: records[index]["overrides"].get(k) for k in grid_keys}
            energy_fj = sum(r.get("energy_fj", 0) for r in rows)  # results written before energy existed: 0
            out.append({"point": index, "overrides": overrides, "pes": rows[0]["pes"],
                        "sram_bytes": rows[0]["sram_bytes"], "cycles": sum(r["cycles"] for r in rows),
                        "macs_useful": sum(r["macs_useful"] for r in rows), "energy_fj": energy_fj,
                        "energy_pj": energy_fj / 1000})
    return out


def read_jsonl_quiet(path: Path) -> dict[int, dict[str, Any]]:
    try:
        return read_jsonl(path)
    except ConvsimError:
        return {}
