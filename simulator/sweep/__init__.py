"""Design-space sweeps: a grid of config overrides, evaluated in parallel, with resumable results.

Models no hardware: it varies the hardware/engine description by dotted path (e.g.
``hardware.mac_array.rows: [8, 16, 32]``), validates every point up front (an invalid point is reported, not
run), evaluates the valid ones with the cycle model (timing only by default; ``--verify`` also runs the values
and checks golden), and records one row per (point, layer). The Pareto front minimises the sweep's
``objectives`` (default cycles, PEs, SRAM bytes; ``energy_pj`` makes energy one of them).

One module per concern: ``spec`` (the sweep file and its validated points), ``executors`` (evaluating a point;
the local process pool and Ray), ``results`` (the durable ``results.jsonl`` and the tables derived from it),
``pareto`` (the front, as text and plot) and ``run`` (``convsim sweep`` itself).
"""

from simulator.sweep.pareto import pareto_front, pareto_png, pareto_text
from simulator.sweep.results import point_totals, read_jsonl
from simulator.sweep.run import run_sweep
from simulator.sweep.spec import SweepSpec, expand, load_spec, set_dotted

__all__ = [
    "SweepSpec",
    "expand",
    "load_spec",
    "pareto_front",
    "pareto_png",
    "pareto_text",
    "point_totals",
    "read_jsonl",
    "run_sweep",
    "set_dotted",
]
