"""``convsim`` command line: one small handler per subcommand, no simulation logic here.

Exit codes: 0 success (or PASS, or no golden to compare with), 1 mismatch against golden (or ``--check``
differences), 2 a bad config, input or golden file, an unwritable output or a usage error: one line on stderr,
no traceback (see docs/errors.md).
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
                      trace=args.trace)


def _cmd_golden(args: argparse.Namespace) -> int:
    from simulator.runner import golden_configs

    return golden_configs([Path(c) for c in args.configs], Path(args.golden_dir), check=args.check)


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
    run.set_defaults(handler=_cmd_run)

    golden = sub.add_parser("golden", help="generate golden vectors with torch")
    golden.add_argument("configs", nargs="+")
    golden.add_argument("--golden-dir", default="golden")
    golden.add_argument("--check", action="store_true", help="regenerate in memory and report differences")
    golden.set_defaults(handler=_cmd_golden)
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
