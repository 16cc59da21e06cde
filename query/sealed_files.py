"""Sealed Parquet files as a read-only pyarrow filesystem, decrypted chunk by chunk as read.

DuckDB cannot open a sealed file, but it scans a ``pyarrow.dataset`` with projection and
row-group pushdown, as many times as a statement needs. A dataset over this filesystem opens
each file through ``SealedReader``, which authenticates and decrypts only the 1 MiB chunks a
read touches and holds one of them: memory stays at a few row groups per file being read,
whatever the history's size. Damage is raised inside pyarrow (and DuckDB) as an I/O error;
the first ``HindsightError`` is kept in ``failure`` so the caller can raise the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.fs as pafs

from compaction.parquet_store import key_name
from compaction.sealed_file import SealedReader
from journal.codec import AesGcm
from journal.errors import HindsightError, RepositoryError
from journal.filekeys import PARQUET, FileKeys

__all__ = ["SealedFiles", "sealed_filesystem"]


class SealedFiles(pafs.FileSystemHandler):
    """The sealed files under ``root``, paths relative to it (``history/<n>.parquet``)."""

    def __init__(self, root: Path, keys: FileKeys) -> None:
        self.root, self.keys = root, keys
        self.failure: HindsightError | None = None

    def _reader(self, path: str) -> _Reader:
        try:
            cipher = self.keys.cipher(PARQUET, key_name(path))
            return _Reader(self.root / path, cipher, path, self)
        except HindsightError as exc:
            self.failure = self.failure or exc
            raise
        except FileNotFoundError as exc:
            missing = RepositoryError(f"{path} is missing from the repository", path=path)
            self.failure = self.failure or missing
            raise missing from exc

    def open_input_file(self, path: str) -> pa.NativeFile:
        return pa.PythonFile(self._reader(path), mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.open_input_file(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        infos = []
        for path in paths:
            reader = self._reader(path)
            infos.append(pafs.FileInfo(path, pafs.FileType.File, size=reader.length))
            reader.close()
        return infos

    def get_type_name(self) -> str:
        return "hindsight-sealed"

    def normalize_path(self, path: str) -> str:
        return path

    def __eq__(self, other: object) -> bool:
        return other is self

    def __ne__(self, other: object) -> bool:
        return other is not self

    def __hash__(self) -> int:
        return id(self)

    def _read_only(self, *args: Any) -> NoReturn:
        raise OSError("the repository's sealed files are read-only here")

    get_file_info_selector = create_dir = delete_dir = delete_dir_contents = _read_only
    delete_root_dir_contents = delete_file = move = copy_file = _read_only
    open_output_stream = open_append_stream = _read_only


class _Reader(SealedReader):
    """A SealedReader that remembers, on its filesystem, the first error a read raised."""

    def __init__(self, path: Path, cipher: AesGcm, name: str, files: SealedFiles) -> None:
        super().__init__(path, cipher, name)
        self._files = files

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            return super().readinto(buffer)
        except HindsightError as exc:
            self._files.failure = self._files.failure or exc
            raise


def sealed_filesystem(root: Path, keys: FileKeys) -> tuple[pafs.PyFileSystem, SealedFiles]:
    """A pyarrow filesystem over the sealed files of ``root``, and its handler."""
    handler = SealedFiles(root, keys)
    return pafs.PyFileSystem(handler), handler
