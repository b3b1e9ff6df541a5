"""Reading a config from YAML: the project's only config reader (``load_config``).

Responsible for the file side: bounded YAML reading (``simulator.inputs.read_yaml_file``), a top-level mapping,
a ``hardware:`` given as a file name, ``data:`` file paths made relative to the config's directory, refusing a
sweep file given as a config, and turning a validation error into one :class:`ConfigError` line. Ignores what the
keys mean: the models in this package validate them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simulator.config.messages import first_error, format_validation_error
from simulator.config.sim import SimConfig
from simulator.errors import ConfigError
from simulator.inputs import read_yaml_file


def _read_yaml(path: Path, what: str) -> Any:
    data = read_yaml_file(path, what)
    if data is None:
        raise ConfigError(f"{what} {path}: file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def _resolve_data_files(data: Any, base: Path) -> Any:
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in ("ifmap", "weight", "bias"):
        src = out.get(key)
        if isinstance(src, dict) and isinstance(src.get("file"), str):
            out[key] = {**src, "file": str((base / src["file"]).resolve())}
    return out


def config_from_mapping(raw: dict[str, Any], base_dir: Path, source: str = "config") -> SimConfig:
    """Validate a config mapping; a ``hardware`` string is a YAML file relative to ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(raw).__name__}")
    raw = dict(raw)
    hw = raw.get("hardware")
    hw_source = None
    if isinstance(hw, str):
        raw["hardware"] = _read_yaml(base_dir / hw, "hardware file")
        hw_source = f"{source} (hardware file {base_dir / hw})"
    if "data" in raw:
        raw["data"] = _resolve_data_files(raw["data"], base_dir)
    for key in ("layer", "layers"):  # a layer's own data: files are relative to the config too
        entries = raw.get(key)
        items = entries if isinstance(entries, list) else [entries] if isinstance(entries, dict) else []
        resolved = [{**e, "data": _resolve_data_files(e["data"], base_dir)} if isinstance(e, dict) and "data" in e
                    else e for e in items]
        if isinstance(entries, list):
            raw[key] = resolved
        elif isinstance(entries, dict):
            raw[key] = resolved[0]
    try:
        return SimConfig.model_validate(raw)
    except ValidationError as err:
        first = first_error(err)["loc"]
        where = hw_source if hw_source and first[:1] == ("hardware",) else source
        raise ConfigError(format_validation_error(err, where, single_layer="layer" in raw)) from None


def read_config_mapping(path: Path, what: str = "config") -> tuple[dict[str, Any], Path]:
    """The raw mapping of a YAML file and its directory, a ``hardware:`` file already read into a mapping (so
    overrides such as ``hardware.mac_array.rows`` can be applied before validation)."""
    raw = dict(_read_yaml(path, what))
    if isinstance(raw.get("hardware"), str):
        raw["hardware"] = _read_yaml(path.parent / raw["hardware"], "hardware file")
    return raw, path.parent


def load_config(path: str | Path) -> SimConfig:
    """Read and validate a config file. Raises :class:`ConfigError` with a one-line message."""
    if not isinstance(path, str | Path):
        raise ConfigError(f"load_config: expected a path (str or pathlib.Path), got {type(path).__name__}")
    path = Path(path)
    raw = dict(_read_yaml(path, "config"))
    if "grid" in raw and "base" in raw and "layer" not in raw and "layers" not in raw:
        raise ConfigError(f"{path}: this is a sweep file (base, grid), not a config: run it with "
                          f"`convsim sweep {path}`")
    return config_from_mapping(raw, path.parent, source=str(path))
