"""The schema of a dump tree's ``index.json``, checked before ``inspect`` trusts any of it.

Models no hardware. ``index.json`` is written by :class:`simulator.dump.DumpWriter`, but a user can edit it: every
field the reader uses is validated here (types, ranges, plain file names, known dtypes), so an edited or foreign
index gives one line naming the field instead of a KeyError or TypeError. Extra fields are allowed (newer
writers may add some); see docs/dumps.md for what each field means. ``FORMAT`` is the tag the writer stamps
and the reader requires.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from simulator.errors import IntegrityError

FORMAT = "convsim-dumps/1"  # index.json's "format": a reader refuses any other
MAX_REGION_BYTES = 1 << 30


def _plain_name(value: str) -> str:
    if not value or Path(value).name != value or value in (".", ".."):
        raise ValueError(f"{value!r} is not a plain file name")
    return value


def _relative_dir(value: str) -> str:
    parts = Path(value).parts
    if not parts or Path(value).is_absolute() or ".." in parts:
        raise ValueError(f"{value!r} is not a directory inside the dump tree")
    return value


def _int_dtype(value: str) -> str:
    try:
        name = str(np.dtype(value))
    except TypeError:
        name = ""
    if name not in ("int8", "int32"):
        raise ValueError(f"{value!r} is not int8 or int32")
    return value


PlainName = Annotated[str, AfterValidator(_plain_name)]
RelDir = Annotated[str, AfterValidator(_relative_dir)]
Count = Annotated[int, Field(ge=0)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class BankMapping(_Open):
    bank_width_bytes: Annotated[int, Field(ge=1, le=4096)]
    num_banks: Annotated[int, Field(ge=1, le=4096)]


class BufferEntry(_Open):
    name: str
    buffer: Literal["ifmap", "weight", "psum"]
    base_addr: Count
    size_bytes: Annotated[int, Field(ge=0, le=MAX_REGION_BYTES)]
    shape: list[Count]
    region_shape: list[Count]
    dtype: Annotated[str, AfterValidator(_int_dtype)]
    layout: str
    c0: Annotated[int, Field(ge=1)]
    bank_mapping: BankMapping
    npy: PlainName
    npy_sha256: str
    hex: PlainName
    hex_sha256: str


class TileEntry(_Open):
    tile: Count
    dir: RelDir
    n: Count
    oh: list[int]
    oc: list[int]
    skipped: bool
    buffers: list[BufferEntry]


class StageEntry(_Open):
    name: str
    dir: RelDir
    skipped: bool
    tiles: list[TileEntry]


class DumpIndex(_Open):
    format: str
    layer: str
    method: str
    num_tiles: Count
    dumped_tiles: list[Count]
    skipped_tiles: list[Count]
    stages: list[StageEntry]


def validate_index(data: Any, path: Path) -> dict[str, Any]:
    """``data`` (parsed index.json) if it has every field the reader uses, else a one-line IntegrityError."""
    try:
        DumpIndex.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).removeprefix(".")
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 60 else shown[:60] + "..."
        msg = str(first["msg"]).removeprefix("Value error, ").replace("Input should be", "expected")
        raise IntegrityError(f"{path}: {where or 'index'}: {msg} (got {shown}); the index was edited or is not "
                             "from convsim, rerun to regenerate it") from None
    return data
