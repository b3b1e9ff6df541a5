"""The top level of a config: a whole simulation, one layer or a network, with its data, hardware and the
method a transposed conv is mapped with.

Models the rules that need more than one layer: ``layer:`` versus ``layers:``, unique layer names, the network's
total products, the ``pattern`` weight staying within int8 for every kernel, and ``input: previous`` chaining
(shapes, scales and zero points of adjacent quantized layers agree). Ignores files: the loader reads YAML and
resolves paths before this model sees the mapping.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from simulator.config.data import DataConfig
from simulator.config.fields import INT8_MAX, MAX_LAYERS, MAX_MACS, MAX_NAME, NAME_PATTERN, Frozen
from simulator.config.hardware import HardwareConfig
from simulator.config.layer import LayerConfig


class EngineConfig(Frozen):
    """How a transposed conv is mapped onto the conv-only engine."""

    transposed_conv: Literal["swell", "phase"] = "swell"


class SimConfig(Frozen):
    """A whole simulation: one layer (``layer:``) or a network (``layers:``), its data, hardware and method."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=MAX_NAME)]
    layers: tuple[LayerConfig, ...]
    data: DataConfig = DataConfig()
    hardware: HardwareConfig = HardwareConfig()
    engine: EngineConfig = EngineConfig()
    is_network: bool = False

    @model_validator(mode="before")
    @classmethod
    def _layer_or_layers(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if "is_network" in raw:
            raise ValueError("is_network is derived from layer/layers and cannot be set")
        has_one, has_many = "layer" in raw, "layers" in raw
        if has_one == has_many:
            raise ValueError("exactly one of 'layer' (a mapping) or 'layers' (a list) is required")
        if has_one:
            layer = raw.pop("layer")
            if isinstance(layer, dict) and "name" not in layer and isinstance(raw.get("name"), str):
                layer = {**layer, "name": raw["name"]}
            raw["layers"] = (layer,)
        else:
            if not isinstance(raw["layers"], list) or not raw["layers"]:
                shown = repr(raw["layers"])
                raise ValueError(f"layers must be a non-empty list, got {shown[:60]}{'...' if len(shown) > 60 else ''}")
            if len(raw["layers"]) > MAX_LAYERS:
                raise ValueError(f"layers: {len(raw['layers']):,} layers, more than the {MAX_LAYERS:,} a network "
                                 "config accepts")
            raw["is_network"] = True
        return raw

    @model_validator(mode="after")
    def _unique_layer_names(self) -> SimConfig:
        total = sum(layer.products for layer in self.layers)
        if total > MAX_MACS:
            raise ValueError(f"layers: the network computes {total:,} products, more than the {MAX_MACS:,} the "
                             "simulator runs in one config (split it)")
        names = [layer.name for layer in self.layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"layers: layer names must be unique, repeated: {', '.join(dupes)}")
        if self.data.weight == "pattern":
            for layer in self.layers:
                kh, kw = layer.kernel_size
                if kh * kw > INT8_MAX:
                    raise ValueError(
                        f"data.weight=pattern gives w[i,j]=i*kw+j+1 up to {kh * kw} for kernel_size={[kh, kw]} "
                        f"(layer {layer.name!r}), which leaves int8 (max {INT8_MAX}); use weight: random"
                    )
        self._check_chain()
        return self

    def _check_chain(self) -> None:
        """``input: previous`` reads the previous layer's int8 ofmap: shapes, scales and zero points must agree."""
        for i, layer in enumerate(self.layers):
            if layer.input != "previous":
                continue
            where = f"layers[{i}] ({layer.name!r}): input=previous"
            if i == 0:
                raise ValueError(f"{where} needs a previous layer")
            prev = self.layers[i - 1]
            if prev.quant is None or layer.quant is None:
                missing = prev.name if prev.quant is None else layer.name
                raise ValueError(f"{where} chains int8 tensors: layer {missing!r} needs a quant: section")
            if tuple(layer.input_shape) != tuple(prev.output_shape):
                raise ValueError(f"{where}: input_shape={list(layer.input_shape)}, but layer {prev.name!r} "
                                 f"outputs {list(prev.output_shape)}")
            have, want = layer.quant.input, prev.quant.output
            if (have.scale, have.zero_point) != (want.scale, want.zero_point):
                raise ValueError(f"{where}: quant.input (scale {have.scale!r}, zero_point {have.zero_point}) must "
                                 f"equal the quant.output of layer {prev.name!r} (scale {want.scale!r}, zero_point "
                                 f"{want.zero_point})")

    @property
    def layer(self) -> LayerConfig:
        """The single layer of a one-layer config."""
        return self.layers[0]

    def layer_data(self, layer: LayerConfig) -> DataConfig:
        """Where a layer's tensors come from: its own ``data:`` if it has one, else the config's."""
        return layer.data if layer.data is not None else self.data
