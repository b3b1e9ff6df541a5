"""The engine's declared stage list, how stages overlap across tiles, and ``simulate``.

This is the only module that composes stages: values (each stage's ``execute`` on the shared SRAM, tile by
tile, in pipeline order) and timing (each stage's ``cost`` per tile, scheduled ``serial`` or
``double_buffer``). Stages never call each other; every stage reads the SRAM regions the previous one wrote.

Schedule. Stage s of tile t starts at the latest of: the same unit finishing tile t-1; stage s-1 finishing tile
t (its input); and, double-buffered, the release of the buffer area tile t reuses: the ifmap and weight slots
are free once the MAC array has finished the tile that last used them, the psum area once write-back (the output
converter, for a quantized layer) has. Under the loop order with the slices innermost that tile is t-2 (the
other slot); with the slices outside the spatial tiles every spatial tile has its own psum area, so a tile's
MAC array waits only for the write-back of the tile that last held that area (the plan's ``releases``), and a
later slice of a spatial tile waits for nothing but the MAC array's own order. Serial runs every stage of tile t
after every stage of tile t-1. Stall cycles of a stage: the cycles between its first start
and its last end in which it was idle (waiting for input or a free slot).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from simulator.config import HardwareConfig, LayerConfig, SimConfig
from simulator.data import LayerTensors, checked_tensor, make_tensors
from simulator.energy import cost_energy, energy_table
from simulator.errors import ConvsimError
from simulator.mapping import mapping_for
from simulator.report import LayerReport, TileEvent, summarize
from simulator.sram import Sram
from simulator.stages import dma_load, mac_array, output_convert, swell, weight_transpose, writeback
from simulator.stages.common import Dram, LayerContext, StageCost
from simulator.tiling import Tile, TilePlan, plan_tiles

STAGES: tuple[tuple[str, ModuleType], ...] = (
    ("load", dma_load),  # DMA: DRAM -> SRAM, ifmap rows per tile, weights and bias per output-channel tile
    ("swell", swell),  # swelling DMA: zero insertion and border (swelling method only)
    ("weight_transpose", weight_transpose),  # flip + per-group channel swap, or the phase split
    ("mac_array", mac_array),  # systolic array: the tile's conv jobs, int32 accumulators
    ("writeback", writeback),  # bias add, int32 ofmap (phase interleave), DMA store to DRAM (int32 layers)
    ("output_convert", output_convert),  # quantized layers: int32 -> int8 requantization, DMA store of int8
)
STAGE_NAMES = tuple(name for name, _ in STAGES)
# double-buffered: which stage of tile t-2 must finish before this stage may reuse the slot
SLOT_RELEASED_BY = {"load": "mac_array", "mac_array": "output_convert"}  # (0 cycles when skipped: = writeback)
# (in this order: TilePlan.releases gives, per tile, the tile each of the two waits on)

Observer = Callable[[str, Tile, Sram, StageCost], None]


@dataclass(frozen=True)
class SimResult:
    """One simulated layer: the ofmap (int32, or int8 for a quantized layer; None when timing only), the report
    and the tile timeline. ``acc``: a quantized layer's int32 accumulators (what the output converter read)."""

    layer: LayerConfig
    ofmap: np.ndarray | None
    report: LayerReport
    events: tuple[TileEvent, ...]
    plan: TilePlan
    tensors: LayerTensors | None
    acc: np.ndarray | None = None


