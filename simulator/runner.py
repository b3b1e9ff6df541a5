"""What ``convsim run`` and ``convsim golden`` do, for a single layer or every layer of a network.

Models no hardware: loads the config, picks golden tensors when a golden case exists (so the comparison is like
for like), calls :func:`simulator.pipeline.simulate_layer`, writes results atomically and prints the verdict.

Layout of a run directory (default ``runs/<name>/``): ``ofmap.npy``, ``report.json``, ``trace.json``
(``--trace``), ``dumps/``; a network gets one such set per layer under ``<layer>/`` plus a ``report.json`` of
totals. Golden cases live at ``<golden-dir>/<name>/`` (single layer) or ``<golden-dir>/<name>/<layer>/``.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from simulator import progress
from simulator.compare import compare
from simulator.config import LayerConfig, SimConfig, load_config
from simulator.data import LayerTensors, make_tensors
from simulator.dump import DEFAULT_BUDGET_BYTES, MAX_DUMP_BYTES, DumpWriter, compact
from simulator.errors import ConvsimError
from simulator.files import atomic_write_bytes as write_bytes
from simulator.files import atomic_write_json, check_writable_dir, npy_bytes, staged_directory
from simulator.golden import (
    MANIFEST,
    GoldenCase,
    case_differences,
    case_files,
    check_case_matches,
    check_reference_fits,
    load_case,
    require_torch,
    write_case,
)
from simulator.pipeline import STAGE_NAMES, SimResult, simulate_layer
from simulator.report import LayerReport, chrome_trace, network_table, network_totals
from simulator.verdicts import Verdict

EXIT_OK, EXIT_MISMATCH = 0, 1
DEFAULT_GOLDEN_DIR = "golden"


def layer_dirs(cfg: SimConfig, base: Path) -> list[tuple[int, LayerConfig, Path]]:
    """(index, layer, directory) per layer: ``base`` itself for a single layer, ``base/<layer>`` in a network."""
    if not cfg.is_network:
        return [(0, cfg.layer, base)]
    return [(i, layer, base / layer.name) for i, layer in enumerate(cfg.layers)]


def check_run_dir(run_dir: Path, golden_dir: Path, name: str, entries: dict[str, bool]) -> None:
    """Before simulating: ``run_dir`` must be creatable, must not be the golden directory or (inside) a golden
    case, and the entries the run replaces (name -> is a directory) must not be symbolic links (replacing a link
    would write somewhere the user did not name) nor of the other kind (a file where a directory goes: the move
    into place would fail after the work is done)."""
    check_writable_dir(run_dir, "output directory")
    run_abs, gold_abs = Path(os.path.abspath(run_dir)), Path(os.path.abspath(golden_dir))
    case_abs = gold_abs / name
    in_case = any((p / MANIFEST).is_file() for p in (run_abs, *run_abs.parents))
    if run_abs in (gold_abs, case_abs) or case_abs in run_abs.parents or in_case:
        raise ConvsimError(f"--out {run_dir}: is the golden directory {golden_dir} or a golden case in it (a run "
                           "never writes into golden cases; choose another --out)")
    for entry, is_dir in entries.items():
        path = run_dir / entry
        if path.is_symlink():
            raise ConvsimError(f"--out {run_dir}: {entry} is a symbolic link; a run replaces {entry}, remove the "
                               "link or choose another --out")
        if path.exists() and path.is_dir() != is_dir:
            raise ConvsimError(f"--out {run_dir}: {entry} is a {'file' if is_dir else 'directory'}, the run writes "
                               f"a {'directory' if is_dir else 'file'} there; remove it or choose another --out")


def _no_golden_hint(config: Path, golden_dir: Path) -> str:
    flag = "" if golden_dir == Path(DEFAULT_GOLDEN_DIR) else f" --golden-dir {golden_dir}"
    return f"create it with `convsim golden {config}{flag}`, or run with --no-compare"


def run_config(config: Path, out: str | None, golden_dir: Path, dumps: bool = True, trace: bool = False,
               dump_tiles: int | None = None, compare_golden: bool = True, runs_root: Path = Path("runs")
               ) -> list[Verdict]:
    """Simulate every layer of ``config``, write the run directory (``out``, default ``runs_root/<name>``) and
    return one verdict per layer."""
    cfg = load_config(config)
    run_dir = Path(out) if out else runs_root / cfg.name
    names = ({**{layer.name: True for layer in cfg.layers}, "report.json": False} if cfg.is_network
             else {"ofmap.npy": False, "acc.npy": False, "report.json": False, "trace.json": False, "dumps": True})
    check_run_dir(run_dir, golden_dir, cfg.name, names)  # before simulating: never fail after the work is done
    verdicts: list[Verdict] = []
    reports: list[LayerReport] = []
    # everything is built in a staging directory and moved into run_dir only when every layer has run
    with staged_directory(run_dir) as stage:
        entries = layer_dirs(cfg, stage)
        golden_entries = layer_dirs(cfg, golden_dir / cfg.name)
        pairs = list(zip(entries, golden_entries, strict=True))
        previous: np.ndarray | None = None
        for (index, layer, layer_dir), (_, _, gold_dir) in progress.bar(pairs, len(pairs), f"{cfg.name}", "layer"):
            started = time.perf_counter()
            case = load_case(gold_dir) if compare_golden else None
            if case is not None:
                check_case_matches(case, gold_dir, layer, cfg.hardware.accumulator.on_overflow)
            tensors = case.tensors if case else make_tensors(cfg.layer_data(layer), layer,
                                                             index if cfg.is_network else None)
            if layer.input == "previous" and previous is not None and layer.quant is not None:
                tensors = LayerTensors(previous, tensors.weight, tensors.bias)  # the chain: this run's own output
                print(f"{layer.name}: input = layer {cfg.layers[index - 1].name}'s int8 ofmap (scale "
                      f"{layer.quant.input.scale!r}, zero_point {layer.quant.input.zero_point})")
            result = _simulate(cfg, layer, tensors, layer_dir / "dumps" if dumps else None, dump_tiles)
            verdict = _verdict(config, cfg, layer, case, result, gold_dir, golden_dir, compare_golden)
            verdicts.append(Verdict(**{**verdict.to_dict(), "seconds": time.perf_counter() - started}))
            _write_run(layer_dir, result, trace, verdict)
            previous = result.ofmap
            reports.append(result.report)
        if cfg.is_network:
            _write_network(cfg, stage, reports, [v.outcome for v in verdicts])
    return verdicts


def _simulate(cfg: SimConfig, layer: LayerConfig, tensors: LayerTensors, dumps: Path | None,
              dump_tiles: int | None) -> SimResult:
    """One layer through the pipeline, with its dumps (into ``dumps``) and a tile bar on a terminal; prints the
    layer's table (a network prints one row per layer at the end instead) and any truncation of its dumps."""
    writer = DumpWriter(dumps, cfg.hardware, max_tiles=dump_tiles) if dumps is not None else None
    observer = progress.TileProgress(layer.name, writer) if progress.enabled() else writer
    try:
        result = simulate_layer(layer, cfg.hardware, cfg.engine.transposed_conv, tensors, observer)
    finally:
        if isinstance(observer, progress.TileProgress):
            observer.close()
    if writer is not None:
        writer.finish(result)
    if not cfg.is_network:
        print(result.report.table())
    if writer is not None and writer.skipped_tiles:
        tiles = len(result.plan.tiles)
        print(f"{layer.name}: dumps truncated: {len(writer.dumped)} of {tiles} tiles dumped (tiles "
              f"{compact(writer.dumped)}; the {DEFAULT_BUDGET_BYTES >> 20} MiB per-layer budget; --dump-tiles N "
              "chooses)" if dump_tiles is None else
              f"{layer.name}: dumps: first {len(writer.dumped)} of {tiles} tiles (--dump-tiles {dump_tiles}, at "
              f"most {MAX_DUMP_BYTES >> 30} GiB per layer)")
    return result


