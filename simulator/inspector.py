"""``convsim inspect``: look at per-stage SRAM dumps as a verification engineer would.

Models no hardware: it reads what :mod:`simulator.dump` wrote (checksums verified on every load) and renders it:
a listing of stages and buffers with addresses, a per-channel 2-D grid (zeros shown as ``.`` so a swelled map's
zero pattern stands out), a hex view (address, bank, bytes in address order), statistics, a PNG heatmap
(:mod:`simulator.heatmap`: labelled planes, a colour scale, a bounded size), and a stage-by-stage diff of two
runs that names the first differing buffer, logical coordinate and byte address (through
:func:`simulator.compare.compare`); runs of different methods are compared by their ofmaps instead.
Named ``inspector`` rather than ``inspect`` so the module can never shadow the standard library's ``inspect``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from simulator.compare import compare
from simulator.dump import BufferDump, Dumps, compact
from simulator.errors import ConvsimError
from simulator.files import atomic_write_bytes
from simulator.heatmap import MAX_SIDE_PX, heatmap
from simulator.inputs import read_npy

EXIT_OK, EXIT_DIFFERENT = 0, 1
AXES = {"NCHW": ("n", "c"), "NHWC": ("n", "c"), "NC1HWC0": ("n", "c"), "OIHW": ("o", "i"), "IOHW": ("i", "o"),
        "POIHW": ("p", "o", "i"), "C": ()}
MAX_STATS_LINES = 64
MAX_PRINT_LINES = 100_000  # lines of a grid or hex view
MAX_OFMAP_BYTES = 1 << 30


def inspect_dir(path: Path, stage: str | None = None, buffer: str | None = None, tile: int | None = None,
                fmt: str = "grid", png: Path | None = None, diff: Path | None = None,
                channel: int | None = None, plane: int | None = None) -> int:
    dumps = Dumps.open(path)
    if diff is not None:
        other = Dumps.open(diff)
        plan = ("method", "num_tiles")
        same_plan = [dumps.index[k] for k in plan] == [other.index[k] for k in plan]
        text, equal = diff_dumps(dumps, other) if same_plan else diff_outputs(dumps, other)
        print(text)
        return EXIT_OK if equal else EXIT_DIFFERENT
    if buffer is None:
        if stage is not None:
            dumps.check_stage(stage)
        print(listing(dumps, stage))
        return EXIT_OK
    if stage is None:
        raise ConvsimError("inspect: --buffer needs --stage (run with --stage S alone to list its buffers)")
    dump = dumps.find(stage, buffer, tile)
    if png is not None:
        if png.is_dir():
            raise ConvsimError(f"--png {png}: is a directory, expected a file name")
        labels, planes = selected_planes(dump, channel, plane, sep=",")
        image = heatmap(planes, labels)
        atomic_write_bytes(png, image.png)
        print(f"wrote {png} ({describe(dump)})")
        if image.planes_shown < image.planes_total or image.subsample > 1:
            print(f"the PNG is capped at {MAX_SIDE_PX} pixels a side: it shows {image.planes_shown} of "
                  f"{image.planes_total} planes" + (f", every {image.subsample}th row and column" if
                                                    image.subsample > 1 else "")
                  + "; --channel C selects one channel's planes")
        return EXIT_OK
    print(hex_view(dump) if fmt == "hex" else stats(dump, channel, plane) if fmt == "stats" else
          grid(dump, channel, plane))
    return EXIT_OK


def dtype_name(dtype: str) -> str:
    """'<i4' -> 'int32' (numpy's name of a dtype is what a reader expects)."""
    try:
        return str(np.dtype(dtype))
    except TypeError:
        return str(dtype)


def half_open(bounds: list[int]) -> str:
    """[0, 15] (start, stop) -> '[0, 15)': the stop is excluded."""
    return f"[{bounds[0]}, {bounds[1]})" if len(bounds) == 2 else str(bounds)


def select_channel(dump: BufferDump, channel: int | None) -> np.ndarray:
    """The logical array, or only channel ``channel`` of its second axis (kept as an axis of length 1)."""
    array = dump.logical()
    if channel is None:
        return array
    if array.ndim < 3:
        raise ConvsimError(f"--channel {channel}: buffer {dump.name} has shape {list(array.shape)}, no channel axis")
    if not 0 <= channel < array.shape[1]:
        raise ConvsimError(f"--channel {channel}: buffer {dump.name} has channels 0 to {array.shape[1] - 1}")
    return array[:, channel:channel + 1]


# --------------------------------------------------------------------------------------------------- renderers


def describe(dump: BufferDump) -> str:
    e = dump.entry
    return (f"stage {dump.stage}, tile {dump.tile}, buffer {e['name']} in {e['buffer']} @0x{e['base_addr']:08x}, "
            f"{e['size_bytes']:,} bytes, shape {e['shape']} {dtype_name(e['dtype'])} {e['layout']}")


def listing(dumps: Dumps, only_stage: str | None = None) -> str:
    ix = dumps.index
    dumped = ix["dumped_tiles"]
    lines = [f"layer {ix['layer']} ({ix['method']}): {ix['num_tiles']} tile(s); dumped {len(dumped)} of them "
             f"(tiles {compact(dumped)})"
             + (f", not dumped: tiles {compact(ix['skipped_tiles'])} (budget)" if ix["skipped_tiles"] else "")]
    for s in ix["stages"]:
        if only_stage is not None and s["name"] != only_stage:
            continue
        if s["skipped"]:
            lines.append(f"{s['name']}: skipped")
            continue
        lines.append(f"{s['name']}:")
        for t in s["tiles"]:
            where = f"tile {t['tile']} (n {t['n']}, rows oh {half_open(t['oh'])}, channels oc {half_open(t['oc'])}"
            if "ow" in t:  # column range and input-channel slice (dumps since issue 15)
                where += (f", columns ow {half_open(t['ow'])}, input channels ic {half_open(t['ic'])}, slice "
                          f"{t['ic_slice'][0] + 1} of {t['ic_slice'][1]}")
            where += ")"
            if t["skipped"]:
                lines.append(f"  {where}: skipped")
                continue
            lines.append(f"  {where}:")
            for b in t["buffers"]:
                lines.append(f"    {b['name']:<16} {b['buffer']:<6} @0x{b['base_addr']:08x} {b['size_bytes']:>10,} B  "
                             f"{b['layout']:<8} {dtype_name(b['dtype']):<5} {b['shape']}")
    return "\n".join(lines)


class PlaneLabels(Sequence[str]):
    """The label of every 2-D plane (``n=0, c=3``), computed when asked for: a buffer can have millions of planes."""

    def __init__(self, names: tuple[str, ...], lead: tuple[int, ...], offset: list[int], sep: str) -> None:
        self.names, self.lead, self.offset, self.sep = names, lead, offset, sep
        self.count = int(np.prod(lead, dtype=np.int64)) if lead else 1

    def __len__(self) -> int:
        return self.count

    def _label(self, i: int) -> str:
        if not self.lead:
            return ""
        idx = np.unravel_index(i, self.lead)
        return self.sep.join(f"{n}={int(j) + o}" for n, j, o in zip(self.names, idx, self.offset, strict=False))

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._label(j) for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        return self._label(i % self.count)


def _planes(array: np.ndarray, layout: str, channel: int | None = None,
            sep: str = ", ") -> tuple[Sequence[str], np.ndarray]:
    """(labels, planes): every trailing 2-D slice of ``array`` with its leading index named by axis letters
    (``array`` holding only channel ``channel`` of the second axis, when given: the label keeps its number)."""
    if array.ndim < 2:
        return [""], array.reshape(1, 1, -1)
    names = AXES.get(layout, ()) or tuple(f"d{i}" for i in range(array.ndim - 2))
    lead = tuple(array.shape[:-2])
    offset = [0] * len(lead)
    if channel is not None and len(offset) > 1:
        offset[1] = channel
    return PlaneLabels(names, lead, offset, sep), array.reshape(-1, *array.shape[-2:])


def selected_planes(dump: BufferDump, channel: int | None = None, plane: int | None = None,
                    sep: str = ", ") -> tuple[Sequence[str], np.ndarray]:
    """(labels, planes) of the buffer, only channel ``channel``'s and/or only the ``plane``-th of those."""
    labels, planes = _planes(select_channel(dump, channel), dump.entry["layout"], channel, sep)
    if plane is None:
        return labels, planes
    if not 0 <= plane < len(planes):
        raise ConvsimError(f"--plane {plane}: buffer {dump.name} has planes 0 to {len(planes) - 1}"
                           + (f" in channel {channel}" if channel is not None else ""))
    return labels[plane:plane + 1], planes[plane:plane + 1]


def _capped(lines: Iterator[str], total: int, what: str) -> str:
    """At most MAX_PRINT_LINES of the ``total`` lines ``lines`` yields (formatted lazily), then one line saying how
    many were left out and how to see them (a real buffer's grid or hex view can run to millions of lines)."""
    shown = list(itertools.islice(lines, MAX_PRINT_LINES))
    rest = total - len(shown)
    if rest > 0:
        shown.append(f"... {rest:,} more lines of {what} not shown (at most {MAX_PRINT_LINES:,}); --channel C, "
                     "--plane P or --tile T select less, --format stats summarises")
    return "\n".join(shown)


def grid(dump: BufferDump, channel: int | None = None, plane: int | None = None) -> str:
    """2-D grids of the buffer's planes, column and row indices, zeros as ``.`` (only channel ``channel`` and/or
    the ``plane``-th plane, if given)."""
    labels, planes = selected_planes(dump, channel, plane)
    width = max(2, *(len(str(int(v))) for v in (planes.min(), planes.max()))) if planes.size else 2

    def lines() -> Iterator[str]:
        yield describe(dump) + "  ('.' = 0)"
        for label, one in zip(labels, planes, strict=True):
            h, w = one.shape
            yield f"[{label}] {h} x {w}" if label else f"{h} x {w}"
            rw = len(str(h - 1))
            yield " " * (rw + 2) + " ".join(f"{j:>{width}}" for j in range(w))
            for i, row in enumerate(one):
                cells = " ".join(f"{int(v):>{width}}" if v else f"{'.':>{width}}" for v in row)
                yield f"{i:>{rw}}: {cells}"

    total = 1 + sum(2 + one.shape[0] for one in planes)
    return _capped(lines(), total, "the grid")


def hex_view(dump: BufferDump) -> str:
    """One line per bank word: byte address, bank, bank row, bytes in ascending address order."""
    raw = dump.physical()
    bm = dump.entry["bank_mapping"]
    word, banks = int(bm["bank_width_bytes"]), int(bm["num_banks"])
    base = int(dump.entry["base_addr"])

    def lines() -> Iterator[str]:
        yield describe(dump)
        yield "address     bank  row    bytes (ascending address; int32 is little-endian)"
        for off in range(0, raw.size, word):
            addr = base + off
            chunk = " ".join(f"{b:02x}" for b in raw[off:off + word])
            yield f"0x{addr:08x}  {(addr // word) % banks:>4}  {addr // (word * banks):>5}  {chunk}"

    return _capped(lines(), 2 + -(-raw.size // word), "the hex view")


def _stat_line(label: str, a: np.ndarray) -> str:
    zeros = int((a == 0).sum())
    return (f"{label:<16} min {int(a.min()):>12,} max {int(a.max()):>12,} zeros {zeros:,}/{a.size:,} "
            f"({zeros / a.size:.1%})")


def stats(dump: BufferDump, channel: int | None = None, plane: int | None = None) -> str:
    labels, planes = selected_planes(dump, channel, plane)
    lines = [describe(dump), _stat_line("all" if channel is None and plane is None else "selected", planes)]
    if len(planes) > 1:
        for label, plane in itertools.islice(zip(labels, planes, strict=True), MAX_STATS_LINES):
            lines.append(_stat_line(label, plane))
        if len(planes) > MAX_STATS_LINES:
            lines.append(f"... and {len(planes) - MAX_STATS_LINES} more planes")
    return "\n".join(lines)


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


def _run_ofmap(dumps: Dumps) -> tuple[Path, np.ndarray]:
    """The ofmap.npy of the run a dump tree belongs to."""
    path = (dumps.root.parent if dumps.root.name == "dumps" else dumps.root) / "ofmap.npy"
    return path, read_npy(path, "ofmap", MAX_OFMAP_BYTES)


def diff_outputs(a: Dumps, b: Dumps) -> tuple[str, bool]:
    """Two runs with different tile plans (swell vs phase, other SRAM sizes): their stage buffers differ by
    design, so compare what must agree, the layer's ofmap, and say whether it is equal."""
    ia, ib = a.index, b.index
    lines = [f"diff {a.root} vs {b.root}",
             f"the runs differ in method or tiling ({ia['method']}, {ia['num_tiles']} tile(s) vs {ib['method']}, "
             f"{ib['num_tiles']} tile(s)): their stage buffers differ by design, comparing the ofmaps instead"]
    (pa, oa), (pb, ob) = _run_ofmap(a), _run_ofmap(b)
    cmp = compare(oa, ob)
    if cmp.equal:
        lines.append(f"ofmaps equal: {pa} and {pb}, all {cmp.total:,} elements")
    else:
        lines.append(cmp.report(f"ofmap ({pa} vs {pb})"))
        lines.append("ofmaps DIFFER")
    return "\n".join(lines), cmp.equal


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
