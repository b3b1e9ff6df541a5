"""RTL co-simulation: convsim's dumps drive shipped Verilog (``rtl/``) under Icarus Verilog through cocotb.

Modules: :mod:`~simulator.cosim.tasks` (per-tile descriptors and dump files), :mod:`~simulator.cosim.harness`
(build and run), :mod:`~simulator.cosim.tb` (the cocotb test, runs inside the simulator),
:mod:`~simulator.cosim.check` (scoreboard), :mod:`~simulator.cosim.run` (``convsim cosim``). See docs/rtl.md.
"""

from simulator.cosim.run import Fault, StageVerdict, cosim, run_cosim

__all__ = ["Fault", "StageVerdict", "cosim", "run_cosim"]
