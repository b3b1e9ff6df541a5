"""convsim speed and memory benchmark (issue 7): the simulator against torch float64 on the reference layers.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench.py [--out benchmarks/results.json] [--quick]

For every reference layer and both transposed-conv methods (``swell``, ``phase``) it measures, in this process
and on the same int8 tensors:

- ``sim``: :func:`simulator.pipeline.simulate_layer` with values and the cycle model on, dumps off (median of
  ``--repeats`` runs after one warm-up);
- ``torch_ct``: torch float64 ``conv_transpose2d`` of the layer (tensors converted to float64 beforehand);
- ``torch_conv``: torch float64 ``conv2d`` over the swelled ifmap (zero insertion + border, built here with numpy)
  with the flipped, per-group channel-swapped weight: the work the modelled MAC array really does;
- the simulator's peak RSS over its baseline, measured in a fresh subprocess per (layer, method).

Targets (see docs/performance.md): swell <= 1.5x torch_conv and phase <= 2x torch_ct on layers of >= 1 MMAC;
the seed cases a few ms; ``convsim run --no-dumps`` on the U-Net layer <= 300 MB peak RSS; ``convsim run`` of
seed case 1 <= 1.0 s whole process, with torch never imported; time linear in MACs (the scaling series).

The simulator's ofmap is checked bit-exactly against torch on every layer, so a fast wrong engine fails loudly.
Not a test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _threads_from_argv() -> int:
    """--threads N (default 1), read before numpy is imported: OpenBLAS sizes its thread pool at import."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


THREADS = _threads_from_argv()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)  # also inherited by the child processes measured below

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.config import LayerConfig, load_config  # noqa: E402
from simulator.data import make_tensors  # noqa: E402
from simulator.pipeline import simulate_layer  # noqa: E402

REFERENCE = [
    "configs/seed_case1.yaml",
    "configs/seed_case2.yaml",
    "configs/dcgan_512_256.yaml",
    "configs/dcgan_256_128.yaml",
    "configs/dcgan_128_64.yaml",
    "configs/unet_up_128_64.yaml",
    "benchmarks/configs/scale_256_128_64.yaml",  # the large layer (~2.1 GMAC useful, 8.6 GMAC swelled)
    "benchmarks/configs/ct_512_256_64.yaml",  # issue 15: refused before (~8.6 GMAC useful, 34 GMAC swelled)
    "benchmarks/configs/ct_512_256_64_64k.yaml",  # the same on 64 KiB buffers: input-channel and width tiles
]
LARGE = ("benchmarks/configs/scale_256_128_64.yaml", "benchmarks/configs/scale_256_128_32_n4.yaml",
         "benchmarks/configs/ct_512_256_64.yaml", "benchmarks/configs/ct_512_256_64_64k.yaml")  # left out by --quick
SCALING = [f"benchmarks/configs/scale_256_128_{h}.yaml" for h in ("16", "32", "64", "32_n4")]
# (from, to, what grows): the ~4x-MACs steps the linear-scaling target is checked on
SCALING_STEPS = [("scale_256_128_16", "scale_256_128_32", "map 16->32"),
                 ("scale_256_128_32", "scale_256_128_64", "map 32->64"),
                 ("scale_256_128_32", "scale_256_128_32_n4", "batch 1->4")]
METHODS = ("swell", "phase")
TARGET_SWELL, TARGET_PHASE = 1.5, 2.0  # x torch conv2d over the swelled ifmap / x torch conv_transpose2d
TARGET_MIN_MACS = 1_000_000
TARGET_SEED_MS = 5.0
TARGET_RUN_S = 1.0
TARGET_RSS_MB = 300.0
TARGET_SCALING = 4.4  # "<= ~4x" time per 4x MACs, with 10 % for "~"
TARGET_PLAN_MS = 50.0  # the tile planner's search, per layer and method (building the chosen tiles excluded)


# ------------------------------------------------------------------------------------------------ measurement


