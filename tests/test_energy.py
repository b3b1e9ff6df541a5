"""Energy (simulator/energy.py and the report's energy fields): the audits of issue 19, hand-computed tables,
exactness of the split, zero gating, and a brute-force count of the MACs on inserted zeros.

Expected energies are computed here from the report's counts and the table by hand (never by the energy code),
and the counts themselves are checked against torch (useful MACs) and a per-MAC enumeration (inserted zeros).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from simulator import simulate
from simulator.config import HardwareConfig, LayerConfig, SimConfig, load_config
from simulator.errors import ConfigError
from simulator.mapping import mapping_for
from simulator.pipeline import simulate_layer
from simulator.report import LayerReport, network_totals
from simulator.stages import mac_array
from simulator.stages.common import LayerContext
from simulator.tiling import plan_tiles
from tests.conftest import REPO, make_config
from tests.test_properties import PROPERTY_SETTINGS, conv2d_layers, tight_sram, transposed_layers

ENERGY_DOC = (REPO / "docs" / "energy.md").read_text()
CONFIGS = ("seed_case1", "seed_case2", "dcgan_128_64", "conv2d_basic", "grouped_dilated_asym", "fsrcnn_deconv")
DCGAN = ("dcgan_128_64", "dcgan_256_128", "dcgan_512_256")


def with_energy(name: str, energy: dict[str, Any] | None, zero_gating: bool = False) -> SimConfig:
    """A shipped config with its hardware's energy table (and zero gating) replaced."""
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    raw = cfg.hardware.model_dump()  # leaves out energy and zero_gating (energy-only settings)
    raw["mac_array"]["zero_gating"] = zero_gating
    if energy is not None:
        raw["energy"] = energy
    return cfg.model_copy(update={"hardware": HardwareConfig.model_validate(raw)})


def reports(cfg: SimConfig, method: str) -> list[LayerReport]:
    return [simulate_layer(layer, cfg.hardware, method, None).report for layer in cfg.layers]


def sram_bytes(report: LayerReport, side: str) -> int:
    return sum(sum(getattr(s, f"sram_{side}_bytes").values()) for s in report.stages)


# ----------------------------------------------------------------------------------------- the four audits


@pytest.mark.parametrize("method", ["swell", "phase"])
@pytest.mark.parametrize("name", CONFIGS)
def test_audit_only_mac_pj_1_gives_macs_issued(name, method):
    for rep in reports(with_energy(name, {"mac_pj": 1}), method):
        assert rep.energy_pj == rep.macs_issued
        assert rep.stage("mac_array").energy_pj == rep.macs_issued
        assert rep.energy_pj_by_action["mac"] == rep.macs_issued


@pytest.mark.parametrize("method", ["swell", "phase"])
@pytest.mark.parametrize("name", CONFIGS)
def test_audit_zero_gating_with_free_gated_macs_gives_useful_macs(name, method):
    for rep in reports(with_energy(name, {"mac_pj": 1, "mac_gated_pj": 0}, zero_gating=True), method):
        assert rep.energy_pj == rep.macs_useful
        assert rep.zero_mac_energy_pj == 0
        assert rep.macs_on_zeros == rep.macs_issued - rep.macs_useful


@pytest.mark.parametrize("method", ["swell", "phase"])
@pytest.mark.parametrize("name", CONFIGS)
def test_audit_only_dram_1_gives_dram_bytes(name, method):
    for rep in reports(with_energy(name, {"dram_pj_per_byte": 1}), method):
        assert rep.energy_pj == rep.dram_read_bytes + rep.dram_write_bytes
        assert rep.energy_pj_by_action["dram"] == rep.energy_pj


