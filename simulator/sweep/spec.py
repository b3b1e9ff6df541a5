"""A sweep file and its points: the spec (base config, grid, constraints, objectives) and the grid expanded
into validated configs.

Models no hardware: it varies the hardware/engine description by dotted path (e.g.
``hardware.mac_array.rows: [8, 16, 32]``). Every grid key is checked against the config models before anything is
built, the grid is bounded (``MAX_POINTS``, ``MAX_POINT_LAYERS``), and every point is validated up front: an
invalid point or one outside the constraints is reported with its reason, never run. Pure: no files are written,
nothing is evaluated here.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulator.config import (
    LayerConfig,
    SimConfig,
    config_from_mapping,
    format_validation_error,
    read_config_mapping,
)
from simulator.errors import ConfigError

MAX_POINTS = 10_000  # grid points of one sweep (counted before any is built)
MAX_POINT_LAYERS = 100_000  # points x layers of the base config: each is validated and evaluated


class Constraints(BaseModel):
    """Points outside these limits are reported as excluded, not run."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_pes: int | None = Field(default=None, ge=1)
    min_pes: int | None = Field(default=None, ge=1)
    max_sram_bytes: int | None = Field(default=None, ge=1)


Objective = Literal["cycles", "energy_pj", "pes", "sram_bytes"]


class SweepSpec(BaseModel):
    """The sweep file: a base config (path relative to the sweep file), a grid, constraints, and the objectives
    the Pareto front minimises (totals over the point's layers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    base: str
    grid: dict[str, list[Any]] = Field(min_length=1)
    constraints: Constraints = Constraints()
    objectives: tuple[Objective, ...] = Field(default=("cycles", "pes", "sram_bytes"), min_length=1)


@dataclass(frozen=True)
class Point:
    index: int
    overrides: dict[str, Any]
    config: SimConfig | None
    problem: str | None

    @property
    def key(self) -> str:
        return json.dumps(self.overrides, sort_keys=True)


# ------------------------------------------------------------------------------------------------ points (pure)


def set_dotted(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``raw`` with ``a.b.c`` set to ``value`` (intermediate mappings created as needed)."""
    out = dict(raw)
    head, _, rest = path.partition(".")
    if not rest:
        out[head] = value
        return out
    inner = out.get(head)
    out[head] = set_dotted(inner if isinstance(inner, dict) else {}, rest, value)
    return out


def pes(cfg: SimConfig) -> int:
    return cfg.hardware.mac_array.rows * cfg.hardware.mac_array.cols


def sram_bytes(cfg: SimConfig) -> int:
    s = cfg.hardware.sram
    return s.ifmap.size_bytes + s.weight.size_bytes + s.psum.size_bytes


def _constraint_problem(cfg: SimConfig, c: Constraints) -> str | None:
    if c.max_pes is not None and pes(cfg) > c.max_pes:
        return f"excluded: {pes(cfg)} PEs > constraints.max_pes={c.max_pes}"
    if c.min_pes is not None and pes(cfg) < c.min_pes:
        return f"excluded: {pes(cfg)} PEs < constraints.min_pes={c.min_pes}"
    if c.max_sram_bytes is not None and sram_bytes(cfg) > c.max_sram_bytes:
        return f"excluded: {sram_bytes(cfg):,} SRAM bytes > constraints.max_sram_bytes={c.max_sram_bytes:,}"
    return None


def expand(spec: SweepSpec, base_raw: dict[str, Any], base_dir: Path) -> list[Point]:
    """Every grid point in a fixed order (the grid's keys in file order, values in list order), validated."""
    keys = list(spec.grid)
    points = []
    for index, values in enumerate(itertools.product(*(spec.grid[k] for k in keys))):
        overrides = dict(zip(keys, values, strict=True))
        raw = base_raw
        for path, value in overrides.items():
            raw = set_dotted(raw, path, value)
        try:
            cfg = config_from_mapping(raw, base_dir, source=f"point {index}")
        except ConfigError as exc:
            points.append(Point(index, overrides, None, str(exc)))
            continue
        points.append(Point(index, overrides, cfg, _constraint_problem(cfg, spec.constraints)))
    return points




# ---------------------------------------------------------------------------------------------- the sweep file


def load_spec(path: Path) -> tuple[SweepSpec, dict[str, Any], Path]:
    raw, _ = read_config_mapping(path, "sweep file")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    check_grid(spec.grid, path)
    base_path = path.parent / spec.base
    base_raw, base_dir = read_config_mapping(base_path, "base config")
    layers = len(base_raw["layers"]) if isinstance(base_raw.get("layers"), list) else 1
    points = math.prod(len(v) for v in spec.grid.values())
    if points * layers > MAX_POINT_LAYERS:
        raise ConfigError(f"{path}: {points:,} points x {layers:,} layers of {base_path} = {points * layers:,} layer "
                          f"evaluations, more than the {MAX_POINT_LAYERS:,} a sweep runs")
    return spec, base_raw, base_dir


def _grid_key_problem(key: str) -> str | None:
    """Why ``key`` (``hardware.mac_array.rows``) names no config field, or None when it does."""
    model: Any = SimConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = {name: f.annotation for name, f in model.model_fields.items()}
        if model is SimConfig:  # a single-layer config's `layer:`; `layers:` is a list, not addressable by key
            del fields["layers"], fields["is_network"]
            fields["layer"] = LayerConfig
        if part not in fields:
            where = ".".join(parts[:depth]) or "the config"
            close = difflib.get_close_matches(part, sorted(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {'.'.join([*parts[:depth], close[0]])!r}?)" if close else ""
            return f"{part!r} is not a key of {where}{hint}"
        annotation = fields[part]
        if typing.get_origin(annotation) is dict:  # a mapping field (e.g. hardware.energy.buffers): keys below it
            return None  # are checked when each point is validated
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth < len(parts) - 1 and not is_model:
            return f"{'.'.join(parts[:depth + 1])} is a value, it has no key {parts[depth + 1]!r}"
        if depth == len(parts) - 1 and is_model:
            return f"{key} is a section; name one of its keys ({', '.join(annotation.model_fields)})"
        model = annotation
    return None


def check_grid(grid: dict[str, list[Any]], path: Path) -> int:
    """Refuse, before anything is built, grid keys that name no config field, empty value lists and grids of
    more than MAX_POINTS points; return the number of points."""
    for key, values in grid.items():
        problem = _grid_key_problem(key)
        if problem:
            raise ConfigError(f"{path}: grid.{key}: {problem}")
        if not values:
            raise ConfigError(f"{path}: grid.{key}: empty list of values (every key needs at least one)")
    count = math.prod(len(v) for v in grid.values())
    if count > MAX_POINTS:
        raise ConfigError(f"{path}: grid has {count:,} points ({' x '.join(str(len(v)) for v in grid.values())}), "
                          f"more than the {MAX_POINTS:,} a sweep runs; split it or use fewer values")
    return count
