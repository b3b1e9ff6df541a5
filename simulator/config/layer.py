"""One convolution layer (``layer:`` or an entry of ``layers:``), with torch's argument names.

Models the layer as ``torch.nn.ConvTranspose2d`` / ``torch.nn.Conv2d`` describe it (shapes, stride, padding,
output padding, dilation, groups, bias) plus its quantization and data, and derives what the engine needs from it
(output size by torch's formulas, weight shape, GEMM reduction length, tensor bytes, products). Its validators are
the cross-field rules of one layer and the resource bounds of one layer. Ignores the hardware (how the layer is
tiled or mapped is the planner's business) and the layers around it (``SimConfig`` checks chaining).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.config.data import DataConfig
from simulator.config.fields import (
    MAX_EXTENT,
    MAX_LAYER_BYTES,
    MAX_MACS,
    MAX_NAME,
    NAME_PATTERN,
    Frozen,
    NonNegInt,
    Pair,
    PositiveInt,
    as_pair,
)
from simulator.config.quant import QuantConfig


class LayerConfig(Frozen):
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
        lambda v: as_pair(v)
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