def schedule(costs: list[list[int]], overlap: str,
             releases: list[tuple[int | None, int | None]] | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Start and end cycle of every (tile, stage), from per-tile stage cycles. ``releases`` (double-buffered):
    per tile, the tile whose slot its load reuses and the tile whose psum area its MAC array reuses
    (:meth:`simulator.plan.TilePlan.releases`); None: tile t-2 for both."""
    index = {name: i for i, name in enumerate(STAGE_NAMES)}
    waits = {index[stage]: (k, index[releaser]) for k, (stage, releaser) in enumerate(SLOT_RELEASED_BY.items())}
    starts: list[list[int]] = []
    ends: list[list[int]] = []
    for t, row in enumerate(costs):
        s_row: list[int] = []
        e_row: list[int] = []
        for s, cycles in enumerate(row):
            if overlap == "serial":
                ready = e_row[-1] if e_row else (ends[t - 1][-1] if t else 0)
            else:
                ready = max(ends[t - 1][s] if t else 0, e_row[-1] if e_row else 0)
                if s in waits:
                    k, releaser = waits[s]
                    after = (t - 2 if t >= 2 else None) if releases is None else releases[t][k]
                    if after is not None:
                        ready = max(ready, ends[after][releaser])
            s_row.append(ready)
            e_row.append(ready + cycles)
        starts.append(s_row)
        ends.append(e_row)
    return starts, ends


def _tensors(cfg: SimConfig, layer: LayerConfig, index: int, ifmap: np.ndarray | None, weight: np.ndarray | None,
             bias: np.ndarray | None) -> LayerTensors:
    made = make_tensors(cfg.layer_data(layer), layer, index if cfg.is_network else None)
    ifmap_ = made.ifmap if ifmap is None else checked_tensor(ifmap, "ifmap", layer.input_shape, 8)
    weight_ = made.weight if weight is None else checked_tensor(weight, "weight", layer.weight_shape, 8)
    if bias is None:
        b = made.bias
    else:
        b = checked_tensor(bias, "bias", (layer.out_channels,), 32)
        b = b if layer.bias else np.zeros(layer.out_channels, dtype=np.int32)
    return LayerTensors(ifmap_, weight_, b)


def _native_nhwc(hw: HardwareConfig) -> bool:
    return hw.dma.dram_layout == "native" and hw.layout.activation == "NHWC"


def _dram_ifmap(ifmap: np.ndarray, hw: HardwareConfig) -> np.ndarray:
    """The ifmap as DRAM holds it, logically (N, C, H, W): channels-last memory with ``dram_layout: native`` and
    NHWC activations (laid out once by the host, so each tile's load is a contiguous copy)."""
    if _native_nhwc(hw):
        return np.ascontiguousarray(ifmap.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return ifmap


def _dram_ofmap(layer: LayerConfig, hw: HardwareConfig, dtype: str = "int32") -> np.ndarray:
    """The zeroed DRAM ofmap, logically (N, C, OH, OW). With ``dram_layout: native`` and NHWC activations DRAM
    holds it channels-last, as the store writes it (the returned array is an NCHW view of that memory)."""
    n, c, oh, ow = layer.output_shape
    if _native_nhwc(hw):
        return np.zeros((n, oh, ow, c), dtype=dtype).transpose(0, 3, 1, 2)
    return np.zeros((n, c, oh, ow), dtype=dtype)


def overlap_of(plan: TilePlan, hw: HardwareConfig) -> str:
    """How the plan's tiles overlap: ``double_buffer`` needs two slots per buffer; a plan in whole buffers (one
    tile, or tiles too large for half a buffer) runs serially."""
    return hw.pipeline.overlap if plan.slots == 2 else "serial"


def tile_costs(ctx: LayerContext, memo: dict[tuple[object, ...], StageCost] | None = None
               ) -> Callable[[Tile], list[StageCost]]:
    """Every stage's cost of a tile, computed once per distinct ``cost_key`` (what the stage's cost function
    reads from a tile: its shapes, flags and, for the useful MACs, its rows and columns); the tiles of one shape
    share the (frozen) cost record. A stage without ``cost_key`` is costed on every tile. ``memo``: a memo the
    caller owns, shared by plans of one layer and mapping whose tiles' regions and jobs stay alive meanwhile (the
    keys hold their identities): the planner's candidates."""
    memo = {} if memo is None else memo
    keyed = [(name, stage, getattr(stage, "cost_key", None)) for name, stage in STAGES]

    def costs(tile: Tile) -> list[StageCost]:
        row = []
        for name, stage, key_of in keyed:
            if key_of is None:
                row.append(stage.cost(ctx, tile))
                continue
            key = (name, *key_of(ctx, tile))
            cost = memo.get(key)
            if cost is None:
                cost = memo[key] = stage.cost(ctx, tile)
            row.append(cost)
        return row

    return costs


def modelled_cost(layer: LayerConfig, hw: HardwareConfig, plan: TilePlan,
                  memo: dict[tuple[object, ...], StageCost] | None = None) -> tuple[int, int]:
    """The planner's objective: (scheduled cycles, DRAM bytes read + written) of ``plan``'s tiles, from the
    stages' cost functions alone (no values); ``memo``: see :func:`tile_costs`."""
    costs_of = tile_costs(LayerContext(layer, hw, plan), memo)
    costs = [costs_of(tile) for tile in plan.tiles]
    _, ends = schedule([[c.cycles for c in row] for row in costs], overlap_of(plan, hw), plan.releases())
    dram = sum(c.dram_read_bytes + c.dram_write_bytes for row in costs for c in row)
    return max((row[-1] for row in ends), default=0), dram


def make_plan(layer: LayerConfig, hw: HardwareConfig, method_choice: str) -> TilePlan:
    """The planner itself (:func:`plan_for` without its cache): candidates, the objective, the chosen plan."""
    memo: dict[tuple[object, ...], StageCost] = {}  # one planning call's: its candidates' tiles stay alive
    return plan_tiles(layer, hw, mapping_for(layer, hw, method_choice),
                      functools.partial(modelled_cost, layer, hw, memo=memo))


PLAN_CACHE_TILES = 65536  # tile records the plan cache holds at most (a 9,216-tile plan is ~2 MB of them)
_plans: OrderedDict[tuple[int, int, str], tuple[LayerConfig, HardwareConfig, TilePlan]] = OrderedDict()
_plans_lock = threading.Lock()


def plan_for(layer: LayerConfig, hw: HardwareConfig, method_choice: str) -> TilePlan:
    """The tile plan of ``layer`` under ``engine.transposed_conv = method_choice`` (conv2d: direct), chosen by
    fewest modelled cycles, then least DRAM traffic.

    A plan is a pure function of the (frozen) configs, so the plans of the configs last planned are kept, keyed by
    the config objects themselves (held, so their identities stay theirs), and a repeated simulation of the same
    layer on the same hardware does not plan again: as a compiler keeps the kernels it generated, or torch its
    oneDNN primitives. At most PLAN_CACHE_TILES tile records are kept, the least recently used dropped first."""
    key = (id(layer), id(hw), method_choice)
    with _plans_lock:
        seen = _plans.get(key)
        if seen is not None and seen[0] is layer and seen[1] is hw:
            _plans.move_to_end(key)
            return seen[2]
    plan = make_plan(layer, hw, method_choice)
    with _plans_lock:
        _plans[key] = (layer, hw, plan)
        held = sum(len(p.tiles) for _, _, p in _plans.values())
        while held > PLAN_CACHE_TILES and len(_plans) > 1:
            held -= len(_plans.popitem(last=False)[1][2].tiles)
    return plan


def simulate_layer(layer: LayerConfig, hw: HardwareConfig, method_choice: str, tensors: LayerTensors | None,
                   observer: Observer | None = None) -> SimResult:
    """Run one layer through the engine. ``tensors=None`` runs the cycle model only (no values)."""
    plan = plan_for(layer, hw, method_choice)
    ctx = LayerContext(layer, hw, plan, observed=observer is not None)
    costs: list[list[StageCost]] = []
    dram = sram = None
    if tensors is not None:
        sram = Sram(hw.sram)
        dram = Dram(_dram_ifmap(tensors.ifmap, hw), tensors.weight, tensors.bias,
                    _dram_ofmap(layer, hw, layer.ofmap_dtype),
                    _dram_ofmap(layer, hw) if layer.quant is not None else None)
    costs_of = tile_costs(ctx)
    for tile in plan.tiles:
        row = costs_of(tile)
        if sram is not None:
            for (name, stage), cost in zip(STAGES, row, strict=True):
                stage.execute(sram, dram, ctx, tile)
                if observer is not None:
                    observer(name, tile, sram, cost)
        costs.append(row)
    if ctx.overflows:  # on_overflow=error: the first output in NCHW order, whatever the tiling
        raise min(ctx.overflows, key=lambda err: err.coord)
    starts, ends = schedule([[c.cycles for c in row] for row in costs], overlap_of(plan, hw), plan.releases())
    table = energy_table(hw)
    energy: dict[tuple[int, int], int] = {}  # (stage, id of a shared cost record) -> its energy in fJ

    def fj(s: int, cost: StageCost) -> int:
        key = (s, id(cost))
        if key not in energy:
            energy[key] = cost_energy(STAGE_NAMES[s], cost, table).fj
        return energy[key]

    events = tuple(TileEvent(STAGE_NAMES[s], t, starts[t][s], ends[t][s], fj(s, costs[t][s]))
                   for t in range(len(costs)) for s in range(len(STAGES)) if not costs[t][s].skipped)
    report = summarize(layer, hw, plan, STAGE_NAMES, costs, starts, ends)
    return SimResult(layer, dram.ofmap if dram is not None else None, report, events, plan, tensors,
                     dram.acc if dram is not None else None)


def simulate(cfg: SimConfig, ifmap: np.ndarray | None = None, weight: np.ndarray | None = None,
             bias: np.ndarray | None = None, *, layer: str | int | None = None, functional: bool = True,
             observer: Observer | None = None) -> SimResult:
    """Simulate one layer of ``cfg`` (the only layer, or ``layer`` by name or index for a network).

    Missing tensors are generated from ``cfg.data`` exactly as the golden generator does. ``functional=False``
    runs the cycle model only: no values, ``ofmap`` is None.
    """
    if not isinstance(cfg, SimConfig):
        raise ConvsimError(f"cfg: expected a SimConfig (from simulator.load_config), got {type(cfg).__name__}")
    index = _layer_index(cfg, layer)
    chosen = cfg.layers[index]
    tensors = _tensors(cfg, chosen, index, ifmap, weight, bias) if functional else None
    return simulate_layer(chosen, cfg.hardware, cfg.engine.transposed_conv, tensors, observer)


def _layer_index(cfg: SimConfig, layer: str | int | None) -> int:
    if layer is None:
        if cfg.is_network:
            raise ConvsimError(f"config {cfg.name!r} is a network of {len(cfg.layers)} layers: name one")
        return 0
    if isinstance(layer, bool) or not isinstance(layer, int | str):
        raise ConvsimError(f"layer: expected a layer name or index, got {type(layer).__name__}")
    if isinstance(layer, int):
        if not 0 <= layer < len(cfg.layers):
            raise ConvsimError(f"layer index {layer} out of range: config has {len(cfg.layers)} layers")
        return layer
    for i, candidate in enumerate(cfg.layers):
        if candidate.name == layer:
            return i
    raise ConvsimError(f"no layer named {layer!r} in config {cfg.name!r}")
