"""GitRepo against real repositories built with the git command in a temporary directory."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from capture.git import CHUNK_SIZE, GitRepo, GitVersion
from journal.errors import ConfigError, NotFound, SourceUnavailable

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

T0 = 1_700_000_000  # commit times are T0, T0 + 1, ... seconds, so tests can check them
IDENTITY = ("-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false")


class Work:
    """A scratch work tree that writes files and commits them at known times."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.commits = 0
        top.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        # Isolated from the developer's config and from any GIT_* a hook may have set.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        when = f"@{T0 + self.commits} +0000"
        env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
        env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
        done = subprocess.run(
            ["git", "--literal-pathspecs", "-C", str(self.top), *IDENTITY, *args],
            capture_output=True,
            env=env,
            check=True,
        )
        return done.stdout.decode().strip()

    def write(self, rel: str, data: bytes) -> None:
        path = self.top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.git("add", "--", rel)

    def commit(self, message: str) -> str:
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        self.commits += 1
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def work(tmp_path: Path) -> Work:
    return Work(tmp_path / "work")


def found(path: Path) -> GitRepo:
    repo = GitRepo.find(path)
    assert repo is not None, f"no git work tree found for {path}"
    return repo


def test_outside_a_work_tree_is_none(tmp_path: Path) -> None:
    inside = subprocess.run(["git", "-C", str(tmp_path), "rev-parse"], capture_output=True)
    if inside.returncode == 0:
        pytest.skip(f"{tmp_path} is itself inside a git work tree")
    assert GitRepo.find(tmp_path) is None
    assert GitRepo.find(tmp_path / "missing" / "file.txt") is None


def test_git_dir_and_bare_repository_are_not_work_trees(work: Work, tmp_path: Path) -> None:
    assert GitRepo.find(work.top / ".git") is None
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    assert GitRepo.find(bare) is None


def test_git_not_installed_is_none(work: Work) -> None:
    assert GitRepo.find(work.top, git="no-such-git-binary") is None


def test_empty_repository_has_no_head(work: Work) -> None:
    repo = found(work.top)
    assert repo.top == work.top.resolve()
    assert repo.head() is None
    assert repo.branch() == "main"
    assert repo.history("a.txt") == []
    assert repo.latest("a.txt") is None
    with pytest.raises(NotFound, match="no commit 'HEAD'"):
        repo.show("a.txt")


def test_head_and_branch_follow_commits(work: Work) -> None:
    repo = found(work.top)
    work.write("a.txt", b"one")
    first = work.commit("one")
    assert repo.head() == first
    second = work.commit("two")
    assert repo.head() == second
    work.git("checkout", "--quiet", "--detach", first)
    state = repo.state()
    assert (state.top, state.head, state.branch) == (repo.top, first, None)


def test_history_is_newest_first_and_follows_renames(work: Work) -> None:
    repo = found(work.top)
    work.write("old name.txt", b"first line\n" * 20)
    added = work.commit("add")
    work.write("old name.txt", b"first line\n" * 20 + b"second\n")
    changed = work.commit("change")
    (work.top / "docs").mkdir()
    work.git("mv", "--", "old name.txt", "docs/new name.txt")
    renamed = work.commit("rename")
    work.write("unrelated.txt", b"x")
    work.commit("unrelated")

    versions = repo.history("docs/new name.txt")

    assert [v.commit for v in versions] == [renamed, changed, added], versions
    assert [v.path for v in versions] == ["docs/new name.txt", "old name.txt", "old name.txt"]
    assert [v.time_us for v in versions] == [(T0 + n) * 1_000_000 for n in (2, 1, 0)]
    assert versions[0].summary == "rename" and versions[0].author == "t <t@t>"
    assert versions[0].blob == versions[1].blob, "a pure rename keeps the same blob"
    assert repo.history("docs/new name.txt", limit=1) == versions[:1]