@pytest.mark.parametrize("method", ["swell", "phase"])
@pytest.mark.parametrize("name", CONFIGS)
def test_audit_sram_1_and_2_gives_reads_plus_twice_writes(name, method):
    for rep in reports(with_energy(name, {"sram_read_pj_per_byte": 1, "sram_write_pj_per_byte": 2}), method):
        assert rep.energy_pj == sram_bytes(rep, "read") + 2 * sram_bytes(rep, "write")
        for stage in rep.stages:
            assert stage.energy_pj == sum(stage.sram_read_bytes.values()) + 2 * sum(stage.sram_write_bytes.values())


def test_useful_macs_are_the_products_of_torch_on_ones():
    """The useful-MAC count the gating audit relies on, against torch: a transposed conv of all-ones tensors
    puts at each output the number of (input pixel, kernel tap, channel) products that reach it."""
    for name in CONFIGS:
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        layer = cfg.layer
        ones_x = torch.ones(layer.input_shape, dtype=torch.int64)
        ones_w = torch.ones(layer.weight_shape, dtype=torch.int64)
        conv = F.conv_transpose2d if layer.is_transposed else F.conv2d
        extra = {"output_padding": layer.output_padding} if layer.is_transposed else {}
        y = conv(ones_x, ones_w, None, stride=layer.stride, padding=layer.padding, groups=layer.groups,
                 dilation=layer.dilation, **extra)
        for method in ("swell", "phase"):
            assert simulate_layer(layer, cfg.hardware, method, None).report.macs_useful == int(y.sum()), name


# ------------------------------------------------------------------------------------------- the DCGAN claim


@pytest.mark.parametrize("name", DCGAN)
def test_horowitz45_phase_uses_less_energy_than_swell_on_dcgan_layers(name):
    cfg = with_energy(name, {"preset": "horowitz45"})
    swell, phase = (reports(cfg, m)[0] for m in ("swell", "phase"))
    assert phase.energy_fj < swell.energy_fj
    assert phase.energy_fj_by_action["mac"] < swell.energy_fj_by_action["mac"]


def test_horowitz45_phase_uses_less_energy_on_every_dcgan_generator_layer():
    """Every layer of the generator, the stride-1 first one too: there both methods issue the same MACs, but swell
    writes and reads the padded 7x7 canvas in SRAM, phase pads implicitly."""
    cfg = with_energy("dcgan_generator", {"preset": "horowitz45"})
    for swell, phase, layer in zip(reports(cfg, "swell"), reports(cfg, "phase"), cfg.layers, strict=True):
        assert phase.energy_fj < swell.energy_fj, layer.name
        if layer.stride == (1, 1):
            assert phase.energy_fj_by_action["mac"] == swell.energy_fj_by_action["mac"]
            assert phase.energy_fj_by_action["sram_write"] < swell.energy_fj_by_action["sram_write"]


# ----------------------------------------------------------------------------------- tables, by hand


def test_presets_resolve_to_the_documented_femtojoules():
    from simulator.energy import energy_table

    h = energy_table(with_energy("seed_case2", {"preset": "horowitz45"}).hardware)
    # 0.2 pJ (8b mult) + 0.1 pJ (32b add); 10 pJ / 8 B; 1.3 nJ / 8 B; (3.1 + 0.1) pJ / 4 B
    assert (h.mac_fj, h.mac_gated_fj, h.read_fj("psum"), h.write_fj("ifmap")) == (300, 0, 1250, 1250)
    assert (h.dram_read_fj_per_byte, h.dram_write_fj_per_byte) == (162_500, 162_500)
    assert h.unit_fj_per_byte == {"swell_dma": 0, "output_converter": 3200}
    z = energy_table(with_energy("seed_case2", {"preset": "zigzag_tpu_like"}).hardware)
    # 0.04 pJ; 416.16 pJ / 256 B = 1.625625 -> 1.626; 378.4 / 256 = 1.478125 -> 1.478; 700 / 8; 750 / 8
    assert (z.mac_fj, z.read_fj("ifmap"), z.write_fj("ifmap")) == (40, 1626, 1478)
    assert (z.dram_read_fj_per_byte, z.dram_write_fj_per_byte) == (87_500, 93_750)


