"""Shared test helpers: an independent torch reference and config builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simulator.config import SimConfig, config_from_mapping

REPO = Path(__file__).resolve().parent.parent


def torch_reference(layer: Any, ifmap: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Exact int64 reference written here, independently of simulator.golden."""
    x = torch.from_numpy(ifmap.astype(np.int64))
    w = torch.from_numpy(weight.astype(np.int64))
    if layer.op == "conv_transpose2d":
        y = F.conv_transpose2d(x, w, None, layer.stride, layer.padding, layer.output_padding, layer.groups,
                               layer.dilation)
    else:
        y = F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return y.numpy() + bias.astype(np.int64)[None, :, None, None]


def make_config(layer: dict[str, Any], **top: Any) -> SimConfig:
    raw = {"name": "t", "layer": layer, **top}
    return config_from_mapping(raw, REPO / "configs")


@pytest.fixture
def repo() -> Path:
    return REPO
