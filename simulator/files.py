"""Atomic, checksummed file output: every file the tool writes goes through here.

A file is written to a temporary sibling and renamed into place (``os.replace`` is atomic on POSIX), so a killed
run leaves either the old file or the new one, never half of one. A directory of files (a golden case, a dump
stage) is built in a temporary sibling directory and renamed into place the same way. Models no hardware.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import io
import json
import os
import shutil
import sys
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


def _umask_mode(path: str | Path, mode: int) -> None:
    """Give a mkstemp/mkdtemp result (created 0600/0700) the permissions a plain open()/mkdir() would have."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


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
    try:  # os.access trusts permission bits; /proc, /sys and some mounts refuse anyway: ask the file system
        os.rmdir(tempfile.mkdtemp(prefix=".convsim-probe.", dir=probe))
    except OSError as exc:
        raise ConvsimError(f"{what} {path}: {probe} is not writable ({exc.strerror or exc})") from None


def _temp(final: Path, directory: bool, suffix: str = ".tmp") -> tuple[int | None, Path]:
    """A temporary sibling of ``final``; a refusal names ``final`` (what the user asked for), not the sibling."""
    try:
        if directory:
            return None, Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent))
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
        return fd, Path(tmp)
    except OSError as exc:
        raise ConvsimError(f"{final}: cannot be written ({exc.strerror or exc})") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    ensure_dir(path.parent, "output directory")
    fd, tmp = _temp(path, directory=False)
    assert fd is not None
    try:
        _umask_mode(tmp, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            os.replace(tmp, path)
        except IsADirectoryError:
            raise ConvsimError(f"{path}: is a directory, cannot be replaced by a file") from None
        except OSError as exc:
            raise ConvsimError(f"{path}: cannot be written ({exc.strerror or exc})") from None
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


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``final``. On failure the temporary directory
    is removed and ``final`` is untouched.

    The replacement is one atomic exchange where the OS has it (Linux), so a process killed at any instant
    leaves either the whole old ``final`` or the whole new one. Elsewhere the old directory is moved aside and
    the new one renamed in (a window of two renames; the old one is moved back if the second rename fails)."""
    ensure_dir(final.parent, "output directory")
    _, tmp = _temp(final, directory=True)
    try:
        _umask_mode(tmp, 0o777)
        yield tmp
        if not final.exists():
            os.replace(tmp, final)
        elif _exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old / final.name, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory to build a run's output in; on success move each top-level entry into
    ``final`` (a file by one atomic rename, a directory by one atomic exchange), leaving other entries of ``final``
    alone. On failure nothing reaches ``final``: the temporary directory, and any parent directories created for
    it, are removed. So a run that fails in its last layer writes nothing at all."""
    created = []
    probe = Path(os.path.abspath(final.parent))
    while not probe.exists() and probe != probe.parent:
        created.append(probe)
        probe = probe.parent
    ensure_dir(final.parent, "output directory")
    _, tmp = _temp(final, directory=True)
    try:
        _umask_mode(tmp, 0o777)
        yield tmp
        ensure_dir(final, "output directory")
        for entry in sorted(tmp.iterdir()):
            target = final / entry.name
            if entry.is_dir() and target.is_dir() and _exchange(entry, target):
                shutil.rmtree(entry, ignore_errors=True)  # entry now holds the old directory
            elif entry.is_dir() and target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
                os.replace(entry, target)
            else:
                os.replace(entry, target)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for path in created:  # innermost first; only if still empty
            with contextlib.suppress(OSError):
                path.rmdir()
        raise

