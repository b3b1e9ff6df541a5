"""Command outputs quoted in README.md, docs/*.md and configs/*.yaml, produced by running the commands (cogapp).

Each quoted output in the docs sits in a ``[[[cog ... ]]]`` block that calls one of these functions; cog replaces
the text up to ``[[[end]]]`` with what the command prints now. Regenerate everything after a change that moves
a number (the one command, also in docs/contributing.md)::

    .venv/bin/cog -r -D regen=1 -I docs README.md docs/*.md configs/dcgan_generator.yaml

``tests/test_docs.py`` runs the same with ``--check`` and fails when any quoted output differs from what the code
prints. Commands run in process (``simulator.cli.main``), in a scratch directory where ``configs/``, ``golden/``,
``docs/examples/`` and ``tests/user_rtl/`` are links to the repository's, so relative paths read as the docs write
them and nothing is written into the repository. Generation is deterministic: no timings, no absolute paths, fixed seeds.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cog  # provided by cogapp while it runs the blocks
import yaml

REPO = Path(__file__).resolve().parent.parent
_WORKSPACE: list[Path] = []


def workspace() -> Path:
    """The scratch directory commands run in (created once per cog run)."""
    if not _WORKSPACE:
        root = Path(tempfile.mkdtemp(prefix="convsim-docs-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)  # the scratch runs are never kept
        for name in ("configs", "golden"):
            (root / name).symlink_to(REPO / name)
        (root / "docs").mkdir()
        (root / "docs" / "examples").symlink_to(REPO / "docs" / "examples")
        (root / "tests").mkdir()
        (root / "tests" / "user_rtl").symlink_to(REPO / "tests" / "user_rtl")  # docs/rtl.md: convsim cosim --rtl-dir
        _WORKSPACE.append(root)
    return _WORKSPACE[0]


@contextlib.contextmanager
def _in_workspace() -> Iterator[Path]:
    before = os.getcwd()
    os.chdir(workspace())
    try:
        yield workspace()
    finally:
        os.chdir(before)


def capture(command: str, hidden: str = "") -> tuple[int, str, str]:
    """Run ``command`` (``convsim ...``, plus ``hidden`` arguments not shown in the docs): (exit code, out, err)."""
    from simulator.cli import main

    argv = shlex.split(command)
    assert argv[0] == "convsim", command
    out, err = io.StringIO(), io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps --help to the terminal: fix the width
    with _in_workspace(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*argv[1:], *shlex.split(hidden)])
        except SystemExit as exc:  # --help, --version
            code = int(exc.code or 0)
        finally:
            if columns is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = columns
    return code, out.getvalue(), err.getvalue()


def _block(lines: list[str], fence: str = "```") -> None:
    cog.outl(fence)
    for line in lines:
        cog.outl(line.rstrip())
    cog.outl("```")


def show(command: str, hidden: str = "", stream: str = "out", expect: int | None = None, head: int | None = None,
         prompt: bool = True) -> None:
    """A fenced block: ``$ command`` and what it prints on ``stream`` (``out``, ``err`` or ``both``)."""
    code, out, err = capture(command, hidden)
    if expect is not None:
        assert code == expect, f"{command}: exit {code}, expected {expect}\n{out}{err}"
    text = {"out": out, "err": err, "both": out + err}[stream]
    lines = text.rstrip("\n").splitlines()
    if head is not None and len(lines) > head:
        lines = [*lines[:head], f"... ({len(lines) - head} more lines)"]
    _block(([f"$ {command}"] if prompt else []) + lines)


def run_quietly(command: str, hidden: str = "") -> str:
    """Run a command for its side effect (a golden case, a config) and return its stdout; nothing is quoted."""
    code, out, err = capture(command, hidden)
    assert code == 0, f"{command}: exit {code}\n{out}{err}"
    return out


def write(name: str, text: str) -> Path:
    """A file in the workspace (an example config, a model)."""
    path = workspace() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def variant(config: str, name: str, **sections: Any) -> str:
    """A copy of ``config`` in the workspace with top-level ``sections`` replaced; returns its relative path."""
    raw = yaml.safe_load((REPO / config).read_text())
    raw.update(sections)
    hw = raw.get("hardware")
    if isinstance(hw, str):  # keep a hardware file reference valid from the copy's directory
        raw["hardware"] = str((REPO / config).parent / hw)
    write(name, yaml.safe_dump(raw, sort_keys=False))
    return name


def file_head(path: str, lines: int) -> None:
    """The first ``lines`` lines of a file the commands wrote (a dump, a golden case)."""
    with _in_workspace() as root:
        text = (root / path).read_text().splitlines()[:lines]
    _block(text)


def compare_json(*configs: str) -> dict[str, Any]:
    code, out, err = capture("convsim compare " + " ".join(configs) + " --json")
    assert code == 0, out + err
    return json.loads(out)


def network_totals(config: str, hidden: str = "--no-dumps --no-compare") -> dict[str, Any]:
    """The totals of a network run (report.json), after running it."""
    out = "runs/docs-" + config.replace("/", "_").removesuffix(".yaml")
    run_quietly(f"convsim run {config} --out {out}", hidden)
    return json.loads((workspace() / out / "report.json").read_text())["totals"]


# ------------------------------------------------------------------------------------------- docs/methods.md


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _table(head: list[str], rows: list[list[str]]) -> None:
    cog.outl("| " + " | ".join(head) + " |")
    cog.outl("|" + "---|" * len(head))
    for row in rows:
        cog.outl("| " + " | ".join(row) + " |")


def method_table(*configs: str) -> None:
    """Swell vs phase per layer: tiles, MAC-stage and total cycles, MACs, utilization, staged ifmap."""
    rows = []
    for doc in compare_json(*configs)["configs"]:
        for layer in doc["layers"]:
            a, b = layer["swell"], layer["phase"]
            rows.append([layer["layer"], f"{a['num_tiles']} / {b['num_tiles']}",
                         f"{a['stage_cycles']['mac_array']:,} / {b['stage_cycles']['mac_array']:,}",
                         f"{a['cycles']:,} / {b['cycles']:,}", f"{b['cycles'] / a['cycles']:.2f}",
                         f"{b['macs_issued'] / a['macs_issued']:.3f}",
                         f"{_pct(a['utilization_issued'])} / {_pct(b['utilization_issued'])}",
                         f"{a['staged_ifmap_bytes']:,} / {b['staged_ifmap_bytes']:,}"])
    _table(["layer", "tiles swell / phase", "MAC cycles swell / phase", "total cycles swell / phase",
            "phase/swell cycles", "MACs phase/swell", "util issued swell / phase", "staged ifmap B/tile"], rows)


def compare_reading(config: str) -> None:
    """The paragraph under the compare example, with its numbers taken from the same run."""
    layer = compare_json(config)["layers"][0]
    a, b = layer["swell"], layer["phase"]
    wb = b["stage_cycles"]["writeback"]
    cog.outl(f"Phase issues {b['macs_issued'] / a['macs_issued']:.0%} of swell's MACs and its MAC stage takes "
             f"{b['stage_cycles']['mac_array'] / a['stage_cycles']['mac_array']:.0%} of swell's MAC cycles; the")
    cog.outl(f"layer then leans on write-back (the int32 ofmap store, {wb:,} busy cycles), so the total falls only to "
             f"{b['cycles'] / a['cycles']:.0%}")
    cog.outl("(phase is " + f"{a['cycles'] / b['cycles']:.1f}x faster). SRAM read and write totals are equal because "
             "every byte the model writes to SRAM")
    cog.outl("is read once.")


def _nj(fj: int) -> str:
    return f"{fj / 1e6:,.3f}"


def dcgan_table(*configs: str) -> None:
    rows = []
    for doc in compare_json(*configs)["configs"]:
        layer = doc["layers"][0]
        a, b = layer["swell"], layer["phase"]
        rows.append([doc["name"], f"{b['macs_issued'] / a['macs_issued']:.3f}",
                     f"{_pct(a['utilization_issued'])} / {_pct(b['utilization_issued'])}",
                     f"{_pct(a['utilization_useful'])} / {_pct(b['utilization_useful'])}",
                     f"{a['cycles']:,} / {b['cycles']:,}", f"{a['cycles'] / b['cycles']:.2f}x",
                     f"{_nj(a['energy_fj'])} / {_nj(b['energy_fj'])}"])
    _table(["config", "MACs phase/swell", "util issued swell / phase", "util useful swell / phase",
            "cycles swell / phase", "phase speed-up", "energy nJ swell / phase (horowitz45)"], rows)


def energy_reading(config: str) -> None:
    """The energy paragraph under the compare example, from the same comparison."""
    layer = compare_json(config)["layers"][0]
    a, b = layer["swell"], layer["phase"]
    saved = 1 - b["energy_fj"] / a["energy_fj"]
    zero_macs = a["macs_issued"] - a["macs_useful"]
    dram_share = a["energy_fj_by_action"]["dram"] / a["energy_fj"]
    cog.outl(f"Energy (the `horowitz45` table of [energy.md](energy.md), the default): phase saves {saved:.0%} here. "
             "Almost all of the")
    cog.outl(f"saving is the MAC energy swell spends on inserted zeros and borders ({zero_macs:,} MACs that are not "
             f"useful, {_nj(a['zero_mac_energy_fj'])} nJ);")
    cog.outl(f"DRAM traffic, the same for both methods, is {dram_share:.0%} of swell's energy, so the ratio stays "
             "far from the MACs' 0.25.")
    cog.outl("With `mac_array.zero_gating: true` swell's zero MACs cost `mac_gated_pj` instead, and most of the gap "
             "closes (energy")
    cog.outl("only: the cycles stay swell's).")


# ------------------------------------------------------------------------------------------ docs/networks.md


def variant_of_workspace(config: str, name: str, **sections: Any) -> str:
    """Like :func:`variant`, for a config written in the workspace (by an earlier block)."""
    raw = yaml.safe_load((workspace() / config).read_text())
    raw.update(sections)
    write(name, yaml.safe_dump(raw, sort_keys=False))
    return name


def golden_sizes(*names: str) -> None:
    total = sum(p.stat().st_size for name in names for p in (REPO / "golden" / name).rglob("*") if p.is_file())
    cog.outl(f"Together their golden cases are {total / 1e6:.1f} MB ({total:,} bytes).")


def _widths(config: Path) -> list[int]:
    layers = yaml.safe_load(config.read_text())["layers"]
    return [layers[0]["in_channels"], *(layer["out_channels"] for layer in layers)]


def dcgan_row(config: str) -> None:
    widths = _widths(REPO / config)
    ngf = widths[-2]
    cog.outl(f"| `{Path(config).name}` | five ConvTranspose2d k4: s1 p0 on 1×1, then s2 p1 at 4×4 … 32×32 → 64×64 | "
             f"widths ÷ {64 // ngf} (ngf {ngf}: {'→'.join(map(str, widths))}) |")


def speedup_sentence(*pairs: tuple[str, str, str]) -> None:
    parts, energy = [], []
    for swell, phase, label in pairs:
        ta, tb = network_totals(swell), network_totals(phase)
        a, b = ta["cycles"], tb["cycles"]
        parts.append(f"{a:,} → {b:,} cycles at {label}, {a / b:.2f}x")
        if "energy_fj" in ta:
            energy.append(f"{_nj(ta['energy_fj'])} → {_nj(tb['energy_fj'])} nJ at {label} "
                          f"({1 - tb['energy_fj'] / ta['energy_fj']:.0%} less)")
    cog.outl("changes the generator's time as follows: " + "; ".join(parts) + ".")
    if energy:
        cog.outl("Energy (`horowitz45`) falls much less: " + "; ".join(energy) + ", because DRAM traffic, the same "
                 "for both methods, dominates it and the MACs phase saves cost 0.3 pJ each.")


# ---------------------------------------------------------------------------------- configs/dcgan_generator.yaml


def dcgan_comment(config: str) -> None:
    """The header comment of the reduced DCGAN config, from its own layers."""
    widths = _widths(REPO / config)
    ngf = widths[-2]
    full = [100, 512, 256, 128, 64, 3]
    full_weight = sum(a * b * 16 for a, b in itertools.pairwise(full))
    cog.outl("# DCGAN generator (Radford et al. 2016): its five ConvTranspose2d layers, real kernel/stride/padding and")
    cog.outl("# real spatial sizes (1x1 -> 4x4 -> 8x8 -> 16x16 -> 32x32 -> 64x64 image), with the channel widths")
    cog.outl(f"# divided by {64 // ngf} (ngf = {ngf} instead of 64: {' -> '.join(map(str, widths))}) so that golden/ "
             "stays small:")
    cog.outl(f"# at full width the int8 weights alone are {full_weight / 1e6:.1f} MB. Each layer is simulated on its "
             "own int8")
    cog.outl("# input (no requantization between layers).")


# --------------------------------------------------------------------------------------------- docs/dumps.md


def file_excerpt(path: str, keep: int, data: int) -> None:
    """The first ``keep`` comment lines, the ``@`` line and ``data`` data lines of a hex file a command wrote."""
    with _in_workspace() as root:
        lines = (root / path).read_text().splitlines()
    comments = [line for line in lines if line.startswith("//")]
    at = next(i for i, line in enumerate(lines) if line.startswith("@"))
    shown = comments[:keep]
    if len(comments) > keep:
        shown.append(f"// ... ({len(comments) - keep} more comment lines: the format reminder)")
    shown += lines[at:at + 1 + data]
    shown.append(f"... ({len(lines) - at - 1 - data} more data lines)")
    _block(shown)


# --------------------------------------------------------------------------------------------- docs/timing.md


def schedule_table(config: str) -> None:
    """Start - end cycle of every (tile, stage), read from the trace of a run of ``config``."""
    out = "runs/docs-trace-" + config.replace("/", "_").removesuffix(".yaml")
    run_quietly(f"convsim run {config} --out {out} --trace --no-dumps --no-compare")
    events = json.loads((workspace() / out / "trace.json").read_text())["traceEvents"]
    stages = [e["args"]["name"] for e in events if e["name"] == "thread_name"]
    spans: dict[int, dict[str, str]] = {}
    for e in events:
        if e.get("ph") == "X":
            args = e["args"]
            spans.setdefault(args["tile"], {})[stages[e["tid"]]] = f"{args['start_cycle']:,} - {args['end_cycle']:,}"
    _table(["tile", *stages], [[str(t), *(row.get(s, "-") for s in stages)] for t, row in sorted(spans.items())])


def figure(produced: str, target: str, regenerate: object = None) -> None:
    """Copy a figure a command wrote (``produced``, in the workspace) to ``target`` in the repository, when the
    docs are regenerated (``cog -D regen=1``); a ``--check`` run leaves the repository untouched."""
    if regenerate:
        shutil.copyfile(workspace() / produced, REPO / target)
