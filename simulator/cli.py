"""``convsim`` command line: one small handler per subcommand, no simulation logic here.

Exit codes (docs/errors.md): 0 PASS (or ``--no-compare``), 1 a mismatch against golden (or ``golden --check``
differences, or ``compare``'s two methods disagreeing), 2 a bad config, input or golden file, an unwritable
output or a usage error (one line on stderr, no traceback), 3 NO GOLDEN: nothing to compare with. A batch of
configs exits with its worst verdict.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from simulator.errors import ConvsimError

if TYPE_CHECKING:
    from simulator.verdicts import Verdict

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR, EXIT_NO_GOLDEN = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a process its pipe closed

DESCRIPTION = """\
Simulate a conv-only NPU engine running ConvTranspose2d and Conv2d layers: int8 data in SRAM, a swelling DMA,
a weight-transpose unit, a systolic MAC array with int32 accumulators and write-back. Every run is compared
bit for bit with golden vectors computed by torch, and reports cycles, MACs, utilization and traffic."""
EPILOG = """\
exit codes: 0 PASS, 1 FAIL (mismatch), 2 error (bad input; one line on stderr), 3 NO GOLDEN (nothing compared).
A batch of configs exits with its worst verdict. See README.md and docs/ (docs/errors.md for every rule)."""


def _cmd_run(args: argparse.Namespace) -> int:
    from simulator.batch import run_batch
    from simulator.runner import run_config

    configs = [Path(c) for c in args.configs]
    batch = len(configs) > 1
    out, runs_root = (None, Path(args.out)) if batch and args.out else (args.out, Path("runs"))

    def one(config: Path) -> list[Verdict]:
        return run_config(config, out=out, golden_dir=Path(args.golden_dir), dumps=not args.no_dumps,
                          trace=args.trace, dump_tiles=args.dump_tiles, compare_golden=not args.no_compare,
                          runs_root=runs_root)

    return run_batch(configs, one, junit=_path(args.junit), json_path=_path(args.json))


def _cmd_inspect(args: argparse.Namespace) -> int:
    from simulator.inspector import inspect_dir

    return inspect_dir(Path(args.dir), stage=args.stage, buffer=args.buffer, tile=args.tile, fmt=args.format,
                       png=_path(args.png), diff=_path(args.diff), channel=args.channel,
                       plane=args.plane)


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

    return run_compare([Path(c) for c in args.configs], Path(args.golden_dir), as_json=args.json,
                       junit=_path(args.junit))


def _cmd_from_torch(args: argparse.Namespace) -> int:
    from simulator.golden.from_torch import from_torch, report_lines

    path, captured = from_torch(args.target, args.input_shape, name=args.name, out=args.out, force=args.force,
                                quantize=args.quantize, calibration=args.calibration)
    print("\n".join(report_lines(path, captured)))
    return EXIT_OK


def _cmd_cosim(args: argparse.Namespace) -> int:
    from simulator.cosim import run_cosim

    return run_cosim(Path(args.config), stage=args.stage, tiles=args.tiles, wave=_path(args.wave), out=_path(args.out),
                     method=args.method, layer=args.layer, rtl=_path(args.rtl_dir))


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


class _Parser(argparse.ArgumentParser):
    """Usage errors (a missing CONFIG, an unknown option) as one line and exit 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"convsim: error: {self.prog}: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults appended to every option's help; descriptions and epilogs keep their line breaks."""


