"""A Store on a local directory; also the test double for every other backend."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from journal.errors import ConfigError, NotFound, RepositoryError
from journal.fsutil import atomic_write
from journal.protocols import StoreStat

__all__ = ["LocalStore"]


class LocalStore:
    """Objects are files under ``root``; keys map to relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts:
            raise ConfigError(f"invalid store key {key!r}: use a relative path without '..'")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        """See ``Store.put``."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise RepositoryError(f"cannot write {key} in {self.root}: {exc.strerror}") from exc

    def get(self, key: str) -> bytes:
        """See ``Store.get``."""
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{key} not found in {self.root}") from None
        except OSError as exc:
            raise RepositoryError(f"cannot read {key} in {self.root}: {exc.strerror}") from exc

    def stat(self, key: str) -> StoreStat:
        """See ``Store.stat``."""
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{key} not found in {self.root}") from None
        return StoreStat(key, st.st_size, st.st_mtime_ns)

    def list(self, prefix: str = "") -> Iterator[str]:
        """See ``Store.list``; temp files of in-flight writes are never listed."""
        keys = []
        for dirpath, _, files in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                if not name.startswith(".") and key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        """See ``Store.delete``."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()
