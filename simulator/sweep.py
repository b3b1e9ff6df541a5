"""Design-space sweeps: a grid of config overrides, evaluated in parallel, with resumable results.

Models no hardware: it varies the hardware/engine description by dotted path (e.g.
``hardware.mac_array.rows: [8, 16, 32]``), validates every point up front (an invalid point is reported, not
run), evaluates the valid ones with the cycle model (timing only by default; ``--verify`` also runs the values
and checks golden), and records one row per (point, layer). The Pareto front minimises the sweep's
``objectives`` (default cycles, PEs, SRAM bytes; ``energy_pj`` makes energy one of them).

Distribution is never home-made: the ``local`` executor is a ``concurrent.futures.ProcessPoolExecutor`` over the
machine's cores, the ``ray`` executor submits Ray tasks (Ray is an optional dependency, imported only there).

Durability: each finished point is appended to ``results.jsonl`` as one line (one ``write`` of a complete line,
flushed and fsynced), so a killed sweep loses at most the points in flight; ``--resume`` skips the points already
there (a torn last line is ignored). ``results.csv`` and ``pareto.csv`` are rewritten atomically from the JSONL,
sorted by point and layer, so two runs of the same sweep give identical tables whatever the executor or order.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import itertools
import json
import math
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator import progress
from simulator.config import (
    LayerConfig,
    SimConfig,
    config_from_mapping,
    format_validation_error,
    read_config_mapping,
)
from simulator.energy import fmt_nj
from simulator.errors import ConfigError, ConvsimError
from simulator.files import atomic_write_bytes, atomic_write_text, check_writable_dir, ensure_dir
from simulator.inputs import read_bytes

Executor = Literal["local", "ray"]
MAX_POINTS = 10_000  # grid points of one sweep (counted before any is built)
MAX_POINT_LAYERS = 100_000  # points x layers of the base config: each is validated and evaluated
MAX_WORKERS = max(2, os.cpu_count() or 1)  # the work is CPU-bound: more processes than cores only cost memory
MAX_RESULTS_BYTES = 1 << 30


class Constraints(BaseModel):
    """Points outside these limits are reported as excluded, not run."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_pes: int | None = Field(default=None, ge=1)
    min_pes: int | None = Field(default=None, ge=1)
    max_sram_bytes: int | None = Field(default=None, ge=1)


Objective = Literal["cycles", "energy_pj", "pes", "sram_bytes"]


class SweepSpec(BaseModel):
    """The sweep file: a base config (path relative to the sweep file), a grid, constraints, and the objectives
    the Pareto front minimises (totals over the point's layers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    base: str
    grid: dict[str, list[Any]] = Field(min_length=1)
    constraints: Constraints = Constraints()
    objectives: tuple[Objective, ...] = Field(default=("cycles", "pes", "sram_bytes"), min_length=1)


@dataclass(frozen=True)
class Point:
    index: int
    overrides: dict[str, Any]
    config: SimConfig | None
    problem: str | None

    @property
    def key(self) -> str:
        return json.dumps(self.overrides, sort_keys=True)


# ------------------------------------------------------------------------------------------------ points (pure)


def set_dotted(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``raw`` with ``a.b.c`` set to ``value`` (intermediate mappings created as needed)."""
    out = dict(raw)
    head, _, rest = path.partition(".")
    if not rest:
        out[head] = value
        return out
    inner = out.get(head)
    out[head] = set_dotted(inner if isinstance(inner, dict) else {}, rest, value)
    return out


def pes(cfg: SimConfig) -> int:
    return cfg.hardware.mac_array.rows * cfg.hardware.mac_array.cols


def sram_bytes(cfg: SimConfig) -> int:
    s = cfg.hardware.sram
    return s.ifmap.size_bytes + s.weight.size_bytes + s.psum.size_bytes


def _constraint_problem(cfg: SimConfig, c: Constraints) -> str | None:
    if c.max_pes is not None and pes(cfg) > c.max_pes:
        return f"excluded: {pes(cfg)} PEs > constraints.max_pes={c.max_pes}"
    if c.min_pes is not None and pes(cfg) < c.min_pes:
        return f"excluded: {pes(cfg)} PEs < constraints.min_pes={c.min_pes}"
    if c.max_sram_bytes is not None and sram_bytes(cfg) > c.max_sram_bytes:
        return f"excluded: {sram_bytes(cfg):,} SRAM bytes > constraints.max_sram_bytes={c.max_sram_bytes:,}"
    return None


