"""The ``quant:`` section of a layer: affine int8 quantization of ifmap, weight and ofmap, and the output
converter's rounding profile and (multiplier, shift) registers.

Models the numbers the output converter is programmed with (scales, zero points, per-channel registers) and the
rules that tie them together (registers need an integer rounding profile, one entry or one per output channel,
left shifts of at most 30 bits). Ignores how the converter computes (``simulator/quant.py`` and
``simulator/stages/output_convert.py``) and anything the layer's shape decides (see ``check_layer``).
docs/quantization.md has the formulas.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from simulator.config.fields import Frozen, not_bool

Int8 = Annotated[int, BeforeValidator(not_bool), Field(ge=-128, le=127)]
Scale = Annotated[float, BeforeValidator(not_bool), Field(gt=0, allow_inf_nan=False)]
Q31_MAX = 2**31 - 1


def _scalar_or_list(value: Any) -> Any:
    """A per-channel list stays a tuple; one number stays a number."""
    return tuple(value) if isinstance(value, list) else value


class TensorQuant(Frozen):
    """Affine int8 quantization of an activation: real = scale * (q - zero_point)."""

    scale: Scale
    zero_point: Int8 = 0


class WeightQuant(Frozen):
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


class QuantConfig(Frozen):
    """A quantized layer: int8 ifmap and weight with zero points, int32 bias at scale input.scale * weight.scale[c],
    int8 ofmap from the output converter (rounding profile, output zero point, optional ReLU clamp).
    docs/quantization.md has the formulas."""

    input: TensorQuant
    weight: WeightQuant
    output: TensorQuant
    rounding: Literal["fp32_rne", "tflite_double", "single_round"] = "fp32_rne"
    activation: Literal["none", "relu"] = "none"
    multiplier: tuple[Annotated[int, BeforeValidator(not_bool), Field(ge=0, le=Q31_MAX)], ...] | None = None
    shift: tuple[Annotated[int, BeforeValidator(not_bool), Field(ge=-31, le=30)], ...] | None = None
    bias_float: tuple[Annotated[float, BeforeValidator(not_bool), Field(allow_inf_nan=False)], ...] | None = None

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
