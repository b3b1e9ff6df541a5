"""Golden reference (torch, imported lazily) and golden case files.

The reference is torch's own ``conv_transpose2d`` / ``conv2d`` on **int64** tensors (exact: no float rounding at
any magnitude), reduced to int32 the way the engine does: the conv sum under the accumulator policy, then the
bias add under the same policy. torch is imported inside :func:`reference` only, so nothing on the simulation
path depends on the thing it is checked against. Models no hardware block; ignores timing entirely.

A golden case ``<dir>/<name>/`` holds ``ifmap``, ``weight``, ``bias`` and ``ofmap`` twice: as ``.npy`` (int8 or
int32, C order) and as ``$readmemh`` text (``.hex``: one two's-complement element per line, same order), plus
``manifest.json`` (resolved config, shapes, dtypes, sha256 of every file, seed, tool versions). Generation is
deterministic (same config and tool versions, same bytes), the case is written atomically (temp dir, then
rename) and every file is verified against the manifest before :func:`load_case` trusts it.
docs/formats.md describes the files precisely.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config import LayerConfig, SimConfig
from simulator.data import LayerTensors, make_tensors
from simulator.errors import ConvsimError, IntegrityError
from simulator.files import atomic_directory, npy_bytes, sha256_bytes, sha256_file
from simulator.fixedpoint import INT32_MAX, INT32_MIN, OverflowPolicy, narrow_to_int32, reduction_is_order_free
from simulator.inputs import MAX_JSON_BYTES, read_bytes, read_npy

GENERATOR_VERSION = "2"
TENSORS = {"ifmap": ("int8", "NCHW"), "weight": ("int8", "torch"), "bias": ("int32", "C"), "ofmap": ("int32", "NCHW")}
# a quantized layer's case: the int8 ofmap and the int32 accumulators the output converter reads (an RTL bench
# checks both)
QUANT_TENSORS = {**TENSORS, "acc": ("int32", "NCHW"), "ofmap": ("int8", "NCHW")}
VERSION_KEYS = ("torch_version", "numpy_version")
MANIFEST = "manifest.json"
LAYER_DEFAULTS_NOT_RECORDED: dict[str, Any] = {"quant": None, "input": "data", "data": None}
MAX_GOLDEN_NPY_BYTES = 1 << 30
MAX_REFERENCE_BYTES = 1 << 30  # torch's int64 reference: keeps `convsim golden` within ~1.5 GB
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
HEX_CHUNK = 1 << 20  # elements per step of readmemh_bytes


def reference(layer: LayerConfig, tensors: LayerTensors, policy: OverflowPolicy) -> np.ndarray:
    """The golden ofmap: torch on int64, then psum and bias narrowed to int32 as the engine does."""
    import torch  # the golden reference only
    import torch.nn.functional as F

    def conv(x: Any, w: Any) -> Any:
        if layer.is_transposed:
            return F.conv_transpose2d(x, w, None, layer.stride, layer.padding, layer.output_padding, layer.groups,
                                      layer.dilation)
        return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)

    check_reference_fits(layer)
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


def reference_bytes(layer: LayerConfig) -> int:
    """What torch's int64 convolution holds at once: the int64 ifmap, weight and ofmap, and its im2col columns
    (conv2d: C_in * kh * kw rows by OH * OW; conv_transpose2d: C_out * kh * kw rows by H * W), 8 bytes each."""
    n, c, h, w = layer.input_shape
    kh, kw = layer.kernel_size
    oh, ow = layer.output_hw
    columns = (c * oh * ow if not layer.is_transposed else layer.out_channels * h * w) * kh * kw
    elements = n * c * h * w + int(np.prod(layer.weight_shape)) + n * layer.out_channels * oh * ow
    return 8 * (columns + 2 * elements)


def check_reference_fits(layer: LayerConfig) -> None:
    """Refuse (one line) a layer whose torch reference would need more than MAX_REFERENCE_BYTES."""
    need = reference_bytes(layer)
    if need > MAX_REFERENCE_BYTES:
        raise ConvsimError(f"golden: torch's int64 reference of layer {layer.name!r} would hold about {need:,} bytes "
                           f"(its im2col columns and int64 tensors), more than the {MAX_REFERENCE_BYTES:,} it may "
                           "use; make the layer smaller for a golden case")


@dataclass(frozen=True)
class GoldenCase:
    tensors: LayerTensors
    ofmap: np.ndarray
    manifest: dict[str, Any]
    acc: np.ndarray | None = None  # quantized layers: the int32 accumulators


def case_tensors(layer: LayerConfig) -> dict[str, tuple[str, str]]:
    """(dtype, layout) of every tensor of the layer's case."""
    return QUANT_TENSORS if layer.quant is not None else TENSORS