def test_show_returns_content_at_an_old_commit(work: Work) -> None:
    repo = found(work.top)
    work.write("a.txt", b"version 1")
    first = work.commit("v1")
    work.write("a.txt", b"version 2")
    work.commit("v2")
    assert repo.show("a.txt", first) == b"version 1"
    assert repo.show("a.txt") == b"version 2"
    assert repo.show("./a.txt", first[:10]) == b"version 1", "short ids and ./ are accepted"


def test_deleted_file_is_recovered_from_the_version_before_deletion(work: Work) -> None:
    repo = found(work.top)
    work.write("notes/lost.md", b"draft")
    work.commit("draft")
    work.write("notes/lost.md", b"final")
    final = work.commit("final")
    work.git("rm", "--quiet", "--", "notes/lost.md")
    deleted = work.commit("delete")

    history = repo.history("notes/lost.md")
    assert (history[0].commit, history[0].blob) == (deleted, None), history[0]

    latest = repo.latest("notes/lost.md")
    assert isinstance(latest, GitVersion)
    assert latest.commit == final
    assert repo.show(latest.path, latest.commit) == b"final"
    with pytest.raises(NotFound):
        repo.show("notes/lost.md")


@pytest.mark.parametrize(
    ("relpath", "commit", "message"),
    [
        ("missing.txt", "HEAD", "'missing.txt' does not exist in git commit HEAD"),
        ("dir", "HEAD", "'dir' is a tree, not a file"),
        ("a.txt", "0123456789abcdef0123456789abcdef01234567", "no commit '0123456789ab"),
        ("a.txt", "no-such-branch", "no commit 'no-such-branch'"),
    ],
    ids=["missing-path", "directory", "unknown-commit", "unknown-ref"],
)
def test_not_found_names_path_and_commit(
    work: Work, relpath: str, commit: str, message: str
) -> None:
    repo = found(work.top)
    work.write("a.txt", b"a")
    work.write("dir/b.txt", b"b")
    work.commit("files")
    with pytest.raises(NotFound, match=re.escape(message)):
        repo.open(relpath, commit)  # raises before iteration


def test_path_added_later_is_not_found_at_an_earlier_commit(work: Work) -> None:
    repo = found(work.top)
    work.write("a.txt", b"a")
    first = work.commit("a")
    work.write("b.txt", b"b")
    work.commit("b")
    with pytest.raises(NotFound, match=re.escape(f"'b.txt' does not exist in git commit {first}")):
        repo.show("b.txt", first)


@pytest.mark.parametrize(
    "relpath",
    [
        "-n leading dash.txt",
        "--help",
        "dir with spaces/file name.txt",
        "ünïcødé/日本語 ☃.txt",
        "*.txt",
        ":(glob)magic",
    ],
    ids=["dash", "option-like", "spaces", "unicode", "glob", "pathspec-magic"],
)
def test_awkward_names_are_taken_literally(work: Work, relpath: str) -> None:
    repo = found(work.top)
    work.write("decoy.txt", b"decoy")
    work.write(relpath, b"v1")
    first = work.commit("v1")
    work.write(relpath, b"v2")
    work.commit("v2")
    assert repo.show(relpath) == b"v2"
    assert repo.show(relpath, first) == b"v1"
    assert [v.path for v in repo.history(relpath)] == [relpath, relpath]
    assert repo.is_tracked(relpath)
    assert not repo.is_ignored(relpath)


def test_streaming_a_large_binary_is_byte_identical(work: Work) -> None:
    repo = found(work.top)
    data = random.Random(5).randbytes(5 * 1024 * 1024)
    work.write("big.bin", data)
    work.commit("big")
    chunks = list(repo.open("big.bin"))
    assert all(0 < len(c) <= CHUNK_SIZE for c in chunks)
    assert b"".join(chunks) == data


def test_closing_a_stream_early_stops_git(work: Work) -> None:
    repo = found(work.top)
    work.write("big.bin", random.Random(6).randbytes(2 * 1024 * 1024))
    work.commit("big")
    stream = repo.open("big.bin")
    assert next(stream)
    stream.close()  # a leaked process would surface as an unraisable ResourceWarning


