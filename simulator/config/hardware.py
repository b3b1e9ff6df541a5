"""The ``hardware:`` section: the engine's blocks as a config describes them.

Models, one model per block: the systolic MAC array (size, dataflow, weight double buffer, zero gating), the three
SRAM buffers (capacity, word-interleaved banks), the activation layout, the DRAM DMA and the on-chip streaming
units (bandwidth, per-descriptor set-up), the accumulator's overflow policy, tile overlap, the clock, and the
energy table (pJ per action, kept in whole femtojoules). Ignores how any of these are used: the cost functions
in ``simulator/stages/`` and ``simulator/energy.py`` read them. Energy and zero gating change energy only, never
values or cycles, so they are excluded from the dumped config that golden manifests record.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from simulator.config.fields import MAX_SRAM_BYTES, Frozen, NonNegInt, PositiveInt, not_bool


class MacArrayConfig(Frozen):
    """The systolic MAC array."""

    rows: PositiveInt = 32
    cols: PositiveInt = 32
    dataflow: Literal["os", "ws"] = "os"
    weight_double_buffer: bool = False
    # the swelling DMA / weight-transpose unit / address generator tag the zeros they insert and the PEs skip
    # them: changes energy only (docs/energy.md), never values or cycles, so golden manifests leave it out
    zero_gating: bool = Field(default=False, exclude=True)


class BufferConfig(Frozen):
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


class SramConfig(Frozen):
    ifmap: BufferConfig = BufferConfig()
    weight: BufferConfig = BufferConfig()
    psum: BufferConfig = BufferConfig()


class LayoutConfig(Frozen):
    """Activation layout in SRAM. Weights are always stored OIHW (torch's order)."""

    activation: Literal["NCHW", "NHWC", "NC1HWC0"] = "NHWC"
    c0: PositiveInt = 16


class DmaConfig(Frozen):
    """A DMA or streaming unit: sustained bandwidth and a fixed cost per descriptor (burst set-up)."""

    bytes_per_cycle: PositiveInt = 64
    setup_cycles: NonNegInt = 32


class DramDmaConfig(DmaConfig):
    """The DRAM <-> SRAM DMA. ``dram_layout: native`` means DRAM already holds activations in the SRAM layout
    (contiguous bursts); ``NCHW`` means the DMA converts torch's NCHW on the fly (strided SRAM writes, which can
    conflict on banks)."""

    dram_layout: Literal["native", "NCHW"] = "native"


class AccumulatorConfig(Frozen):
    on_overflow: Literal["wrap", "saturate", "error"] = "error"


class PipelineConfig(Frozen):
    overlap: Literal["serial", "double_buffer"] = "double_buffer"


def _whole_femtojoules(value: float) -> float:
    """Energies are kept as exact integer femtojoules (docs/energy.md): refuse a finer value."""
    if (Decimal(repr(float(value))) * 1000) % 1:
        raise ValueError(f"{value!r} pJ is finer than the 0.001 pJ (1 fJ) resolution of the energy ledger")
    return value


PicoJoules = Annotated[float, BeforeValidator(not_bool), Field(ge=0, le=1e9, allow_inf_nan=False),
                       AfterValidator(_whole_femtojoules)]
EnergyPreset = Literal["horowitz45", "horowitz45_sized", "zigzag_tpu_like"]


class BufferEnergyConfig(Frozen):
    """Per-byte SRAM access energy of one buffer, overriding the table's ``sram_*_pj_per_byte``."""

    read_pj_per_byte: PicoJoules | None = None
    write_pj_per_byte: PicoJoules | None = None


class EnergyConfig(Frozen):
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


class HardwareConfig(Frozen):
    """The engine: MAC array, SRAM buffers, layout, DMA engines, accumulator policy, tile overlap, clock, and
    the energy table (energy only: never values or cycles, so golden manifests leave it out)."""

    clock_mhz: Annotated[float, BeforeValidator(not_bool), Field(ge=1e-6, le=1e6)] = 1000.0  # 1 Hz .. 1 THz
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
