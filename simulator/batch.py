"""Batches: ``convsim run A.yaml B.yaml ...`` and ``convsim compare ...`` over several configs.

Models no hardware. Each config is run in turn (a progress line per config on stderr); a config that fails
(a bad file, an overflow) is recorded as an ERROR verdict and the batch goes on. At the end a summary table of
verdicts is printed, JUnit XML and JSON are written if asked, and the exit code is the worst verdict's
(:mod:`simulator.verdicts`). A batch of one config behaves exactly like a single run: an error is one line on
stderr, exit 2, and nothing is written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from simulator import progress
from simulator.config import load_config
from simulator.errors import ConvsimError
from simulator.verdicts import Verdict, check_report_paths, exit_code, summary_table, write_reports


def run_batch(configs: list[Path], one: Callable[[Path], list[Verdict]], junit: Path | None = None,
              json_path: Path | None = None, summary: bool = True) -> int:
    """Run ``one(config)`` for every config; summary, reports and the worst verdict's exit code."""
    check_report_paths(junit, json_path)
    if len(configs) == 1:
        verdicts = one(configs[0])
    else:
        verdicts = []
        names: dict[str, Path] = {}
        for i, config in enumerate(progress.bar(configs, len(configs), "configs", "config")):
            progress.announce(i, len(configs), str(config))
            try:
                name = load_config(config).name
                if name in names:
                    raise ConvsimError(f"{config}: name {name!r} is also the name of {names[name]} in this batch "
                                       "(their run directories would collide)")
                names[name] = config
                verdicts += one(config)
            except ConvsimError as exc:
                print(f"convsim: error: {exc}", file=sys.stderr, flush=True)
                verdicts.append(Verdict(str(config), "", "", "ERROR", detail=str(exc)))
            sys.stdout.flush()
        if summary:
            print()
            print(summary_table(verdicts))
    write_reports(verdicts, junit, json_path)
    return exit_code(verdicts)
