"""``convsim sweep``: the command that ties spec, executors, results and Pareto front together.

Refuses bad options and an existing ``results.jsonl`` (unless ``--resume``, which skips the points already there
and checks they come from the same sweep) before anything runs, records invalid points, runs the rest, then
rewrites ``results.csv`` and ``pareto.txt`` atomically and prints the front. A start that evaluated nothing
leaves no ``results.jsonl`` behind. Exit status 1 when a verified point failed golden. Models no hardware.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from simulator import progress
from simulator.errors import ConvsimError
from simulator.files import atomic_write_text, check_writable_dir, ensure_dir
from simulator.sweep.executors import MAX_WORKERS, Executor, Payload, require_ray, run_local, run_ray
from simulator.sweep.pareto import pareto_front, pareto_png, pareto_text
from simulator.sweep.results import append_jsonl, csv_text, point_totals, read_jsonl, read_jsonl_quiet, table_rows
from simulator.sweep.spec import Point, SweepSpec, expand, load_spec


def run_sweep(sweep_file: Path, out: Path, executor: Executor = "local", address: str | None = None,
              resume: bool = False, verify: bool = False, golden_dir: str | None = None,
              workers: int | None = None) -> int:
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise ConvsimError(f"--workers {workers}: expected 1 to {MAX_WORKERS} worker processes (the cores here)")
    spec, base_raw, base_dir = load_spec(sweep_file)
    points = expand(spec, base_raw, base_dir)
    grid_keys = list(spec.grid)
    if all(p.problem for p in points):
        raise ConvsimError(f"{sweep_file}: no point of the grid can run ({len(points)} invalid or excluded; "
                           f"first: {points[0].problem})")
    if executor == "ray":
        require_ray()
    check_writable_dir(out, "--out")
    jsonl = out / "results.jsonl"
    if jsonl.exists() and not resume:
        raise ConvsimError(f"--out {out}: results.jsonl exists; pass --resume to continue it or choose another --out")
    records = read_jsonl(jsonl) if resume else {}
    created = not jsonl.exists()
    try:
        return _run_points(spec, points, grid_keys, records, jsonl, out, sweep_file, executor, address, verify,
                           golden_dir, workers)
    except BaseException:
        # a start that evaluated nothing leaves nothing behind, so the retry is not refused
        if created and jsonl.exists() and not any("rows" in r for r in read_jsonl_quiet(jsonl).values()):
            jsonl.unlink()
        raise


def _run_points(spec: SweepSpec, points: list[Point], grid_keys: list[str], records: dict[int, dict[str, Any]],
                jsonl: Path, out: Path, sweep_file: Path, executor: Executor, address: str | None, verify: bool,
                golden_dir: str | None, workers: int | None) -> int:
    ensure_dir(out, "--out")
    for rec in records.values():
        if rec["point"] >= len(points) or rec["key"] != points[rec["point"]].key:
            raise ConvsimError(f"--resume: {jsonl} was written by a different sweep (point {rec['point']})")
    invalid = [p for p in points if p.problem]
    for p in invalid:
        print(f"point {p.index} not run: {p.problem}", file=sys.stderr)
        if p.index not in records:
            append_jsonl(jsonl, {"point": p.index, "key": p.key, "overrides": p.overrides, "problem": p.problem})
            records[p.index] = {"point": p.index, "key": p.key, "overrides": p.overrides, "problem": p.problem}
    todo = [p for p in points if not p.problem and p.index not in records]
    print(f"sweep: {len(points)} points, {len(invalid)} not run, {len(points) - len(invalid) - len(todo)} "
          f"already done, {len(todo)} to run on '{executor}'", file=sys.stderr)
    by_index = {p.index: p for p in points}
    counter = progress.Counter(len(todo), "sweep", "point")

    def done(index: int, rows: list[dict[str, Any]] | str) -> None:
        p = by_index[index]
        rec: dict[str, Any] = {"point": index, "key": p.key, "overrides": p.overrides}
        rec.update({"problem": rows} if isinstance(rows, str) else {"rows": rows})
        append_jsonl(jsonl, rec)
        records[index] = rec
        if isinstance(rows, str):
            print(f"point {index} {rows}", file=sys.stderr)
        counter.update()

    payloads: list[Payload] = [(p.index, p.config, verify, golden_dir) for p in todo]  # type: ignore[misc]
    try:
        if payloads and executor == "ray":
            run_ray(payloads, done, address)
        elif payloads:
            run_local(payloads, done, workers)
    finally:
        counter.close()
    rows = table_rows(records, grid_keys)
    totals = point_totals(records, grid_keys)
    if not totals:
        raise ConvsimError(f"{sweep_file}: no point ran: all {len(points)} were invalid, excluded or failed "
                           "(each is listed above)")
    atomic_write_text(out / "results.csv", csv_text(rows, grid_keys))
    objectives = spec.objectives
    front = pareto_front(totals, objectives)
    atomic_write_text(out / "pareto.txt", pareto_text(front, objectives) + "\n")
    print(f"Pareto front ({len(front)} of {len(totals)} points; minimising {', '.join(objectives)}):")
    print(pareto_text(front, objectives))
    versus = "energy" if "energy_pj" in objectives else "PEs"
    if pareto_png(totals, front, out / "pareto.png", f"{sweep_file.stem}: cycles vs {versus}", objectives):
        print(f"plot: {out / 'pareto.png'}")
    failed = [r for r in rows if r.get("verified") == "FAIL"]
    return 1 if failed else 0
