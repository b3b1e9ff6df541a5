"""Typed configuration: the layer, its data, the engine's hardware, and the mapping method.

This module is the only YAML reader of the project (``load_config``). Everything downstream receives frozen
pydantic models, never dicts. Unknown keys are rejected with their path; cross-field rules (groups, output
padding, output size, int8 pattern weights) live in validators whose messages name the fields and values.

Keys mirror ``torch.nn.ConvTranspose2d`` / ``torch.nn.Conv2d`` argument names. Pair-valued arguments accept an int
or ``[h, w]`` and are normalised to ``(h, w)`` tuples.
"""

from __future__ import annotations

import difflib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from simulator.errors import ConfigError
from simulator.inputs import read_yaml_file

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


def _pair(value: Any) -> Any:
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


def _not_bool(value: Any) -> Any:
    """YAML ``true`` is not a number: refuse it where an int or float is expected (pydantic would take it as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


# --------------------------------------------------------------------------------------------------------- layer


PositiveInt = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
NonNegInt = Annotated[int, BeforeValidator(_not_bool), Field(ge=0)]


Int8 = Annotated[int, BeforeValidator(_not_bool), Field(ge=-128, le=127)]
Scale = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, allow_inf_nan=False)]
Q31_MAX = 2**31 - 1


def _scalar_or_list(value: Any) -> Any:
    """A per-channel list stays a tuple; one number stays a number."""
    return tuple(value) if isinstance(value, list) else value


class TensorQuant(_Frozen):
    """Affine int8 quantization of an activation: real = scale * (q - zero_point)."""

    scale: Scale
    zero_point: Int8 = 0


class WeightQuant(_Frozen):
    """Affine int8 quantization of the weight: one scale, or one per output channel (a list); one zero point."""

    scale: Scale | tuple[Scale, ...]
    zero_point: Int8 = 0

    _list = field_validator("scale", mode="before")(lambda v: _scalar_or_list(v))

    @property
    def per_channel(self) -> bool:
        return isinstance(self.scale, tuple)

    def scales(self, out_channels: int) -> tuple[float, ...]:
        """The scale of every output channel."""
        return self.scale if isinstance(self.scale, tuple) else (self.scale,) * out_channels


class QuantConfig(_Frozen):
    """A quantized layer: int8 ifmap and weight with zero points, int32 bias at scale input.scale * weight.scale[c],
    int8 ofmap from the output converter (rounding profile, output zero point, optional ReLU clamp).
    docs/quantization.md has the formulas."""

    input: TensorQuant
    weight: WeightQuant
    output: TensorQuant
    rounding: Literal["fp32_rne", "tflite_double", "single_round"] = "fp32_rne"
    activation: Literal["none", "relu"] = "none"
    multiplier: tuple[Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=Q31_MAX)], ...] | None = None
    shift: tuple[Annotated[int, BeforeValidator(_not_bool), Field(ge=-31, le=30)], ...] | None = None
    bias_float: tuple[Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)], ...] | None = None

    _lists = field_validator("multiplier", "shift", "bias_float", mode="before")(lambda v: _scalar_or_list(v))

    @model_validator(mode="after")
    def _registers(self) -> QuantConfig:
        if (self.multiplier is None) != (self.shift is None):
            raise ValueError("multiplier and shift are given together (the converter's two registers) or not at all")
        if self.multiplier is not None and self.shift is not None:
            if self.rounding == "fp32_rne":
                raise ValueError("multiplier/shift registers need an integer rounding profile (tflite_double or "
                                 "single_round), not rounding=fp32_rne")
            if len(self.multiplier) != len(self.shift):
                raise ValueError(f"multiplier has {len(self.multiplier)} entries, shift {len(self.shift)}: give one "
                                 "pair per output channel (or one pair)")
        if self.bias_float is not None and self.rounding != "fp32_rne":
            raise ValueError(f"bias_float is the fp32_rne converter's float bias, not used by rounding={self.rounding}")
        return self

    def effective_scales(self, out_channels: int) -> tuple[float, ...]:
        """``s_x * s_w[c] / s_y`` per channel, in double precision from the scales as written."""
        return tuple(self.input.scale * s / self.output.scale for s in self.weight.scales(out_channels))

    def registers(self, out_channels: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The integer profiles' (multiplier, shift) per output channel: given, or TFLite's QuantizeMultiplier of
        the effective scale."""
        from simulator.quant import quantize_multiplier

        if self.multiplier is not None and self.shift is not None:
            if len(self.multiplier) == 1:
                return self.multiplier * out_channels, self.shift * out_channels
            return self.multiplier, self.shift
        pairs = [quantize_multiplier(s, self.rounding == "single_round") for s in self.effective_scales(out_channels)]
        return tuple(m for m, _ in pairs), tuple(s for _, s in pairs)

    def check_layer(self, out_channels: int) -> None:
        """Rules that need the layer's output channel count."""
        if self.weight.per_channel and len(self.weight.scales(out_channels)) != out_channels:
            raise ValueError(f"quant.weight.scale has {len(self.weight.scales(out_channels))} entries, "
                             f"out_channels={out_channels} (one number, or one per output channel)")
        if self.multiplier is not None and len(self.multiplier) not in (1, out_channels):
            raise ValueError(f"quant.multiplier has {len(self.multiplier)} entries: one, or out_channels="
                             f"{out_channels}")
        if self.bias_float is not None and len(self.bias_float) != out_channels:
            raise ValueError(f"quant.bias_float has {len(self.bias_float)} entries, out_channels={out_channels}")
        if self.rounding != "fp32_rne" and self.multiplier is None:
            for c, (scale, (_, shift)) in enumerate(zip(self.effective_scales(out_channels),
                                                        zip(*self.registers(out_channels), strict=True),
                                                        strict=True)):
                if shift > 30:
                    raise ValueError(f"quant: effective scale s_x*s_w/s_y = {scale:g} (channel {c}) needs a left "
                                     f"shift of {shift} bits; rounding={self.rounding} supports at most 30")


