"""The pipeline costs a tile once per distinct ``cost_key`` of each stage (simulator.pipeline.tile_costs): every
key must hold everything its stage's cost function reads from a tile. Checked here against the cost functions
called on every tile, over plans with input-channel slices, width tiles, border tiles, groups, quantized layers
(the output converter) and both methods."""

from __future__ import annotations

import functools

import pytest

from simulator.config import HardwareConfig, load_config
from simulator.errors import ConvsimError
from simulator.mapping import mapping_for
from simulator.pipeline import STAGES, modelled_cost, plan_for, tile_costs
from simulator.plan import SLICES_OUTER
from simulator.stages.common import LayerContext
from simulator.tiling import plan_tiles
from tests.conftest import REPO

SMALL = {"sram": {b: {"size_bytes": 16384} for b in ("ifmap", "weight", "psum")}}


def _hw(hw: HardwareConfig, small: bool) -> HardwareConfig:
    if not small:
        return hw
    data = hw.model_dump(mode="json")
    for buffer, extra in SMALL["sram"].items():
        data["sram"][buffer].update(extra)
    return HardwareConfig.model_validate(data)


@pytest.mark.parametrize("config", ["configs/dcgan_512_256.yaml", "configs/grouped_dilated_asym.yaml",
                                    "configs/unet_up_128_64_small.yaml", "configs/conv2d_basic.yaml",
                                    "configs/fsrcnn_deconv.yaml", "configs/dcgan_generator_int8.yaml"])
@pytest.mark.parametrize("method", ["swell", "phase"])
@pytest.mark.parametrize("small", [False, True])
def test_memoised_costs_equal_the_cost_functions_on_every_tile(config: str, method: str, small: bool) -> None:
    cfg = load_config(REPO / config)
    hw = _hw(cfg.hardware, small)
    for layer in cfg.layers:
        plan = plan_for(layer, hw, method)
        ctx = LayerContext(layer, hw, plan)
        costs_of = tile_costs(ctx)
        memoised = [costs_of(tile) for tile in plan.tiles]
        direct = [[stage.cost(ctx, tile) for _, stage in STAGES] for tile in plan.tiles]
        assert memoised == direct
        if len(plan.tiles) > 4:  # the memo is hit: tiles of one shape share a record
            assert len({id(c) for row in memoised for c in row}) < len(plan.tiles) * len(STAGES)


@pytest.mark.parametrize("config", ["configs/dcgan_512_256.yaml", "configs/unet_decoder.yaml"])
@pytest.mark.parametrize("method", ["swell", "phase"])
def test_memoised_costs_equal_the_cost_functions_with_slices_outside(config: str, method: str) -> None:
    # the loop order oc > ic > n > oh > ow: weights loaded on the first spatial tile of each slice, every spatial
    # tile in its own psum area (so its own region tuple)
    cfg = load_config(REPO / config)
    hw = _hw(cfg.hardware, True)
    checked = 0
    for layer in cfg.layers:
        try:
            plan = plan_tiles(layer, hw, mapping_for(layer, hw, method), functools.partial(modelled_cost, layer, hw),
                              loop_order=SLICES_OUTER)
        except ConvsimError:  # no tile shape of this layer has several slices and spatial tiles whose psums fit
            continue
        ctx = LayerContext(layer, hw, plan)
        costs_of = tile_costs(ctx)
        assert [costs_of(tile) for tile in plan.tiles] == [[stage.cost(ctx, tile) for _, stage in STAGES]
                                                           for tile in plan.tiles]
        checked += 1
    assert checked


def test_every_stage_is_costed_once_per_key() -> None:
    missing = [name for name, stage in STAGES if not callable(getattr(stage, "cost_key", None))]
    assert missing == []


def test_output_converter_is_costed_once_per_tile_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """A quantized layer cut into many tiles: the converter's cost function runs once per distinct tile shape
    (and border case), not once per tile."""
    from simulator.stages import output_convert

    calls: list[int] = []
    original = output_convert.cost
    monkeypatch.setattr(output_convert, "cost", lambda ctx, tile: calls.append(tile.index) or original(ctx, tile))
    cfg = load_config(REPO / "configs/dcgan_generator_int8.yaml")
    layer, hw = cfg.layers[-1], _hw(cfg.hardware, small=True)
    plan = plan_for(layer, hw, "phase")
    ctx = LayerContext(layer, hw, plan)
    costs_of = tile_costs(ctx)
    calls.clear()  # planning may have costed candidate plans
    for tile in plan.tiles:
        costs_of(tile)
    converted = [t for t in plan.tiles if t.last_slice]
    # today 16 row bands of the 64x64 ofmap, all full width and channels: the first, the last, and the middle ones
    # in two double-buffer slots, so 4 distinct region sets; without the memo the converter is costed 16 times
    assert layer.quant is not None and len(converted) > 4
    assert 0 < len(calls) <= len({id(t.regions) for t in plan.tiles}) < len(converted)


def test_fast_tile_construction_equals_the_dataclass_init() -> None:
    from dataclasses import astuple, fields

    from simulator.plan import Tile

    values = (3, 1, (0, 4), (4, 8), (0, 7), (0, 1), (128, 256), 1, 4, (0, 3), (2, 66), 1, 0, 1, True, (), ())
    made, built = Tile.make(*values), Tile(*values)
    assert made == built and hash(made) == hash(built) and astuple(made) == values
    assert [f.name for f in fields(Tile)] == list(made.__dict__)  # make lists every field, in order


def test_plans_are_kept_per_config_objects_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """plan_for keeps the plans of the config objects it planned (a repeated simulation does not plan again); an
    equal config in new objects is planned afresh to an equal plan; the cache drops the least recently used plans
    beyond its tile budget."""
    from simulator import pipeline

    monkeypatch.setattr(pipeline, "_plans", type(pipeline._plans)())
    cfg = load_config(REPO / "configs" / "dcgan_256_128.yaml")
    first = plan_for(cfg.layer, cfg.hardware, "phase")
    assert plan_for(cfg.layer, cfg.hardware, "phase") is first
    assert plan_for(cfg.layer, cfg.hardware, "swell") is not first  # the method is part of the key
    again = load_config(REPO / "configs" / "dcgan_256_128.yaml")
    fresh = plan_for(again.layer, again.hardware, "phase")
    assert fresh is not first and fresh.tiles == first.tiles
    assert fresh.tiles == pipeline.make_plan(cfg.layer, cfg.hardware, "phase").tiles
    monkeypatch.setattr(pipeline, "PLAN_CACHE_TILES", len(first.tiles))
    other = load_config(REPO / "configs" / "dcgan_512_256.yaml")
    plan_for(other.layer, other.hardware, "phase")  # over budget: the least recently used go, the newest stays
    assert len(pipeline._plans) == 1 and plan_for(cfg.layer, cfg.hardware, "phase") is not first
