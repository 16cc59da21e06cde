"""``query.scan`` against a real repository and a protected tree damaged in known ways."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capture.filesystem import FileCapture
from capture.paths import FileRoot
from capture.state import KnownFiles
from compaction.backup_maker import BackupMaker, Scope
from compaction.backups import Backup, BackupCatalog
from compaction.snapshots import snapshots_of
from journal.events import ChangeEvent, FileImage, Op, Source, now_us
from journal.meta import META_INODE
from journal.repository import Repository
from query.duplicates import find_duplicates
from query.findings import Finding
from query.scan import Scanner, ScanResult, ScanSettings
from query.scan_files import RootInput
from query.scan_journal import FileVersion, file_versions

INCLUDE = ("config.py", "*.json", "src/**")
HOUR_US = 3600 * 1_000_000


class Bench:
    """A protected tree, its repository, capture, and backups taken on a fake clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.tree = tmp_path / "app"
        (self.tree / "src").mkdir(parents=True)
        Repository.init(tmp_path / "repo", None)
        self.repo = Repository.open(tmp_path / "repo", None, writable=True)
        self.root = FileRoot.of("app", self.tree, INCLUDE, ("**/skip/**",))
        known = KnownFiles()
        self.capture = FileCapture([self.root], self.repo.log, self.repo.blobs, known)
        self.snapshots = snapshots_of(self.repo)
        self.catalog = BackupCatalog(self.repo.root, self.repo.store, None)
        self.clock = now_us() - 2 * HOUR_US
        self.maker = BackupMaker(self.repo, self.snapshots, self.catalog, clock=self.tick)

    def tick(self) -> int:
        self.clock += 1_000_000
        return self.clock

    def write(self, relpath: str, text: str) -> Path:
        path = self.tree / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def full(self) -> Backup:
        self.capture.scan()
        backup = self.maker.full(Scope())
        assert backup is not None
        return backup

    def incremental(self) -> Backup:
        self.capture.scan()
        backup = self.maker.incremental(Scope())
        assert backup is not None
        return backup

    def scan(self, *, deep: bool = False, now: int | None = None, **kw: Any) -> ScanResult:
        settings = ScanSettings(deep=deep, **kw)
        scanner = Scanner(
            self.snapshots, self.repo.log, self.catalog.readable()[0], settings,
            sha256_of=lambda v: v.sha256, read_blob=self.repo.blobs.read,
            now_us=now if now is not None else now_us(),
        )  # fmt: skip
        root = RootInput("app", self.tree, lambda: walk(self.root), self.root.wants)
        return scanner.scan([root])

    def version(self, relpath: str) -> FileVersion:
        state = _end(self)
        return file_versions(state, "app")[relpath]


def _end(bench: Bench) -> Any:
    from compaction.state_at import state_at

    return state_at(bench.snapshots, bench.repo.log, bench.repo.log.next_seq - 1)


def walk(root: FileRoot) -> Iterator[tuple[str, os.stat_result]]:
    """Protected files with their lstat (the test's own walk, as simple as can be)."""
    for dirpath, dirnames, filenames in os.walk(root.path):
        rel_dir = Path(dirpath).relative_to(root.path).as_posix()
        dirnames[:] = [d for d in dirnames if root.wants_dir(_join(rel_dir, d))]
        for name in filenames:
            rel = _join(rel_dir, name)
            if root.wants(rel):
                yield rel, os.lstat(Path(dirpath) / name)


def _join(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path)
    b.write("config.py", "DEBUG = False\n")
    b.write("conocimiento_consolidado.json", '{"faq": [1, 2, 3]}\n')
    b.write("kb_populated_1.json", '{"items": ["a"]}\n')
    for i in range(5):
        b.write(f"src/mod{i}.py", f"X = {i}\n")
    b.write("src/skip/ignored.py", "not protected\n")
    try:
        yield b
    finally:
        b.repo.close()


def _by_path(result: ScanResult) -> dict[str, Finding]:
    return {f.path: f for f in result.findings}


def _labels(f: Finding) -> list[str]:
    return [p.label for p in f.points]


def _silent_rewrite(path: Path, text: str) -> None:
    """Rewrite in place with the same size, then put mtime back: only ctime moves."""
    st = path.stat()
    assert len(text.encode()) == st.st_size
    with path.open("r+b") as f:
        f.write(text.encode())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )


