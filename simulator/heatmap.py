"""The PNG heatmap of ``convsim inspect --png``: labelled planes, a colour scale, a bounded size.

Models no hardware. Every 2-D plane of a buffer is drawn in a near-square grid, each element scaled up to 16x16
pixels, with its label (``c=3``, ``o=1,i=2``) above it in a 3x5-pixel font; a colour bar at the bottom runs from
``-max`` (blue) through 0 (white) to ``+max`` (red), with both ends labelled. The image is capped at
MAX_SIDE_PX pixels a side: the scale shrinks first, then planes are left out (the caller says which were shown)
and an oversized plane is subsampled. Written by a small zlib + struct PNG encoder: no plotting dependency.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_SIDE_PX = 4096
LABEL_H = 7  # 5-pixel glyphs, a pixel of margin above and below
BAR_H = 8
GLYPHS = {  # 3x5 pixel font: the characters plane labels and the colour scale use
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    "-": ("...", "...", "###", "...", "..."), "+": ("...", ".#.", "###", ".#.", "..."),
    "=": ("...", "###", "...", "###", "..."), ",": ("...", "...", "...", ".#.", "#.."),
    " ": ("...", "...", "...", "...", "..."), "n": ("...", "##.", "#.#", "#.#", "#.#"),
    "c": ("...", "###", "#..", "#..", "###"), "o": ("...", "###", "#.#", "#.#", "###"),
    "i": (".#.", "...", ".#.", ".#.", ".#."), "p": ("...", "###", "#.#", "###", "#.."),
    "d": ("..#", "..#", "###", "#.#", "###"),
}


@dataclass(frozen=True)
class Heatmap:
    png: bytes
    planes_shown: int
    planes_total: int
    subsample: int  # every n-th row and column of a plane (1: all)


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> a PNG file (8-bit RGB, no filtering, zlib)."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rgb.reshape(h, w * 3)], axis=1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def heatmap_rgb(plane: np.ndarray, max_abs: int) -> np.ndarray:
    """Zero white; positive red, negative blue, at least 30% saturated so any non-zero is visible."""
    v = plane.astype(np.float64)
    level = 0.3 + 0.7 * np.abs(v) / max(max_abs, 1)
    fade = (255 * (1 - level)).astype(np.uint8)
    rgb = np.full((*plane.shape, 3), 255, dtype=np.uint8)
    pos, neg = v > 0, v < 0
    rgb[pos, 1], rgb[pos, 2] = fade[pos], fade[pos]
    rgb[neg, 0], rgb[neg, 1] = fade[neg], fade[neg]
    return rgb


def draw_text(canvas: np.ndarray, top: int, left: int, text: str) -> None:
    """Black 3x5 glyphs (unknown characters as blanks), clipped to the canvas."""
    for n, char in enumerate(text):
        glyph = np.array([[c == "#" for c in row] for row in GLYPHS.get(char, GLYPHS[" "])])
        x = left + 4 * n
        if x + 3 > canvas.shape[1] or top + 5 > canvas.shape[0]:
            return
        canvas[top:top + 5, x:x + 3][glyph] = 0


def heatmap(array: np.ndarray, labels: Sequence[str]) -> Heatmap:
    """The heatmap of every plane of ``array`` (its trailing two axes), labelled ``labels``, within MAX_SIDE_PX."""
    planes = array.reshape(-1, *array.shape[-2:]) if array.ndim >= 2 else array.reshape(1, 1, -1)
    total, h, w = planes.shape
    step = max(1, math.ceil(max(h, w) / (MAX_SIDE_PX - 2)))
    planes = planes[:, ::step, ::step]
    _, h, w = planes.shape
    max_abs = int(np.abs(planes.astype(np.int64)).max()) if planes.size else 0
    scale = max(1, min(16, 512 // max(h, w)))
    cols = math.ceil(math.sqrt(total))
    while scale > 1 and cols * (w * scale + 1) + 1 > MAX_SIDE_PX:
        scale -= 1
    widest = max(len(labels[0]), len(labels[-1])) if len(labels) else 0  # labels widen with the index
    cw = max(w * scale, 4 * widest) + 1
    ch = LABEL_H + h * scale + 1
    cols = max(1, min(cols, (MAX_SIDE_PX - 1) // cw))
    rows = max(1, min(math.ceil(total / cols), (MAX_SIDE_PX - 1 - BAR_H - LABEL_H) // ch))
    shown = min(total, rows * cols)
    width = cols * cw + 1
    canvas = np.full((rows * ch + 1 + BAR_H + LABEL_H, width, 3), 128, dtype=np.uint8)
    for i in range(shown):
        r, c = divmod(i, cols)
        top, left = 1 + r * ch, 1 + c * cw
        canvas[top:top + LABEL_H, left:left + cw - 1] = 255
        draw_text(canvas, top + 1, left + 1, labels[i] if i < len(labels) else "")
        big = np.repeat(np.repeat(heatmap_rgb(planes[i], max_abs), scale, axis=0), scale, axis=1)
        canvas[top + LABEL_H:top + LABEL_H + h * scale, left:left + w * scale] = big
    bar_top = rows * ch + 1
    ramp = np.linspace(-max_abs, max_abs, num=max(width - 2, 1)).round().astype(np.int64)
    canvas[bar_top:bar_top + BAR_H - 1, 1:width - 1] = heatmap_rgb(ramp[None, :], max_abs)
    canvas[bar_top + BAR_H - 1:, :] = 255
    draw_text(canvas, bar_top + BAR_H, 1, f"-{max_abs}")
    high = f"+{max_abs}"
    draw_text(canvas, bar_top + BAR_H, max(1, width - 1 - 4 * len(high)), high)
    return Heatmap(png_bytes(canvas), shown, total, step)
