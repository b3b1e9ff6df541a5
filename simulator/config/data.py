"""The ``data:`` section: where a layer's ifmap, weight and bias come from when they are not passed in.

Models the choice of generator (``random``, the ``pattern`` weight, ``zeros`` bias) or a ``.npy`` file, and the
seed. Ignores the tensors themselves: ``simulator/data.py`` makes or reads them, and checks a file's shape and
dtype against the layer. File paths are resolved against the config's directory by the loader, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from simulator.config.fields import Frozen, NonNegInt


class FileSource(Frozen):
    """A tensor read from a ``.npy`` file (path relative to the config file)."""

    file: Path


def _source(*choices: str) -> BeforeValidator:
    """One clear message for a ``choice | {file: path}`` union (pydantic would report only its first branch)."""

    def check(value: Any) -> Any:
        if isinstance(value, FileSource) or (isinstance(value, str) and value in choices):
            return value
        if isinstance(value, dict) and set(value) == {"file"} and isinstance(value["file"], str | Path):
            return value
        names = " or ".join(repr(c) for c in choices)
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:60] + "..."
        raise ValueError(f"expected {names} or {{file: <path.npy>}}, got {shown}")

    return BeforeValidator(check)


class DataConfig(Frozen):
    """Where the layer's tensors come from when they are not passed in."""

    seed: NonNegInt = 0
    ifmap: Annotated[Literal["random"] | FileSource, _source("random")] = "random"
    weight: Annotated[Literal["pattern", "random"] | FileSource, _source("pattern", "random")] = "pattern"
    bias: Annotated[Literal["zeros", "random"] | FileSource, _source("zeros", "random")] = "zeros"
