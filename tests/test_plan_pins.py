"""Pinned tile plans of the shipped configs: a planner change that moves a plan must say why.

For every shipped config (``configs/``, ``benchmarks/configs/``), every layer, both transposed-conv methods and a
few hardware variants (the config's own, serial overlap, 64 KiB and 16 KiB buffers), the plan is reduced to a
fingerprint (per tile: image, output rows/columns/channels, input channels and rows, slots, the regions with
their addresses and shapes, the conv jobs' geometry) and compared with ``tests/data/plan_pins.json``.

The pins were recorded by the planner before issue 15 (output channels x rows only, largest tile first), with each
plan's modelled cycles and DRAM bytes. A plan may differ from its pin only for a stated reason: the layer used to
be refused (it fits now, with input-channel or width tiles), or the objective found a plan of fewer modelled
cycles (then fewer or equal cycles, and on a tie less DRAM traffic, is checked), or an entry of ``PLAN_CHANGES``.
Regenerate the file only when a change is understood: ``.venv/bin/python -m tests.test_plan_pins --write``.

The second loop order (``oc > ic > n > oh > ow``: input-channel slices outside the spatial tiles, each slice's
weights loaded once per output-channel tile) moved 12 plans against the planner before it, all in the 16 KiB and
64 KiB variants of deep layers (dcgan_256_128, dcgan_generator and its int8 twin's deconv3, fsrcnn_deconv's
x2/x3/x4, unet_decoder's up2): each to fewer modelled cycles, or (four fsrcnn swell plans) as many with less
DRAM traffic, so the objective's reason covers them and the pins stay the pre-issue-15 record.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.config import HardwareConfig, load_config
from simulator.errors import ConvsimError
from simulator.pipeline import simulate_layer

REPO = Path(__file__).resolve().parent.parent

PINS = REPO / "tests" / "data" / "plan_pins.json"
CONFIG_DIRS = (REPO / "configs", REPO / "benchmarks" / "configs")
VARIANTS: dict[str, dict[str, Any]] = {
    "own": {},
    "serial": {"pipeline": {"overlap": "serial"}},
    "64KiB": {"sram": {b: {"size_bytes": 65536} for b in ("ifmap", "weight", "psum")}},
    "16KiB_nchw": {"sram": {b: {"size_bytes": 16384, "num_banks": 4, "bank_width_bytes": 8}
                            for b in ("ifmap", "weight", "psum")},
                   "layout": {"activation": "NCHW"}},
}
METHODS = ("swell", "phase")

# plan key -> why it no longer matches its pin, for changes the two automatic reasons do not cover
PLAN_CHANGES: dict[str, str] = {}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _variant(hw: HardwareConfig, extra: dict[str, Any]) -> HardwareConfig:
    return HardwareConfig.model_validate(_merge(hw.model_dump(mode="json"), extra))


def fingerprint(plan: Any, report: Any) -> dict[str, Any]:
    """What a plan decides, independent of how the planner represents it."""
    tiles = []
    for t in plan.tiles:
        regions = sorted((r.name, r.buffer, r.base_addr, list(r.shape), r.dtype, r.layout) for r in t.regions)
        jobs = [(list(j.kernel_hw), list(j.stride), list(j.dilation), list(j.in_offset), list(j.out_hw),
                 list(j.out_start), list(j.out_step), j.weight_index) for j in t.jobs]
        tiles.append([t.n, list(t.oh), list(t.oc), list(t.ic), list(t.in_rows), t.slot, t.weight_slot,
                      t.load_weight, regions, jobs])
    digest = hashlib.sha256(json.dumps(tiles).encode()).hexdigest()
    return {"plan": {"tiles": len(plan.tiles), "peak_bytes": dict(plan.peak_bytes), "sha256": digest},
            "cycles": report.cycles, "dram_bytes": report.dram_read_bytes + report.dram_write_bytes}


def shipped_plans() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for folder in CONFIG_DIRS:
        for path in sorted(folder.glob("*.yaml")):
            cfg = load_config(path)
            for vname, extra in VARIANTS.items():
                hw = _variant(cfg.hardware, extra)
                for layer in cfg.layers:
                    for method in METHODS:
                        key = f"{path.relative_to(REPO)}:{layer.name}:{vname}:{method}"
                        try:
                            result = simulate_layer(layer, hw, method, None)
                            out[key] = fingerprint(result.plan, result.report)
                        except ConvsimError as exc:  # a refusal is pinned too
                            out[key] = {"refused": type(exc).__name__}
    return out


def reason(key: str, now: dict[str, Any], pin: dict[str, Any]) -> str | None:
    """Why plan ``key`` may differ from its pin, or None."""
    if key in PLAN_CHANGES:
        return PLAN_CHANGES[key]
    if "refused" in pin:
        return "refused before input-channel and width tiles"
    if (now["cycles"], now["dram_bytes"]) < (pin["cycles"], pin["dram_bytes"]):
        return "the objective found fewer modelled cycles (or, on a tie, less DRAM traffic)"
    return None


@pytest.mark.slow
def test_shipped_plans_are_pinned() -> None:
    pins = json.loads(PINS.read_text())
    now = shipped_plans()
    assert set(now) == set(pins)
    assert not [k for k in now if "refused" in now[k]], "a shipped config is refused"
    changed = {k: reason(k, now[k], pins[k]) for k in now if now[k] != pins[k]}
    unexplained = sorted(k for k, why in changed.items() if why is None)
    assert not unexplained, f"{len(unexplained)} plans changed without a reason, e.g. {unexplained[:5]}"
    stale = sorted(set(PLAN_CHANGES) - set(changed))
    assert not stale, f"PLAN_CHANGES lists plans that match their pins: {stale[:5]}"
    # the configs' own hardware: most plans are the ones of the old planner
    own = [k for k in now if ":own:" in k]
    assert sum(k not in changed for k in own) >= len(own) // 2


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PINS.write_text(json.dumps(shipped_plans(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {PINS}")
