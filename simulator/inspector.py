"""``convsim inspect``: look at per-stage SRAM dumps as a verification engineer would.

Models no hardware: it reads what :mod:`simulator.dump` wrote (checksums verified on every load) and renders it:
a listing of stages and buffers with addresses, a per-channel 2-D grid (zeros shown as ``.`` so a swelled map's
zero pattern stands out), a hex view (address, bank, bytes in address order), statistics, a PNG heatmap (written
by a small zlib+struct PNG encoder, no plotting dependency), and a stage-by-stage diff of two runs that names the
first differing buffer, logical coordinate and byte address (through :func:`simulator.compare.compare`).
Named ``inspector`` rather than ``inspect`` so the module can never shadow the standard library's ``inspect``.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from simulator.compare import compare
from simulator.dump import BufferDump, Dumps, compact
from simulator.errors import ConvsimError
from simulator.files import atomic_write_bytes

EXIT_OK, EXIT_DIFFERENT = 0, 1
AXES = {"NCHW": ("n", "c"), "NHWC": ("n", "c"), "NC1HWC0": ("n", "c"), "OIHW": ("o", "i"), "IOHW": ("i", "o"),
        "POIHW": ("p", "o", "i"), "C": ()}
MAX_STATS_LINES = 64


def inspect_dir(path: Path, stage: str | None = None, buffer: str | None = None, tile: int | None = None,
                fmt: str = "grid", png: Path | None = None, diff: Path | None = None) -> int:
    dumps = Dumps.open(path)
    if diff is not None:
        text, equal = diff_dumps(dumps, Dumps.open(diff))
        print(text)
        return EXIT_OK if equal else EXIT_DIFFERENT
    if stage is None and buffer is None:
        print(listing(dumps))
        return EXIT_OK
    if stage is None or buffer is None:
        raise ConvsimError("inspect: --stage and --buffer go together (run without both to list them)")
    dump = dumps.find(stage, buffer, tile)
    if png is not None:
        atomic_write_bytes(png, heatmap_png(dump.logical()))
        print(f"wrote {png} ({describe(dump)})")
        return EXIT_OK
    render = {"grid": grid, "hex": hex_view, "stats": stats}[fmt]
    print(render(dump))
    return EXIT_OK


# --------------------------------------------------------------------------------------------------- renderers


def describe(dump: BufferDump) -> str:
    e = dump.entry
    return (f"stage {dump.stage}, tile {dump.tile}, buffer {e['name']} in {e['buffer']} @0x{e['base_addr']:08x}, "
            f"{e['size_bytes']:,} bytes, shape {e['shape']} {e['dtype']} {e['layout']}")


def listing(dumps: Dumps) -> str:
    ix = dumps.index
    lines = [f"layer {ix['layer']} ({ix['method']}): {ix['num_tiles']} tile(s), dumped {compact(ix['dumped_tiles'])}"
             + (f", skipped {compact(ix['skipped_tiles'])} (budget)" if ix["skipped_tiles"] else "")]
    for s in ix["stages"]:
        if s["skipped"]:
            lines.append(f"{s['name']}: skipped")
            continue
        lines.append(f"{s['name']}:")
        for t in s["tiles"]:
            where = f"tile {t['tile']} (n {t['n']}, oh {t['oh']}, oc {t['oc']}"
            if "ow" in t:  # column range and input-channel slice (dumps since issue 15)
                where += f", ow {t['ow']}, ic {t['ic']} slice {t['ic_slice'][0] + 1}/{t['ic_slice'][1]}"
            where += ")"
            if t["skipped"]:
                lines.append(f"  {where}: skipped")
                continue
            lines.append(f"  {where}:")
            for b in t["buffers"]:
                lines.append(f"    {b['name']:<16} {b['buffer']:<6} @0x{b['base_addr']:08x} {b['size_bytes']:>10,} B  "
                             f"{b['layout']:<8} {b['dtype']:<5} {b['shape']}")
    return "\n".join(lines)


def _planes(array: np.ndarray, layout: str) -> tuple[list[str], np.ndarray]:
    """(labels, planes): every trailing 2-D slice of ``array`` with its leading index named by axis letters."""
    if array.ndim < 2:
        return [""], array.reshape(1, 1, -1)
    names = AXES.get(layout, ()) or tuple(f"d{i}" for i in range(array.ndim - 2))
    lead = array.shape[:-2]
    labels = [", ".join(f"{n}={i}" for n, i in zip(names, idx, strict=False)) for idx in np.ndindex(*lead)]
    return labels, array.reshape(-1, *array.shape[-2:])


def grid(dump: BufferDump) -> str:
    """Per-channel 2-D grids, column and row indices, zeros as ``.``."""
    array = dump.logical()
    labels, planes = _planes(array, dump.entry["layout"])
    width = max(2, *(len(str(int(v))) for v in (array.min(), array.max()))) if array.size else 2
    lines = [describe(dump) + "  ('.' = 0)"]
    for label, plane in zip(labels, planes, strict=True):
        h, w = plane.shape
        lines.append(f"[{label}] {h} x {w}" if label else f"{h} x {w}")
        rw = len(str(h - 1))
        lines.append(" " * (rw + 2) + " ".join(f"{j:>{width}}" for j in range(w)))
        for i, row in enumerate(plane):
            cells = " ".join(f"{int(v):>{width}}" if v else f"{'.':>{width}}" for v in row)
            lines.append(f"{i:>{rw}}: {cells}")
    return "\n".join(lines)


def hex_view(dump: BufferDump) -> str:
    """One line per bank word: byte address, bank, bank row, bytes in ascending address order."""
    raw = dump.physical()
    bm = dump.entry["bank_mapping"]
    word, banks = int(bm["bank_width_bytes"]), int(bm["num_banks"])
    base = int(dump.entry["base_addr"])
    lines = [describe(dump), "address     bank  row    bytes (ascending address; int32 is little-endian)"]
    for off in range(0, raw.size, word):
        addr = base + off
        chunk = " ".join(f"{b:02x}" for b in raw[off:off + word])
        lines.append(f"0x{addr:08x}  {(addr // word) % banks:>4}  {addr // (word * banks):>5}  {chunk}")
    return "\n".join(lines)


def _stat_line(label: str, a: np.ndarray) -> str:
    zeros = int((a == 0).sum())
    return (f"{label:<16} min {int(a.min()):>12,} max {int(a.max()):>12,} zeros {zeros:,}/{a.size:,} "
            f"({zeros / a.size:.1%})")


def stats(dump: BufferDump) -> str:
    array = dump.logical()
    lines = [describe(dump), _stat_line("all", array)]
    labels, planes = _planes(array, dump.entry["layout"])
    if len(planes) > 1:
        for label, plane in list(zip(labels, planes, strict=True))[:MAX_STATS_LINES]:
            lines.append(_stat_line(label, plane))
        if len(planes) > MAX_STATS_LINES:
            lines.append(f"... and {len(planes) - MAX_STATS_LINES} more planes")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ heatmap


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


def heatmap_png(array: np.ndarray) -> bytes:
    """Every 2-D plane side by side in a near-square grid, each pixel scaled up, grey 1-pixel separators."""
    planes = array.reshape(-1, *array.shape[-2:]) if array.ndim >= 2 else array.reshape(1, 1, -1)
    k, h, w = planes.shape
    scale = max(1, min(16, 512 // max(h, w)))
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    max_abs = int(np.abs(planes.astype(np.int64)).max()) if planes.size else 0
    ch, cw = h * scale + 1, w * scale + 1
    canvas = np.full((rows * ch + 1, cols * cw + 1, 3), 128, dtype=np.uint8)
    for i, plane in enumerate(planes):
        r, c = divmod(i, cols)
        big = np.repeat(np.repeat(heatmap_rgb(plane, max_abs), scale, axis=0), scale, axis=1)
        canvas[1 + r * ch:1 + r * ch + h * scale, 1 + c * cw:1 + c * cw + w * scale] = big
    return png_bytes(canvas)


# --------------------------------------------------------------------------------------------------------- diff


def diff_dumps(a: Dumps, b: Dumps) -> tuple[str, bool]:
    """Compare two dump trees buffer by buffer in pipeline order; name the first difference."""
    others = {(d.stage, d.tile, d.name): d for d in b.buffers()}
    lines = [f"diff {a.root} vs {b.root}"]
    differing = 0
    compared = 0
    for da in a.buffers():
        key = (da.stage, da.tile, da.name)
        db = others.pop(key, None)
        where = f"stage {da.stage}, tile {da.tile}, buffer {da.name}"
        if db is None:
            differing += 1
            lines.append(f"{where}: missing in {b.root}")
            continue
        compared += 1
        cmp = compare(da.logical(), db.logical())
        if cmp.equal:
            continue
        differing += 1
        if differing == 1 and cmp.first:
            coord, va, vb = cmp.first[0]
            lines.append(f"first difference: {where} at {list(coord)}: {va} vs {vb}{byte_address(da, db)}")
        lines.append(cmp.report(f"{where} ({a.root.parent.name} vs {b.root.parent.name})"))
    for stage, tile, name in others:
        differing += 1
        lines.append(f"stage {stage}, tile {tile}, buffer {name}: missing in {a.root}")
    lines.append(f"{compared} buffer(s) compared, {differing} differ" if differing
                 else f"{compared} buffer(s) compared, all equal")
    return "\n".join(lines), differing == 0


def byte_address(da: BufferDump, db: BufferDump) -> str:
    """', byte 0x… (bank b, row r)' for the first differing byte of two same-address regions, else ''."""
    ra, rb = da.physical(), db.physical()
    if ra.size != rb.size or da.entry["base_addr"] != db.entry["base_addr"]:
        return ""
    where = np.flatnonzero(ra != rb)
    if where.size == 0:
        return ""
    bm = da.entry["bank_mapping"]
    addr = int(da.entry["base_addr"]) + int(where[0])
    word, banks = int(bm["bank_width_bytes"]), int(bm["num_banks"])
    return f"; first differing byte at {da.entry['buffer']} 0x{addr:08x} (bank {(addr // word) % banks}, " \
           f"row {addr // (word * banks)})"