def timed_rounds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times in ms of each function over ``repeats`` rounds, after one warm-up call each.

    The functions are timed in interleaved rounds (a, b, c, a, b, c, ...) so that on a shared machine a burst of
    load from elsewhere falls on all of them alike, and the ratios stay meaningful.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num/den measured back to back in the same round: the machine's speed drifts by
    up to 2x over seconds on this shared host, and a ratio of neighbours cancels the drift."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def swelled_operands(layer: LayerConfig, ifmap: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The swelled ifmap (N, C, H', W') and the conv weight (C_out, C_in/g, kh, kw), built with numpy here.

    Per axis: input i lands at q + i*s, q = d*(k-1) - p (negative: crop), length (H-1)*s + 1 + 2q + op.
    """
    n, c, h, w = ifmap.shape
    size, pos = [], []
    for axis, extent in enumerate((h, w)):
        k, s, p, d = (layer.kernel_size[axis], layer.stride[axis], layer.padding[axis], layer.dilation[axis])
        q = d * (k - 1) - p
        length = (extent - 1) * s + 1 + 2 * q + layer.output_padding[axis]
        size.append(length)
        pos.append(q + np.arange(extent) * s)
    keep_h = (pos[0] >= 0) & (pos[0] < size[0])
    keep_w = (pos[1] >= 0) & (pos[1] < size[1])
    swelled = np.zeros((n, c, size[0], size[1]), dtype=ifmap.dtype)
    swelled[:, :, pos[0][keep_h][:, None], pos[1][keep_w][None, :]] = ifmap[:, :, keep_h][:, :, :, keep_w]
    g = layer.groups
    cin, cout_g, kh, kw = weight.shape
    # (G*Cin_g, Cout_g, kh, kw) -> (G, Cout_g, Cin_g, kh, kw), flipped -> (C_out, Cin_g, kh, kw)
    conv_w = weight.reshape(g, cin // g, cout_g, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return swelled, np.ascontiguousarray(conv_w.reshape(g * cout_g, cin // g, kh, kw))


def bench_layer(config: str, repeats: int) -> list[dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    cfg = load_config(ROOT / config)
    layer = cfg.layer
    t = make_tensors(cfg.data, layer)
    x = torch.from_numpy(t.ifmap.astype(np.float64))
    w = torch.from_numpy(t.weight.astype(np.float64))
    xs_np, wc_np = swelled_operands(layer, t.ifmap, t.weight)
    xs, wc = torch.from_numpy(xs_np.astype(np.float64)), torch.from_numpy(wc_np.astype(np.float64))

    def ct() -> torch.Tensor:
        return F.conv_transpose2d(x, w, None, layer.stride, layer.padding, layer.output_padding, layer.groups,
                                  layer.dilation)

    def conv() -> torch.Tensor:
        return F.conv2d(xs, wc, None, 1, 0, layer.dilation, layer.groups)

    expected = ct().numpy()
    if not np.array_equal(conv().numpy(), expected):
        raise SystemExit(f"{config}: torch conv2d over the swelled ifmap differs from conv_transpose2d")
    expected = expected.astype(np.int64) + t.bias.astype(np.int64)[None, :, None, None]
    results = {method: simulate_layer(layer, cfg.hardware, method, t) for method in METHODS}
    for method, result in results.items():
        if not np.array_equal(result.ofmap, expected):
            raise SystemExit(f"{config} ({method}): simulator ofmap is not bit-exact against torch")
    fns: dict[str, Callable[[], object]] = {"torch_ct": ct, "torch_conv": conv}
    for method in METHODS:
        fns[method] = lambda m=method: simulate_layer(layer, cfg.hardware, m, t)
    rounds = timed_rounds(fns, repeats)
    ms = {name: statistics.median(ts) for name, ts in rounds.items()}
    torch_ct_ms, torch_conv_ms = ms["torch_ct"], ms["torch_conv"]
    rows = []
    for method, result in results.items():
        sim_ms = ms[method]
        baseline, target = ("torch_conv", TARGET_SWELL) if method == "swell" else ("torch_ct", TARGET_PHASE)
        macs = result.report.macs_useful
        ratio = paired_ratio(rounds[method], rounds[baseline])
        if macs >= TARGET_MIN_MACS:
            ok, target_text = ratio <= target, f"<= {target}x"
        else:
            ok, target_text = sim_ms <= TARGET_SEED_MS, f"<= {TARGET_SEED_MS:g} ms"
        rows.append({
            "config": config, "layer": layer.name, "method": method, "tiles": len(result.plan.tiles),
            "mmac_useful": macs / 1e6, "mmac_issued": result.report.macs_issued / 1e6,
            "mmac_swelled_conv": int(np.prod(expected.shape)) * wc_np[0].size / 1e6,
            "sim_ms": sim_ms, "torch_ct_ms": torch_ct_ms, "torch_conv_ms": torch_conv_ms,
            "ratio_vs_torch_conv": sim_ms / torch_conv_ms, "ratio_vs_torch_ct": sim_ms / torch_ct_ms,
            "ratio": ratio, "ratio_of_medians": sim_ms / ms[baseline], "sim_ms_min": min(rounds[method]),
            "target": target_text, "ok": bool(ok), "bit_exact": True,
            "cycles": result.report.cycles,
        })
    return rows


# Runs the command and reports its wall time and peak RSS. A shim, because Linux folds the RSS high-water mark of
# the forking process into a child's ru_maxrss at exec: measured from this (large) process, every child would
# look at least as big as the benchmark itself. The shim is small, so the number is the child's own.
SHIM = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); rc = subprocess.call(sys.argv[2:]); "
        "wall = time.perf_counter() - t; rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
        "open(sys.argv[1], 'w').write(json.dumps([rc, wall, rss]))")


def _spawn(argv: list[str]) -> tuple[float, float, str, str]:
    """Run a child process from the repository root; (wall s, peak RSS MB of the child, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        proc = subprocess.run([sys.executable, "-c", SHIM, str(stats), *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)
        if not stats.is_file():
            raise SystemExit(f"{' '.join(argv)}: shim failed:\n{proc.stderr}")
        rc, wall, rss_kib = json.loads(stats.read_text())
    if rc not in (0, 1):  # 1 = mismatch against a golden case: still a timing
        raise SystemExit(f"{' '.join(argv)} exited {rc}:\n{proc.stderr}")
    return wall, rss_kib / 1024, proc.stdout, proc.stderr  # ru_maxrss is in KiB on Linux


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB


def child_memory(config: str, method: str) -> None:
    """(in a fresh subprocess) RSS before, and peak RSS during, one simulate_layer; JSON on stdout."""
    cfg = load_config(ROOT / config)
    t = make_tensors(cfg.data, cfg.layer)
    baseline = _status_mb("VmRSS")
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark: VmHWM is then the simulation's own peak (Linux >= 4.0)
    simulate_layer(cfg.layer, cfg.hardware, method, t)
    peak = _status_mb("VmHWM")
    print(json.dumps({"baseline_rss_mb": baseline, "peak_rss_mb": peak, "delta_rss_mb": max(0.0, peak - baseline)}))


def memory(config: str, method: str) -> dict[str, float]:
    _, _, stdout, _ = _spawn([sys.executable, str(Path(__file__).resolve()), "--child-memory", config, method])
    return json.loads(stdout)


CURVE_SIZES = (16, 24, 32, 40, 48, 56, 64, 80, 96)  # input H = W of the curve (--curve)


def curve(repeats: int) -> list[dict[str, Any]]:
    """Simulator time alone (no torch) of scale_256_128_16's layer at input sizes CURVE_SIZES, both methods, all
    in the same interleaved rounds: ms per GMAC and per tile, and the tile plan, to show where time per MAC moves
    with the tile shape."""
    import yaml

    from simulator.config import config_from_mapping

    base = ROOT / "benchmarks/configs/scale_256_128_16.yaml"
    raw = yaml.safe_load(base.read_text())
    cases = {}
    for size in CURVE_SIZES:
        layer_raw = {**raw["layer"], "input_shape": [1, 256, size, size]}
        cases[str(size)] = config_from_mapping({**raw, "name": f"scale_256_128_{size}", "layer": layer_raw},
                                               base.parent)
    points, _ = sim_rounds(cases, repeats)
    for p in points:
        ms = p["sim_ms"]
        p.update(size=int(p.pop("layer")), ms_per_gmac=ms / p["mmac_useful"] * 1e3, us_per_tile=ms / p["tiles"] * 1e3)
    return points


def curve_table(points: list[dict[str, Any]]) -> str:
    lines = [f"{'input':>7} {'MMAC':>8} | " + " | ".join(
        f"{m:<5} {'tiles':>5} {'rows':>4} {'ms':>7} {'ms/GMAC':>7} {'us/tile':>7}" for m in METHODS)]
    for size in CURVE_SIZES:
        row = {p["method"]: p for p in points if p["size"] == size}
        lines.append(f"{size:>3}x{size:<3} {row[METHODS[0]]['mmac_useful']:>8.0f} | " + " | ".join(
            f"{'':<5} {row[m]['tiles']:>5} {row[m]['rows_per_tile']:>4} {row[m]['sim_ms']:>7.1f} "
            f"{row[m]['ms_per_gmac']:>7.1f} {row[m]['us_per_tile']:>7.0f}" for m in METHODS))
    return "\n".join(lines)


def whole_process(repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        run = [sys.executable, "-m", "simulator", "run"]
        walls = []
        for i in range(repeats + 1):
            wall, _, stdout, _ = _spawn([*run, "configs/seed_case1.yaml", "--no-dumps", "--out", f"{tmp}/s{i}"])
            walls.append(wall)
        golden = "no golden case" not in stdout
        # no golden of this layer is shipped (the CLI exits 3 without one): memory only, no comparison
        _, rss, _, _ = _spawn([*run, "configs/unet_up_128_64.yaml", "--no-dumps", "--no-compare", "--out",
                               f"{tmp}/unet"])
        _, _, _, imports = _spawn([sys.executable, "-X", "importtime", *run[1:], "configs/seed_case1.yaml",
                                   "--no-dumps", "--out", f"{tmp}/imp"])
    modules = {line.rsplit("|", 1)[-1].strip() for line in imports.splitlines() if line.startswith("import time:")}
    torch_on_run_path = any(m == "torch" or m.startswith("torch.") for m in modules)
    seed_s = statistics.median(walls[1:])
    return {
        "seed_case1_run_s": seed_s, "seed_case1_run_ok": seed_s <= TARGET_RUN_S, "seed_case1_golden_found": golden,
        "unet_run_peak_rss_mb": rss, "unet_run_rss_ok": rss <= TARGET_RSS_MB,
        "torch_imported_on_run_path": torch_on_run_path, "modules_imported_on_run_path": len(modules),
    }


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off for the block (collected first), as :mod:`timeit` times."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def planner_times(repeats: int) -> list[dict[str, Any]]:
    """Wall time of the tile planner (:func:`simulator.pipeline.make_plan`, what ``plan_for`` runs on configs it
    has not planned before: candidates, the objective, the chosen plan in full) for every layer of every shipped
    and benchmark config and both methods: median of ``repeats`` runs. ``build_ms``: building the chosen plan's
    tile records again with warm window and region caches (one record per tile, linear in the tile count);
    ``search_ms`` = ``plan_ms`` - ``build_ms``, what the bound is on. Timed as :mod:`timeit` times: with the cyclic
    garbage collector off (collected before each call), so that a collection of this large process's other
    objects (torch's) does not land in the planner's time."""
    from simulator.pipeline import make_plan
    from simulator.tiler import Tiler

    out = []
    for path in sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "benchmarks" / "configs").glob("*.yaml")]):
        cfg = load_config(path)
        for layer in cfg.layers:
            for method in METHODS:
                times, builds = [], []
                for _ in range(repeats):
                    with _no_gc():
                        t0 = time.perf_counter()
                        plan = make_plan(layer, cfg.hardware, method)
                        times.append((time.perf_counter() - t0) * 1e3)
                    tiler = Tiler(layer, cfg.hardware, plan.mapping, plan.slots)
                    shape = (plan.rows_per_tile, plan.cols_per_tile, plan.oc_per_tile, plan.ic_per_tile)
                    tiler.plan(shape, plan.loop_order)  # warms the tiler's window, region and job caches
                    with _no_gc():
                        t0 = time.perf_counter()
                        rebuilt = tiler.plan(shape, plan.loop_order)
                        builds.append((time.perf_counter() - t0) * 1e3)
                    if rebuilt.tiles != plan.tiles:
                        raise SystemExit(f"{path} {layer.name} {method}: rebuilding the chosen plan differs")
                ms, build = statistics.median(times), statistics.median(builds)
                search = max(0.0, ms - build)
                out.append({"config": str(path.relative_to(ROOT)), "layer": layer.name, "method": method,
                            "plan_ms": ms, "build_ms": build, "search_ms": search, "tiles": len(plan.tiles),
                            "tile_shape": plan.shape(), "ok": search <= TARGET_PLAN_MS})
    return out