def _verdict(config: Path, cfg: SimConfig, layer: LayerConfig, case: GoldenCase | None, result: SimResult,
             gold_dir: Path, golden_dir: Path, compare_golden: bool) -> Verdict:
    """Compare with the golden case (if any) and print the layer's verdict line (and scoreboard on FAIL)."""
    common = {"config": str(config), "name": cfg.name, "layer": layer.name, "cycles": result.report.cycles}
    if not compare_golden:
        print(f"{layer.name}: NOT COMPARED (--no-compare)")
        return Verdict(**common, outcome="NOT COMPARED", detail="--no-compare")
    if case is None:
        detail = f"no golden case at {gold_dir} ({_no_golden_hint(config, golden_dir)})"
        print(f"{layer.name}: NO GOLDEN: {detail}")
        return Verdict(**common, outcome="NO GOLDEN", detail=detail, golden=str(gold_dir))
    cmp = compare(case.ofmap, result.ofmap)  # type: ignore[arg-type]
    acc_cmp = compare(case.acc, result.acc) if case.acc is not None and result.acc is not None else None
    ok = cmp.equal and (acc_cmp is None or acc_cmp.equal)
    what = " (int8 ofmap and int32 accumulators)" if acc_cmp is not None else ""
    print(f"{layer.name}: {'PASS' if ok else 'FAIL'} against {gold_dir}{what}")
    if ok:
        return Verdict(**common, outcome="PASS", golden=str(gold_dir))
    reports = [cmp.report()] if not cmp.equal else []
    if acc_cmp is not None and not acc_cmp.equal:
        reports.append(acc_cmp.report("accumulators"))
    print("\n".join(reports))
    return Verdict(**common, outcome="FAIL", detail="\n".join(reports), golden=str(gold_dir))


