"""The torch side of convsim: everything that touches torch lives in this package, and imports it lazily.

- :mod:`simulator.golden.cases`: the golden reference (torch's int64 ``conv_transpose2d`` / ``conv2d``) and the
  golden case files (``.npy``, ``$readmemh`` ``.hex``, ``manifest.json`` with sha256), read and written here;
- :mod:`simulator.golden.from_torch`: ``convsim from-torch``, a network config from the convolutions a PyTorch
  model runs.

The engine (``simulator/`` outside this package) is numpy only and never imports torch; it imports this package
only to read golden cases, which needs numpy alone (``tests/test_imports.py`` checks the run path). Models no
hardware block.
"""

from simulator.golden.cases import (
    GENERATOR_VERSION,
    MANIFEST,
    TENSORS,
    GoldenCase,
    case_differences,
    case_files,
    check_case_matches,
    check_reference_fits,
    load_case,
    readmemh_bytes,
    reference,
    require_torch,
    tensor_axes,
    write_case,
)

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST",
    "TENSORS",
    "GoldenCase",
    "case_differences",
    "case_files",
    "check_case_matches",
    "check_reference_fits",
    "load_case",
    "readmemh_bytes",
    "reference",
    "require_torch",
    "tensor_axes",
    "write_case",
]