def planner_lines(planning: list[dict[str, Any]]) -> str:
    """The planner's search (the bound), and the whole call with the chosen plan's records built."""
    search = max(planning, key=lambda p: p["search_ms"])
    whole = max(planning, key=lambda p: p["plan_ms"])
    return (f"tile planner, {len(planning)} layer x method (shipped and benchmark configs): slowest search "
            f"{search['search_ms']:.1f} ms ({search['config']} {search['layer']} {search['method']}; target <= "
            f"{TARGET_PLAN_MS:g} ms)\n"
            f"  whole planner call, chosen plan's tile records included: slowest {whole['plan_ms']:.1f} ms "
            f"({whole['config']} {whole['method']}: {whole['tiles']:,} tiles, {whole['build_ms']:.1f} ms to build "
            f"them, {1e3 * whole['build_ms'] / whole['tiles']:.1f} us per tile)")


def machine() -> dict[str, Any]:
    import torch

    cpu = ""
    with contextlib.suppress(OSError):
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "")
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


# ---------------------------------------------------------------------------------------------------- report


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'layer':<18} {'method':<6} {'tiles':>5} {'MMAC':>9} {'MMAC sw':>9} {'sim ms':>9} {'ct ms':>9} "
            f"{'conv ms':>9} {'ratio':>6} {'target':>9} {'ok':>3} {'RSS MB':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        base = "conv" if r["method"] == "swell" else "ct"
        lines.append(
            f"{r['layer']:<18} {r['method']:<6} {r['tiles']:>5} {r['mmac_useful']:>9.3f} "
            f"{r['mmac_swelled_conv']:>9.3f} {r['sim_ms']:>9.2f} {r['torch_ct_ms']:>9.2f} {r['torch_conv_ms']:>9.2f} "
            f"{r['ratio']:>6.2f} {r['target']:>9} {'yes' if r['ok'] else 'NO':>3} "
            f"{r.get('delta_rss_mb', float('nan')):>7.1f}  (ratio vs {base})")
    return "\n".join(lines)


