"""Restoring files: to any recorded moment, the tree comes back byte for byte, with modes.

A random workload edits a real tree; after each step the capture records it and the test
notes the ground truth and the moment. Backups are taken now and then. Restoring to random
moments (into a fresh directory) must give exactly the ground truth of that moment.
"""

from __future__ import annotations

import os
import pickle
import random
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from capture.filesystem import FileCapture
from capture.paths import FileRoot
from capture.state import KnownFiles
from compaction.backup_maker import BackupMaker, Scope
from compaction.backups import BackupCatalog
from compaction.snapshots import Snapshots, snapshots_of
from compaction.state_at import StateAt, state_at
from journal.events import now_us
from journal.repository import Reopener, Repository
from restore.files import Action, FileItem, Strategy, apply_files, plan_files
from restore.moment import cut_at
from restore.workers import MAX_PROCESSES, MIN_BYTES, process_count
from tests.conftest import new_key

Truth = dict[str, tuple[bytes, int]]
NAMES = ["config.py", ".env", "kb/a.json", "kb/b.json", "kb/deep/c.json", "src/x.ts", "src/y.ts"]


def truth_of(tree: Path) -> Truth:
    """Every regular file under ``tree``: content and permission bits."""
    return {
        p.relative_to(tree).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(tree.rglob("*"))
        if p.is_file()
    }


def step(tree: Path, rng: random.Random) -> None:
    """One random change: write, delete or chmod a file."""
    path = tree / rng.choice(NAMES)
    kind = rng.choice(["write", "write", "write", "delete", "chmod"])
    if kind == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.choice([0, 10, 3000, 70_000])))
    elif kind == "delete" and path.exists():
        path.unlink()
    elif kind == "chmod" and path.exists():
        path.chmod(rng.choice([0o600, 0o644, 0o755]))


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_restoring_to_random_moments_gives_the_ground_truth(
    tmp_path: Path, encrypted: bool
) -> None:
    secret = new_key()
    Repository.init(tmp_path / "repo", secret, encrypt_all=encrypted)
    tree = tmp_path / "app"
    tree.mkdir()
    root = FileRoot.of("app", tree, ["**"], secrets=[".env"])
    rng = random.Random(5)
    moments: list[tuple[int, Truth]] = []
    with Repository.open(tmp_path / "repo", secret, writable=True) as repo:
        snaps = snapshots_of(repo)
        catalog = BackupCatalog(repo.root, repo.store, None)
        maker = BackupMaker(repo, snaps, catalog)
        capture = FileCapture([root], repo.log, repo.blobs, KnownFiles())
        for i in range(40):
            step(tree, rng)
            capture.scan()
            repo.blobs.flush()
            moments.append((now_us(), truth_of(tree)))
            if i % 9 == 4:
                maker.full(Scope())
        for n, (moment, truth) in enumerate(rng.sample(moments, 12)):
            cut = cut_at(snaps, repo.log, moment, "the moment")
            at = state_at(snaps, repo.log, cut)
            head = state_at(snaps, repo.log, repo.log.next_seq - 1)
            target = tmp_path / f"restored{n}"
            plan = plan_files(at, head, {"app": target}, in_place=False)
            assert {i.action for i in plan.items} <= {Action.CREATE}, "an empty target"
            processes = 2 if n % 4 == 1 else 0  # some in worker processes, the rest in threads
            results = apply_files(
                plan,
                repo.blobs,
                Strategy.OVERWRITE,
                suffix="x",
                reopen=repo.reopener(),
                processes=processes,
            )
            assert not results.failed, results.failed
            restored = truth_of(target) if target.exists() else {}
            assert restored == truth, f"restore to moment {n} differs from the ground truth"


@dataclass
class Protected:
    """A tree captured into a repository; ``capture()`` records it again."""

    repo: Repository
    snaps: Snapshots
    tree: Path
    files: FileCapture

    def capture(self) -> int:
        """Capture the tree now; the journal's last seq."""
        self.files.scan()
        self.repo.blobs.flush()
        return self.repo.log.next_seq - 1

    def state(self, cut: int | None = None) -> StateAt:
        """The state at ``cut`` (default: the journal's end)."""
        return state_at(
            self.snaps, self.repo.log, self.repo.log.next_seq - 1 if cut is None else cut
        )


@contextmanager
def protected(
    tmp_path: Path, files: dict[str, bytes], *, encrypted: bool = False
) -> Iterator[Protected]:
    """A tree holding ``files``, captured once into a fresh repository."""
    secret = new_key()
    Repository.init(tmp_path / "repo", secret, encrypt_all=encrypted)
    tree = tmp_path / "app"
    tree.mkdir()
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    root = FileRoot.of("app", tree, ["**"])
    with Repository.open(tmp_path / "repo", secret, writable=True) as repo:
        setup = Protected(
            repo, snapshots_of(repo), tree, FileCapture([root], repo.log, repo.blobs, KnownFiles())
        )
        setup.capture()
        yield setup


