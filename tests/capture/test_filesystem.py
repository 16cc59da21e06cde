"""Filesystem capture against real files and a real repository."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from capture.filesystem import FileCapture
from capture.paths import FileRoot
from capture.state import KnownFiles
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.repository import Repository

INCLUDE = (".env", "config.py", "*.json", "src/**", "python-scripts/**", "notes/**")
EXCLUDE = ("**/node_modules/**", "**/.git/**", "**/__pycache__/**")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "src" / "lib").mkdir(parents=True)
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "config.py").write_text("DEBUG = False\n")
    (root / "conocimiento_consolidado.json").write_text('{"faq": []}')
    (root / "src" / "app.ts").write_text("export const x = 1;\n")
    (root / "src" / "lib" / "util.ts").write_text("export {}\n")
    (root / "node_modules" / "x" / "index.js").write_text("ignored")
    (root / "README.txt").write_text("not protected")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    Repository.init(tmp_path / "repo", None)
    with Repository.open(tmp_path / "repo", None, writable=True) as r:
        yield r


def capture_for(repo: Repository, root: Path) -> FileCapture:
    """A capture whose known state is rebuilt from the journal, as at daemon start."""
    known = KnownFiles()
    known.apply_all(repo.log.read())
    froot = FileRoot.of("app", root, INCLUDE, EXCLUDE)
    return FileCapture([froot], repo.log, repo.blobs, known)


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def last_events(repo: Repository) -> dict[str, ChangeEvent]:
    """The newest file event per path (scan markers are system events)."""
    return {e.key: e for e in repo.log.read() if e.source is Source.FILESYSTEM}


def test_first_scan_captures_protected_files_only(repo: Repository, tree: Path) -> None:
    summary = capture_for(repo, tree).scan()
    events = last_events(repo)
    assert set(events) == {
        "config.py",
        "conocimiento_consolidado.json",
        "src/app.ts",
        "src/lib/util.ts",
    }
    assert summary.new == 4 and summary.events == 4, summary
    image = events["src/app.ts"].after
    assert isinstance(image, FileImage)
    assert repo.blobs.read(image.blob) == (tree / "src/app.ts").read_bytes(), "byte-identical"


def test_unchanged_tree_is_stat_only(repo: Repository, tree: Path) -> None:
    capture_for(repo, tree).scan()
    again = capture_for(repo, tree).scan()
    assert (again.events, again.bytes_read, again.unchanged) == (0, 0, 4), again


@pytest.mark.parametrize(
    ("change", "key", "op"),
    [
        (lambda t: (t / "config.py").write_text("DEBUG = True\n"), "config.py", Op.MODIFY),
        (lambda t: _append(t / "config.py", "X = 1\n"), "config.py", Op.MODIFY),
        (lambda t: os.truncate(t / "config.py", 3), "config.py", Op.MODIFY),
        (lambda t: (t / "config.py").chmod(0o600), "config.py", Op.MODIFY),
        (lambda t: (t / "config.py").unlink(), "config.py", Op.DELETE),
        (lambda t: (t / "src/new.ts").write_text("new"), "src/new.ts", Op.CREATE),
        (lambda t: (t / "src/app.ts").rename(t / "src/main.ts"), "src/main.ts", Op.MOVE),
        (lambda t: shutil.rmtree(t / "src/lib"), "src/lib/util.ts", Op.DELETE),
    ],
    ids=["modify", "append", "truncate", "chmod", "delete", "create", "rename", "rmdir"],
)
def test_changes_made_while_stopped_are_found_by_the_scan(
    repo: Repository, tree: Path, change: object, key: str, op: Op
) -> None:
    capture_for(repo, tree).scan()
    change(tree)  # type: ignore[operator]
    summary = capture_for(repo, tree).scan()
    event = last_events(repo)[key]
    assert event.op is op, f"{key}: {event.op} ({summary})"
    if op is not Op.DELETE:
        assert isinstance(event.after, FileImage)
        assert repo.blobs.read(event.after.blob) == (tree / key).read_bytes()
        assert event.after.mode == (tree / key).stat().st_mode & 0o7777
    if op is Op.MOVE:
        assert (event.meta or {})["old_path"] == "src/app.ts", "a rename records the old path"
        assert "src/app.ts" not in {p for p in capture_for(repo, tree).known.paths("app")}


def test_directory_delete_deletes_every_file_under_it(repo: Repository, tree: Path) -> None:
    cap = capture_for(repo, tree)
    cap.scan()
    for p in sorted((tree / "src").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (tree / "src").rmdir()
    events = cap.examine("app", ["src"])
    assert sorted((e.key, e.op) for e in events) == [
        ("src/app.ts", Op.DELETE),
        ("src/lib/util.ts", Op.DELETE),
    ]


def test_symlinks_are_recorded_not_followed(repo: Repository, tree: Path) -> None:
    (tree / "src" / "link.ts").symlink_to("/etc/hostname")
    capture_for(repo, tree).scan()
    image = last_events(repo)["src/link.ts"].after
    assert isinstance(image, FileImage)
    assert image.link_target == "/etc/hostname" and image.blob == "", image


def test_hints_examine_only_what_they_name(repo: Repository, tree: Path) -> None:
    cap = capture_for(repo, tree)
    cap.scan()
    (tree / "config.py").write_text("changed\n")
    (tree / "src/app.ts").write_text("also changed\n")
    events = cap.examine("app", ["config.py"])
    assert [e.key for e in events] == ["config.py"], "only the hinted path is examined"
    assert cap.examine("app", ["node_modules/x/index.js", "README.txt"]) == [], "unprotected"


def test_watcher_move_without_reading(repo: Repository, tree: Path) -> None:
    cap = capture_for(repo, tree)
    cap.scan()
    (tree / "config.py").rename(tree / "settings.json")
    (event,) = cap.examine_move("app", "config.py", "settings.json")
    assert event.op is Op.MOVE and event.key == "settings.json"
    assert cap.known.get("app", "config.py") is None


def test_scan_summary_counts_bytes_read(repo: Repository, tree: Path) -> None:
    (tree / "big.json").write_bytes(b"x" * 300_000)
    summary = capture_for(repo, tree).scan()
    assert summary.bytes_read >= 300_000, summary


def test_secret_files_are_encrypted_in_an_unencrypted_repository(
    tmp_path: Path, tree: Path
) -> None:
    secret = MasterSecret(key=os.urandom(32), origin="test key")
    Repository.init(tmp_path / "s", secret, encrypt_all=False)
    token = b"sk-live-THIS-MUST-NEVER-BE-STORED-IN-CLEAR"
    (tree / ".env").write_bytes(b"OPENAI_API_KEY=" + token + b"\n")
    with Repository.open(tmp_path / "s", secret, writable=True) as repo:
        froot = FileRoot.of("app", tree, INCLUDE, EXCLUDE, secrets=[".env"])
        FileCapture([froot], repo.log, repo.blobs, KnownFiles()).scan()
        image = last_events(repo)[".env"].after
        assert isinstance(image, FileImage) and image.sha256 == "", "no hash of a secret leaks"
        assert repo.blobs.read(image.blob) == (tree / ".env").read_bytes()
    for path in (tmp_path / "s").rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), f"secret in clear in {path}"


def test_renamed_and_changed_in_one_burst_is_still_a_move(repo: Repository, tree: Path) -> None:
    cap = capture_for(repo, tree)
    cap.scan()
    (tree / "config.py").write_text("edited before the rename\n")
    (tree / "config.py").rename(tree / "settings.json")
    (event,) = cap.examine_move("app", "config.py", "settings.json")
    assert event.op is Op.MOVE and (event.meta or {})["old_path"] == "config.py"
    assert isinstance(event.after, FileImage)
    assert repo.blobs.read(event.after.blob) == b"edited before the rename\n", "new content"