def scaling_table(series: list[dict[str, Any]], steps: list[dict[str, Any]]) -> str:
    lines = [f"{'layer':<20} {'method':<6} {'tiles':>5} {'MMAC':>9} {'sim ms':>9} {'ms/GMAC':>8} {'us/tile':>8}"]
    for r in series:
        lines.append(f"{r['layer']:<20} {r['method']:<6} {r['tiles']:>5} {r['mmac_useful']:>9.1f} {r['sim_ms']:>9.1f} "
                     f"{r['sim_ms'] / r['mmac_useful'] * 1e3:>8.2f} {r['sim_ms'] / r['tiles'] * 1e3:>8.0f}")
    lines += ["", f"{'step':<12} {'method':<6} {'x MACs':>7} {'x tiles':>7} {'x time':>7} {'target':>7} {'ok':>3}"]
    for st in steps:
        lines.append(f"{st['step']:<12} {st['method']:<6} {st['x_macs']:>7.2f} {st['x_tiles']:>7.2f} "
                     f"{st['x_time']:>7.2f} {st['target']:>7.2f} {'yes' if st['ok'] else 'NO':>3}")
    return "\n".join(lines)


def sim_rounds(cases: dict[str, Any], repeats: int) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[float]]]:
    """Simulator time (no torch) of every config in ``cases`` (name -> SimConfig) and method, all timed in the
    same interleaved rounds so that ratios are taken between neighbours (the host's speed drifts between layers
    timed minutes apart). Returns one point per (name, method) and the per-round times by (name, method)."""
    fns: dict[str, Callable[[], object]] = {}
    points = []
    for name, cfg in cases.items():
        t = make_tensors(cfg.data, cfg.layer)
        for method in METHODS:
            result = simulate_layer(cfg.layer, cfg.hardware, method, t)
            fns[f"{name}/{method}"] = functools.partial(simulate_layer, cfg.layer, cfg.hardware, method, t)
            points.append({"layer": name, "method": method, "tiles": len(result.plan.tiles),
                           "rows_per_tile": result.report.rows_per_tile,
                           "mmac_useful": result.report.macs_useful / 1e6})
    rounds = timed_rounds(fns, repeats)
    for r in points:
        r["sim_ms"] = statistics.median(rounds[f"{r['layer']}/{r['method']}"])
    return points, {(r["layer"], r["method"]): rounds[f"{r['layer']}/{r['method']}"] for r in points}