def test_an_undamaged_tree_has_no_findings(bench: Bench) -> None:
    bench.full()
    bench.write("src/mod0.py", "X = 100\n")  # changed since the capture: not damage
    bench.write("src/new.py", "Y = 1\n")  # not captured yet: not damage either
    result = bench.scan()
    assert result.findings == [], [(f.kind, f.path, f.reason) for f in result.findings]
    files = result.files or {}
    assert (files["files_found"], files["files_missing"], files["files_corrupted"]) == (9, 0, 0)
    assert (files["changed"], files["new"]) == (1, 1)
    report = result.to_dict()
    assert report["lost_files"] == [] and report["recommendations"] == []
    assert report["scan_id"].startswith("scan_") and report["timestamp"].endswith("Z")


def test_each_kind_of_damage_is_found_with_where_a_good_version_is(bench: Bench) -> None:
    first = bench.full()
    bench.write("src/mod1.py", "X = 11\n")
    second = bench.incremental()
    # a deletion capture saw, then damage it did not see
    (bench.tree / "src/mod2.py").unlink()
    bench.capture.scan()
    deleted_seq = next(
        e.seq for e in bench.repo.log.read() if e.op is Op.DELETE and e.key == "src/mod2.py"
    )
    (bench.tree / "src/mod3.py").unlink()
    (bench.tree / "src/mod4.py").write_text("")
    (bench.tree / "kb_populated_1.json").write_text('{"items": [')
    _silent_rewrite(bench.tree / "config.py", "DEBUG = Fa1se\n")

    result = bench.scan()
    found = {f.path: f.kind for f in result.findings}
    assert found == {
        "src/mod2.py": "deleted",
        "src/mod3.py": "missing",
        "src/mod4.py": "truncated",
        "kb_populated_1.json": "unparseable",
        "config.py": "silent_change",
    }, found
    by_path = _by_path(result)
    # unchanged since the first backup: both backups hold the good version, newest first
    for path in ("src/mod3.py", "src/mod4.py", "config.py", "kb_populated_1.json"):
        assert _labels(by_path[path])[:2] == [second.id, first.id], (path, _labels(by_path[path]))
    # the deleted file's version predates both backups; its deletion came after them
    assert _labels(by_path["src/mod2.py"])[:2] == [second.id, first.id]
    assert deleted_seq > second.cut_seq
    # every finding also names a moment for --at, after the backups' times are listed
    for f in result.findings:
        assert [p.kind for p in f.points] == ["backup", "backup", "at"], (f.path, f.points)
    report = result.to_dict()
    lost = {f["path"] for f in report["lost_files"]}
    corrupted = {f["path"] for f in report["corrupted_files"]}
    assert lost == {"src/mod2.py", "src/mod3.py"}
    assert corrupted == {"src/mod4.py", "kb_populated_1.json", "config.py"}
    assert {"path", "type", "last_seen", "recoverable_from"} <= set(report["lost_files"][0])
    assert report["sources"]["filesystem"]["files_missing"] == 2
    assert report["sources"]["filesystem"]["files_corrupted"] == 3
    command = next(r for r in report["recommendations"] if "src/mod3.py" in r)
    assert f"hindsight recover restore {second.id} --path src/mod3.py" in command
    silent = next(f for f in report["findings"] if f["path"] == "config.py")
    assert silent["recommendation"].endswith("--conflict overwrite")
    assert (
        next(f for f in report["findings"] if f["path"] == "kb_populated_1.json")["type"]
        == "knowledge_base"
    )


def test_a_file_changed_after_a_backup_is_recoverable_only_from_later_points(
    bench: Bench,
) -> None:
    first = bench.full()
    bench.write("src/mod1.py", "X = 11\n")
    second = bench.incremental()
    version = bench.version("src/mod1.py")
    assert version.seq > first.cut_seq
    (bench.tree / "src/mod1.py").unlink()
    (finding,) = bench.scan().findings
    assert finding.kind == "missing"
    assert [p.label for p in finding.points if p.kind == "backup"] == [second.id], (
        "the first backup holds an older version, not the last good one"
    )
    at = next(p for p in finding.points if p.kind == "at")
    assert at.time_us >= int(first.point["cut_us"]), "the moment is when the version was captured"


def test_a_captured_deletion_outside_the_window_is_taken_as_intended(bench: Bench) -> None:
    bench.full()
    (bench.tree / "src/mod2.py").unlink()
    bench.capture.scan()
    assert [f.kind for f in bench.scan().findings] == ["deleted"]
    later = now_us() + 2 * 24 * HOUR_US
    assert bench.scan(now=later).findings == [], "older than the 24 h window: intended"


