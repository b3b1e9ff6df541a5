"""The vocabulary every config section is built from: the frozen base model, the number and pair coercions of
torch-style arguments, and the resource bounds a config is checked against at load.

Models no hardware. ``Frozen`` is the base of every config model (frozen, unknown keys rejected); ``as_pair`` and
``not_bool`` are the ``mode="before"`` coercions that let ``3`` stand for ``[3, 3]`` and keep YAML ``true`` from
passing as 1. The ``MAX_*`` bounds exist because the simulator holds every tensor and SRAM byte image in memory:
they are limits of this program, not of any engine, and deliberately ignore what a real chip could hold.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Pair = tuple[int, int]
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
INT8_MAX = 127
# Resource bounds, checked at load, before anything is allocated: the simulator holds every tensor and every SRAM
# buffer in memory, so a config beyond these would exhaust the machine instead of failing cleanly.
MAX_LAYER_BYTES = 128 << 20  # ifmap + weight + bias + int32 ofmap of one layer (a golden case holds ~6x this)
MAX_SRAM_BYTES = 256 << 20  # one SRAM buffer's byte image
MAX_EXTENT = 1 << 16  # rows or columns of an input or output map (the tile planner keeps a record per row)
MAX_MACS = 1 << 34  # products of one layer (about a minute of simulation at ~4 ns per product)
MAX_LAYERS = 1024  # layers of a network config
MAX_NAME = 100  # characters of a config or layer name (it names directories)


def as_pair(value: Any) -> Any:
    """Accept ``3`` or ``[3, 5]`` for a pair-valued argument; leave anything else for pydantic to reject."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError(f"expected an int or [h, w] (2 entries), got {list(value)!r}")
        return tuple(value)
    return value


def not_bool(value: Any) -> Any:
    """YAML ``true`` is not a number: refuse it where an int or float is expected (pydantic would take it as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


class Frozen(BaseModel):
    """The base of every config model: immutable once validated, an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


PositiveInt = Annotated[int, BeforeValidator(not_bool), Field(ge=1)]
NonNegInt = Annotated[int, BeforeValidator(not_bool), Field(ge=0)]