def expand(spec: SweepSpec, base_raw: dict[str, Any], base_dir: Path) -> list[Point]:
    """Every grid point in a fixed order (the grid's keys in file order, values in list order), validated."""
    keys = list(spec.grid)
    points = []
    for index, values in enumerate(itertools.product(*(spec.grid[k] for k in keys))):
        overrides = dict(zip(keys, values, strict=True))
        raw = base_raw
        for path, value in overrides.items():
            raw = set_dotted(raw, path, value)
        try:
            cfg = config_from_mapping(raw, base_dir, source=f"point {index}")
        except ConfigError as exc:
            points.append(Point(index, overrides, None, str(exc)))
            continue
        points.append(Point(index, overrides, cfg, _constraint_problem(cfg, spec.constraints)))
    return points


# ------------------------------------------------------------------------------------------- one point (worker)


def evaluate(cfg: SimConfig, verify: bool, golden_dir: str | None) -> list[dict[str, Any]]:
    """One row per layer: the cycle model's totals (and, with ``verify``, the golden verdict)."""
    from simulator.compare import compare
    from simulator.data import make_tensors
    from simulator.golden import load_case
    from simulator.pipeline import simulate_layer
    from simulator.runner import layer_dirs

    rows = []
    gold_root = Path(golden_dir or "golden") / cfg.name
    for index, layer, gold in layer_dirs(cfg, gold_root):
        tensors = verdict = None
        if verify:
            case = load_case(gold)
            tensors = case.tensors if case else make_tensors(
                cfg.layer_data(layer), layer, index if cfg.is_network else None)
        result = simulate_layer(layer, cfg.hardware, cfg.engine.transposed_conv, tensors)
        if verify:
            verdict = "NO GOLDEN" if case is None else ("PASS" if compare(case.ofmap, result.ofmap).equal else "FAIL")
        r = result.report
        rows.append({
            "layer": layer.name, "method": r.method, "pes": pes(cfg), "sram_bytes": sram_bytes(cfg),
            "cycles": r.cycles, "time_us": r.time_us, "macs_issued": r.macs_issued, "macs_useful": r.macs_useful,
            "utilization_issued": r.utilization_issued, "utilization_useful": r.utilization_useful,
            "dram_read_bytes": r.dram_read_bytes, "dram_write_bytes": r.dram_write_bytes,
            "sram_read_bytes": sum(sum(s.sram_read_bytes.values()) for s in r.stages),
            "sram_write_bytes": sum(sum(s.sram_write_bytes.values()) for s in r.stages),
            "peak_sram_bytes": sum(r.peak_sram_bytes.values()), "num_tiles": r.num_tiles, "verified": verdict,
            "energy_pj": r.energy_pj, "energy_fj": r.energy_fj,
        })
    return rows


Payload = tuple[int, SimConfig, bool, str | None]


def _evaluate_payload(payload: Payload) -> tuple[int, list[dict[str, Any]] | str]:
    """Picklable worker entry: (point index, config, verify, golden dir) -> (index, rows or error)."""
    index, cfg, verify, golden_dir = payload
    try:
        return index, evaluate(cfg, verify, golden_dir)
    except ConvsimError as exc:
        return index, f"failed: {exc}"


# -------------------------------------------------------------------------------------------------- executors


Done = Callable[[int, list[dict[str, Any]] | str], None]


