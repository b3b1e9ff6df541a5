"""``convsim`` command line: one small handler per subcommand, no simulation logic here.

Exit codes: 0 success (or PASS, or no golden to compare with), 1 mismatch against golden (or ``--check``
differences, or ``compare``'s two methods disagreeing), 2 a bad config, input or golden file, an unwritable
output or a usage error: one line on stderr, no traceback (see docs/errors.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from simulator.errors import ConvsimError

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


def _cmd_run(args: argparse.Namespace) -> int:
    from simulator.runner import run_config

    return run_config(Path(args.config), out=args.out, golden_dir=Path(args.golden_dir), dumps=not args.no_dumps,
                      trace=args.trace, dump_tiles=args.dump_tiles)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from simulator.inspector import inspect_dir

    return inspect_dir(Path(args.dir), stage=args.stage, buffer=args.buffer, tile=args.tile, fmt=args.format,
                       png=Path(args.png) if args.png else None, diff=Path(args.diff) if args.diff else None)


def _cmd_golden(args: argparse.Namespace) -> int:
    from simulator.runner import golden_configs

    return golden_configs([Path(c) for c in args.configs], Path(args.golden_dir), check=args.check)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from simulator.sweep import run_sweep

    sweep_file = Path(args.sweep)
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / sweep_file.stem
    return run_sweep(sweep_file, out, executor=args.executor, address=args.address, resume=args.resume,
                     verify=args.verify, golden_dir=args.golden_dir, workers=args.workers)


def _cmd_compare(args: argparse.Namespace) -> int:
    from simulator.methods import run_compare

    return run_compare(Path(args.config), Path(args.golden_dir), as_json=args.json)


def _cmd_from_torch(args: argparse.Namespace) -> int:
    from simulator.golden.from_torch import from_torch

    path, captured = from_torch(args.target, args.input_shape, name=args.name, out=args.out,
                                quantize=args.quantize, calibration=args.calibration)
    if hasattr(captured, "unsupported"):  # a quantized model: a chained int8 network
        for layer in captured.layers:
            q = layer["quant"]
            print(f"  {layer['name']}: {layer['op']} {layer['input_shape']} -> {layer['out_channels']} channels, "
                  f"input {layer['input']}, activation {q['activation']}, weight scale "
                  f"{'per channel' if isinstance(q['weight']['scale'], list) else 'per tensor'}")
        for op_name, kind, what in captured.unsupported:
            print(f"  NOT RUN {op_name} ({kind}): {what}")
        print(f"wrote {path}: {len(captured.layers)} int8 layer(s), {len(captured.unsupported)} operation(s) not run")
        return EXIT_OK
    for layer in captured.layers:
        print(f"  {layer['name']}: {layer['op']} {layer['input_shape']} -> {layer['out_channels']} channels, "
              f"k{layer['kernel_size']} s{layer['stride']} p{layer['padding']}")
    for skipped in captured.skipped:
        print(f"  NOT INCLUDED {skipped.name} ({skipped.module}): {skipped.reason}")
    print(f"wrote {path}: {len(captured.layers)} layer(s), {len(captured.skipped)} not included")
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """Usage errors (a missing CONFIG, an unknown option) as one line and exit 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"convsim: error: {self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convsim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate a config and compare with its golden case")
    run.add_argument("config")
    run.add_argument("--out", default=None, help="run directory (default runs/<name>/)")
    run.add_argument("--golden-dir", default="golden")
    run.add_argument("--no-dumps", action="store_true", help="write no per-stage SRAM dumps")
    run.add_argument("--trace", action="store_true", help="write a Chrome/Perfetto trace.json")
    run.add_argument("--dump-tiles", type=int, default=None, metavar="N",
                     help="dump the first N tiles of each layer (default: tiles in order within 64 MiB per layer)")
    run.set_defaults(handler=_cmd_run)

    golden = sub.add_parser("golden", help="generate golden vectors with torch")
    golden.add_argument("configs", nargs="+")
    golden.add_argument("--golden-dir", default="golden")
    golden.add_argument("--check", action="store_true", help="regenerate in memory and report differences")
    golden.set_defaults(handler=_cmd_golden)

    sweep = sub.add_parser("sweep", help="evaluate a grid of hardware/engine overrides in parallel")
    sweep.add_argument("sweep")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local")
    sweep.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    sweep.add_argument("--out", default=None, help="result directory (default runs/sweeps/<sweep name>/)")
    sweep.add_argument("--resume", action="store_true", help="run only the points missing from --out")
    sweep.add_argument("--verify", action="store_true", help="also run the values and check golden per point")
    sweep.add_argument("--golden-dir", default="golden")
    sweep.add_argument("--workers", type=int, default=None, help="local processes (default: all cores)")
    sweep.set_defaults(handler=_cmd_sweep)

    cmp = sub.add_parser("compare", help="run both transposed-conv methods (swell, phase) and compare costs")
    cmp.add_argument("config")
    cmp.add_argument("--golden-dir", default="golden")
    cmp.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    cmp.set_defaults(handler=_cmd_compare)

    torch_ = sub.add_parser("from-torch", help="write a network config from the convolutions of a PyTorch model")
    torch_.add_argument("target", help="path/to/file.py:callable or package.module:callable returning an nn.Module")
    torch_.add_argument("--input-shape", required=True, help="N,C,H,W of the random input of the forward pass")
    torch_.add_argument("--name", default=None, help="config name (default: the callable's name)")
    torch_.add_argument("--out", default=None, help="config file to write (default configs/<name>.yaml)")
    torch_.add_argument("--quantize", action="store_true",
                        help="quantize a float model with torch.ao post-training quantization (fbgemm) first")
    torch_.add_argument("--calibration", default=None, metavar="FILE.npy",
                        help="float calibration inputs (N,C,H,W) for --quantize (default: 8 random batches)")
    torch_.set_defaults(handler=_cmd_from_torch)

    inspect = sub.add_parser("inspect", help="look at a run's per-stage SRAM dumps (DIR/<layer> for a network)")
    inspect.add_argument("dir")
    inspect.add_argument("--stage", default=None)
    inspect.add_argument("--buffer", default=None)
    inspect.add_argument("--tile", type=int, default=None, help="tile index (default: the first dumped tile)")
    inspect.add_argument("--format", choices=("grid", "hex", "stats"), default="grid")
    inspect.add_argument("--png", default=None, metavar="FILE", help="save a heatmap of the buffer")
    inspect.add_argument("--diff", default=None, metavar="OTHER_DIR", help="compare with another run's dumps")
    inspect.set_defaults(handler=_cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConvsimError as exc:
        print(f"convsim: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # the file system refused (disk full, permissions changed mid-run): still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"convsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("convsim: interrupted", file=sys.stderr)
        return 130