@pytest.mark.parametrize(("size_bytes", "fj_per_byte"), [
    (8 << 10, 1250),  # Horowitz's points: 10, 20, 100 pJ per 8-byte access
    (32 << 10, 2500),
    (1 << 20, 12500),
    (16 << 10, 1768),  # 10 * 2**0.5 / 8 = 1.76777 pJ
    (512 << 10, 9060),  # 20 * 16**(ln 5 / ln 32) / 8 = 20 * 3.6239 / 8 = 9.0598 pJ
    (4 << 10, 884),  # 10 * 0.5**0.5 / 8 = 0.88388 pJ (first segment extended)
    (128 << 10, 4759),  # 20 * 4**0.46439 / 8 = 4.7590 pJ
    (2 << 20, 17247),  # 100 * 2**0.46439 / 8 = 17.2466 pJ (last segment extended)
])
def test_horowitz45_sized_interpolates_sram_by_capacity(size_bytes, fj_per_byte):
    from simulator.energy import energy_table

    cfg = make_config({"input_shape": [1, 1, 2, 2], "in_channels": 1, "out_channels": 1, "kernel_size": 1},
                      hardware={"sram": {"psum": {"size_bytes": size_bytes}},
                                "energy": {"preset": "horowitz45_sized"}})
    table = energy_table(cfg.hardware)
    assert (table.read_fj("psum"), table.write_fj("psum")) == (fj_per_byte, fj_per_byte)
    assert table.read_fj("ifmap") == 9060  # the default 512 KiB buffer
    size = f"{size_bytes >> 20} MiB" if size_bytes >= 1 << 20 else f"{size_bytes >> 10} KiB"
    shown = f"{fj_per_byte / 1000:g}"
    assert f"| {size}{' (the default)' if size_bytes == 512 << 10 else ''} | {shown} |" in ENERGY_DOC


def test_keys_override_the_preset_and_buffers_override_the_sram_cost():
    from simulator.energy import energy_table

    cfg = with_energy("seed_case2", {"preset": "horowitz45", "mac_pj": 0.5, "dram_write_pj_per_byte": 200,
                                     "buffers": {"psum": {"write_pj_per_byte": 3.25}}})
    t = energy_table(cfg.hardware)
    assert (t.mac_fj, t.dram_read_fj_per_byte, t.dram_write_fj_per_byte) == (500, 162_500, 200_000)
    assert (t.read_fj("psum"), t.write_fj("psum"), t.write_fj("ifmap")) == (1250, 3250, 1250)
    # no hardware.energy at all: horowitz45; an energy block without a preset: every key not given is 0
    assert energy_table(load_config(REPO / "configs" / "seed_case2.yaml").hardware).mac_fj == 300
    assert energy_table(with_energy("seed_case2", {"mac_pj": 1}).hardware).read_fj("ifmap") == 0


@pytest.mark.parametrize(("energy", "message"), [
    ({"mac_pj": 0.0001}, "hardware.energy.mac_pj: 0.0001 pJ is finer than the 0.001 pJ (1 fJ) resolution"),
    ({"dram_pj_per_byte": -1}, "hardware.energy.dram_pj_per_byte: must be >= 0"),
    ({"preset": "horowitz7"}, "hardware.energy.preset: expected 'horowitz45', 'horowitz45_sized' or"),
    ({"mac_pj": True}, "hardware.energy.mac_pj: expected a number, got True"),
    ({"buffers": {"accum": {"read_pj_per_byte": 1}}}, "hardware.energy.buffers.accum: expected 'ifmap'"),
    ({"mac_pJ": 1}, "hardware.energy.mac_pJ: unknown key (did you mean 'mac_pj'?)"),
])
def test_bad_energy_values_are_one_line_errors_naming_the_key(energy, message):
    with pytest.raises(ConfigError) as err:
        make_config({"input_shape": [1, 1, 2, 2], "in_channels": 1, "out_channels": 1, "kernel_size": 1},
                    hardware={"energy": energy})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ the split is exact


