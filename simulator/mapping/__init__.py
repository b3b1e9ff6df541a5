"""Mappings of a layer onto the stride-1 conv engine, one module each, and the registry that names them.

``direct`` (conv2d), ``swell`` and ``phase`` (transposed conv). :func:`mapping_for` picks the mapping of a layer
from ``engine.transposed_conv``; :func:`register` adds another (a test adds a fourth without touching anything
outside this folder). See :mod:`simulator.mapping.base` for what a mapping declares.
"""

from __future__ import annotations

from simulator.config import HardwareConfig, LayerConfig
from simulator.mapping.base import ConvJob, Mapping, RegionDecl
from simulator.mapping.direct import Direct
from simulator.mapping.phase import Phase
from simulator.mapping.swell import Swell

MAPPINGS: dict[str, type[Mapping]] = {}


def register(cls: type[Mapping]) -> type[Mapping]:
    """Make ``cls`` selectable by its ``name`` for transposed convs."""
    MAPPINGS[cls.name] = cls
    return cls


for _cls in (Direct, Swell, Phase):
    register(_cls)


def mapping_for(layer: LayerConfig, hw: HardwareConfig, choice: str) -> Mapping:
    """The mapping of ``layer``: ``choice`` (a registered name) for a transposed conv, ``direct`` for conv2d."""
    return MAPPINGS[choice if layer.is_transposed else "direct"](layer, hw)


__all__ = ["MAPPINGS", "ConvJob", "Mapping", "RegionDecl", "mapping_for", "register"]
