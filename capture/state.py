"""The last known state of every protected file, as the journal records it.

Capture compares the live tree with this state to decide what to append: a file whose size,
mtime and inode all match is unchanged and is not read at all. The state is rebuilt by
replaying the journal's filesystem events (``apply``), so it is exactly what a restore of
"now" would produce.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from journal.events import ChangeEvent, FileImage, Op, Source
from journal.meta import META_INODE, META_OLD_PATH

__all__ = ["FileState", "KnownFiles"]


class FileState(NamedTuple):
    """What the journal last recorded for one path."""

    size: int
    mtime_ns: int
    ino: int
    mode: int
    blob: str
    sha256: str
    link_target: str | None

    def same_stat(self, st: os.stat_result) -> bool:
        """Unchanged without reading: same size, mtime, inode and permission bits."""
        return (
            self.size == st.st_size
            and self.mtime_ns == st.st_mtime_ns
            and self.ino == st.st_ino
            and self.mode == stat.S_IMODE(st.st_mode)
        )

    @classmethod
    def of(cls, image: FileImage, ino: int) -> FileState:
        """The state a ``FileImage`` describes."""
        return cls(
            image.size,
            image.mtime_ns,
            ino,
            image.mode,
            image.blob,
            image.sha256,
            image.link_target,
        )


class KnownFiles:
    """Per protected root, the state of each path the journal says exists."""

    def __init__(self) -> None:
        self._roots: dict[str, dict[str, FileState]] = {}
        self.last_seq = 0

    def apply(self, event: ChangeEvent) -> None:
        """Fold one journal event into the state (events must come in sequence order)."""
        self.last_seq = max(self.last_seq, event.seq)
        if event.source is not Source.FILESYSTEM:
            return
        files = self._roots.setdefault(event.namespace, {})
        meta = event.meta or {}
        if event.op is Op.MOVE and META_OLD_PATH in meta:
            files.pop(meta[META_OLD_PATH], None)
        if event.op is Op.DELETE:
            self._delete(files, event.key)
        elif isinstance(event.after, FileImage):
            files[event.key] = FileState.of(event.after, int(meta.get(META_INODE, 0)))

    @staticmethod
    def _delete(files: dict[str, FileState], key: str) -> None:
        files.pop(key, None)
        prefix = key.rstrip("/") + "/"  # a deleted directory deletes what was under it
        for path in [p for p in files if p.startswith(prefix)]:
            del files[path]

    def apply_all(self, events: Iterable[ChangeEvent]) -> None:
        """``apply`` each event in turn."""
        for event in events:
            self.apply(event)

    def get(self, root: str, relpath: str) -> FileState | None:
        """The known state of ``relpath``, or None if the journal says it does not exist."""
        return self._roots.get(root, {}).get(relpath)

    def paths(self, root: str, under: str = "") -> Iterator[str]:
        """Known paths of ``root`` (only those below directory ``under`` if given)."""
        prefix = under.rstrip("/") + "/" if under else ""
        return iter([p for p in self._roots.get(root, {}) if p.startswith(prefix)])

    def count(self, root: str) -> int:
        """How many files of ``root`` the journal knows."""
        return len(self._roots.get(root, {}))