def _version() -> str:
    from simulator import __version__

    return f"convsim {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convsim", description=DESCRIPTION, epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=description, epilog=EPILOG, formatter_class=_Formatter)

    run = command("run", "simulate configs and compare each with its golden case",
                  "Simulate each CONFIG, write ofmap.npy, report.json and per-stage dumps under runs/<name>/, and "
                  "compare the ofmap bit for bit with <golden-dir>/<name>/. Several configs run as a batch: a "
                  "summary table of verdicts at the end, exit code of the worst verdict.")
    run.add_argument("configs", nargs="+", metavar="CONFIG", help="config YAML file(s) (configs/*.yaml)")
    run.add_argument("--out", default=None, metavar="DIR",
                     help="run directory; with several configs, the directory holding one <name>/ per config "
                          "(default: runs/<name>/)")
    run.add_argument("--golden-dir", default="golden", metavar="DIR", help="where golden cases live")
    run.add_argument("--no-compare", action="store_true",
                     help="simulate without comparing with golden (verdict NOT COMPARED, exit 0)")
    run.add_argument("--no-dumps", action="store_true", help="write no per-stage SRAM dumps")
    run.add_argument("--trace", action="store_true", help="also write a Chrome/Perfetto trace.json per layer")
    run.add_argument("--dump-tiles", type=int, default=None, metavar="N",
                     help="dump exactly the first N tiles of each layer (default: tiles in order within 64 MiB "
                          "per layer)")
    run.add_argument("--junit", default=None, metavar="FILE",
                     help="write JUnit XML: one testcase per layer, a FAIL carries the scoreboard summary")
    run.add_argument("--json", default=None, metavar="FILE", help="write the verdicts as JSON")
    run.set_defaults(handler=_cmd_run)

    golden = command("golden", "generate golden vectors with torch (needs pip install 'convsim[golden]')",
                     "Compute the exact ofmap of each CONFIG with torch (int64, then narrowed like the engine) "
                     "and write the golden case <golden-dir>/<name>/ (.npy, $readmemh .hex, manifest.json).")
    golden.add_argument("configs", nargs="+", metavar="CONFIG", help="config YAML file(s)")
    golden.add_argument("--golden-dir", default="golden", metavar="DIR", help="where golden cases are written")
    golden.add_argument("--check", action="store_true",
                        help="regenerate in memory and report differences from the files (writes nothing; exit 1 "
                             "if any differ)")
    golden.set_defaults(handler=_cmd_golden)

    sweep = command("sweep", "evaluate a grid of hardware/engine overrides in parallel",
                    "Evaluate every point of SWEEP's grid with the cycle model, write results.csv, pareto.txt "
                    "and pareto.png under --out (docs/sweeps.md).")
    sweep.add_argument("sweep", metavar="SWEEP", help="sweep YAML file (base: config, grid: {dotted.key: [values]})")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local processes, or Ray tasks (pip install 'convsim[ray]')")
    sweep.add_argument("--address", default=None, metavar="ADDR",
                       help="Ray cluster address (default: start a local Ray)")
    sweep.add_argument("--out", default=None, metavar="DIR",
                       help="result directory (default: runs/sweeps/<sweep name>/)")
    sweep.add_argument("--resume", action="store_true", help="run only the points missing from --out")
    sweep.add_argument("--verify", action="store_true", help="also compute values and check golden per point")
    sweep.add_argument("--golden-dir", default="golden", metavar="DIR", help="where golden cases live (--verify)")
    sweep.add_argument("--workers", type=int, default=None, metavar="N",
                       help="local worker processes, 1 to the number of cores (default: the number of cores)")
    sweep.set_defaults(handler=_cmd_sweep)

    cmp = command("compare", "run both transposed-conv methods (swell, phase) and compare their costs",
                  "Run every layer of each CONFIG with both methods on the same tensors, check the two ofmaps "
                  "bit for bit (and against golden when a case exists) and print their costs side by side.")
    cmp.add_argument("configs", nargs="+", metavar="CONFIG", help="config YAML file(s)")
    cmp.add_argument("--golden-dir", default="golden", metavar="DIR", help="where golden cases live")
    cmp.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    cmp.add_argument("--junit", default=None, metavar="FILE", help="write JUnit XML, one testcase per layer")
    cmp.set_defaults(handler=_cmd_compare)

    torch_ = command("from-torch", "write a network config from the convolutions of a PyTorch model",
                     "Import TARGET (this EXECUTES the file or module), run one forward pass on a random input and "
                     "write a network config of every Conv2d/ConvTranspose2d call (docs/networks.md).")
    torch_.add_argument("target", metavar="TARGET",
                        help="path/to/file.py:callable or package.module:callable returning an nn.Module")
    torch_.add_argument("--input-shape", required=True, metavar="N,C,H,W",
                        help="shape of the random input of the forward pass")
    torch_.add_argument("--name", default=None, help="config name (default: the callable's name)")
    torch_.add_argument("--out", default=None, metavar="FILE",
                        help="config file to write (default: configs/<name>.yaml)")
    torch_.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    torch_.add_argument("--quantize", action="store_true",
                        help="quantize a float model with torch.ao post-training quantization (fbgemm) first")
    torch_.add_argument("--calibration", default=None, metavar="FILE.npy",
                        help="float calibration inputs (N,C,H,W) for --quantize (default: 8 random batches)")
    torch_.set_defaults(handler=_cmd_from_torch)

    inspect = command("inspect", "look at a run's per-stage SRAM dumps (DIR/<layer> for a network)",
                      "List, print or plot the per-stage SRAM dumps of a run (docs/dumps.md).")
    inspect.add_argument("dir", metavar="DIR", help="run directory (runs/<name>/, or runs/<name>/<layer>/)")
    inspect.add_argument("--stage", default=None,
                         help="stage: load, swell, weight_transpose, mac_array or writeback (alone: its buffers)")
    inspect.add_argument("--buffer", default=None, help="buffer (region) name, as the listing shows it")
    inspect.add_argument("--tile", type=int, default=None, help="tile index (default: the first dumped tile)")
    inspect.add_argument("--channel", type=int, default=None, metavar="C",
                         help="only the planes of channel C (the second axis)")
    inspect.add_argument("--plane", type=int, default=None, metavar="P",
                         help="only the P-th 2-D plane, counted as the grid labels them (after --channel)")
    inspect.add_argument("--format", choices=("grid", "hex", "stats"), default="grid", help="how to print the buffer")
    inspect.add_argument("--png", default=None, metavar="FILE", help="save a heatmap of the buffer")
    inspect.add_argument("--diff", default=None, metavar="OTHER_DIR", help="compare with another run's dumps")
    inspect.set_defaults(handler=_cmd_inspect)

    cosim = command("cosim", "run a layer's tiles on the shipped RTL under Icarus Verilog and compare",
                    "Simulate CONFIG with per-stage dumps, load each RTL unit's input from the dumps with $readmemh, "
                    "run the Verilog in rtl/ (or --rtl-dir) under Icarus Verilog through cocotb, and compare its "
                    "output with the next stage's dump and its busy cycles with the stage's cost function, tile by "
                    "tile (docs/rtl.md). Needs Icarus Verilog (apt-get install -y iverilog).")
    cosim.add_argument("config", metavar="CONFIG", help="config YAML file")
    cosim.add_argument("--stage", choices=("swell", "mac_array", "all"), default="all",
                       help="the RTL unit to check (all: both; a stage the method lacks is SKIPPED)")
    cosim.add_argument("--tiles", type=int, default=None, metavar="N",
                       help="check the first N tiles only (default: every tile the dumps hold)")
    cosim.add_argument("--wave", default=None, metavar="FILE.vcd", help="write a VCD of the RTL run (GTKWave)")
    cosim.add_argument("--out", default=None, metavar="DIR",
                       help="work directory: dumps, RTL outputs, simulator log (default: runs/<name>/cosim/)")
    cosim.add_argument("--method", choices=("swell", "phase"), default=None,
                       help="override engine.transposed_conv (default: the config's)")
    cosim.add_argument("--layer", default=None, help="the layer of a network config")
    cosim.add_argument("--rtl-dir", default=None, metavar="DIR",
                       help="your Verilog: its modules replace the shipped ones of rtl/ by name (docs/rtl.md)")
    cosim.set_defaults(handler=_cmd_cosim)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``convsim run ... | head``): stop quietly, as a shell tool does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `convsim`
        parser.print_help()
        return EXIT_OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
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
