"""Crash-safe file primitives: write to a temp file, fsync, rename, fsync the directory;
create directories durably; remove files durably, overwriting small secrets first."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

__all__ = [
    "atomic_write",
    "file_sha256",
    "fsync_dir",
    "make_dirs",
    "remove",
    "shred",
    "write_all",
]

_BLOCK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents, each made durable in its parent directory."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def remove(path: Path) -> bool:
    """Unlink ``path`` if present (the caller fsyncs the directory); whether it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def shred(path: Path) -> bool:
    """Overwrite a small file with random bytes, fsync, unlink it, fsync its directory.

    For key files: the overwrite reaches the same blocks on a simple filesystem, but an SSD or
    a copy-on-write or journaling filesystem may keep the old bytes elsewhere (see
    OPERATIONS.md). Whether the file was there.
    """
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        write_all(fd, os.urandom(os.fstat(fd).st_size))
        os.fsync(fd)
    finally:
        os.close(fd)
    remove(path)
    fsync_dir(path.parent)
    return True


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def file_sha256(path: Path) -> bytes:
    """SHA-256 of a whole file, read in blocks so memory stays bounded."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            sha.update(block)
    return sha.digest()