def test_a_captured_truncation_is_found_with_the_version_before_it(bench: Bench) -> None:
    first = bench.full()
    (bench.tree / "conocimiento_consolidado.json").write_text("")
    bench.capture.scan()
    (finding,) = bench.scan().findings
    assert (finding.kind, finding.path, finding.type) == (
        "truncated",
        "conocimiento_consolidado.json",
        "knowledge_base",
    )
    assert [p.label for p in finding.points if p.kind == "backup"] == [first.id]
    (bench.tree / "conocimiento_consolidado.json").write_text('{"faq": [1]}\n')  # refilled
    assert bench.scan().findings == [], "no longer empty: nothing to report"


def test_ctime_is_recorded_but_capture_ignores_a_silent_change(bench: Bench) -> None:
    bench.full()
    before = bench.version("config.py")
    assert before.ctime_ns == (bench.tree / "config.py").stat().st_ctime_ns
    _silent_rewrite(bench.tree / "config.py", "DEBUG = Fa1se\n")
    summary = bench.capture.scan()
    assert summary.changed == 0, "capture compares size, mtime, inode and mode only"
    assert bench.version("config.py") == before
    assert [f.kind for f in bench.scan().findings] == ["silent_change"]


def test_a_rewrite_with_the_same_content_is_no_finding(bench: Bench) -> None:
    bench.full()
    _silent_rewrite(bench.tree / "config.py", "DEBUG = False\n")  # ctime moves, bytes do not
    assert bench.scan().findings == []


def test_without_a_recorded_ctime_only_a_deep_scan_reads_the_file(bench: Bench) -> None:
    """Versions captured before ctime was recorded: stat only, unless ``deep``."""
    bench.full()
    path = bench.tree / "config.py"
    _silent_rewrite(path, "DEBUG = Fa1se\n")
    old = bench.version("config.py")
    st = path.stat()
    image = FileImage(old.blob, old.size, old.sha256, old.mode, old.mtime_ns)
    legacy = ChangeEvent(
        Source.FILESYSTEM, "app", "config.py", Op.MODIFY, st.st_ctime_ns // 1000, image,
        meta={META_INODE: str(st.st_ino)},
    )  # fmt: skip
    bench.repo.log.append([legacy])
    assert bench.version("config.py").ctime_ns is None
    assert bench.scan().findings == [], "null ctime: treated as unchanged"
    (finding,) = bench.scan(deep=True).findings
    assert (finding.kind, finding.path) == ("bit_rot", "config.py")


def test_expected_files_must_exist(bench: Bench) -> None:
    bench.full()
    result = bench.scan(expected=("conocimiento_consolidado.json", "base_conocimiento_*.json"))
    (finding,) = result.findings
    assert (finding.kind, finding.path, finding.points) == (
        "expected_missing",
        "base_conocimiento_*.json",
        [],
    )
    (bench.tree / "conocimiento_consolidado.json").unlink()
    kinds = sorted((f.kind, f.path) for f in bench.scan(expected=("conocimiento_*.json",)).findings)
    assert kinds == [("missing", "conocimiento_consolidado.json")], "one finding, not two"


def test_duplicates_use_the_journal_hash_unless_the_file_changed(bench: Bench) -> None:
    bench.write("src/copy.py", "X = 1\n")  # same as src/mod1.py
    bench.write("a.json", json.dumps({"k": "v"}))
    bench.write("b.json", json.dumps({"k": "v"}))
    bench.full()
    bench.write("c.json", json.dumps({"k": "v"}))  # not captured: hashed
    state = _end(bench)
    versions = {"app": file_versions(state, "app")}
    root = RootInput("app", bench.tree, lambda: walk(bench.root), bench.root.wants)
    report = find_duplicates([root], versions, sha256_of=lambda v: v.sha256)
    groups = sorted(g.paths for g in report.groups)
    assert groups == [
        ["app/a.json", "app/b.json", "app/c.json"],
        ["app/src/copy.py", "app/src/mod1.py"],
    ]
    assert report.hashed == 1, "only the file the journal does not have was read"


def test_a_deletion_of_a_file_captured_before_the_window_finds_its_version(
    bench: Bench,
) -> None:
    """The version a captured deletion replaced is looked up before the window."""
    first = bench.full()
    time.sleep(0.3)
    (bench.tree / "src/mod2.py").unlink()
    bench.capture.scan()
    (finding,) = bench.scan(window="0.2s", window_us=200_000).findings
    assert (finding.kind, finding.path) == ("deleted", "src/mod2.py")
    assert [p.label for p in finding.points if p.kind == "backup"] == [first.id]