def test_nested_root_paths_convert_to_work_tree_paths(work: Work, tmp_path: Path) -> None:
    root = work.top / "projects" / "app"
    work.write("projects/app/notes.txt", b"notes")
    work.commit("notes")
    link = tmp_path / "link-to-app"
    link.symlink_to(root)

    for protected in (root, link):
        repo = found(protected)
        assert repo.top == work.top.resolve()
        rel = repo.relpath(protected / "notes.txt")
        assert rel == "projects/app/notes.txt"
        assert repo.show(rel) == b"notes"
        assert repo.relpath(protected / "gone" / "deleted.txt") == "projects/app/gone/deleted.txt"

    with pytest.raises(ConfigError, match="outside the git work tree"):
        found(root).relpath(tmp_path / "elsewhere.txt")


@pytest.mark.parametrize("relpath", ["", ".", "/etc/passwd", "../escape.txt", "a/../../b"])
def test_paths_that_leave_the_work_tree_are_rejected(work: Work, relpath: str) -> None:
    with pytest.raises(ConfigError, match="relative to the work tree"):
        found(work.top).show(relpath)


def test_tracked_and_ignored(work: Work) -> None:
    repo = found(work.top)
    work.write(".gitignore", b"*.log\nplain.txt\n")
    work.write("kept.txt", b"k")
    work.commit("ignore logs")
    (work.top / "debug.log").write_bytes(b"log")
    (work.top / "new.txt").write_bytes(b"untracked")
    assert repo.is_tracked("kept.txt") and not repo.is_ignored("kept.txt")
    assert repo.is_ignored("debug.log") and not repo.is_tracked("debug.log")
    assert not repo.is_tracked("new.txt") and not repo.is_ignored("new.txt")
    assert repo.is_ignored("plain.txt")
    assert not repo.is_ignored(":(top)plain.txt"), "a leading ':' is a name, not pathspec magic"


def test_inherited_git_environment_is_ignored(
    work: Work, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Work(tmp_path / "other")
    other.write("a.txt", b"other")
    other.commit("other")
    work.write("a.txt", b"mine")
    work.commit("mine")
    monkeypatch.setenv("GIT_DIR", str(other.top / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other.top))
    repo = found(work.top)
    assert repo.top == work.top.resolve()
    assert repo.show("a.txt") == b"mine"


def test_merge_that_brings_new_content_is_in_history(work: Work) -> None:
    repo = found(work.top)
    work.write("a.txt", b"base\n")
    work.commit("base")
    work.git("checkout", "--quiet", "-b", "side")
    work.write("a.txt", b"base\nside\n")
    work.commit("side")
    work.git("checkout", "--quiet", "main")
    work.write("b.txt", b"b")
    work.commit("main moves on")
    work.git("merge", "--quiet", "--no-ff", "-m", "merge side", "side")
    versions = repo.history("a.txt")
    assert [v.summary for v in versions] == ["merge side", "side", "base"], versions
    assert repo.show(versions[0].path, versions[0].commit) == b"base\nside\n"


def test_corrupt_repository_raises_source_unavailable(work: Work) -> None:
    repo = found(work.top)
    work.write("a.txt", b"will be lost")
    work.commit("a")
    blob = work.git("rev-parse", "HEAD:a.txt")
    (work.top / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    with pytest.raises(SourceUnavailable, match="cat-file blob") as info:
        repo.show("a.txt")
    assert "will be lost" not in str(info.value)


def test_a_hung_git_times_out(work: Work, tmp_path: Path) -> None:
    fake = tmp_path / "fake-git"
    fake.write_text("#!/bin/sh\nexec sleep 5\n")
    fake.chmod(0o755)
    repo = GitRepo(work.top, git=str(fake), timeout=0.2)
    with pytest.raises(SourceUnavailable, match=r"did not answer within 0\.2 s"):
        repo.head()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_repository_of_another_user_raises_with_gits_hint(
    work: Work, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty home, so no global safe.directory entry lets the repository through.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for path in (work.top, *work.top.rglob("*")):
        os.chown(path, 65534, 65534, follow_symlinks=False)
    with pytest.raises(SourceUnavailable, match=r"safe\.directory"):
        GitRepo.find(work.top)