def tensor_axes(layer: LayerConfig) -> dict[str, list[str]]:
    """Axis names of the four tensors (torch's weight layout for the op)."""
    weight = (["C_in", "C_out/groups", "kh", "kw"] if layer.is_transposed else ["C_out", "C_in/groups", "kh", "kw"])
    axes = {"ifmap": ["N", "C_in", "H", "W"], "weight": weight, "bias": ["C_out"],
            "ofmap": ["N", "C_out", "H_out", "W_out"]}
    return {**axes, "acc": axes["ofmap"]} if layer.quant is not None else axes


def readmemh_bytes(array: np.ndarray, name: str, axes: list[str]) -> bytes:
    """``$readmemh`` text: a ``//`` header, then one element per line in C order, two's complement, lower-case
    hex, zero-padded to 2 digits per byte (int8 -> 2 digits, int32 -> 8 digits)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    digits = 2 * flat.dtype.itemsize
    shifts = 4 * np.arange(digits - 1, -1, -1, dtype=np.uint64)
    text = np.empty((flat.size, digits + 1), dtype=np.uint8)
    text[:, digits] = ord("\n")
    for start in range(0, flat.size, HEX_CHUNK):  # in chunks: the nibble array is 8 bytes per hex digit
        part = flat[start:start + HEX_CHUNK]
        bits = part.view(f"u{flat.dtype.itemsize}").astype(np.uint64)  # same bits read unsigned: two's complement
        # (n,) -> (n, digits) nibbles, most significant first -> ASCII digits
        text[start:start + part.size, :digits] = _HEX_DIGITS[(bits[:, None] >> shifts) & np.uint64(0xF)]
    header = (f"// convsim golden {name}: shape {list(array.shape)} ({', '.join(axes)}), dtype {array.dtype}\n"
              f"// elements: {array.size}, one per line, C order (last axis fastest), "
              f"two's complement, {digits} hex digits\n")
    return header.encode("ascii") + text.tobytes()


def _portable_config(cfg: SimConfig, config_dir: Path | None) -> dict[str, Any]:
    """The resolved config as JSON data, with data file paths relative to the config's directory (or bare
    file names when it is unknown), so the manifest does not depend on where the repository is checked out."""
    resolved = cfg.model_dump(mode="json")
    datas = [resolved["data"]]
    for layer in resolved["layers"]:
        # keys of the quantization work left out at their defaults: an int32 layer's manifest is as before
        for key, default in LAYER_DEFAULTS_NOT_RECORDED.items():
            if layer.get(key) == default:
                del layer[key]
        if layer.get("data"):
            datas.append(layer["data"])
    for data in datas:
        for src in data.values():
            if isinstance(src, dict) and "file" in src:
                path = Path(src["file"])
                src["file"] = (Path(os.path.relpath(path, config_dir.resolve())).as_posix()
                               if config_dir is not None else path.name)
    return resolved


def case_files(cfg: SimConfig, layer: LayerConfig, index: int | None,
               config_dir: Path | None = None, ifmap: np.ndarray | None = None) -> dict[str, bytes]:
    """All files of one golden case, as bytes (deterministic: same config, same bytes).

    ``config_dir`` is the directory of the config file; data file paths are recorded relative to it. ``ifmap``
    replaces the generated one (a layer with ``input: previous`` reads the previous case's ofmap)."""
    import torch

    tensors = make_tensors(cfg.layer_data(layer), layer, index)
    if ifmap is not None:
        tensors = LayerTensors(ifmap, tensors.weight, tensors.bias)
    policy = cfg.hardware.accumulator.on_overflow
    extra: dict[str, Any] = {}
    if layer.quant is None:
        arrays = {"ifmap": tensors.ifmap, "weight": tensors.weight, "bias": tensors.bias,
                  "ofmap": reference(layer, tensors, policy)}
    else:
        from simulator.golden.quantized import quantized_reference

        ofmap, acc, source = quantized_reference(layer, tensors, policy)
        arrays = {"ifmap": tensors.ifmap, "weight": tensors.weight, "bias": tensors.bias, "acc": acc, "ofmap": ofmap}
        from simulator.golden.quantized import converter_registers

        extra = {"reference": source, "converter": converter_registers(layer, tensors.bias)}
    kinds = case_tensors(layer)
    axes = tensor_axes(layer)
    files: dict[str, bytes] = {}
    for name, arr in arrays.items():
        files[f"{name}.npy"] = npy_bytes(arr)
        files[f"{name}.hex"] = readmemh_bytes(arr, name, axes[name])
    manifest = {
        "generator": "convsim golden", "generator_version": GENERATOR_VERSION,
        "name": cfg.name, "layer": layer.name, "layer_index": index, "seed": cfg.data.seed,
        "torch_version": torch.__version__, "numpy_version": np.__version__,
        "tensors": {k: {"file": f"{k}.npy", "hex": f"{k}.hex", "shape": list(v.shape), "dtype": kinds[k][0],
                        "layout": kinds[k][1], "axes": axes[k], "sha256": sha256_bytes(files[f"{k}.npy"])}
                    for k, v in arrays.items()},
        **extra,
        "files": {name: sha256_bytes(data) for name, data in sorted(files.items())},
        "config": _portable_config(cfg, config_dir),
    }
    files[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files


def write_case(directory: Path, files: dict[str, bytes]) -> None:
    """Write a case atomically: all files into a temporary directory, then one rename replaces ``directory``."""
    with atomic_directory(directory) as tmp:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)  # a network's case has one subdir per layer
            (tmp / name).write_bytes(data)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise IntegrityError(f"golden case {directory}: {MANIFEST} missing (regenerate with `convsim golden`)")
    try:
        manifest = json.loads(read_bytes(path, "golden file", MAX_JSON_BYTES))
    except (ValueError, RecursionError):
        raise IntegrityError(f"golden file {path}: not valid JSON (corrupt or edited)") from None
    ok = (isinstance(manifest, dict) and isinstance(manifest.get("tensors"), dict)
          and isinstance(manifest.get("files", {}), dict)
          and all(isinstance(manifest["tensors"].get(k), dict) for k in TENSORS))
    if not ok:
        raise IntegrityError(f"golden file {path}: missing 'tensors' entries for {', '.join(TENSORS)}")
    return manifest


def _verify_sha256(path: Path, expected: Any) -> None:
    if not path.is_file():
        raise IntegrityError(f"golden file {path}: missing (listed in {MANIFEST})")
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"golden file {path}: sha256 checksum {actual[:16]}... does not match {MANIFEST} "
                             f"({str(expected)[:16]}...): file corrupt, truncated or edited")


