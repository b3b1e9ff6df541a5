"""Atomic, checksummed file output: every file the tool writes goes through here.

A file is written to a temporary sibling and renamed into place (``os.replace`` is atomic on POSIX), so a killed
run leaves either the old file or the new one, never half of one. A directory of files (a golden case, a dump
stage) is built in a temporary sibling directory and renamed into place the same way. Models no hardware.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import ConvsimError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    """The exact bytes of ``np.save`` for ``array`` (deterministic for a given array and numpy format)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def ensure_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConvsimError(f"{what} {path}: cannot create directory ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise ConvsimError(f"{what} {path}: directory is not writable")


def check_writable_dir(path: Path, what: str) -> None:
    """Fail early (before any simulation) if ``path`` cannot be created or written, without creating anything.

    The nearest existing ancestor must be a directory we may write into (``os.access`` also reports a
    read-only file system, even to root); an ancestor that is a regular file fails for everyone.
    """
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConvsimError(f"{what} {path}: cannot be created, {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConvsimError(f"{what} {path}: {probe} is not writable")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    ensure_dir(path.parent, "output directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json_text(obj))


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``final`` (the old one is removed only after
    the new one is complete). On failure the temporary directory is removed and ``final`` is untouched."""
    ensure_dir(final.parent, "output directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
