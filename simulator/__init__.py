"""convsim: a bit-exact, cycle-approximate simulator of a conv-only NPU engine running ConvTranspose2d.

Public API: ``load_config(path)`` and ``simulate(cfg, ifmap=None, weight=None, bias=None, ...)``.
"""

from simulator.config import SimConfig, load_config
from simulator.errors import ConvsimError
from simulator.pipeline import SimResult, simulate

__all__ = ["ConvsimError", "SimConfig", "SimResult", "load_config", "simulate"]
