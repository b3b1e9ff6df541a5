"""Bit-exact comparison with a scoreboard-style mismatch report (shared by ``run``, ``inspect`` and the tests).

Integers are compared exactly, never with a tolerance. The report states shapes and dtypes first, then the
number of mismatching elements, the first mismatching coordinates with expected vs actual in decimal and hex,
and the maximum absolute difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_LISTED = 10


@dataclass(frozen=True)
class Comparison:
    equal: bool
    expected_shape: tuple[int, ...]
    actual_shape: tuple[int, ...]
    expected_dtype: str
    actual_dtype: str
    mismatches: int
    total: int
    first: tuple[tuple[tuple[int, ...], int, int], ...]
    max_abs_diff: int

    def report(self, label: str = "ofmap") -> str:
        """Shapes and dtypes, then the mismatch count, the first coordinates (expected vs actual, decimal and
        two's-complement hex of the element width), then the maximum absolute difference."""
        head = (f"{label}: expected shape {list(self.expected_shape)} {self.expected_dtype}, "
                f"actual shape {list(self.actual_shape)} {self.actual_dtype}")
        if self.expected_shape != self.actual_shape or self.expected_dtype != self.actual_dtype:
            return f"{head}\n  shape or dtype differs: elements not compared"
        if self.equal:
            return f"{head}\n  all {self.total:,} elements equal"
        lines = [head, f"  {self.mismatches:,} of {self.total:,} elements differ; first {len(self.first)}:"]
        width = 2 * np.dtype(self.expected_dtype).itemsize  # hex digits of one element
        mask = (1 << (4 * width)) - 1
        for coord, exp, act in self.first:
            lines.append(f"  at {list(coord)}: expected {exp} (0x{exp & mask:0{width}x}), "
                         f"actual {act} (0x{act & mask:0{width}x})")
        if self.mismatches > len(self.first):
            lines.append(f"  ... and {self.mismatches - len(self.first):,} more")
        lines.append(f"  max |expected - actual|: {self.max_abs_diff:,}")
        return "\n".join(lines)


def compare(expected: np.ndarray, actual: np.ndarray, max_listed: int = MAX_LISTED) -> Comparison:
    """Exact element-wise comparison; shape and dtype are checked first."""
    head = (tuple(expected.shape), tuple(actual.shape), str(expected.dtype), str(actual.dtype))
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return Comparison(False, *head, mismatches=expected.size, total=expected.size, first=(),
                          max_abs_diff=0)
    diff = expected != actual
    count = int(diff.sum())
    if count == 0:
        return Comparison(True, *head, mismatches=0, total=expected.size, first=(), max_abs_diff=0)
    where = np.argwhere(diff)[:max_listed]
    first = tuple((tuple(int(i) for i in c), int(expected[tuple(c)]), int(actual[tuple(c)])) for c in where)
    wide = np.abs(expected.astype(np.int64) - actual.astype(np.int64))
    return Comparison(False, *head, mismatches=count, total=expected.size, first=first,
                      max_abs_diff=int(wide.max()))
