"""``convsim from-torch``: a network config from the convolutions a PyTorch model actually runs.

Models no hardware. It imports the user's model (``path/to/file.py:callable`` or ``package.module:callable``;
importing **executes** that code, so run it only on code you trust), runs one forward pass in eval mode under
``torch.no_grad`` on a random input of the given shape with a forward hook on every convolution module, and
records each ``Conv2d`` / ``ConvTranspose2d`` call in call order with the input shape it really saw and all of
its arguments. A module called twice (shared weights) becomes two layers.

What it ignores: the model's weights and activations (the config asks for ``random`` int8 data, so the golden
case is exact int8 arithmetic, not the float model), functional calls (``F.conv_transpose2d``) that no module
hook sees, and everything between convolutions (the other modules that ran, such as BatchNorm, activations
and upsampling, are listed by name as ignored). Convolutions the engine cannot run (1-d/3-d ones, ``padding=
'same'`` that torch pads asymmetrically, a layer whose smallest tile does not fit the SRAM, ...) are listed
on stdout and in a comment of the written config, never silently dropped; ``padding_mode`` other than ``zeros``
is an error, because running that layer with zero padding would give a different network.

torch is imported lazily inside these functions; like the golden reference, this module lives in
:mod:`simulator.golden`, the one package that uses torch.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from simulator.config import HardwareConfig, LayerConfig, config_from_mapping, format_validation_error
from simulator.errors import ConvsimError
from simulator.files import atomic_write_text, check_writable_dir
from simulator.mapping import mapping_for
from simulator.tiling import plan_tiles

DATA = {"seed": 0, "ifmap": "random", "weight": "random", "bias": "random"}
HARDWARE_FILE = "hw/default.yaml"
MAX_INPUT_ELEMENTS = 1 << 24  # the random input of the forward pass: 64 MiB of float32
LAYER_KEYS = ("name", "op", "input_shape", "in_channels", "out_channels", "kernel_size", "stride", "padding",
              "output_padding", "dilation", "groups", "bias")


@dataclass(frozen=True)
class Skipped:
    """A convolution call the engine cannot run, and why."""

    name: str
    module: str
    reason: str


@dataclass(frozen=True)
class Captured:
    layers: tuple[dict[str, Any], ...]
    skipped: tuple[Skipped, ...]
    ignored: tuple[str, ...] = ()  # other leaf modules that ran (BatchNorm, activations, upsampling): "name (Type)"


# -------------------------------------------------------------------------------------------------- arguments


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``N,C,H,W`` -> four positive ints."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(re.fullmatch(r"[0-9]+", p) for p in parts) or any(int(p) < 1 for p in parts):
        raise ConvsimError(f"--input-shape {text!r}: expected four positive integers N,C,H,W (e.g. 1,100,1,1)")
    n, c, h, w = (int(p) for p in parts)
    if n * c * h * w > MAX_INPUT_ELEMENTS:
        raise ConvsimError(f"--input-shape {text!r}: {n * c * h * w:,} elements, more than the "
                           f"{MAX_INPUT_ELEMENTS:,} a capture accepts (it is one forward pass of the float model)")
    return n, c, h, w


def layer_name(qualified: str, taken: set[str]) -> str:
    """A unique, valid layer name from a module's qualified name: dots become underscores."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", qualified.replace(".", "_")) or "conv"
    if base[0].isdigit():  # a child of a top-level nn.Sequential: "0" -> "layer_0"
        base = f"layer_{base}"
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _load_target(target: str) -> Any:
    """Import ``file.py:callable`` or ``package.module:callable`` and return the attribute."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise ConvsimError(f"target {target!r}: expected path/to/file.py:callable or package.module:callable")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ConvsimError(f"target {target!r}: file {where} not found")
        spec = importlib.util.spec_from_file_location(f"convsim_from_torch_{abs(hash(str(path.resolve())))}", path)
        if spec is None or spec.loader is None:
            raise ConvsimError(f"target {target!r}: {where} cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # so the model file can import its neighbours
        try:
            spec.loader.exec_module(module)
        except SystemExit as exc:
            raise ConvsimError(f"target {target!r}: importing {where} called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise ConvsimError(f"target {target!r}: importing {where} raised {_one_line(exc)}") from None
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(path.resolve().parent))
    else:
        try:
            module = importlib.import_module(where)
        except SystemExit as exc:
            raise ConvsimError(f"target {target!r}: importing {where} called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise ConvsimError(f"target {target!r}: cannot import module {where} ({_one_line(exc)})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConvsimError(f"target {target!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


def load_model(target: str) -> Any:
    """The ``torch.nn.Module`` the target names (a module instance, or a callable returning one)."""
    import torch

    obj = _load_target(target)
    if not isinstance(obj, torch.nn.Module):
        if not callable(obj):
            raise ConvsimError(f"target {target!r}: {type(obj).__name__} is not callable")
        try:
            obj = obj()
        except SystemExit as exc:
            raise ConvsimError(f"target {target!r}: calling it called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise ConvsimError(f"target {target!r}: calling it raised {_one_line(exc)}") from None
    if not isinstance(obj, torch.nn.Module):
        raise ConvsimError(f"target {target!r}: returned {type(obj).__name__}, expected a torch.nn.Module")
    return obj


def _check_out(path: Path, force: bool) -> None:
    """Before running the model: ``--out`` must be a new file (or ``--force``) in a writable directory."""
    if path.is_dir():
        raise ConvsimError(f"--out {path}: is a directory, expected a config file name")
    if path.exists() and not force:
        raise ConvsimError(f"--out {path}: exists; pass --force to overwrite it, or choose another --name/--out")
    check_writable_dir(path.parent, "--out")


# ---------------------------------------------------------------------------------------------------- capture


def _pair(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, tuple | list) else [int(value), int(value)]


def _conv_layer(module: Any, name: str, shape: tuple[int, ...], out_hw: tuple[int, int]) -> dict[str, Any] | str:
    """The config mapping of one Conv2d / ConvTranspose2d call, or the reason the engine cannot run it."""
    import torch

    transposed = isinstance(module, torch.nn.ConvTranspose2d)
    if len(shape) == 3:  # unbatched (C, H, W) input: the same convolution as batch 1
        shape = (1, *shape)
    kernel, dilation = _pair(module.kernel_size), _pair(module.dilation)
    padding: Any = module.padding
    if padding == "valid":
        padding = [0, 0]
    elif padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if any(t % 2 for t in totals):
            return (f"padding='same' with kernel_size={kernel}, dilation={dilation} pads {totals} in total, "
                    "one more on the bottom/right than the top/left; the engine pads symmetrically")
        padding = [t // 2 for t in totals]
    layer: dict[str, Any] = {
        "name": name, "op": "conv_transpose2d" if transposed else "conv2d", "input_shape": [int(s) for s in shape],
        "in_channels": int(module.in_channels), "out_channels": int(module.out_channels), "kernel_size": kernel,
        "stride": _pair(module.stride), "padding": _pair(padding),
        "output_padding": _pair(module.output_padding) if transposed else [0, 0], "dilation": dilation,
        "groups": int(module.groups), "bias": module.bias is not None,
    }
    try:
        checked = LayerConfig.model_validate(layer)
    except ValidationError as err:
        return format_validation_error(err, "layer").removeprefix("layer: ")
    if transposed and checked.output_hw != out_hw:
        # forward(x, output_size=...) chose another output_padding for this call: use the one it chose
        fixed = [op + want - got for op, want, got in zip(layer["output_padding"], out_hw, checked.output_hw,
                                                          strict=True)]
        try:
            LayerConfig.model_validate({**layer, "output_padding": fixed})
        except ValidationError:
            return f"output size {list(out_hw)} (forward with output_size) is not reachable with output_padding"
        layer["output_padding"] = fixed
    return layer


def capture(model: Any, input_shape: tuple[int, int, int, int]) -> Captured:
    """Run one forward pass with hooks and return the convolution calls, in call order."""
    import torch

    names = {id(m): q for q, m in model.named_modules()}
    calls: list[tuple[Any, tuple[int, ...], tuple[int, ...]]] = []

    def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        calls.append((module, tuple(inputs[0].shape), tuple(getattr(output, "shape", ()))))

    ran: dict[int, str] = {}

    def other(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ran.setdefault(id(module), f"{names.get(id(module)) or type(module).__name__} ({type(module).__name__})")

    conv_types = (torch.nn.modules.conv._ConvNd,)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, conv_types)]
    handles += [m.register_forward_hook(other) for m in model.modules()
                if not isinstance(m, conv_types) and not any(True for _ in m.children())]
    params = [p for p in model.parameters() if p.is_floating_point()]
    dtype = params[0].dtype if params else torch.float32
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator, dtype=dtype)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the model's own warnings are not about the capture
            model(x)
    except SystemExit as exc:
        raise ConvsimError(f"forward pass on input {list(input_shape)} called sys.exit({exc.code!r})") from None
    except Exception as exc:
        raise ConvsimError(f"forward pass on input {list(input_shape)} raised {_one_line(exc)}") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    taken: set[str] = set()
    layers: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    hw = HardwareConfig()
    for module, shape, out_shape in calls:
        qualified = names.get(id(module), "")
        name = layer_name(qualified or type(module).__name__.lower(), taken)
        kind = type(module).__name__
        if not isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            skipped.append(Skipped(name, kind, f"{kind} is not a 2-d convolution"))
            continue
        if module.padding_mode != "zeros":
            raise ConvsimError(f"module {qualified or kind!r} ({kind}) has padding_mode={module.padding_mode!r}: "
                               "the engine pads with zeros only (padding_mode='zeros')")
        result = _conv_layer(module, name, shape, (int(out_shape[-2]), int(out_shape[-1])))
        if isinstance(result, str):
            skipped.append(Skipped(name, kind, result))
            continue
        try:  # the default engine must hold at least one tile of it
            checked = LayerConfig.model_validate(result)
            plan_tiles(checked, hw, mapping_for(checked, hw, "swell"))
        except ConvsimError as exc:
            skipped.append(Skipped(name, kind, str(exc)))
            continue
        layers.append(result)
    return Captured(tuple(layers), tuple(skipped), tuple(ran.values()))


# ------------------------------------------------------------------------------------------------------ write


def _flow(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and yaml.safe_load(value) != value:  # a name like 0, 1e3, true or null
        return json.dumps(value)
    return str(value)


def render_config(name: str, target: str, input_shape: tuple[int, ...], captured: Captured,
                  hardware: str | dict[str, Any]) -> str:
    """The YAML text of the network config (flow-style layers, one per entry; skipped layers as comments)."""
    lines = [f"# Generated by `convsim from-torch {target} --input-shape {','.join(map(str, input_shape))}`:",
             f"# {len(captured.layers)} convolution(s) in call order, each with the input shape it saw. Data is",
             "# random int8 (not the model's weights); each layer runs on its own input, no requantization."]
    if captured.skipped:
        lines.append(f"# NOT included, the engine cannot run them ({len(captured.skipped)}):")
        lines += [f"#   {s.name} ({s.module}): {s.reason}" for s in captured.skipped]
    if captured.ignored:
        lines.append(f"# Ignored, not convolutions ({len(captured.ignored)}): " + ", ".join(captured.ignored))
    lines += [f"name: {name}", "layers:"]
    for layer in captured.layers:
        items = [f"{k}: {_flow(layer[k])}" for k in LAYER_KEYS]
        lines.append("  - {" + ", ".join(items[:5]) + ",")
        lines.append("     " + ", ".join(items[5:9]) + ",")
        lines.append("     " + ", ".join(items[9:]) + "}")
    lines.append(f"data: {_flow(DATA)}")
    if isinstance(hardware, str):
        lines.append(f"hardware: {hardware}")
    else:
        lines.append("# the default engine (configs/hw/default.yaml), inline: no hw/default.yaml beside this file")
        lines.append("hardware:")
        dumped = yaml.safe_dump(hardware, sort_keys=False, default_flow_style=None, width=110)
        lines += [f"  {line}" for line in dumped.splitlines()]
    return "\n".join(lines) + "\n"


def report_lines(path: Path, captured: Any) -> list[str]:
    """What ``from-torch`` prints: each captured layer, each convolution left out and why, the other modules that
    ran and are not part of the config (by name), and a summary line. A quantized model's chained int8 network:
    each layer with its chain input and activation, and every operation convsim does not run."""
    if hasattr(captured, "unsupported"):  # from_torch_quantized.QuantCaptured
        lines = [f"  {layer['name']}: {layer['op']} {layer['input_shape']} -> {layer['out_channels']} channels, "
                 f"input {layer['input']}, activation {layer['quant']['activation']}, weight scale "
                 f"{'per channel' if isinstance(layer['quant']['weight']['scale'], list) else 'per tensor'}"
                 for layer in captured.layers]
        lines += [f"  NOT RUN {op_name} ({kind}): {what}" for op_name, kind, what in captured.unsupported]
        lines.append(f"wrote {path}: {len(captured.layers)} int8 layer(s), {len(captured.unsupported)} "
                     "operation(s) not run")
        return lines
    lines = [f"  {layer['name']}: {layer['op']} {layer['input_shape']} -> {layer['out_channels']} channels, "
             f"k{layer['kernel_size']} s{layer['stride']} p{layer['padding']}" for layer in captured.layers]
    lines += [f"  NOT INCLUDED {s.name} ({s.module}): {s.reason}" for s in captured.skipped]
    if captured.ignored:
        lines.append(f"  ignored, not convolutions ({len(captured.ignored)}): " + ", ".join(captured.ignored))
    lines.append(f"wrote {path}: {len(captured.layers)} layer(s), {len(captured.skipped)} convolution(s) not "
                 f"included, {len(captured.ignored)} other module(s) ignored")
    return lines


def from_torch(target: str, input_shape_text: str, name: str | None, out: str | None, force: bool = False,
               quantize: bool = False, calibration: str | None = None) -> tuple[Path, Any]:
    """Capture the model's convolutions and write the network config; returns its path and what was captured.

    A torch.ao quantized model (or a float one with ``quantize``) gives a chained int8 network instead
    (:mod:`simulator.golden.from_torch_quantized`)."""
    input_shape = parse_input_shape(input_shape_text)
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConvsimError(f"--name {name!r}: use letters, digits, '_' and '-' only")
    if calibration is not None and not quantize:
        raise ConvsimError("--calibration needs --quantize (it is the calibration data of the quantization)")
    config_name = name or layer_name(target.rpartition(":")[2].split(".")[-1], set())
    path = Path(out) if out else Path("configs") / f"{config_name}.yaml"
    _check_out(path, force)
    model = load_model(target)
    from simulator.golden import from_torch_quantized as fq

    if quantize and fq.is_quantized(model):
        raise ConvsimError(f"target {target!r} is already quantized: drop --quantize")
    if quantize or fq.is_quantized(model):
        if quantize:
            model = fq.quantize_model(model, input_shape, calibration)
        hw: str | dict[str, Any] = HARDWARE_FILE if (path.parent / HARDWARE_FILE).is_file() else \
            HardwareConfig().model_dump(mode="json")
        return fq.write_quantized(model, target, input_shape, config_name, path, hw)
    captured = capture(model, input_shape)
    if not captured.layers:
        listed = "; ".join(f"{s.name}: {s.reason}" for s in captured.skipped) or "none was called"
        raise ConvsimError(f"target {target!r}: no Conv2d/ConvTranspose2d the engine can run ({listed})")
    hardware: str | dict[str, Any] = HARDWARE_FILE
    if not (path.parent / HARDWARE_FILE).is_file():
        hardware = HardwareConfig().model_dump(mode="json")
    text = render_config(config_name, target, input_shape, captured, hardware)
    raw = {"name": config_name, "layers": list(captured.layers), "data": DATA, "hardware": hardware}
    config_from_mapping(raw, path.parent, source=str(path))  # what `run` will load must validate
    atomic_write_text(path, text)
    return path, captured