class LayerConfig(_Frozen):
    """One convolution layer, with torch's argument names."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=MAX_NAME)] = "layer"
    op: Literal["conv_transpose2d", "conv2d"] = "conv_transpose2d"
    input_shape: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]
    in_channels: PositiveInt
    out_channels: PositiveInt
    kernel_size: tuple[PositiveInt, PositiveInt]
    stride: tuple[PositiveInt, PositiveInt] = (1, 1)
    padding: tuple[NonNegInt, NonNegInt] = (0, 0)
    output_padding: tuple[NonNegInt, NonNegInt] = (0, 0)
    dilation: tuple[PositiveInt, PositiveInt] = (1, 1)
    groups: PositiveInt = 1
    bias: bool = True
    padding_mode: Literal["zeros"] = "zeros"
    quant: QuantConfig | None = None  # absent: int8 x int8 -> int32 ofmap, no output converter
    input: Literal["data", "previous"] = "data"  # previous: the previous layer's int8 ofmap (a quantized network)
    data: DataConfig | None = None  # this layer's tensors, instead of the config's data: (e.g. from-torch weights)

    _pairs = field_validator("kernel_size", "stride", "padding", "output_padding", "dilation", mode="before")(
        lambda v: _pair(v)
    )

    @field_validator("input_shape", mode="before")
    @classmethod
    def _shape_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) != 4:
            raise ValueError(f"expected 4 entries [N, C, H, W], got {list(value)!r}")
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> LayerConfig:
        _, c, h, w = self.input_shape
        if c != self.in_channels:
            raise ValueError(f"input_shape[1]={c} must equal in_channels={self.in_channels}")
        for field in ("in_channels", "out_channels"):
            if getattr(self, field) % self.groups:
                raise ValueError(f"{field}={getattr(self, field)} is not divisible by groups={self.groups}")
        if self.op == "conv2d" and self.output_padding != (0, 0):
            raise ValueError(f"output_padding={list(self.output_padding)} is only valid for conv_transpose2d, "
                             f"not op={self.op}")
        for axis in (0, 1):
            op_, s, d = self.output_padding[axis], self.stride[axis], self.dilation[axis]
            if op_ >= max(s, d):
                raise ValueError(
                    f"output_padding={list(self.output_padding)} must be smaller than stride or dilation "
                    f"(stride={list(self.stride)}, dilation={list(self.dilation)})"
                )
        if self.quant is not None:
            self.quant.check_layer(self.out_channels)
        oh, ow = self.output_hw
        if oh <= 0 or ow <= 0:
            raise ValueError(
                f"output size comes out {oh}x{ow} for input {h}x{w}, kernel_size={list(self.kernel_size)}, "
                f"stride={list(self.stride)}, padding={list(self.padding)}, dilation={list(self.dilation)}"
            )
        if max(h, w, oh, ow) > MAX_EXTENT:
            raise ValueError(f"input {h}x{w} -> output {oh:,}x{ow:,}: more than {MAX_EXTENT:,} rows or columns, "
                             "beyond what the simulator accepts")
        sizes = self.tensor_bytes
        if sum(sizes.values()) > MAX_LAYER_BYTES:
            parts = ", ".join(f"{k} {v:,}" for k, v in sizes.items())
            raise ValueError(f"the layer needs {sum(sizes.values()):,} bytes of tensors ({parts}), more than the "
                             f"{MAX_LAYER_BYTES:,} bytes the simulator accepts")
        if self.products > MAX_MACS:
            raise ValueError(f"the layer computes {self.products:,} products, more than the {MAX_MACS:,} the "
                             "simulator runs (reduce its size or split it)")
        return self

    @property
    def products(self) -> int:
        """Products of real values the layer computes (every input pixel with every tap for a transposed conv,
        every output with its whole reduction for a conv2d): the work a simulation of it must do."""
        n, c, h, w = self.input_shape
        kh, kw = self.kernel_size
        if self.is_transposed:
            return n * c * (self.out_channels // self.groups) * h * w * kh * kw
        oh, ow = self.output_hw
        return n * self.out_channels * max(oh, 0) * max(ow, 0) * (c // self.groups) * kh * kw

    @property
    def tensor_bytes(self) -> dict[str, int]:
        """Bytes of the int8 ifmap and weight, the int32 bias and the int32 ofmap (what a run holds in memory)."""
        n, c, h, w = self.input_shape
        kh, kw = self.kernel_size
        oh, ow = self.output_hw
        return {"ifmap": n * c * h * w, "weight": c * (self.out_channels // self.groups) * kh * kw,
                "bias": 4 * self.out_channels, "ofmap": 4 * n * self.out_channels * max(oh, 0) * max(ow, 0)}

    @property
    def output_hw(self) -> Pair:
        """Output (H, W), by torch's formulas."""
        _, _, h, w = self.input_shape
        out = []
        for axis, size in enumerate((h, w)):
            k, s, p = self.kernel_size[axis], self.stride[axis], self.padding[axis]
            d, op_ = self.dilation[axis], self.output_padding[axis]
            if self.op == "conv_transpose2d":
                out.append((size - 1) * s - 2 * p + d * (k - 1) + op_ + 1)
            else:
                span = size + 2 * p - d * (k - 1) - 1
                out.append(span // s + 1 if span >= 0 else 0)
        return out[0], out[1]

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        oh, ow = self.output_hw
        return self.input_shape[0], self.out_channels, oh, ow

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """Weight shape in torch's layout for this op."""
        kh, kw = self.kernel_size
        if self.op == "conv_transpose2d":
            return self.in_channels, self.out_channels // self.groups, kh, kw
        return self.out_channels, self.in_channels // self.groups, kh, kw

    @property
    def reduction_length(self) -> int:
        """K of the engine's GEMM view: kh * kw * C_in / groups."""
        return self.kernel_size[0] * self.kernel_size[1] * (self.in_channels // self.groups)

    @property
    def is_transposed(self) -> bool:
        return self.op == "conv_transpose2d"

    @property
    def ofmap_dtype(self) -> str:
        """The ofmap the engine stores: int8 from the output converter when quantized, else int32."""
        return "int8" if self.quant is not None else "int32"


# ---------------------------------------------------------------------------------------------------------- data


class FileSource(_Frozen):
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


class DataConfig(_Frozen):
    """Where the layer's tensors come from when they are not passed in."""

    seed: NonNegInt = 0
    ifmap: Annotated[Literal["random"] | FileSource, _source("random")] = "random"
    weight: Annotated[Literal["pattern", "random"] | FileSource, _source("pattern", "random")] = "pattern"
    bias: Annotated[Literal["zeros", "random"] | FileSource, _source("zeros", "random")] = "zeros"


LayerConfig.model_rebuild()  # its per-layer data: field names DataConfig, defined above


# ------------------------------------------------------------------------------------------------------ hardware


class MacArrayConfig(_Frozen):
    """The systolic MAC array."""

    rows: PositiveInt = 32
    cols: PositiveInt = 32
    dataflow: Literal["os", "ws"] = "os"
    weight_double_buffer: bool = False
    # the swelling DMA / weight-transpose unit / address generator tag the zeros they insert and the PEs skip
    # them: changes energy only (docs/energy.md), never values or cycles, so golden manifests leave it out
    zero_gating: bool = Field(default=False, exclude=True)


class BufferConfig(_Frozen):
    """One on-chip SRAM buffer: capacity and banking (word-interleaved banks)."""

    size_bytes: PositiveInt = 512 * 1024
    num_banks: PositiveInt = 16
    bank_width_bytes: PositiveInt = 16

    @field_validator("size_bytes")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if value > MAX_SRAM_BYTES:
            raise ValueError(f"{value:,} bytes: the simulator holds each SRAM buffer as a byte image in memory and "
                             f"accepts at most {MAX_SRAM_BYTES:,} bytes")
        return value


class SramConfig(_Frozen):
    ifmap: BufferConfig = BufferConfig()
    weight: BufferConfig = BufferConfig()
    psum: BufferConfig = BufferConfig()


class LayoutConfig(_Frozen):
    """Activation layout in SRAM. Weights are always stored OIHW (torch's order)."""

    activation: Literal["NCHW", "NHWC", "NC1HWC0"] = "NHWC"
    c0: PositiveInt = 16


class DmaConfig(_Frozen):
    """A DMA or streaming unit: sustained bandwidth and a fixed cost per descriptor (burst set-up)."""

    bytes_per_cycle: PositiveInt = 64
    setup_cycles: NonNegInt = 32


class DramDmaConfig(DmaConfig):
    """The DRAM <-> SRAM DMA. ``dram_layout: native`` means DRAM already holds activations in the SRAM layout
    (contiguous bursts); ``NCHW`` means the DMA converts torch's NCHW on the fly (strided SRAM writes, which can
    conflict on banks)."""

    dram_layout: Literal["native", "NCHW"] = "native"


class AccumulatorConfig(_Frozen):
    on_overflow: Literal["wrap", "saturate", "error"] = "error"


class PipelineConfig(_Frozen):
    overlap: Literal["serial", "double_buffer"] = "double_buffer"


def _whole_femtojoules(value: float) -> float:
    """Energies are kept as exact integer femtojoules (docs/energy.md): refuse a finer value."""
    if (Decimal(repr(float(value))) * 1000) % 1:
        raise ValueError(f"{value!r} pJ is finer than the 0.001 pJ (1 fJ) resolution of the energy ledger")
    return value


PicoJoules = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1e9, allow_inf_nan=False),
                       AfterValidator(_whole_femtojoules)]
