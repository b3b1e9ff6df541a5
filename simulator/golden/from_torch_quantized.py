"""``convsim from-torch`` on a quantized model: a chained int8 network config from torch.ao (fbgemm).

Models no hardware. It takes a model torch.ao already quantized (eager mode: ``QuantStub`` ... ``convert``; or FX:
``convert_fx``), or calibrates a float one with torch.ao post-training quantization (``--quantize``: FX graph mode,
the fbgemm default qconfig mapping, which fuses Conv+BN(+ReLU), after folding each BatchNorm that follows a
ConvTranspose2d into it, which that mapping does not; random inputs or ``--calibration FILE.npy``).
One forward pass on the fbgemm engine (pinned) records every operation in order: an FX graph through an
interpreter, an eager model through hooks on its leaf modules. From it:

- each quantized ``Conv2d`` / ``ConvTranspose2d`` (``ConvReLU2d`` too) becomes a layer with its int8 weights, its
  int32 bias ``round(b_f / (s_x * s_w[c]))``, torch's float bias (``quant.bias_float``, so fp32_rne is bit-exact),
  and every scale and zero point (torch's quint8 zero points minus 128: the int8 codes of the same real values);
- a ``ReLU`` whose input is a conv's output folds into that conv's ``activation: relu``;
- a conv whose input is the previous layer's output reads it (``input: previous``); the first one, and any after
  an operation convsim cannot run, read torch's int8 input from a file;
- every other operation (upsample, tanh, concatenation, addition, ...) is listed by name, with what was done.

Files beside the config, in ``<name>_data/``: per layer ``<layer>_weight.npy``, ``<layer>_bias.npy``,
``<layer>_ifmap.npy`` (unchained layers) and ``<layer>_torch_ofmap.npy`` (torch's int8 output of that layer, for
comparison). Deliberately ignored: functional convolutions (no module), dynamic quantization, quantized
operations other than conv and ReLU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simulator.errors import ConvsimError
from simulator.files import atomic_write_bytes, atomic_write_text, npy_bytes
from simulator.golden.quantized import quantized_engine

IGNORED = {"dequantize", "DeQuantize", "Identity", "Dropout", "Flatten"}  # no arithmetic on the int8 data path


@dataclass
class Event:
    """One operation of the forward pass: its name, its kind, the module (None for a function), its tensors."""

    name: str
    kind: str
    module: Any
    inputs: list[Any]
    output: Any


@dataclass
class QuantCaptured:
    """What a quantized model's forward pass turned into: layer mappings, files to write, and unsupported ops."""

    layers: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, np.ndarray] = field(default_factory=dict)
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)  # (name, kind, what was done)


def _conv_types() -> tuple[type, ...]:
    import torch.ao.nn.quantized as nnq

    return (nnq.Conv2d, nnq.ConvTranspose2d)


def is_quantized(model: Any) -> bool:
    """True when the model holds torch.ao quantized convolutions (eager-mode converted or FX converted)."""
    return any(isinstance(m, _conv_types()) for m in model.modules())


def quantize_model(model: Any, input_shape: tuple[int, int, int, int], calibration: str | None) -> Any:
    """torch.ao FX post-training quantization for fbgemm: fuse Conv+BN(+ReLU), observe, convert."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if calibration is not None:
        try:
            batches = np.load(calibration, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConvsimError(f"--calibration {calibration}: not a readable .npy file ({exc})") from None
        if batches.ndim != 4 or tuple(batches.shape[1:]) != tuple(input_shape[1:]):
            raise ConvsimError(f"--calibration {calibration}: shape {list(batches.shape)}, expected "
                               f"[N, {', '.join(map(str, input_shape[1:]))}] (the model's input)")
        inputs = [torch.from_numpy(batches.astype(np.float32))]
    else:
        generator = torch.Generator().manual_seed(0)
        inputs = [torch.randn(input_shape, generator=generator) for _ in range(8)]
    model.eval()
    with quantized_engine(), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            model = fold_transposed_bn(model)
            prepared = prepare_fx(model, get_default_qconfig_mapping("fbgemm"), example_inputs=(inputs[0],))
            for x in inputs:
                prepared(x)
            return convert_fx(prepared)
        except Exception as exc:  # symbolic tracing or conversion failed: say which and why
            raise ConvsimError(f"--quantize: torch.ao FX quantization failed ({type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None


def fold_transposed_bn(model: Any) -> Any:
    """Fold each BatchNorm2d that directly follows a ConvTranspose2d into it (float, eval mode), as torch.ao's
    fbgemm fusion does for Conv2d+BN but not for transposed convs here (it would quantize the BN on its own)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, torch.nn.BatchNorm2d) or len(node.args) != 1:
            continue
        source = node.args[0]
        conv = modules.get(source.target) if getattr(source, "op", None) == "call_module" else None
        if not isinstance(conv, torch.nn.ConvTranspose2d) or len(source.users) != 1:
            continue
        fused = fuse_conv_bn_eval(conv, bn, transpose=True)
        parent, _, leaf = str(source.target).rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, leaf, fused)
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.recompile()
    return traced


