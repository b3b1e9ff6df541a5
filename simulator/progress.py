"""Progress on stderr for long work (a network's layers, a layer's tiles, a batch of configs), via tqdm.

Models no hardware. Progress (:func:`bar` over an iterable, :class:`Counter` for work that finishes out of order,
such as a sweep's points) is shown only when stderr is a terminal, so logs, pipes and CI output stay clean
(a batch prints its own one-line verdicts on stdout instead). The hook into the simulation is the pipeline's
existing observer: :class:`TileProgress` wraps another observer (or none) and counts tiles, nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """True when stderr is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """``iterable`` with a tqdm bar on stderr when it is a terminal (unchanged otherwise)."""
    if not enabled():
        yield from iterable
        return
    from tqdm import tqdm

    with tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True) as t:
        yield from t


def announce(index: int, total: int, label: str) -> None:
    """``[i/N] label`` on stderr for one item of a batch of configs, when there is no bar to show it."""
    if total > 1 and not enabled():
        print(f"[{index + 1}/{total}] {label}", file=sys.stderr, flush=True)


class Counter:
    """A tqdm bar of ``total`` items on stderr when it is a terminal; silent otherwise (``update`` is then free)."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self._bar: Any = None
        if enabled():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class TileProgress:
    """A pipeline observer that counts tiles on a tqdm bar and passes every call on to ``inner``."""

    def __init__(self, desc: str, inner: Any = None) -> None:
        self.inner, self._last = inner, None
        self._bar: Any = None
        if enabled():
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, unit="tile", leave=False, file=sys.stderr, dynamic_ncols=True)

    def __call__(self, stage: str, tile: Any, sram: Any, cost: Any) -> None:
        if self._bar is not None and tile.index != self._last:
            self._last = tile.index
            self._bar.update(1)
        if self.inner is not None:
            self.inner(stage, tile, sram, cost)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