def load_case(directory: Path) -> GoldenCase | None:
    """Read and verify a golden case; None if there is none. Every file the manifest lists is checked against
    its sha256 before anything is loaded; any corruption is a one-line :class:`IntegrityError`."""
    if not directory.exists():
        return None
    manifest = _read_manifest(directory)
    kinds = QUANT_TENSORS if isinstance(manifest["tensors"].get("acc"), dict) else TENSORS
    checked = dict(manifest.get("files", {}))
    for name in kinds:
        checked.setdefault(f"{name}.npy", manifest["tensors"][name].get("sha256"))
    for name, digest in sorted(checked.items()):
        if Path(name).name != name:
            raise IntegrityError(f"golden file {directory / MANIFEST}: file name {name!r} is not a plain name")
        _verify_sha256(directory / name, digest)
    arrays = {}
    for name, (dtype, _) in kinds.items():
        entry, path = manifest["tensors"][name], directory / f"{name}.npy"
        try:
            arr = read_npy(path, "golden file", MAX_GOLDEN_NPY_BYTES)
        except ConvsimError as exc:
            raise IntegrityError(str(exc)) from None
        if str(arr.dtype) != dtype or list(arr.shape) != entry.get("shape"):
            raise IntegrityError(f"golden file {path}: {arr.dtype}{list(arr.shape)}, manifest says "
                                 f"{dtype}{entry.get('shape')}")
        arrays[name] = arr
    return GoldenCase(LayerTensors(arrays["ifmap"], arrays["weight"], arrays["bias"]), arrays["ofmap"], manifest,
                      arrays.get("acc"))


