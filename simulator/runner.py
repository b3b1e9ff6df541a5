"""What ``convsim run`` and ``convsim golden`` do, for a single layer or every layer of a network.

Models no hardware: loads the config, picks golden tensors when a golden case exists (so the comparison is like
for like), calls :func:`simulator.pipeline.simulate_layer`, writes results atomically and prints the verdict.

Layout of a run directory (default ``runs/<name>/``): ``ofmap.npy``, ``report.json``, ``trace.json``
(``--trace``), ``dumps/``; a network gets one such set per layer under ``<layer>/`` plus a ``report.json`` of
totals. Golden cases live at ``<golden-dir>/<name>/`` (single layer) or ``<golden-dir>/<name>/<layer>/``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from simulator.compare import compare
from simulator.config import LayerConfig, SimConfig, load_config
from simulator.data import LayerTensors, make_tensors
from simulator.files import atomic_write_bytes as write_bytes
from simulator.files import atomic_write_json, check_writable_dir, npy_bytes, staged_directory
from simulator.golden import case_differences, case_files, check_case_matches, load_case, write_case
from simulator.pipeline import STAGE_NAMES, SimResult, simulate_layer
from simulator.report import LayerReport, chrome_trace, network_table, network_totals

EXIT_OK, EXIT_MISMATCH = 0, 1


def layer_dirs(cfg: SimConfig, base: Path) -> list[tuple[int, LayerConfig, Path]]:
    """(index, layer, directory) per layer: ``base`` itself for a single layer, ``base/<layer>`` in a network."""
    if not cfg.is_network:
        return [(0, cfg.layer, base)]
    return [(i, layer, base / layer.name) for i, layer in enumerate(cfg.layers)]


def _progress(i: int, total: int, what: str) -> None:
    if total > 1:
        print(f"[{i + 1}/{total}] {what}", file=sys.stderr, flush=True)


def run_config(config: Path, out: str | None, golden_dir: Path, dumps: bool = True, trace: bool = False,
               dump_tiles: int | None = None) -> int:
    cfg = load_config(config)
    run_dir = Path(out) if out else Path("runs") / cfg.name
    check_writable_dir(run_dir, "output directory")  # before simulating: never fail after the work is done
    verdicts: list[str] = []
    reports: list[LayerReport] = []
    # everything is built in a staging directory and moved into run_dir only when every layer has run
    with staged_directory(run_dir) as stage:
        entries = layer_dirs(cfg, stage)
        golden_entries = layer_dirs(cfg, golden_dir / cfg.name)
        previous: np.ndarray | None = None
        for (index, layer, layer_dir), (_, _, gold_dir) in zip(entries, golden_entries, strict=True):
            _progress(index, len(entries), f"layer {layer.name}")
            case = load_case(gold_dir)
            if case is not None:
                check_case_matches(case, gold_dir, layer, cfg.hardware.accumulator.on_overflow)
            tensors = case.tensors if case else make_tensors(
                cfg.layer_data(layer), layer, index if cfg.is_network else None)
            if layer.input == "previous" and previous is not None and layer.quant is not None:
                tensors = LayerTensors(previous, tensors.weight, tensors.bias)  # the chain: this run's own output
                print(f"{layer.name}: input = layer {cfg.layers[index - 1].name}'s int8 ofmap (scale "
                      f"{layer.quant.input.scale!r}, zero_point {layer.quant.input.zero_point})")
            observer = None
            if dumps:
                from simulator.dump import DumpWriter

                observer = DumpWriter(layer_dir / "dumps", cfg.hardware, max_tiles=dump_tiles)
            result = simulate_layer(layer, cfg.hardware, cfg.engine.transposed_conv, tensors, observer)
            if observer is not None:
                observer.finish(result)
            _write_run(layer_dir, result, trace)
            previous = result.ofmap
            reports.append(result.report)
            if not cfg.is_network:  # a network prints one row per layer at the end instead
                print(result.report.table())
            if case is None:
                verdicts.append("NO GOLDEN")
                print(f"{layer.name}: no golden case at {gold_dir} (run `convsim golden {config}`)")
                continue
            cmp = compare(case.ofmap, result.ofmap)  # type: ignore[arg-type]
            acc_cmp = compare(case.acc, result.acc) if case.acc is not None and result.acc is not None else None
            ok = cmp.equal and (acc_cmp is None or acc_cmp.equal)
            verdicts.append("PASS" if ok else "FAIL")
            what = " (int8 ofmap and int32 accumulators)" if acc_cmp is not None else ""
            print(f"{layer.name}: {'PASS' if ok else 'FAIL'} against {gold_dir}{what}")
            if not cmp.equal:
                print(cmp.report())
            if acc_cmp is not None and not acc_cmp.equal:
                print(acc_cmp.report("accumulators"))
        if cfg.is_network:
            _write_network(cfg, stage, reports, verdicts)
    return EXIT_MISMATCH if "FAIL" in verdicts else EXIT_OK


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


def _write_run(layer_dir: Path, result: SimResult, trace: bool) -> None:
    write_bytes(layer_dir / "ofmap.npy", npy_bytes(result.ofmap))  # type: ignore[arg-type]
    if result.acc is not None:  # a quantized layer: its int32 accumulators too
        write_bytes(layer_dir / "acc.npy", npy_bytes(result.acc))
    atomic_write_json(layer_dir / "report.json", result.report.to_dict())
    if trace:
        atomic_write_json(layer_dir / "trace.json",
                          chrome_trace(result.events, STAGE_NAMES, result.report.clock_mhz, result.layer.name))


def golden_configs(configs: list[Path], golden_dir: Path, check: bool = False) -> int:
    """Generate (or ``check``) the golden case of every config: ``golden_dir/<name>/``, one subdirectory per layer
    for a network. The whole case of one config is written atomically; ``check`` writes nothing."""
    differences = 0
    for i, config in enumerate(configs):
        _progress(i, len(configs), f"{config}")
        cfg = load_config(config)
        if not check:
            check_writable_dir(golden_dir, "golden directory")
        case_dir = golden_dir / cfg.name
        files: dict[str, bytes] = {}
        previous: np.ndarray | None = None
        for index, layer, rel in layer_dirs(cfg, Path()):
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