DECIMAL_PJ = st.integers(0, 400_000).map(lambda fj: fj / 1000)  # any value on the 1 fJ grid


@PROPERTY_SETTINGS
@given(layer=transposed_layers(), method=st.sampled_from(["swell", "phase"]), gating=st.booleans(),
       costs=st.fixed_dictionaries({k: DECIMAL_PJ for k in (
           "mac_pj", "mac_gated_pj", "sram_read_pj_per_byte", "sram_write_pj_per_byte", "dram_pj_per_byte",
           "dram_write_pj_per_byte", "swell_dma_pj_per_byte")}), psum_read=DECIMAL_PJ)
def test_energy_is_the_hand_sum_of_counts_times_costs_and_adds_up_exactly(layer, method, gating, costs, psum_read):
    energy = {**costs, "buffers": {"psum": {"read_pj_per_byte": psum_read}}}
    cfg = make_config(layer, hardware={"mac_array": {"zero_gating": gating}, "energy": energy})
    rep = simulate_layer(cfg.layer, cfg.hardware, method, None).report

    def fj(pj: float) -> int:  # the decimal the user wrote, in fJ
        value = Fraction(repr(pj)) * 1000
        assert value.denominator == 1
        return int(value)

    expected_total = 0
    for s in rep.stages:
        issued, useful = s.macs_issued or 0, s.macs_useful or 0
        mac = (useful * fj(costs["mac_pj"]) + (issued - useful) * fj(costs["mac_gated_pj"]) if gating
               else issued * fj(costs["mac_pj"]))
        reads = sum(n * (fj(psum_read) if b == "psum" else fj(costs["sram_read_pj_per_byte"]))
                    for b, n in s.sram_read_bytes.items())
        writes = sum(s.sram_write_bytes.values()) * fj(costs["sram_write_pj_per_byte"])
        dram = s.dram_read_bytes * fj(costs["dram_pj_per_byte"]) + s.dram_write_bytes * fj(
            costs["dram_write_pj_per_byte"])
        unit = sum(s.sram_write_bytes.values()) * fj(costs["swell_dma_pj_per_byte"]) if s.name == "swell" else 0
        assert s.energy_fj == mac + reads + writes + dram + unit, s.name
        assert sum(s.energy_fj_by_action.values()) == s.energy_fj
        assert s.energy_pj == s.energy_fj / 1000
        expected_total += s.energy_fj
    assert rep.energy_fj == expected_total == sum(rep.energy_fj_by_action.values())
    for action, value in rep.energy_fj_by_action.items():
        assert value == sum(s.energy_fj_by_action[action] for s in rep.stages)
    on_zeros = rep.macs_issued - rep.macs_useful
    assert rep.zero_mac_energy_fj == on_zeros * fj(costs["mac_gated_pj" if gating else "mac_pj"])


def test_network_totals_add_up_the_layers():
    cfg = with_energy("dcgan_generator", {"preset": "horowitz45"})
    reps = reports(cfg, "phase")
    totals = network_totals(reps, 1024)
    assert totals["energy_fj"] == sum(r.energy_fj for r in reps) == sum(totals["energy_fj_by_action"].values())
    assert totals["zero_mac_energy_fj"] == sum(r.zero_mac_energy_fj for r in reps)
    assert totals["energy_pj"] == totals["energy_fj"] / 1000


# --------------------------------------------------------------------------------------------- zero gating