EnergyPreset = Literal["horowitz45", "horowitz45_sized", "zigzag_tpu_like"]


class BufferEnergyConfig(_Frozen):
    """Per-byte SRAM access energy of one buffer, overriding the table's ``sram_*_pj_per_byte``."""

    read_pj_per_byte: PicoJoules | None = None
    write_pj_per_byte: PicoJoules | None = None


class EnergyConfig(_Frozen):
    """Energy per action, in picojoules (see docs/energy.md for the shipped tables and their sources).

    A key left out comes from ``preset`` when one is named, else it is 0. ``buffers`` overrides the SRAM costs of
    single buffers; ``dram_write_pj_per_byte`` (default: ``dram_pj_per_byte``) the DRAM write cost.
    """

    preset: EnergyPreset | None = None
    mac_pj: PicoJoules | None = None
    mac_gated_pj: PicoJoules | None = None
    sram_read_pj_per_byte: PicoJoules | None = None
    sram_write_pj_per_byte: PicoJoules | None = None
    buffers: dict[Literal["ifmap", "weight", "psum"], BufferEnergyConfig] = Field(default_factory=dict)
    dram_pj_per_byte: PicoJoules | None = None
    dram_write_pj_per_byte: PicoJoules | None = None
    swell_dma_pj_per_byte: PicoJoules | None = None
    output_converter_pj_per_byte: PicoJoules | None = None