def record(model: Any, x: Any) -> list[Event]:
    """The forward pass's operations in order (fbgemm engine pinned)."""
    import torch

    events: list[Event] = []
    if isinstance(model, torch.fx.GraphModule):

        class Recorder(torch.fx.Interpreter):
            def run_node(self, n: Any) -> Any:
                result = super().run_node(n)
                if n.op in ("call_module", "call_function", "call_method"):
                    module = self.module.get_submodule(n.target) if n.op == "call_module" else None
                    kind = (type(module).__name__ if module is not None
                            else getattr(n.target, "__name__", str(n.target)))
                    name = str(n.target) if module is not None else n.name  # a module's qualified name
                    events.append(Event(name, kind, module, [self.env[a] for a in n.all_input_nodes], result))
                return result

        runner: Any = Recorder(model)
        run = runner.run
    else:
        names = {id(m): q for q, m in model.named_modules()}

        def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
            events.append(Event(names.get(id(module), "") or type(module).__name__.lower(), type(module).__name__,
                                module, list(inputs), output))

        leaves = [m for m in model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        run = model
    try:
        model.eval()
        with quantized_engine(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(x)
    except Exception as exc:
        raise ConvsimError(f"forward pass of the quantized model raised {type(exc).__name__}: {exc}") from None
    finally:
        if not isinstance(model, torch.fx.GraphModule):
            for h in handles:
                h.remove()
    return events


def _int8(q: Any) -> np.ndarray:
    """A quint8 tensor's codes as int8 (u - 128: the same real values with zero point - 128)."""
    return (q.int_repr().numpy().astype(np.int16) - 128).astype(np.int8)


def _layer_name(name: str, taken: set[str]) -> str:
    import re

    base = re.sub(r"[^A-Za-z0-9_-]", "_", name.replace(".", "_")) or "conv"
    base = f"layer_{base}" if base[0].isdigit() else base
    out, k = base, 1
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def _pair(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, tuple | list) else [int(value), int(value)]


def _conv_layer(event: Event, name: str, data_dir: str, chained: bool,
                captured: QuantCaptured) -> dict[str, Any] | str:
    """The layer mapping of a quantized conv call (files go into ``captured.files``), or why it cannot run."""
    import torch
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    module, qx, qy = event.module, event.inputs[0], event.output
    transposed = isinstance(module, nnq.ConvTranspose2d)
    if not qx.is_quantized or qx.dtype != torch.quint8:
        return f"input is {qx.dtype}, expected a quint8 tensor"
    if getattr(module, "padding_mode", "zeros") != "zeros":
        return f"padding_mode={module.padding_mode!r} (the engine pads with zeros only)"
    w = module.weight()
    c_out = int(module.out_channels)
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        zps = {int(z) for z in w.q_per_channel_zero_points()}
        if len(zps) != 1 or w.q_per_channel_axis() != 0 or transposed:
            return "per-channel weight zero points must all be equal (axis 0)"
        w_scale: Any = [float(s) for s in w.q_per_channel_scales()]
        w_zp = zps.pop()
    else:
        w_scale, w_zp = float(w.q_scale()), int(w.q_zero_point())
    s_x = float(qx.q_scale())
    scales = np.asarray(w_scale if isinstance(w_scale, list) else [w_scale] * c_out, dtype=np.float64)
    bias_f = module.bias()
    bias_float = (bias_f.detach().float().numpy() if bias_f is not None else np.zeros(c_out, dtype=np.float32))
    bias = np.clip(np.round(bias_float.astype(np.float64) / (s_x * scales)), -(2**31), 2**31 - 1).astype(np.int32)
    files = {f"{name}_weight.npy": w.int_repr().numpy().astype(np.int8), f"{name}_bias.npy": bias,
             f"{name}_torch_ofmap.npy": _int8(qy)}
    data: dict[str, Any] = {"seed": 0, "ifmap": "random", "weight": {"file": f"{data_dir}/{name}_weight.npy"},
                            "bias": {"file": f"{data_dir}/{name}_bias.npy"}}
    if not chained:
        files[f"{name}_ifmap.npy"] = _int8(qx)
        data["ifmap"] = {"file": f"{data_dir}/{name}_ifmap.npy"}
    captured.files.update(files)
    return {
        "name": name, "op": "conv_transpose2d" if transposed else "conv2d",
        "input_shape": [int(s) for s in qx.shape], "in_channels": int(module.in_channels), "out_channels": c_out,
        "kernel_size": _pair(module.kernel_size), "stride": _pair(module.stride), "padding": _pair(module.padding),
        "output_padding": _pair(module.output_padding) if transposed else [0, 0],
        "dilation": _pair(module.dilation), "groups": int(module.groups), "bias": True,
        "input": "previous" if chained else "data",
        "quant": {"input": {"scale": s_x, "zero_point": int(qx.q_zero_point()) - 128},
                  "weight": {"scale": w_scale, "zero_point": w_zp},
                  "output": {"scale": float(module.scale), "zero_point": int(module.zero_point) - 128},
                  "rounding": "fp32_rne", "activation": "relu" if isinstance(module, nniq.ConvReLU2d) else "none",
                  "bias_float": [float(v) for v in bias_float.astype(np.float32)]},
        "data": data,
    }


def _is_relu(event: Event) -> bool:
    return event.kind in ("ReLU", "relu", "relu_")


def build(events: list[Event], data_dir: str) -> QuantCaptured:
    """Turn the recorded operations into chained layers (see the module docstring)."""
    captured = QuantCaptured()
    taken: set[str] = set()
    last_output: int | None = None  # id() of the tensor the last layer's output is (after a folded ReLU)
    for event in events:
        if isinstance(event.module, _conv_types()):
            name = _layer_name(event.name, taken)
            chained = bool(captured.layers) and last_output is not None and id(event.inputs[0]) == last_output
            result = _conv_layer(event, name, data_dir, chained, captured)
            if isinstance(result, str):
                captured.unsupported.append((name, event.kind, f"not included: {result}"))
                last_output = None
                continue
            captured.layers.append(result)
            last_output = id(event.output)
        elif _is_relu(event) and last_output is not None and event.inputs and id(event.inputs[0]) == last_output:
            layer = captured.layers[-1]
            layer["quant"]["activation"] = "relu"
            captured.files[f"{layer['name']}_torch_ofmap.npy"] = _int8(event.output)
            last_output = id(event.output)
        elif event.kind in ("quantize_per_tensor", "Quantize") or event.kind in IGNORED:
            continue
        else:
            after = captured.layers[-1]["name"] if captured.layers else None
            what = (f"not run (after layer {after}): a later layer, if any, reads torch's int8 input from a file"
                    if after else "not run (before the first layer): torch's int8 input to it is recorded instead")
            captured.unsupported.append((event.name, event.kind, what))
            if event.output is not None and id(event.output) != last_output:
                last_output = None
    return captured


def write_quantized(model: Any, target: str, input_shape: tuple[int, int, int, int], config_name: str,
                    path: Path, hardware: str | dict[str, Any]) -> tuple[Path, QuantCaptured]:
    """Record the quantized model, write the data files and the chained network config (validated first)."""
    import torch

    from simulator.config import config_from_mapping

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator)
    data_dir = f"{config_name}_data"
    captured = build(record(model, x), data_dir)
    if not captured.layers:
        listed = "; ".join(f"{n} ({k})" for n, k, _ in captured.unsupported) or "none was called"
        raise ConvsimError(f"target {target!r}: no quantized Conv2d/ConvTranspose2d the engine can run ({listed})")
    raw = {"name": config_name, "layers": captured.layers, "hardware": hardware}
    head = [f"# Generated by `convsim from-torch {target} --input-shape {','.join(map(str, input_shape))}`: a",
            f"# torch.ao quantized model (fbgemm), {len(captured.layers)} int8 layer(s) chained in call order; "
            f"data in {data_dir}/."]
    if captured.unsupported:
        head.append(f"# Operations convsim does not run ({len(captured.unsupported)}):")
        head += [f"#   {n} ({k}): {what}" for n, k, what in captured.unsupported]
    text = "\n".join(head) + "\n" + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=110)
    config_from_mapping(yaml.safe_load(text), path.parent, source=str(path))  # what `run` loads must validate
    for file_name, array in captured.files.items():
        atomic_write_bytes(path.parent / data_dir / file_name, npy_bytes(array))
    atomic_write_text(path, text)
    return path, captured