@pytest.mark.parametrize("method", ["swell", "phase"])
def test_zero_gating_changes_energy_only_never_values_or_cycles(method):
    base = with_energy("seed_case2", {"preset": "horowitz45"})
    gated = with_energy("seed_case2", {"preset": "horowitz45"}, zero_gating=True)
    a = simulate(base.model_copy(update={"engine": base.engine.model_copy(update={"transposed_conv": method})}))
    b = simulate(gated.model_copy(update={"engine": gated.engine.model_copy(update={"transposed_conv": method})}))
    np.testing.assert_array_equal(a.ofmap, b.ofmap)
    assert [(e.stage, e.tile, e.start_cycle, e.end_cycle) for e in a.events] == [
        (e.stage, e.tile, e.start_cycle, e.end_cycle) for e in b.events]

    def strip(record: dict[str, Any]) -> dict[str, Any]:  # everything but the energy fields
        return {k: [strip(s) for s in v] if k == "stages" else v for k, v in record.items() if "energy" not in k}

    assert strip(a.report.to_dict()) == strip(b.report.to_dict())
    assert a.report.energy_fj != b.report.energy_fj
    for sa, sb in zip(a.report.stages, b.report.stages, strict=True):
        assert (sa.cycles, sa.stall_cycles, sa.macs_issued) == (sb.cycles, sb.stall_cycles, sb.macs_issued)
    # gated MACs on zeros cost 0 pJ with horowitz45: the saving is exactly the zeros' MAC energy
    assert a.report.energy_fj - b.report.energy_fj == a.report.macs_on_zeros * 300
    assert b.report.energy_fj_by_action["mac"] == a.report.macs_useful * 300