class HardwareConfig(_Frozen):
    """The engine: MAC array, SRAM buffers, layout, DMA engines, accumulator policy, tile overlap, clock, and
    the energy table (energy only: never values or cycles, so golden manifests leave it out)."""

    clock_mhz: Annotated[float, BeforeValidator(_not_bool), Field(ge=1e-6, le=1e6)] = 1000.0  # 1 Hz .. 1 THz
    mac_array: MacArrayConfig = MacArrayConfig()
    sram: SramConfig = SramConfig()
    layout: LayoutConfig = LayoutConfig()
    dma: DramDmaConfig = DramDmaConfig()
    swell_dma: DmaConfig = DmaConfig(bytes_per_cycle=64, setup_cycles=8)
    weight_transpose: DmaConfig = DmaConfig(bytes_per_cycle=32, setup_cycles=8)
    writeback: DmaConfig = DmaConfig(bytes_per_cycle=64, setup_cycles=8)
    accumulator: AccumulatorConfig = AccumulatorConfig()
    pipeline: PipelineConfig = PipelineConfig()
    energy: EnergyConfig = Field(default=EnergyConfig(preset="horowitz45"), exclude=True)


class EngineConfig(_Frozen):
    """How a transposed conv is mapped onto the conv-only engine."""

    transposed_conv: Literal["swell", "phase"] = "swell"