def test_in_place_restore_deletes_what_did_not_exist_and_skips_identical(tmp_path: Path) -> None:
    files = {"kb/a.json": b'{"v": 1}\n', "keep.py": b"x = 1\n"}
    with protected(tmp_path, files) as p:
        tree, cut = p.tree, p.repo.log.next_seq - 1
        before = truth_of(tree)
        (tree / "kb" / "a.json").write_text('{"v": 2}\n')
        (tree / "kb" / "new.json").write_text("{}\n")
        p.capture()
        (tree / "untracked.tmp").write_text("never captured\n")
        plan = plan_files(p.state(cut), p.state(), {"app": tree}, in_place=True)
        actions = {i.path: i.action for i in plan.items}
        assert actions == {
            "kb/a.json": Action.OVERWRITE,
            "keep.py": Action.IDENTICAL,
            "kb/new.json": Action.DELETE,
        }, actions
        results = apply_files(plan, p.repo.blobs, Strategy.SKIP, suffix="x")
        assert results.skipped == ["app/keep.py"] and not results.failed
    after = truth_of(tree)
    assert after.pop("untracked.tmp")[0] == b"never captured\n", "unknown files are untouched"
    assert after == before


def test_an_uncaptured_change_is_a_conflict_and_rename_keeps_both(tmp_path: Path) -> None:
    with protected(tmp_path, {"config.py": b"A = 1\n"}, encrypted=True) as p:
        at = p.state()
        (p.tree / "config.py").write_text("A = 2  # not captured yet\n")
        plan = plan_files(at, at, {"app": p.tree}, in_place=True)
        assert [i.action for i in plan.items] == [Action.CONFLICT]
        results = apply_files(plan, p.repo.blobs, Strategy.RENAME, suffix="restored-1")
    assert (p.tree / "config.py").read_text() == "A = 2  # not captured yet\n", "live kept"
    assert (p.tree / "config.py.restored-1").read_text() == "A = 1\n", "restored beside it"
    assert results.renamed == ["app/config.py -> config.py.restored-1"]


def test_a_missing_file_content_fails_that_file_only(tmp_path: Path) -> None:
    with protected(tmp_path, {"a.py": b"a\n", "b.bin": os.urandom(300_000)}) as p:
        at = p.state()
        plan = plan_files(at, at, {"app": tmp_path / "out"}, in_place=False)
        broken = next(i for i in plan.items if i.path == "b.bin")
        assert broken.image is not None
        real = p.repo.blobs.opened

        def damaged(blob_id: str):  # type: ignore[no-untyped-def]
            ref, chunks = real(blob_id)
            if blob_id != broken.image.blob:  # type: ignore[union-attr]
                return ref, chunks

            def cut_short():  # type: ignore[no-untyped-def]
                yield next(chunks)  # part of the file is written, then its pack is gone
                raise FileNotFoundError(2, "pack gone", "blobs/packs/x.pack")

            return ref, cut_short()

        p.repo.blobs.opened = damaged  # type: ignore[method-assign]
        results = apply_files(plan, p.repo.blobs, Strategy.OVERWRITE, suffix="x")
    assert results.restored == ["app/a.py"] and list(results.failed) == ["app/b.bin"]
    assert (tmp_path / "out/a.py").read_text() == "a\n"
    assert not (tmp_path / "out/b.bin").exists(), "no half-written file"


def test_merge_undoes_captured_changes_and_keeps_uncaptured_ones(tmp_path: Path) -> None:
    files = {
        "conocimiento_consolidado.json": b'{\n  "faq": 1,\n  "precios": 10\n}\n',
        "notes.txt": b"v1\n",
    }
    with protected(tmp_path, files) as p:
        kb = p.tree / "conocimiento_consolidado.json"
        cut = p.repo.log.next_seq - 1
        kb.write_text('{\n  "faq": 1,\n  "precios": 99\n}\n')  # the bad change, captured
        (p.tree / "notes.txt").write_text("v2\n")
        p.capture()
        kb.write_text('{\n  "faq": 2,\n  "precios": 99\n}\n')  # later, not captured yet
        (p.tree / "notes.txt").write_text("v3, not captured\n")
        plan = plan_files(p.state(cut), p.state(), {"app": p.tree}, in_place=True)
        assert {i.path: i.action for i in plan.items} == {
            "conocimiento_consolidado.json": Action.CONFLICT,
            "notes.txt": Action.CONFLICT,
        }
        results = apply_files(plan, p.repo.blobs, Strategy.MERGE, suffix="restored-1")
    assert kb.read_text() == '{\n  "faq": 2,\n  "precios": 10\n}\n', "merged both ways"
    assert results.merged == {"app/conocimiento_consolidado.json": []}
    assert (p.tree / "notes.txt").read_text() == "v3, not captured\n", "not JSON: kept"
    assert (p.tree / "notes.txt.restored-1").read_text() == "v1\n", "and restored beside it"


