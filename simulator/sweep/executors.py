"""Evaluating sweep points: one point with the cycle model, and the executors that run many in parallel.

A point is evaluated by the same pipeline as ``convsim run`` (timing only by default; ``verify`` also computes the
values and checks golden) and gives one row per layer. Distribution is never home-made: the ``local`` executor is
a ``concurrent.futures.ProcessPoolExecutor`` over the machine's cores, the ``ray`` executor submits Ray tasks (Ray
is an optional dependency, imported only there). Workers receive a picklable payload and return rows or the one
line of a failure; Ctrl-C cancels what is queued. Ignores where results go: the caller's ``done`` callback records
them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

from simulator.config import SimConfig
from simulator.errors import ConvsimError
from simulator.sweep.spec import pes, sram_bytes

Executor = Literal["local", "ray"]
MAX_WORKERS = max(2, os.cpu_count() or 1)  # the work is CPU-bound: more processes than cores only cost memory


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
    ray = require_ray()
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



def require_ray() -> Any:
    """The ``ray`` module, or one line saying how to install it (Ray is an optional dependency)."""
    try:
        import ray
    except ImportError:
        raise ConvsimError("--executor ray needs Ray: pip install 'convsim[ray]'") from None
    return ray
