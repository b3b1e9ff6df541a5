"""Bounded reading of the files a user hands the tool: configs, hardware files, ``.npy`` inputs, indexes.

Models no hardware. Every input file is checked with ``os.stat`` before it is opened: only a regular file is read
(a directory, ``/dev/zero``, a FIFO or a socket is refused without blocking), and only up to a size cap, so no
input can make the tool hang or allocate without bound. YAML is parsed by a hardened ``SafeLoader``: aliases
are expanded only up to a bound (an alias bomb is refused before anything is built), duplicate keys are refused,
nesting depth is bounded, and a tab in the indentation is named as such. A ``.npy`` is accepted only when its
header's shape matches the bytes that follow it. Errors are :class:`ConfigError` with one line naming the file.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simulator.errors import ConfigError

MAX_YAML_BYTES = 1 << 20  # 1 MiB: the largest config in the repository is a few KiB
MAX_JSON_BYTES = 64 << 20  # index.json of a dump tree, a golden manifest
MAX_YAML_DEPTH = 64  # a config nests four levels deep
MAX_YAML_NODES = 100_000  # values in a document with its aliases expanded


def check_regular_file(path: Path, what: str, max_bytes: int | None = None) -> int:
    """The size of ``path`` if it is a regular file within ``max_bytes``; else a one-line ConfigError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path}: is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "not a regular file")
        raise ConfigError(f"{what} {path}: is {kind}, expected a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ConfigError(f"{what} {path}: {st.st_size:,} bytes, larger than the {max_bytes:,} bytes accepted")
    return st.st_size


def read_bytes(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (checked before opening; opened non-blocking, and
    read at most ``max_bytes + 1`` bytes, so a file swapped or grown after the check cannot hang or flood us)."""
    check_regular_file(path, what, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ConfigError(f"{what} {path}: is not a regular file")
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {path}: larger than the {max_bytes:,} bytes accepted")
    return data


# ---------------------------------------------------------------------------------------------------------- YAML


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with bounded nesting, bounded alias expansion and no duplicate keys.

    Aliases are allowed (``safe_dump`` writes them for shared values) but the document's size with every alias
    expanded is counted on the node graph, before anything is constructed, and refused above MAX_YAML_NODES: an
    alias bomb (each level repeating the previous one ten times) is refused in microseconds."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.MarkedYAMLError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                           self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None:
            sizes: dict[int, int] = {}
            if _expanded_size(node, sizes, set()) > MAX_YAML_NODES:
                raise yaml.MarkedYAMLError(None, None, f"more than {MAX_YAML_NODES:,} values once its aliases are "
                                           "expanded (an alias bomb?)", node.start_mark)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen:
                    raise yaml.MarkedYAMLError(None, None, f"duplicate key {_short(key)!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Any, sizes: dict[int, int], active: set[int]) -> int:
    """Number of nodes of ``node`` with every alias expanded (memoised per node, so linear in the graph)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise yaml.MarkedYAMLError(None, None, "an alias refers to a value that contains it (recursive)",
                                   node.start_mark)
    active.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, sizes, active)
            if total > MAX_YAML_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, sizes, active) + _expanded_size(v, sizes, active)
            if total > MAX_YAML_NODES:
                break
    active.discard(key)
    sizes[key] = total
    return total


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def parse_yaml(text: str, what: str, path: Path) -> Any:
    """YAML text -> data, through the bounded loader; errors are one line with the line and column."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(exc, "problem", "") or "")
        if "'\\t'" in problem:
            reason = "a tab character; YAML indents with spaces only"
        elif problem.startswith(("more than", "an alias", "duplicate key", "nested more")):
            reason = problem
        else:
            reason = problem.split("\n")[0] or "syntax error"
        raise ConfigError(f"{what} {path}: not valid YAML{at}: {reason}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path}: not valid YAML: nested too deeply") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """Read and parse a YAML file (regular, at most MAX_YAML_BYTES, UTF-8)."""
    data = read_bytes(path, what, MAX_YAML_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start})") from None
    return parse_yaml(text, what, path)


# ---------------------------------------------------------------------------------------------------------- .npy


def npy_from_bytes(data: bytes, what: str) -> np.ndarray:
    """A ``.npy`` held in ``data``, refused (one line naming ``what``) unless its header is valid, its dtype holds
    no Python objects and the bytes after the header are exactly what the header's shape needs; so a header that
    declares a huge shape allocates nothing."""
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(buf)
    except (ValueError, OSError, EOFError, SyntaxError):
        raise ConfigError(f"{what}: not a valid .npy file") from None
    if dtype.hasobject:
        raise ConfigError(f"{what}: holds Python objects (refused: allow_pickle=False)")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) - buf.tell() != need:
        raise ConfigError(f"{what}: not a valid .npy file ({len(data) - buf.tell():,} data bytes, its header "
                          f"{dtype}{list(shape)} needs {need:,}; truncated or edited)")
    array = np.frombuffer(data, dtype=dtype, offset=buf.tell()).reshape(shape, order="F" if fortran else "C")
    return array.copy()


def read_npy(path: Path, what: str, max_bytes: int) -> np.ndarray:
    """A ``.npy`` file: regular, at most ``max_bytes``, checked as :func:`npy_from_bytes` does."""
    return npy_from_bytes(read_bytes(path, what, max_bytes), f"{what} {path}")