def test_worker_processes_that_cannot_start_leave_the_work_to_this_one(tmp_path: Path) -> None:
    files = {f"d{i % 3}/f{i}.bin": random.Random(i).randbytes(5_000 + i) for i in range(40)}
    with protected(tmp_path, files) as p:
        at = p.state()
        plan = plan_files(at, at, {"app": tmp_path / "out"}, in_place=False)
        nowhere = Reopener(tmp_path / "no-repository", None)  # every worker fails to start
        seen: list[int] = []
        results = apply_files(
            plan,
            p.repo.blobs,
            Strategy.OVERWRITE,
            suffix="x",
            reopen=nowhere,
            processes=2,
            progress=seen.append,
        )
    assert not results.failed and len(results.restored) == len(files)
    assert {k: (tmp_path / "out" / k).read_bytes() for k in files} == files
    assert sum(seen) == len(files), "progress counts each file once"
    assert not [f for f in (tmp_path / "out").rglob(".*.tmp")], "no temporary file left"


def test_a_reopener_pickles_without_showing_its_key(tmp_path: Path) -> None:
    with protected(tmp_path, {"a.py": b"a\n"}) as p:
        reopen = p.repo.reopener()
        again = pickle.loads(pickle.dumps(reopen))
        assert reopen.secret is not None and reopen.secret.key is not None
        assert reopen.secret.key.hex() not in repr(again)
        at = p.state()
        (item,) = plan_files(at, at, {"app": tmp_path / "out"}, in_place=False).items
        assert item.image is not None
        with again.open() as repo:
            assert repo.blobs.read(item.image.blob) == b"a\n"
            assert not repo.log.writable


def test_only_large_restores_are_worth_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    assert process_count(MIN_BYTES - 1) == 0
    assert process_count(MIN_BYTES) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(64)), raising=False)
    assert process_count(MIN_BYTES) == MAX_PROCESSES
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert process_count(10 * MIN_BYTES) == 0, "one CPU: the threads do it"


@pytest.mark.parametrize("wrong", ["sha256", "size"])
def test_a_blob_unlike_the_journals_record_fails_that_file_only(tmp_path: Path, wrong: str) -> None:
    """The journal's size and SHA-256 of a version are checked against its blob's list."""
    with protected(tmp_path, {"a.py": b"a\n", "b.py": b"b\n"}) as p:
        at = p.state()
        plan = plan_files(at, at, {"app": tmp_path / "out"}, in_place=False)
        item = next(i for i in plan.items if i.path == "b.py")
        assert item.image is not None
        other = {"sha256": "0" * 64, "size": item.image.size + 1}[wrong]
        item.image = item.image._replace(**{wrong: other})
        results = apply_files(plan, p.repo.blobs, Strategy.OVERWRITE, suffix="x")
    assert results.restored == ["app/a.py"] and list(results.failed) == ["app/b.py"]
    assert "but the journal recorded" in results.failed["app/b.py"]
    assert sorted(os.listdir(tmp_path / "out")) == ["a.py"], "nothing else written"


def test_a_corrupted_pack_fails_only_the_files_that_need_it(tmp_path: Path) -> None:
    big = random.Random(3).randbytes(2_000_000)
    with protected(tmp_path, {"small.py": b"ok\n", "big.bin": big}) as p:
        p.repo.blobs.seal()
        pack = next((p.repo.root / "blobs" / "packs").glob("*.pack"))
        pack.chmod(0o644)
        with open(pack, "r+b") as f:  # a byte in the middle: inside one of big.bin's chunks
            f.seek(pack.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        at = p.state()
        plan = plan_files(at, at, {"app": tmp_path / "out"}, in_place=False)
        results = apply_files(plan, p.repo.blobs, Strategy.OVERWRITE, suffix="x")
    assert results.restored == ["app/small.py"], results
    assert list(results.failed) == ["app/big.bin"] and "big" not in results.restored
    assert (tmp_path / "out/small.py").read_bytes() == b"ok\n"
    assert not (tmp_path / "out/big.bin").exists(), "no damaged file is written"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Strategy.OVERWRITE, "A = 1\n"),
        (Strategy.SKIP, "A = 2  # uncaptured\n"),
        (None, "A = 2  # uncaptured\n"),
    ],
    ids=["overwrite", "skip", "no-terminal"],
)
def test_prompt_asks_per_conflict_and_skips_without_a_terminal(
    tmp_path: Path, answer: Strategy | None, expected: str
) -> None:
    with protected(tmp_path, {"config.py": b"A = 1\n", "other.py": b"o\n"}) as p:
        at = p.state()
        (p.tree / "config.py").write_text("A = 2  # uncaptured\n")
        (p.tree / "other.py").unlink()
        plan = plan_files(at, at, {"app": p.tree}, in_place=True)
        asked: list[str] = []

        def ask(item: FileItem) -> Strategy:
            asked.append(item.path)
            assert answer is not None
            return answer

        results = apply_files(
            plan, p.repo.blobs, Strategy.PROMPT, suffix="x", ask=ask if answer else None
        )
    assert asked == (["config.py"] if answer else []), "only conflicts are asked about"
    assert (p.tree / "config.py").read_text() == expected
    assert (p.tree / "other.py").read_text() == "o\n", "a plain create needs no answer"
    assert not results.failed
