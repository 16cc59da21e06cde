"""Parquet files: sealed under their own key in an encrypted repository, shredded on delete."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from compaction.parquet_store import ParquetStore
from journal.errors import AuthError, CorruptionError
from journal.repository import Repository
from tests.conftest import new_key

SCHEMA = pa.schema([("key", pa.string()), ("body", pa.binary())])


def _batch(n: int) -> pa.RecordBatch:
    keys = [f"k{i}" for i in range(n)]
    return pa.record_batch([pa.array(keys), pa.array([b"x" * i for i in range(n)])], SCHEMA)


@pytest.fixture
def encrypted(tmp_path: Path) -> Repository:
    secret = new_key()
    Repository.init(tmp_path / "repo", secret)
    return Repository.open(tmp_path / "repo", secret, writable=True)


def test_a_deleted_file_cannot_be_read_from_a_copy(encrypted: Repository, tmp_path: Path) -> None:
    with encrypted as repo:
        store = ParquetStore(repo.root, repo.file_keys)
        kept = store.write("snapshots/parts", SCHEMA, [_batch(100)])
        gone = store.write("snapshots/parts", SCHEMA, [_batch(50)])
        assert (repo.root / gone.file).read_bytes()[:4] == b"HSSF", "sealed, not PAR1"
        shutil.copy(repo.root / gone.file, tmp_path / "copy")
        assert store.delete(gone.file) > 0
        shutil.copy(tmp_path / "copy", repo.root / gone.file)  # the copy comes back
        with pytest.raises((AuthError, CorruptionError), match="gone"):
            list(store.batches(gone.file))
        assert sum(b.num_rows for b in store.batches(kept.file)) == 100, "others still read"


def test_keys_of_files_never_written_are_swept(encrypted: Repository) -> None:
    with encrypted as repo:
        store = ParquetStore(repo.root, repo.file_keys)
        stored = store.write("snapshots/parts", SCHEMA, [_batch(10)])
        (repo.root / stored.file).unlink()  # as if the crash came before the rename
        assert store.orphan_keys(dry_run=True) == 1
        assert store.orphan_keys() == 1 and store.orphan_keys() == 0


def test_plain_files_are_ordinary_parquet(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, None)
    stored = store.write("history", SCHEMA, [_batch(3)], name="00000000000000000001.parquet")
    assert (tmp_path / stored.file).read_bytes()[:4] == b"PAR1"
    assert stored.file == "history/00000000000000000001.parquet" and stored.rows == 3
