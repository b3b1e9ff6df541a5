"""Typed configuration: the layer, its data, the engine's hardware, and the mapping method.

``load_config`` is the only YAML reader of the project. Everything downstream receives frozen pydantic models,
never dicts. Unknown keys are rejected with their path; cross-field rules (groups, output padding, output size,
int8 pattern weights) live in validators whose messages name the fields and values.

Keys mirror ``torch.nn.ConvTranspose2d`` / ``torch.nn.Conv2d`` argument names. Pair-valued arguments accept an int
or ``[h, w]`` and are normalised to ``(h, w)`` tuples.

One module per section a reader looks for: ``layer`` (one conv layer), ``quant`` (its ``quant:`` section),
``data`` (where tensors come from), ``hardware`` (the engine's blocks and energy table), ``sim`` (the whole
simulation: layer or network, chaining), ``fields`` (shared coercions and resource bounds), ``messages``
(validation errors as one line) and ``loader`` (the YAML side). Import from ``simulator.config``; the modules
are its layout, not its interface.
"""

from simulator.config.data import DataConfig, FileSource
from simulator.config.hardware import (
    AccumulatorConfig,
    BufferConfig,
    BufferEnergyConfig,
    DmaConfig,
    DramDmaConfig,
    EnergyConfig,
    EnergyPreset,
    HardwareConfig,
    LayoutConfig,
    MacArrayConfig,
    PipelineConfig,
    SramConfig,
)
from simulator.config.layer import LayerConfig
from simulator.config.loader import config_from_mapping, load_config, read_config_mapping
from simulator.config.messages import format_validation_error
from simulator.config.quant import QuantConfig, TensorQuant, WeightQuant
from simulator.config.sim import EngineConfig, SimConfig

__all__ = [
    "AccumulatorConfig",
    "BufferConfig",
    "BufferEnergyConfig",
    "DataConfig",
    "DmaConfig",
    "DramDmaConfig",
    "EnergyConfig",
    "EnergyPreset",
    "EngineConfig",
    "FileSource",
    "HardwareConfig",
    "LayerConfig",
    "LayoutConfig",
    "MacArrayConfig",
    "PipelineConfig",
    "QuantConfig",
    "SimConfig",
    "SramConfig",
    "TensorQuant",
    "WeightQuant",
    "config_from_mapping",
    "format_validation_error",
    "load_config",
    "read_config_mapping",
]