def run_local(payloads: list[Payload], done: Done, workers: int | None = None) -> None:
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers or os.cpu_count() or 1, len(payloads))))
    try:
        futures = [pool.submit(_evaluate_payload, p) for p in payloads]
        for fut in as_completed(futures):
            done(*fut.result())
    except BaseException:  # Ctrl-C or a failure: drop the queued points, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_ray(payloads: list[Payload], done: Done, address: str | None) -> None:
    try:
        import ray
    except ImportError:
        raise ConvsimError("--executor ray needs Ray: pip install 'convsim[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        # Ctrl-C while Ray starts its processes would orphan the ones already started: hold it until init returns
        with _deferred_interrupt() as interrupted:
            try:
                ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                _shutdown_quietly(ray)
                raise ConvsimError(f"--address {address}: cannot connect to Ray ({exc})".splitlines()[0]) from None
        if interrupted:
            _shutdown_quietly(ray)
            raise KeyboardInterrupt
    try:
        task = ray.remote(_evaluate_payload)
        pending = [task.remote(p) for p in payloads]
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                done(*ray.get(ready[0]))
        except BaseException:  # Ctrl-C: cancel what is queued before the runtime shuts down
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            _shutdown_quietly(ray)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[list[bool]]:
    """SIGINT is recorded (the yielded list gets an entry) instead of raised, until the block ends."""
    seen: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(True))
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _shutdown_quietly(ray: Any) -> None:
    """Stop the Ray runtime this process started; a second Ctrl-C must not interrupt the shutdown itself."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        with contextlib.suppress(Exception):
            ray.shutdown()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------------------------------- results

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


# ------------------------------------------------------------------------------------------------- the command


def load_spec(path: Path) -> tuple[SweepSpec, dict[str, Any], Path]:
    raw, _ = read_config_mapping(path, "sweep file")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    check_grid(spec.grid, path)
    base_path = path.parent / spec.base
    base_raw, base_dir = read_config_mapping(base_path, "base config")
    layers = len(base_raw["layers"]) if isinstance(base_raw.get("layers"), list) else 1
    points = math.prod(len(v) for v in spec.grid.values())
    if points * layers > MAX_POINT_LAYERS:
        raise ConfigError(f"{path}: {points:,} points x {layers:,} layers of {base_path} = {points * layers:,} layer "
                          f"evaluations, more than the {MAX_POINT_LAYERS:,} a sweep runs")
    return spec, base_raw, base_dir


def _grid_key_problem(key: str) -> str | None:
    """Why ``key`` (``hardware.mac_array.rows``) names no config field, or None when it does."""
    model: Any = SimConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = {name: f.annotation for name, f in model.model_fields.items()}
        if model is SimConfig:  # a single-layer config's `layer:`; `layers:` is a list, not addressable by key
            del fields["layers"], fields["is_network"]
            fields["layer"] = LayerConfig
        if part not in fields:
            where = ".".join(parts[:depth]) or "the config"
            close = difflib.get_close_matches(part, sorted(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {'.'.join([*parts[:depth], close[0]])!r}?)" if close else ""
            return f"{part!r} is not a key of {where}{hint}"
        annotation = fields[part]
        if typing.get_origin(annotation) is dict:  # a mapping field (e.g. hardware.energy.buffers): keys below it
            return None  # are checked when each point is validated
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth < len(parts) - 1 and not is_model:
            return f"{'.'.join(parts[:depth + 1])} is a value, it has no key {parts[depth + 1]!r}"
        if depth == len(parts) - 1 and is_model:
            return f"{key} is a section; name one of its keys ({', '.join(annotation.model_fields)})"
        model = annotation
    return None


def check_grid(grid: dict[str, list[Any]], path: Path) -> int:
    """Refuse, before anything is built, grid keys that name no config field, empty value lists and grids of
    more than MAX_POINTS points; return the number of points."""
    for key, values in grid.items():
        problem = _grid_key_problem(key)
        if problem:
            raise ConfigError(f"{path}: grid.{key}: {problem}")
        if not values:
            raise ConfigError(f"{path}: grid.{key}: empty list of values (every key needs at least one)")
    count = math.prod(len(v) for v in grid.values())
    if count > MAX_POINTS:
        raise ConfigError(f"{path}: grid has {count:,} points ({' x '.join(str(len(v)) for v in grid.values())}), "
                          f"more than the {MAX_POINTS:,} a sweep runs; split it or use fewer values")
    return count


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
        _require_ray()
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


def read_jsonl_quiet(path: Path) -> dict[int, dict[str, Any]]:
    try:
        return read_jsonl(path)
    except ConvsimError:
        return {}


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConvsimError("--executor ray needs Ray: pip install 'convsim[ray]'") from None


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
