"""Parquet files inside the repository: written atomically, sealed when the repository is.

In a repository that encrypts everything, Parquet files hold document bodies, keys and paths,
so they are sealed (``sealed_file``) under a key of their own (a journal ``FileKeys`` key
file, kind ``parquet``, named ``<directory>.<file stem>`` with ``/`` as ``.``): deleting a
file destroys its key first, so no copy of it can be read again. Elsewhere they are plain
Parquet that pyarrow, DuckDB or any other reader opens directly. Either way a file is
written to a temporary name, fsynced, renamed and its directory fsynced, and its SHA-256 (of
the stored bytes) is returned for the manifest that will name it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from compaction.sealed_file import SealedReader, SealedWriter
from journal.errors import CorruptionError, NotFound, RepositoryError
from journal.filekeys import PARQUET, FileKeys, key_names
from journal.fsutil import file_sha256, fsync_dir, write_all

__all__ = ["ParquetStore", "StoredFile", "key_name"]

ROW_GROUP_ROWS = 16 * 1024  # a reader holds one row group per part: keep it a few MB
COMPRESSION = "zstd"


class StoredFile(NamedTuple):
    """A Parquet file as a manifest records it."""

    file: str  # relative to the repository
    sha256: str
    size: int
    rows: int


class _HashingFile:
    """A write-only sink that hashes and writes through to a descriptor (plain files)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.sha256, self.size, self.closed = fd, hashlib.sha256(), 0, False

    def write(self, data: bytes) -> int:
        write_all(self.fd, data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class ParquetStore:
    """Reads and writes the repository's Parquet files under ``root``."""

    def __init__(self, root: Path, keys: FileKeys | None) -> None:
        self.root, self.keys = root, keys

    @property
    def sealed(self) -> bool:
        """Whether files are sealed (an encrypted repository)."""
        return self.keys is not None

    def write(
        self,
        directory: str,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        name: str | None = None,
    ) -> StoredFile:
        """Write ``batches`` as one file in ``directory``; durable when this returns.

        ``name`` None gives the file a new random name, so a file is never rewritten under a
        name a manifest already trusts.
        """
        folder = self.root / directory
        folder.mkdir(parents=True, exist_ok=True)
        name = name or f"{uuid.uuid4().hex}.parquet"
        file = f"{directory}/{name}"
        tmp = folder / f".{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            sink: SealedWriter | _HashingFile
            if self.keys is not None:  # the key file first: data never exists without it
                sink = SealedWriter(fd, self.keys.writer_cipher(PARQUET, key_name(file)), file)
            else:
                sink = _HashingFile(fd)
            rows = self._write_parquet(sink, schema, batches)
            if isinstance(sink, SealedWriter):
                sink.finish()
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        os.close(fd)
        os.replace(tmp, folder / name)
        fsync_dir(folder)
        return StoredFile(file, sink.sha256.hexdigest(), sink.size, rows)

    @staticmethod
    def _write_parquet(
        sink: SealedWriter | _HashingFile, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> int:
        rows = 0
        with pq.ParquetWriter(sink, schema, compression=COMPRESSION) as writer:
            for batch in batches:
                if batch.num_rows:
                    writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
                    rows += batch.num_rows
        return rows

    @contextlib.contextmanager
    def open(self, file: str) -> Iterator[pq.ParquetFile]:
        """Open ``file`` (relative to the repository) for reading.

        A sealed file authenticates each chunk as it is read; damage raises CorruptionError
        naming the file and offset.
        """
        path = self.root / file
        if not path.exists():
            raise NotFound(f"{file} is missing from the repository", path=file)
        source: SealedReader | None = None
        try:
            if self.keys is not None:
                source = SealedReader(path, self.keys.cipher(PARQUET, key_name(file)), file)
                reader = pq.ParquetFile(pa.PythonFile(source, mode="r"))
            else:
                reader = pq.ParquetFile(path)
        except pa.ArrowException as exc:
            if source is not None:
                source.close()
            raise CorruptionError(f"not a readable Parquet file: {exc}", path=file) from exc
        try:
            yield reader
        finally:
            reader.close()
            if source is not None:
                source.close()

    def batches(self, file: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Every row of ``file`` in order, a row group at a time (bounded memory)."""
        with self.open(file) as reader:
            try:
                for group in range(reader.num_row_groups):
                    table = reader.read_row_group(group, columns=columns)
                    yield from table.to_batches()
            except (pa.ArrowException, OSError) as exc:
                raise CorruptionError(f"cannot decode: {exc}", path=file) from exc

    def check(self, file: str, sha256: str, size: int) -> str | None:
        """Why the stored ``file`` does not match its manifest entry, or None when it does."""
        path = self.root / file
        try:
            actual_size = path.stat().st_size
        except FileNotFoundError:
            return "missing"
        if actual_size != size:
            return f"size {actual_size} bytes, manifest says {size}"
        if file_sha256(path).hex() != sha256:
            return "SHA-256 differs from the manifest (the file was altered or damaged)"
        return None

    def orphan_keys(self, dry_run: bool = False) -> int:
        """Destroy key files whose Parquet file does not exist (a write cut short by a
        crash); how many. The caller makes sure no write is in progress."""
        if self.keys is None:
            return 0
        orphans = [
            n for n in key_names(self.root, PARQUET) if not (self.root / _file_of(n)).exists()
        ]
        if not dry_run:
            for name in orphans:
                self.keys.shred(PARQUET, name)
        return len(orphans)

    def delete(self, file: str) -> int:
        """Remove ``file``, destroying its key first; the bytes freed (0 if already gone)."""
        path = self.root / file
        if self.keys is not None:
            self.keys.shred(PARQUET, key_name(file))
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise RepositoryError(f"cannot delete {file}: {exc.strerror}", path=file) from exc
        fsync_dir(path.parent)
        return size


def key_name(file: str) -> str:
    """The key file name of a Parquet file: its path without the suffix, ``/`` as ``.``."""
    return file.removesuffix(".parquet").replace("/", ".")


def _file_of(key_name: str) -> str:
    directory, _, stem = key_name.rpartition(".")
    return f"{directory.replace('.', '/')}/{stem}.parquet"
