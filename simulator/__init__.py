"""convsim: a bit-exact, cycle-approximate simulator of a conv-only NPU engine running ConvTranspose2d.

Public API: ``load_config(path)`` and ``simulate(cfg, ifmap=None, weight=None, bias=None, ...)``;
``__version__`` is the installed package's version (pyproject.toml is its one source).
"""

from importlib.metadata import PackageNotFoundError, version

from simulator.config import SimConfig, load_config
from simulator.errors import ConvsimError
from simulator.pipeline import SimResult, simulate

try:
    __version__ = version("convsim")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["ConvsimError", "SimConfig", "SimResult", "__version__", "load_config", "simulate"]