# ------------------------------------------------------------------------------------------------------- top level


class SimConfig(_Frozen):
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


# ---------------------------------------------------------------------------------------------------------- loading


def _first_error(err: ValidationError) -> Any:
    """The error to report: an unknown key before anything else, because a misspelt key also makes the key it
    was meant to be "missing", and the misspelling is what the user has to fix."""
    errors = err.errors(include_url=False)
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def _known_keys() -> set[str]:
    models, keys = [_Frozen], set()
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        keys.update(model.model_fields)
    return keys


PAIR_FIELDS = ("kernel_size", "stride", "padding", "output_padding", "dilation")


def _plain_message(error: Any, loc: list[Any]) -> str:
    """pydantic's message for one error, in the words of the config (no "valid tuple", no "Input should")."""
    kind, ctx = error["type"], error.get("ctx") or {}
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "tuple_type" or (kind in ("int_type", "int_parsing", "int_from_float") and field in PAIR_FIELDS):
        if field in PAIR_FIELDS:
            return "expected an int or a pair [h, w] of ints"
        if field == "input_shape":
            return "expected a list of 4 ints [N, C, H, W]"
        return "expected a list"
    plain = {
        "string_pattern_mismatch": "only letters, digits, '_' and '-' are allowed (it names a directory)",
        "int_type": "expected an integer", "int_parsing": "expected an integer",
        "int_from_float": "expected an integer, not a fraction", "float_type": "expected a number",
        "float_parsing": "expected a number", "bool_type": "expected true or false",
        "bool_parsing": "expected true or false", "string_type": "expected a string",
        "dict_type": "expected a mapping", "model_type": "expected a mapping", "list_type": "expected a list",
        "missing": "required key missing", "finite_number": "expected a finite number",
        "string_too_long": f"at most {(error.get('ctx') or {}).get('max_length')} characters",
    }
    if kind in plain:
        return plain[kind]
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
              "less_than": ("<", "lt")}
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {ctx.get(key)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} entr{'y' if ctx.get('min_length') == 1 else 'ies'}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return msg.replace("Input should be", "expected").replace("a valid ", "")


def format_validation_error(err: ValidationError, source: str, single_layer: bool = False) -> str:
    """One line: ``source: dotted.key[index].path: message (got value)`` for the first error (unknown keys
    first), with the closest valid key suggested for a misspelt one."""
    first = _first_error(err)
    loc = [p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p == "FileSource"))]
    if single_layer and loc[:2] == ["layers", 0]:
        loc = ["layer", *loc[2:]]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" if str(p).isidentifier() else f"[{str(p)!r}]"
                    for p in loc).removeprefix(".")
    where = f"{where}: " if where else ""
    msg = _plain_message(first, loc)
    got = ""
    if first["type"] not in ("value_error", "missing") and "input" in first:
        shown = repr(first["input"])
        got = f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    if first["type"] == "extra_forbidden":
        msg, got = "unknown key", ""
        close = difflib.get_close_matches(str(loc[-1]), sorted(_known_keys()), n=1, cutoff=0.75) if loc else []
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    return f"{source}: {where}{msg}{got}"


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
        first = _first_error(err)["loc"]
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


__all__ = [
    "BufferConfig",
    "DataConfig",
    "DmaConfig",
    "EnergyConfig",
    "EngineConfig",
    "FileSource",
    "HardwareConfig",
    "LayerConfig",
    "QuantConfig",
    "SimConfig",
    "TensorQuant",
    "WeightQuant",
    "config_from_mapping",
    "load_config",
]