def check_case_matches(case: GoldenCase, directory: Path, layer: LayerConfig, policy: OverflowPolicy) -> None:
    """A golden case generated for another layer shape or overflow policy is stale: refuse it, do not compare."""
    want = {"ifmap": list(layer.input_shape), "weight": list(layer.weight_shape), "bias": [layer.out_channels],
            "ofmap": list(layer.output_shape)}
    got_dtype = case.manifest["tensors"]["ofmap"].get("dtype")
    if got_dtype != layer.ofmap_dtype:
        raise ConvsimError(f"golden case {directory}: ofmap dtype {got_dtype}, layer {layer.name!r} produces "
                           f"{layer.ofmap_dtype} (stale: regenerate with `convsim golden`)")
    if layer.quant is not None:
        layers = case.manifest.get("config", {}).get("layers", [])
        recorded_quant = next((entry.get("quant") for entry in layers if isinstance(entry, dict)
                               and entry.get("name") == layer.name), None)
        if recorded_quant != layer.quant.model_dump(mode="json"):
            raise ConvsimError(f"golden case {directory}: generated with other quant: settings than layer "
                               f"{layer.name!r} has (stale: regenerate with `convsim golden`)")
    for name, shape in want.items():
        got = case.manifest["tensors"][name].get("shape")
        if got != shape:
            raise ConvsimError(f"golden case {directory}: {name} shape {got}, layer {layer.name!r} needs {shape} "
                               "(stale: regenerate with `convsim golden`)")
    try:
        recorded = case.manifest["config"]["hardware"]["accumulator"]["on_overflow"]
    except (KeyError, TypeError):
        raise IntegrityError(f"golden case {directory}: {MANIFEST} does not record "
                             "config.hardware.accumulator.on_overflow") from None
    if recorded != policy:
        raise ConvsimError(f"golden case {directory}: generated with on_overflow={recorded}, the config has "
                           f"{policy} (stale: regenerate with `convsim golden`)")


def _npy_detail(old: bytes, new: bytes) -> str:
    import io

    from simulator.compare import compare

    try:
        was = np.load(io.BytesIO(old), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return " (on disk: not a valid .npy)"
    cmp = compare(np.load(io.BytesIO(new), allow_pickle=False), was)
    if cmp.expected_shape != cmp.actual_shape or cmp.expected_dtype != cmp.actual_dtype:
        return f" (on disk {cmp.actual_dtype}{list(cmp.actual_shape)}, now {cmp.expected_dtype}" \
               f"{list(cmp.expected_shape)})"
    return f" ({cmp.mismatches:,} of {cmp.total:,} elements)" if cmp.mismatches else " (same values, other bytes)"


def _manifest_detail(old: bytes, new: bytes) -> str:
    try:
        was, now = json.loads(old), json.loads(new)
    except ValueError:
        return " (on disk: not valid JSON)"
    if not isinstance(was, dict):
        return ""
    keys = sorted(k for k in now.keys() | was.keys() if was.get(k) != now.get(k))
    shown = [f"{k} {was.get(k)} -> {now.get(k)}" if k in VERSION_KEYS else k for k in keys]
    return f" ({', '.join(shown)})" if shown else ""


def case_differences(directory: Path, files: dict[str, bytes]) -> list[str]:
    """What differs between the case on disk and freshly generated ``files`` (names relative to ``directory``):
    one entry per missing, differing or extra file. Empty means byte-identical."""
    on_disk = ({p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
               if directory.is_dir() else set())
    out = []
    for name, data in sorted(files.items()):
        if name not in on_disk:
            out.append(f"{name} missing")
            continue
        old = (directory / name).read_bytes()
        if old != data:
            detail = (_npy_detail(old, data) if name.endswith(".npy")
                      else _manifest_detail(old, data) if name.endswith(MANIFEST) else "")
            out.append(f"{name} differs{detail}")
    out.extend(f"{name} is not generated (extra file)" for name in sorted(on_disk - files.keys()))
    return out


def require_torch() -> None:
    """The golden reference needs torch; without it, one line naming the install command (exit 2)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConvsimError("golden vectors are computed with torch, which is not installed: "
                           "pip install 'convsim[golden]'") from None
