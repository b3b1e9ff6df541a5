"""Per-stage SRAM dumps: the writer (a pipeline observer), the ``$readmemh`` hex format, the index schema and
the reader.

Models the engine's SRAM as a debug port would see it: after each stage of each tile, every region the stage
wrote is dumped twice, as the **physical view** (the region's bytes exactly as laid out in its SRAM buffer, a
``$readmemh`` hex file of one line per bank word) and the **logical view** (``.npy``), the latter always decoded
from the same bytes through the region's layout (:func:`simulator.sram.decode_region`). ``index.json`` records
every buffer's address, layout, bank mapping and the sha256 of both files; the reader checks those checksums on
every load. Ignores SRAM contents outside the regions a stage wrote, and timing (a dump is free in cycles).

One module per concern: ``writer`` (the observer, budgets, ``index.json``), ``hexfile`` (the hex format, both
ways), ``index`` (the schema ``index.json`` is checked against before it is trusted) and ``reader``
(``Dumps``, ``BufferDump``). See ``docs/dumps.md`` for the tree, the index fields and the hex format.
"""

from simulator.dump.hexfile import hex_header, hex_words, parse_hex
from simulator.dump.reader import BufferDump, Dumps, compact
from simulator.dump.writer import DEFAULT_BUDGET_BYTES, MAX_DUMP_BYTES, DumpWriter

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "MAX_DUMP_BYTES",
    "BufferDump",
    "DumpWriter",
    "Dumps",
    "compact",
    "hex_header",
    "hex_words",
    "parse_hex",
]