def scaling_series(configs: list[str], repeats: int) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[float]]]:
    """:func:`sim_rounds` of the scaling layers (config files)."""
    cases = {cfg.layer.name: cfg for cfg in (load_config(ROOT / config) for config in configs)}
    return sim_rounds(cases, repeats)


def scaling_steps(series: list[dict[str, Any]], rounds: dict[tuple[str, str], list[float]]) -> list[dict[str, Any]]:
    """Time growth over each ~4x-MACs step of SCALING_STEPS, per method, as the median over rounds of the ratio
    of the two layers' times in that round. Target: <= ~4x, checked as TARGET_SCALING (4.4x) scaled to the
    step's own MAC growth (4.00x to 4.13x)."""
    point = {(r["layer"], r["method"]): r for r in series}
    steps = []
    for method in METHODS:
        for lo, hi, what in SCALING_STEPS:
            a, b = point.get((lo, method)), point.get((hi, method))
            if a is None or b is None:  # --quick leaves the ~2 GMAC layers out
                continue
            grow_t = paired_ratio(rounds[(hi, method)], rounds[(lo, method)])
            grow_m = b["mmac_useful"] / a["mmac_useful"]
            target = TARGET_SCALING * grow_m / 4
            steps.append({"step": what, "method": method, "from": lo, "to": hi, "x_time": grow_t, "x_macs": grow_m,
                          "x_tiles": b["tiles"] / a["tiles"], "target": target, "ok": grow_t <= target})
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="3 repeats, no ~2 GMAC layers")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--curve", action="store_true",
                        help="only the time-per-MAC curve of the scaling layer, 16x16 to 96x96 (no torch)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for numpy and torch intra-op threads (both sides alike; default 1)")
    parser.add_argument("--child-memory", nargs=2, metavar=("CONFIG", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(*args.child_memory)
        return 0
    repeats = args.repeats or (3 if args.quick else 9)
    if args.curve:
        points = curve(args.repeats or 5)
        print(curve_table(points))
        if args.out:
            Path(args.out).write_text(json.dumps({"command": " ".join(["python", "benchmarks/bench.py", *sys.argv[1:]]),
                                                  "threads": THREADS, "curve": points}, indent=2) + "\n")
        return 0
    import torch

    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    large = LARGE
    configs = [c for c in REFERENCE if not (args.quick and c in large)]
    scaling_configs = [c for c in SCALING if not (args.quick and c in large)]
    rows: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
        print(f"timing {config} ...", file=sys.stderr, flush=True)
        rows[config] = bench_layer(config, repeats if config not in large else min(repeats, 5))
    for config in configs:
        for r in rows[config]:
            r.update(memory(config, r["method"]))
    reference = [r for c in configs for r in rows[c]]
    print("timing the scaling series ...", file=sys.stderr, flush=True)
    series, series_rounds = scaling_series(scaling_configs, max(5, min(repeats, 7)))
    series.sort(key=lambda r: METHODS.index(r["method"]))
    process = whole_process(repeats)
    planning = planner_times(5)
    steps = scaling_steps(series, series_rounds)
    results = {"command": " ".join(["python", "benchmarks/bench.py", *sys.argv[1:]]), "machine": machine(),
               "repeats": repeats, "threads": THREADS, "scaling_steps": steps,
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "reference": reference, "scaling": series, "process": process, "planner": planning,
               "all_targets_met": all(r["ok"] for r in reference) and process["seed_case1_run_ok"]
               and all(p["ok"] for p in planning)
               and all(step["ok"] for step in steps)
               and process["unet_run_rss_ok"] and not process["torch_imported_on_run_path"]}
    print(table(reference))
    print()
    print(scaling_table(series, steps))
    print()
    print(planner_lines(planning))
    print(f"convsim run seed_case1 --no-dumps, whole process: {process['seed_case1_run_s'] * 1e3:.0f} ms "
          f"(target <= {TARGET_RUN_S:g} s; torch imported: {process['torch_imported_on_run_path']})")
    print(f"convsim run unet_up_128_64 --no-dumps, peak RSS: {process['unet_run_peak_rss_mb']:.0f} MB "
          f"(target <= {TARGET_RSS_MB:g} MB)")
    print(f"load average before/after (1 min): {load_before[0]:.2f} / {results['loadavg_after'][0]:.2f} on "
          f"{os.cpu_count()} CPUs; all targets met: {results['all_targets_met']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