def _write_network(cfg: SimConfig, run_dir: Path, reports: list[LayerReport], verdicts: list[str]) -> None:
    num_pes = cfg.hardware.mac_array.rows * cfg.hardware.mac_array.cols
    print(f"network {cfg.name}:")
    print(network_table(reports, verdicts, num_pes))
    layers: list[dict[str, Any]] = [
        {**{k: v for k, v in r.to_dict().items() if k != "stages"}, "verdict": v, "report": f"{r.layer}/report.json"}
        for r, v in zip(reports, verdicts, strict=True)]
    for i, (entry, layer) in enumerate(zip(layers, cfg.layers, strict=True)):
        if layer.input == "previous":  # the chain: this layer read the previous layer's int8 ofmap
            entry["input"] = f"previous: {cfg.layers[i - 1].name}"
    atomic_write_json(run_dir / "report.json", {"name": cfg.name, "method": cfg.engine.transposed_conv,
                                                "totals": network_totals(reports, num_pes), "layers": layers})


def _write_run(layer_dir: Path, result: SimResult, trace: bool, verdict: Verdict) -> None:
    write_bytes(layer_dir / "ofmap.npy", npy_bytes(result.ofmap))  # type: ignore[arg-type]
    if result.acc is not None:  # a quantized layer: its int32 accumulators too
        write_bytes(layer_dir / "acc.npy", npy_bytes(result.acc))
    atomic_write_json(layer_dir / "report.json", {**result.report.to_dict(), "verdict": verdict.outcome,
                                                  "golden": verdict.golden})
    if trace:
        atomic_write_json(layer_dir / "trace.json",
                          chrome_trace(result.events, STAGE_NAMES, result.report.clock_mhz, result.layer.name))


def golden_configs(configs: list[Path], golden_dir: Path, check: bool = False) -> int:
    """Generate (or ``check``) the golden case of every config: ``golden_dir/<name>/``, one subdirectory per layer
    for a network. The whole case of one config is written atomically; ``check`` writes nothing.

    Every config is loaded first, so a bad config or two configs of the same ``name:`` (one case would overwrite
    the other) are refused before anything is computed or written."""
    require_torch()
    loaded = [(config, load_config(config)) for config in configs]
    seen: dict[str, Path] = {}
    for config, cfg in loaded:
        if cfg.name in seen:
            raise ConvsimError(f"{config}: name {cfg.name!r} is also the name of {seen[cfg.name]}; both golden cases "
                               f"would be {golden_dir / cfg.name} (give one another name)")
        seen[cfg.name] = config
    for _, cfg in loaded:  # before any torch work: every layer's reference must fit
        for layer in cfg.layers:
            check_reference_fits(layer)
    if not check:
        check_writable_dir(golden_dir, "golden directory")
        for _, cfg in loaded:
            case_dir = golden_dir / cfg.name
            if case_dir.is_symlink() or (case_dir.exists() and not case_dir.is_dir()):
                raise ConvsimError(f"golden case {case_dir}: is not a directory (a file or a link); remove it, a "
                                   "golden case is written as a directory")
    differences = 0
    for i, (config, cfg) in enumerate(progress.bar(loaded, len(loaded), "golden", "config")):
        progress.announce(i, len(loaded), str(config))
        case_dir = golden_dir / cfg.name
        files: dict[str, bytes] = {}
        previous: np.ndarray | None = None
        for index, layer, rel in progress.bar(layer_dirs(cfg, Path()), len(cfg.layers), cfg.name, "layer"):
            chained = previous if layer.input == "previous" else None
            layer_files = case_files(cfg, layer, index if cfg.is_network else None, config_dir=config.parent,
                                     ifmap=chained)
            files.update({(rel / name).as_posix(): data for name, data in layer_files.items()})
            previous = np.load(io.BytesIO(layer_files["ofmap.npy"]), allow_pickle=False)
        if not check:
            write_case(case_dir, files)
            print(f"{case_dir}: written ({len(files)} files, {sum(map(len, files.values())):,} bytes)")
            continue
        changed = case_differences(case_dir, files)
        if changed:
            differences += 1
            print(f"{case_dir}: differs from regeneration: {'; '.join(changed)}")
        else:
            print(f"{case_dir}: up to date")
    if check and differences:
        print(f"{differences} of {len(configs)} golden cases differ (regenerate with `convsim golden`)")
    return EXIT_MISMATCH if differences else EXIT_OK