def brute_force_macs(layer: LayerConfig, plan: Any, tile: Any) -> tuple[int, int]:
    """(issued, on real operands) of one tile, by enumerating every (output, tap) position of every job and
    asking, from the layer's own geometry, whether the ifmap operand is a real input pixel and the weight tap a
    real kernel tap. Written from first principles, not from the stage code."""
    _, _, h_in, w_in = layer.input_shape
    (kh, kw), (s_h, s_w), (p_h, p_w), (d_h, d_w) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    q_h, q_w = d_h * (kh - 1) - p_h, d_w * (kw - 1) - p_w  # swelling: input i at swelled q + i*s
    issued = real = 0
    for job in tile.jobs:
        taps_h = job.phase[0].taps if job.phase else range(job.kernel_hw[0])
        taps_w = job.phase[1].taps if job.phase else range(job.kernel_hw[1])
        for r in range(job.out_hw[0]):
            for c in range(job.out_hw[1]):
                for u, tap_u in enumerate(taps_h):
                    for v, tap_v in enumerate(taps_w):
                        issued += 1
                        y = r * job.stride[0] + u * job.dilation[0] - job.in_offset[0]
                        x = c * job.stride[1] + v * job.dilation[1] - job.in_offset[1]
                        if plan.method == "swell":  # canvas (y, x) is swelled (oh0 + y, ow0 + x)
                            gy, gx = y + tile.oh[0] - q_h, x + tile.ow[0] - q_w
                            ok = (gy % s_h == 0 and 0 <= gy // s_h < h_in and gx % s_w == 0
                                  and 0 <= gx // s_w < w_in)
                        else:  # the compact rows the tile loaded, then implicit padding
                            ok = (0 <= y < tile.in_rows[1] - tile.in_rows[0]
                                  and 0 <= x < tile.in_cols[1] - tile.in_cols[0]
                                  and tap_u is not None and tap_v is not None)
                        real += ok
    icg = (tile.ic[1] - tile.ic[0]) // tile.num_groups  # input channels of one group in the tile's slice
    return issued * icg * tile.oc_count, real * icg * tile.oc_count


@PROPERTY_SETTINGS
@given(data=st.data(), method=st.sampled_from(["swell", "phase", "direct"]))
def test_macs_on_inserted_zeros_per_tile_match_a_brute_force_count(data, method):
    layer = data.draw(conv2d_layers() if method == "direct" else transposed_layers())
    choice = "swell" if method == "direct" else method
    shrink = (data.draw(st.sampled_from([0.3, 1.0])),) * 3
    sram = tight_sram(layer, {}, choice, shrink, (1, 4))  # type: ignore[arg-type]
    cfg = make_config(layer, hardware={"sram": sram})
    plan = plan_tiles(cfg.layer, cfg.hardware, mapping_for(cfg.layer, cfg.hardware, choice))
    ctx = LayerContext(cfg.layer, cfg.hardware, plan)
    for tile in plan.tiles:
        cost = mac_array.cost(ctx, tile)
        issued, real = brute_force_macs(cfg.layer, plan, tile)
        assert (cost.macs_issued, cost.macs_useful) == (issued, real)
        assert cost.macs_issued - cost.macs_useful == issued - real  # the MACs zero gating gates


# ------------------------------------------------------------------------------------ docs/energy.md example


def test_worked_example_in_docs_by_hand():
    """docs/energy.md section 7: DCGAN 128->64 with horowitz45, every count from the layer's shape, every energy
    from the counts (0.3 pJ per MAC, 1.25 pJ per SRAM byte, 162.5 pJ per DRAM byte), in fJ to stay exact."""
    mac, sram, dram = 300, 1250, 162_500  # fJ
    # MACs: swell E*K*N over the swelled ifmap; useful: 62 (output, tap) pairs per axis (taps 0, 3: 15; 1, 2: 16)
    issued_swell = (32 * 32) * (4 * 4 * 128) * 64
    per_axis = sum(sum(1 for i in range(16) if 0 <= 2 * i - 1 + t < 32) for t in range(4))
    useful = 64 * 128 * per_axis * per_axis
    issued_phase = 4 * (16 * 16) * (2 * 2 * 128) * 64
    assert (per_axis, issued_swell, useful, issued_phase) == (62, 134_217_728, 31_490_048, 33_554_432)
    # bytes, one tile (the whole layer in the whole buffers): ifmap 128*16*16; weight 128*64*16 + bias 64*4;
    # swelled 128*35*35; psum 64 ch * 32*32 * 4 B; phase sub-kernels 4*64*128*2*2; ofmap 64*32*32*4
    ifmap, weight, bias = 128 * 16 * 16, 128 * 64 * 16, 64 * 4
    swelled, psum, ofmap = 128 * 35 * 35, 64 * 32 * 32 * 4, 64 * 32 * 32 * 4
    stages = {  # stage: (SRAM read, SRAM write, DRAM read, DRAM write, MACs)
        "load": (0, ifmap + weight + bias, ifmap + weight + bias, 0, 0),
        "swell": (ifmap, swelled, 0, 0, 0),
        "weight_transpose": (weight, weight, 0, 0, 0),
        "mac_array": (swelled + weight, psum, 0, 0, issued_swell),
        "writeback": (2 * psum + bias, psum, 0, ofmap, 0),
        "output_convert": (0, 0, 0, 0, 0),  # an int32 layer: the output converter is skipped
    }
    expected = {name: (r + w) * sram + (dr + dw) * dram + m * mac for name, (r, w, dr, dw, m) in stages.items()}
    cfg = load_config(REPO / "configs" / "dcgan_128_64.yaml")
    swell = simulate_layer(cfg.layer, cfg.hardware, "swell", None).report
    for stage in swell.stages:
        r, w, dr, dw, m = stages[stage.name]
        assert (sum(stage.sram_read_bytes.values()), sum(stage.sram_write_bytes.values()), stage.dram_read_bytes,
                stage.dram_write_bytes, stage.macs_issued or 0) == (r, w, dr, dw, m), stage.name
        assert stage.energy_fj == expected[stage.name], stage.name
    total_swell = sum(expected.values())
    zeros_swell = (issued_swell - useful) * mac
    assert swell.energy_fj == total_swell == 111_969_958_400 and swell.zero_mac_energy_fj == zeros_swell
    # load writes; weight-transpose reads the weight, writes the sub-kernels (4 x 2x2 taps: as many bytes);
    # the MAC array reads the compact ifmap and the sub-kernels, writes four phase psums (as many bytes as psum)
    sram_bytes_phase = (ifmap + weight + bias) + 2 * weight + (ifmap + weight + psum) + (2 * psum + bias + psum)
    assert sram_bytes_phase == 2 * 819_456
    total_phase = issued_phase * mac + sram_bytes_phase * sram + (ifmap + weight + bias + ofmap) * dram
    phase = simulate_layer(cfg.layer, cfg.hardware, "phase", None).report
    assert phase.energy_fj == total_phase
    gated = simulate_layer(cfg.layer, with_energy("dcgan_128_64", None, zero_gating=True).hardware, "swell", None)
    assert gated.report.energy_fj == total_swell - zeros_swell
    # the figures the page quotes
    pj = lambda fj: f"{fj // 1000:,}" + (f".{fj % 1000:03d}".rstrip("0") if fj % 1000 else "")  # noqa: E731
    quoted = [f"{issued_swell:,}", f"{useful:,}", f"{issued_swell - useful:,}", f"{issued_phase:,}",
              f"{issued_phase - useful:,}", *(f"= {pj(v)} |" for k, v in expected.items() if k != "output_convert"),
              f"**{pj(total_swell)}**", f"**{pj(zeros_swell)} pJ**", f"**{pj(total_phase)} pJ**",
              f"saves {pj(total_swell - total_phase)} pJ, {(total_swell - total_phase) / total_swell:.1%}",
              f"**{pj(total_swell - zeros_swell)} pJ**", f"mac {pj(issued_swell * mac)} pJ",
              f"dram {pj((ifmap + weight + bias + ofmap) * dram)} pJ"]
    for text in quoted:
        assert text in ENERGY_DOC, text


# ---------------------------------------------------------------------------------------- CLI and report.json


def test_run_writes_energy_on_every_stage_and_the_layer(tmp_path, capsys):
    import json

    from simulator.cli import main

    out = tmp_path / "run"
    assert main(["run", str(REPO / "configs" / "seed_case2.yaml"), "--out", str(out), "--no-dumps"]) == 0
    report = json.loads((out / "report.json").read_text())
    for record in (report, *report["stages"]):
        assert sum(record["energy_fj_by_action"].values()) == record["energy_fj"]
        assert record["energy_pj"] == record["energy_fj"] / 1000
        assert set(record["energy_pj_by_action"]) == {"mac", "mac_gated", "sram_read", "sram_write", "dram",
                                                      "swell_dma", "output_converter"}
    assert report["energy_fj"] == sum(s["energy_fj"] for s in report["stages"])
    mac = next(s for s in report["stages"] if s["name"] == "mac_array")
    assert mac["macs_on_zeros"] == mac["macs_issued"] - mac["macs_useful"] == report["macs_on_zeros"]
    assert report["zero_mac_energy_fj"] == mac["zero_mac_energy_fj"] == report["macs_on_zeros"] * 300
    assert report["energy_table"]["mac_pj"] == 0.3
    printed = capsys.readouterr().out
    assert "energy nJ" in printed and f"MACs on inserted zeros {report['macs_on_zeros']:,} (not gated)" in printed


def test_network_report_totals_add_up_the_layer_reports(tmp_path):
    import json

    from simulator.cli import main

    out = tmp_path / "net"
    assert main(["run", str(REPO / "configs" / "dcgan_generator.yaml"), "--out", str(out), "--no-dumps"]) == 0
    report = json.loads((out / "report.json").read_text())
    layers = [json.loads((out / layer["report"]).read_text()) for layer in report["layers"]]
    assert report["totals"]["energy_fj"] == sum(r["energy_fj"] for r in layers)
    for action, value in report["totals"]["energy_fj_by_action"].items():
        assert value == sum(r["energy_fj_by_action"][action] for r in layers)


def test_a_bad_energy_key_exits_2_with_one_line(tmp_path, capsys):
    from simulator.cli import main

    config = tmp_path / "bad.yaml"
    config.write_text((REPO / "configs" / "seed_case2.yaml").read_text().replace(
        "hardware: hw/default.yaml", "hardware: {energy: {preset: horowitz45, sram_read_pj_per_byte: -2}}"))
    assert main(["run", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hardware.energy.sram_read_pj_per_byte" in err and "-2" in err
    assert not (tmp_path / "o").exists()


def test_unit_costs_apply_to_the_swell_and_output_converter_stages_only():
    """Per-byte unit costs by hand: the swelling DMA and the output converter (stage output_convert) per byte
    they write."""
    from simulator.energy import energy_table, stage_energy

    table = energy_table(with_energy("seed_case2", {"swell_dma_pj_per_byte": 0.25,
                                                    "output_converter_pj_per_byte": 3.2}).hardware)
    reads, writes = {"psum": 400, "ifmap": 8}, {"ifmap": 100}
    assert stage_energy("output_convert", reads, writes, 0, 0, 0, 0, table).fj_by_action["output_converter"] \
        == 100 * 3200
    assert stage_energy("swell", reads, writes, 0, 0, 0, 0, table).fj_by_action["swell_dma"] == 100 * 250
    other = stage_energy("writeback", reads, writes, 0, 0, 0, 0, table).fj_by_action
    assert other["swell_dma"] == other["output_converter"] == 0


@PROPERTY_SETTINGS
@given(layer=transposed_layers(), method=st.sampled_from(["swell", "phase"]))
def test_zero_gating_leaves_every_count_and_cycle_alone(layer, method):
    """Over random layers (timing model): the reports with and without gating differ in energy fields only."""
    reps = []
    for gating in (False, True):
        cfg = make_config(layer, hardware={"mac_array": {"zero_gating": gating}})
        reps.append(simulate_layer(cfg.layer, cfg.hardware, method, None))

    def strip(record: dict[str, Any]) -> dict[str, Any]:
        return {k: [strip(s) for s in v] if k == "stages" else v for k, v in record.items()
                if "energy" not in k}

    assert strip(reps[0].report.to_dict()) == strip(reps[1].report.to_dict())
    assert [(e.stage, e.tile, e.start_cycle, e.end_cycle) for e in reps[0].events] == [
        (e.stage, e.tile, e.start_cycle, e.end_cycle) for e in reps[1].events]
    on_zeros = reps[0].report.macs_on_zeros
    assert reps[0].report.energy_fj - reps[1].report.energy_fj == on_zeros * 300  # horowitz45: 0.3 pJ vs 0


def test_the_config_example_in_docs_loads_and_every_preset_name_has_a_table():
    import re
    from typing import get_args

    import yaml

    from simulator.config import EnergyPreset
    from simulator.energy import PRESETS, energy_table

    block = re.search(r"## 3\. Config: `hardware.energy`\n\n```yaml\n(.*?)```", ENERGY_DOC, re.S)
    assert block is not None
    hw = HardwareConfig.model_validate(yaml.safe_load(block.group(1))["hardware"])
    table = energy_table(hw)
    assert (table.mac_fj, table.read_fj("psum"), table.read_fj("ifmap"), table.zero_gating) == (300, 2500, 1250, True)
    assert set(PRESETS) == set(get_args(EnergyPreset))


@pytest.mark.parametrize("method", ["swell", "phase"])
def test_tile_energies_in_the_trace_add_up_to_the_stage_records(method):
    """Energy is linear in the counts: the per-tile energies of the trace events sum exactly to each stage's."""
    from simulator.pipeline import STAGE_NAMES
    from simulator.report import chrome_trace

    cfg = with_energy("dcgan_256_128", {"preset": "horowitz45_sized"}, zero_gating=True)
    result = simulate_layer(cfg.layer, cfg.hardware, method, None)
    assert result.report.num_tiles > 1
    for stage in result.report.stages:
        assert sum(e.energy_fj for e in result.events if e.stage == stage.name) == stage.energy_fj
    trace = chrome_trace(result.events, STAGE_NAMES, 1000.0)
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert [e["args"]["energy_pj"] for e in spans] == [e.energy_fj / 1000 for e in result.events]
