"""The layer's tensors: generated from ``data:`` (numpy's stable PCG64 generator) or read from ``.npy`` files.

Shared by the simulator and the golden generator, so both see the same ifmap, weight and bias. Generation order
per layer: ifmap, then weight, then bias, from ``numpy.random.default_rng(seed)`` for a single-layer config and
``numpy.random.default_rng([seed, layer_index])`` for each layer of a network.

- ifmap ``random``: uniform int8 in [-128, 127];
- weight ``pattern``: the seed's ``w[..., i, j] = i*kw + j + 1``; ``random``: uniform int8;
- bias ``zeros``; ``random``: uniform int32 in [-2**20, 2**20) (a realistic quantized-bias range that leaves
  headroom in int32; pass a file for anything else). ``bias: false`` layers always get zeros.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.config import DataConfig, FileSource, LayerConfig
from simulator.errors import ConfigError, ConvsimError
from simulator.inputs import check_regular_file

BIAS_RANDOM_BOUND = 2**20


@dataclass(frozen=True)
class LayerTensors:
    ifmap: np.ndarray  # int8 (N, C_in, H, W)
    weight: np.ndarray  # int8, torch's layout for the op
    bias: np.ndarray  # int32 (C_out,)


def pattern_weight(shape: tuple[int, int, int, int]) -> np.ndarray:
    """The seed's weight: every tap (i, j) of every kernel holds i*kw + j + 1."""
    kh, kw = shape[2], shape[3]
    taps = (np.arange(kh)[:, None] * kw + np.arange(kw)[None, :] + 1).astype(np.int8)
    return np.ascontiguousarray(np.broadcast_to(taps, shape))


NPY_MAGIC = b"\x93NUMPY"


def _npy_header(path: Path, what: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) from a ``.npy`` header, read without touching the data."""
    with open(path, "rb") as fh:
        head = fh.read(len(NPY_MAGIC))
        if head != NPY_MAGIC:
            reason = "a .npz archive" if head.startswith(b"PK\x03\x04") else "no NUMPY magic"
            raise ConfigError(f"{what} file {path}: not a .npy file ({reason})")
        fh.seek(0)
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran_order, dtype = read(fh)  # np.load handles either order
        return tuple(int(d) for d in shape), dtype, fh.tell()


def load_npy(path: Path, what: str, shape: tuple[int, ...], lo: int, hi: int, dtype: type) -> np.ndarray:
    """Read an integer ``.npy`` safely: a regular file, no pickles, its header's dtype and shape checked against
    the layer before any data is read (a header declaring a huge shape allocates nothing), then the range."""
    name = np.dtype(dtype).name
    size = check_regular_file(Path(path), f"{what} file", None)
    try:
        got_shape, got_dtype, offset = _npy_header(path, what)
    except ConfigError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError):
        raise ConfigError(f"{what} file {path}: not a valid .npy file (truncated or corrupt)") from None
    if got_dtype.hasobject:
        raise ConfigError(f"{what} file {path}: holds pickled objects (refused: allow_pickle=False)")
    if not np.issubdtype(got_dtype, np.integer):
        raise ConfigError(f"{what} file {path}: dtype {got_dtype} is not an integer type (expected {name})")
    if got_shape != tuple(shape):
        raise ConfigError(f"{what} file {path}: shape {list(got_shape)}, expected {list(shape)}")
    if size != offset + int(np.prod(got_shape, dtype=np.int64)) * got_dtype.itemsize:
        raise ConfigError(f"{what} file {path}: not a valid .npy file (truncated or corrupt: {size:,} bytes for "
                          f"{got_dtype}{list(got_shape)})")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise ConfigError(f"{what} file {path}: not a valid .npy file (truncated or corrupt)") from None
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = arr.min() if arr.min() < lo else arr.max()
        raise ConfigError(f"{what} file {path}: value {int(bad)} outside {name} [{lo}, {hi}]")
    return arr.astype(dtype)


def checked_tensor(value: object, what: str, shape: tuple[int, ...], bits: int) -> np.ndarray:
    """A tensor passed to :func:`simulator.simulate` as a C-contiguous int8 (``bits=8``) or int32 array, or a
    ConvsimError naming the argument, its dtype and the accepted range. Only integer numpy arrays are accepted:
    a float array would be truncated (0.7 -> 0) and NaN would become 0, a bool array is not data, and a list
    has no dtype to check."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    name = f"int{bits}"
    if not isinstance(value, np.ndarray):
        raise ConvsimError(f"{what}: expected a numpy integer array of shape {list(shape)} with values in {name} "
                           f"[{lo}, {hi}], got {type(value).__name__}")
    if value.dtype == np.bool_ or not np.issubdtype(value.dtype, np.integer):
        raise ConvsimError(f"{what}: dtype {value.dtype} is not an integer type; expected values in {name} "
                           f"[{lo}, {hi}] (convert explicitly, e.g. np.round(x).astype(np.{name}))")
    if tuple(value.shape) != tuple(shape):
        raise ConvsimError(f"{what}: shape {list(value.shape)}, expected {list(shape)}")
    if value.size:
        low, high = int(value.min()), int(value.max())
        if low < lo or high > hi:
            bad = low if low < lo else high
            where = tuple(int(i) for i in np.unravel_index(int(np.argmax(value == bad)), value.shape))
            raise ConvsimError(f"{what}: value {bad} at {list(where)} (dtype {value.dtype}) is outside {name} "
                               f"[{lo}, {hi}]")
    return np.ascontiguousarray(value, dtype=np.int8 if bits == 8 else np.int32)


def make_tensors(data: DataConfig, layer: LayerConfig, layer_index: int | None = None) -> LayerTensors:
    """The ifmap, weight and bias of one layer as ``data:`` describes them."""
    rng = np.random.default_rng(data.seed if layer_index is None else [data.seed, layer_index])
    i8 = (-128, 127, np.int8)
    if isinstance(data.ifmap, FileSource):
        ifmap = load_npy(data.ifmap.file, "data.ifmap", layer.input_shape, *i8)
    else:
        ifmap = rng.integers(-128, 128, size=layer.input_shape, dtype=np.int8)
    if isinstance(data.weight, FileSource):
        weight = load_npy(data.weight.file, "data.weight", layer.weight_shape, *i8)
    elif data.weight == "pattern":
        weight = pattern_weight(layer.weight_shape)
    else:
        weight = rng.integers(-128, 128, size=layer.weight_shape, dtype=np.int8)
    c_out = layer.out_channels
    if not layer.bias or data.bias == "zeros":
        bias = np.zeros(c_out, dtype=np.int32)
    elif isinstance(data.bias, FileSource):
        bias = load_npy(data.bias.file, "data.bias", (c_out,), -(2**31), 2**31 - 1, np.int32)
    else:
        bias = rng.integers(-BIAS_RANDOM_BOUND, BIAS_RANDOM_BOUND, size=c_out, dtype=np.int32)
    return LayerTensors(ifmap, weight, bias)
