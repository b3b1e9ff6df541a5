"""Golden reference (torch, imported lazily) and golden case files.

The reference is torch's own ``conv_transpose2d`` / ``conv2d`` on **int64** tensors (exact: no float rounding at
any magnitude), reduced to int32 the way the engine does: the conv sum under the accumulator policy, then the
bias add under the same policy. torch is imported inside :func:`reference` only, so nothing on the simulation
path depends on the thing it is checked against.

A golden case ``<dir>/<name>/`` holds ``ifmap.npy`` (int8 NCHW), ``weight.npy`` (int8, torch layout),
``bias.npy`` (int32), ``ofmap.npy`` (int32 NCHW) and ``manifest.json`` with the sha256 of every file; it is
written atomically (temp dir, then rename) and verified on load.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config import LayerConfig, SimConfig
from simulator.data import LayerTensors, make_tensors
from simulator.errors import ConvsimError, IntegrityError
from simulator.files import atomic_directory, npy_bytes, sha256_bytes, sha256_file
from simulator.fixedpoint import INT32_MAX, INT32_MIN, OverflowPolicy, narrow_to_int32, reduction_is_order_free

GENERATOR_VERSION = "1"
TENSORS = {"ifmap": ("int8", "NCHW"), "weight": ("int8", "torch"), "bias": ("int32", "C"), "ofmap": ("int32", "NCHW")}


def reference(layer: LayerConfig, tensors: LayerTensors, policy: OverflowPolicy) -> np.ndarray:
    """The golden ofmap: torch on int64, then psum and bias narrowed to int32 as the engine does."""
    import torch  # the golden reference only
    import torch.nn.functional as F

    def conv(x: Any, w: Any) -> Any:
        if layer.is_transposed:
            return F.conv_transpose2d(x, w, None, layer.stride, layer.padding, layer.output_padding, layer.groups,
                                      layer.dilation)
        return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)

    x = torch.from_numpy(tensors.ifmap.astype(np.int64))
    w = torch.from_numpy(tensors.weight.astype(np.int64))
    y = conv(x, w)
    if policy == "saturate" and not reduction_is_order_free(layer.reduction_length):
        # clamp(final sum) is the in-order saturating result unless the running sum can both leave int32 and
        # come back: that needs products of both signs with a positive or negative part beyond int32
        pos = conv(x.clamp(min=0), w.clamp(min=0)) + conv(x.clamp(max=0), w.clamp(max=0))
        neg = conv(x.clamp(min=0), w.clamp(max=0)) + conv(x.clamp(max=0), w.clamp(min=0))
        mixed = (pos > 0) & (neg < 0) & ((pos > INT32_MAX) | (neg < INT32_MIN))
        if bool(mixed.any()):
            at = [int(i) for i in torch.nonzero(mixed)[0]]
            raise ConvsimError(f"golden: on_overflow=saturate with K={layer.reduction_length} is order-dependent at "
                               f"output {at} (partial sums leave int32 and come back); the torch reference cannot "
                               f"follow the hardware order, use wrap or error for a golden case")
    psum = narrow_to_int32(y.numpy(), policy, what="golden psum")
    wide = psum.astype(np.int64) + tensors.bias.astype(np.int64)[None, :, None, None]
    return narrow_to_int32(wide, policy, what="golden output (psum + bias)")


@dataclass(frozen=True)
class GoldenCase:
    tensors: LayerTensors
    ofmap: np.ndarray
    manifest: dict[str, Any]


def case_files(cfg: SimConfig, layer: LayerConfig, index: int | None) -> dict[str, bytes]:
    """All files of one golden case, as bytes (deterministic: same config, same bytes)."""
    import torch

    tensors = make_tensors(cfg.data, layer, index)
    ofmap = reference(layer, tensors, cfg.hardware.accumulator.on_overflow)
    arrays = {"ifmap": tensors.ifmap, "weight": tensors.weight, "bias": tensors.bias, "ofmap": ofmap}
    files = {f"{k}.npy": npy_bytes(v) for k, v in arrays.items()}
    manifest = {
        "generator": "convsim golden", "generator_version": GENERATOR_VERSION,
        "config": json.loads(cfg.model_dump_json()), "layer": layer.name, "seed": cfg.data.seed,
        "torch_version": torch.__version__, "numpy_version": np.__version__, "python": platform.python_version(),
        "tensors": {k: {"file": f"{k}.npy", "shape": list(v.shape), "dtype": TENSORS[k][0], "layout": TENSORS[k][1],
                        "sha256": sha256_bytes(files[f"{k}.npy"])} for k, v in arrays.items()},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files


def write_case(directory: Path, files: dict[str, bytes]) -> None:
    with atomic_directory(directory) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def load_case(directory: Path) -> GoldenCase | None:
    """Read and verify a golden case; None if there is none. Any corruption is an :class:`IntegrityError`."""
    manifest_path = directory / "manifest.json"
    if not directory.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["tensors"]
    except (OSError, ValueError, KeyError, TypeError):
        raise IntegrityError(f"golden case {directory}: manifest.json missing or unreadable") from None
    arrays = {}
    for name, (dtype, _) in TENSORS.items():
        entry = entries.get(name) if isinstance(entries, dict) else None
        path = directory / f"{name}.npy"
        if not entry or not path.is_file():
            raise IntegrityError(f"golden case {directory}: {name}.npy missing")
        if sha256_file(path) != entry.get("sha256"):
            raise IntegrityError(f"golden file {path}: sha256 does not match manifest.json (corrupt or edited)")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise IntegrityError(f"golden file {path}: not a valid .npy file") from None
        if str(arr.dtype) != dtype or list(arr.shape) != entry.get("shape"):
            raise IntegrityError(f"golden file {path}: {arr.dtype}{list(arr.shape)}, manifest says "
                                 f"{dtype}{entry.get('shape')}")
        arrays[name] = arr
    return GoldenCase(LayerTensors(arrays["ifmap"], arrays["weight"], arrays["bias"]), arrays["ofmap"], manifest)


def check_case_fits(case: GoldenCase, layer: LayerConfig, directory: Path) -> None:
    """A verified case may still belong to another layer (a stale case of the same name): refuse it, naming the
    first tensor whose shape differs from what ``layer`` expects."""
    expected = {"ifmap": layer.input_shape, "weight": layer.weight_shape, "bias": (layer.out_channels,),
                "ofmap": layer.output_shape}
    actual = {"ifmap": case.tensors.ifmap, "weight": case.tensors.weight, "bias": case.tensors.bias,
              "ofmap": case.ofmap}
    for name, shape in expected.items():
        if tuple(actual[name].shape) != tuple(shape):
            raise IntegrityError(f"golden case {directory}: {name} shape {list(actual[name].shape)}, layer "
                                 f"{layer.name!r} expects {list(shape)} (stale case? regenerate with convsim golden)")
