"""Git work trees: the commit each scan saw, and a fallback source for recovering lost files.

When a protected root lies inside a git work tree, each scan records the HEAD commit
(``GitRepo.state``), so a restore point can say which commit the files were at. If a file is
later lost and the journal has no copy of it (it was excluded, or was deleted before
protection began), ``GitRepo.history`` and ``GitRepo.open`` recover it from git history.

Git is run as a command, never through a shell and never as a library: no new dependency,
and what Hindsight sees is what ``git`` itself reports. Every call gets a clean environment
(no inherited ``GIT_*`` variables, so a daemon started from a git hook cannot be pointed at
another repository; no prompts; ``LC_ALL=C`` so messages parse) and a timeout. Paths are
relative to the work tree's top and always follow ``--``, so names with spaces, unicode,
glob characters or a leading dash are taken literally.

A path that is not in a commit raises ``NotFound``; any other git failure raises
``SourceUnavailable`` naming the command (never file content). ``GitRepo.find`` returns
None, rather than raising, when a path is not in a work tree or git is not installed:
most protected roots are not repositories, and that is not an error.
"""

from __future__ import annotations

import os
import selectors
import shlex
import shutil
import subprocess
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from journal.errors import ConfigError, NotFound, SourceUnavailable

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_TIMEOUT",
    "GitRepo",
    "GitState",
    "GitVersion",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds a git command may run (or, while streaming, stay silent) before it is abandoned."""
DEFAULT_HISTORY_LIMIT = 50
CHUNK_SIZE = 1 << 20
"""Upper bound on one chunk from ``GitRepo.open``; a pipe usually delivers less at a time."""

# Stderr of `rev-parse --show-toplevel` outside a work tree (plain directory, inside .git,
# bare repository); LC_ALL=C keeps these stable.
_NOT_A_WORK_TREE = (b"not a git repository", b"must be run in a work tree")
# Committer time, because it places a commit in the repository's timeline; fields are split
# on 0x1f, and the summary comes last so that nothing in it can shift the others.
_LOG_FORMAT = "%H%x1f%ct%x1f%an <%ae>%x1f%s"
# Raw diff statuses that name two paths (source, then destination).
_TWO_PATHS = (b"R", b"C")


@dataclass(frozen=True)
class GitVersion:
    """One commit that changed a path: the path's name and content as that commit left them.

    ``path`` is relative to the work tree's top and may differ from the name asked about
    when the file was renamed since; pass it with ``commit`` to ``GitRepo.open``. ``blob`` is
    None when this commit deleted the path.
    """

    commit: str
    time_us: int
    author: str
    summary: str
    path: str
    blob: str | None


@dataclass(frozen=True)
class GitState:
    """What a scan records about the work tree a protected root lies in."""

    top: Path
    head: str | None
    branch: str | None


class GitRepo:
    """One git work tree, queried by running ``git -C <top>``."""

    def __init__(self, top: Path, *, timeout: float = DEFAULT_TIMEOUT, git: str = "git") -> None:
        self.top = Path(top).resolve()
        self.timeout = timeout
        self.git = git

    def __repr__(self) -> str:
        return f"GitRepo({str(self.top)!r})"

    @classmethod
    def find(
        cls, path: Path, *, timeout: float = DEFAULT_TIMEOUT, git: str = "git"
    ) -> GitRepo | None:
        """The work tree containing ``path`` (which need not exist), or None.

        None when ``path`` is outside any work tree or git is not installed; a git failure
        that is neither (say, a repository owned by another user) raises SourceUnavailable.
        """
        if shutil.which(git) is None:
            return None
        start = _existing_dir(Path(os.path.abspath(path)))
        argv = _argv(git, start, ("rev-parse", "--show-toplevel"))
        done = _execute(argv, timeout)
        if done.returncode != 0:
            if any(marker in done.stderr for marker in _NOT_A_WORK_TREE):
                return None
            raise _failure(argv, done.returncode, done.stderr)
        top = os.fsdecode(done.stdout.removesuffix(b"\n"))
        return cls(Path(top), timeout=timeout, git=git)

    def relpath(self, path: Path) -> str:
        """``path`` (absolute, or relative to the current directory) relative to ``top``.

        Symlinks in the directories above ``path`` are resolved, so a protected root reached
        through a link still maps into the work tree; ``path`` itself is not followed,
        because git tracks a symlink as a link.
        """
        absolute = Path(os.path.abspath(path))
        real = absolute.parent.resolve() / absolute.name if absolute.name else absolute
        try:
            return real.relative_to(self.top).as_posix()
        except ValueError:
            raise ConfigError(
                f"{path} is outside the git work tree {self.top}; "
                "find the repository for that path with GitRepo.find()"
            ) from None

    def head(self) -> str | None:
        """The HEAD commit's full hex id, or None while the repository has no commits."""
        done = self._run("rev-parse", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1))
        return done.stdout.decode().strip() or None

    def branch(self) -> str | None:
        """The checked-out branch's short name, or None when HEAD is detached."""
        done = self._run("symbolic-ref", "--quiet", "--short", "HEAD", ok=(0, 1))
        return os.fsdecode(done.stdout.removesuffix(b"\n")) or None

    def state(self) -> GitState:
        """HEAD and branch now, for a scan to record next to what it found."""
        return GitState(self.top, self.head(), self.branch())

    def history(self, relpath: str, limit: int = DEFAULT_HISTORY_LIMIT) -> list[GitVersion]:
        """Commits reachable from HEAD that changed ``relpath``, newest first, across renames.

        Merges count with their change against the first parent, so a merge that brought
        the file's newest content is listed. At most ``limit`` commits are returned.
        """
        rel = _clean_relpath(relpath)
        if limit < 1:
            raise ConfigError(f"git history limit must be at least 1, not {limit}")
        if self.head() is None:
            return []
        done = self._run(
            "--literal-pathspecs", "log", "--follow", "--diff-merges=first-parent",
            f"--max-count={limit}", "-z", "--raw", "--no-abbrev", "--no-color",
            "--no-show-signature", "--encoding=UTF-8", f"--format={_LOG_FORMAT}",
            "HEAD", "--", rel,
        )  # fmt: skip
        return _parse_log(done.stdout)

    def latest(self, relpath: str) -> GitVersion | None:
        """The newest commit that left ``relpath`` in existence, or None if none did.

        For a file deleted in git too, this is the version just before its deletion.
        """
        return next((v for v in self.history(relpath) if v.blob is not None), None)

    def show(self, relpath: str, commit: str = "HEAD") -> bytes:
        """The whole content of ``relpath`` at ``commit``; prefer ``open`` for big files."""
        return b"".join(self.open(relpath, commit))

    def open(self, relpath: str, commit: str = "HEAD") -> Generator[bytes, None, None]:
        """The content of ``relpath`` at ``commit``, in chunks of at most ``CHUNK_SIZE``.

        NotFound is raised here, before iteration, when the commit or the file does not
        exist. Memory stays bounded whatever the file's size; ``close()`` on the generator
        stops git when the reader wants no more.
        """
        return self._stream(self._blob(relpath, commit))

    def missing(self, under: str = "") -> list[str]:
        """Files of the HEAD commit (below directory ``under``, relative to the top) that
        are gone from the work tree, deleted in the index or not; [] without commits."""
        if self.head() is None:
            return []
        scope = [_clean_relpath(under)] if under.strip("/.") else []
        done = self._run(
            "--literal-pathspecs", "diff", "-z", "--name-only", "--no-renames",
            "--diff-filter=D", "HEAD", "--", *scope,
        )  # fmt: skip
        return [os.fsdecode(p) for p in done.stdout.split(b"\0") if p]

    def is_tracked(self, relpath: str) -> bool:
        """Whether ``relpath`` is a file in git's index (added, whether or not committed)."""
        rel = _clean_relpath(relpath)
        done = self._run("--literal-pathspecs", "ls-files", "-z", "--cached", "--", rel)
        return os.fsencode(rel) in done.stdout.split(b"\0")

    def is_ignored(self, relpath: str) -> bool:
        """Whether git ignores ``relpath`` (a tracked file never counts as ignored)."""
        # check-ignore refuses --literal-pathspecs; a "./" prefix keeps a leading ":" literal.
        literal = f"./{_clean_relpath(relpath)}"
        done = self._run("check-ignore", "--quiet", "--", literal, ok=(0, 1))
        return done.returncode == 0

    def _commit(self, commit: str) -> str:
        """``commit`` as a full hex id; NotFound names it when it does not exist."""
        if not commit or commit.startswith("-"):
            raise ConfigError(f"{commit!r} is not a git revision; pass a commit id or ref")
        done = self._run("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", ok=(0, 1))
        if done.returncode != 0:
            raise NotFound(
                f"no commit {commit!r} in the git repository at {self.top}; "
                "list commits with GitRepo.history() or `git log`"
            )
        return done.stdout.decode().strip()

    def _blob(self, relpath: str, commit: str) -> str:
        """The id of the file ``relpath`` at ``commit``, or NotFound naming both."""
        rel = _clean_relpath(relpath)
        oid = self._commit(commit)
        done = self._run("--literal-pathspecs", "ls-tree", "-z", "--full-tree", oid, "--", rel)
        kind, blob = _tree_entry(done.stdout, rel) or ("", "")
        if kind != "blob":
            what = f"is a {kind}, not a file," if kind else "does not exist"
            raise NotFound(
                f"{rel!r} {what} in git commit {commit} of {self.top}; "
                f"list the commits that have it with GitRepo.history({rel!r})"
            )
        return blob

    def _stream(self, blob: str) -> Generator[bytes, None, None]:
        """Chunks of ``git cat-file blob``, with the timeout applied to each silence."""
        argv = self._argv("cat-file", "blob", blob)
        # stderr is a pipe read only at the end: cat-file writes at most a line there.
        proc = _spawn(argv)
        try:
            assert proc.stdout is not None  # guaranteed by stdout=PIPE
            yield from _chunks(proc.stdout, self.timeout, argv)
            _, stderr = proc.communicate(timeout=self.timeout)
            if proc.returncode != 0:
                raise _failure(argv, proc.returncode, stderr)
        except subprocess.TimeoutExpired as exc:
            raise _timed_out(argv, self.timeout) from exc
        finally:
            _reap(proc)

    def _run(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[bytes]:
        """Run git in the work tree; an exit status outside ``ok`` is a SourceUnavailable."""
        argv = self._argv(*args)
        done = _execute(argv, self.timeout)
        if done.returncode not in ok:
            raise _failure(argv, done.returncode, done.stderr)
        return done

    def _argv(self, *args: str) -> list[str]:
        return _argv(self.git, self.top, args)


def _argv(git: str, cwd: Path, args: tuple[str, ...]) -> list[str]:
    return [git, "--no-pager", "-C", str(cwd), *args]


def _env() -> dict[str, str]:
    """The caller's environment minus every ``GIT_*`` variable, plus our fixed settings.

    HOME and XDG_CONFIG_HOME stay, so the user's global config (``safe.directory``) applies.
    Optional locks are off because a background scan must never block a user's git command.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    return env


def _execute(argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run one git command to completion, translating OS errors and timeouts."""
    try:
        return subprocess.run(
            argv, capture_output=True, stdin=subprocess.DEVNULL, env=_env(), timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise _timed_out(argv, timeout) from exc
    except OSError as exc:
        raise _cannot_start(argv, exc) from exc


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            bufsize=0,  # unbuffered, so select() on the pipe sees all data that is waiting
        )
    except OSError as exc:
        raise _cannot_start(argv, exc) from exc


def _chunks(pipe: IO[bytes], timeout: float, argv: list[str]) -> Iterator[bytes]:
    """Read ``pipe`` to its end; ``timeout`` bounds each wait, not the whole transfer."""
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        while True:
            if not selector.select(timeout):
                raise _timed_out(argv, timeout)
            chunk = os.read(pipe.fileno(), CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Stop git if the reader gave up early, and release its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _existing_dir(path: Path) -> Path:
    """The nearest directory at or above ``path``: where git should start looking."""
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def _clean_relpath(relpath: str) -> str:
    """``relpath`` normalised, or ConfigError if it could leave the work tree."""
    pure = PurePosixPath(relpath)
    if not relpath or pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ConfigError(
            f"git path {relpath!r} must be a file path relative to the work tree's top; "
            "convert an absolute path with GitRepo.relpath()"
        )
    return pure.as_posix()


def _tree_entry(listing: bytes, rel: str) -> tuple[str, str] | None:
    """(type, id) of ``rel`` in ``git ls-tree -z`` output, or None when it is absent."""
    wanted = os.fsencode(rel)
    for record in listing.split(b"\0"):
        meta, _, name = record.partition(b"\t")
        if name == wanted:
            _mode, kind, oid = meta.decode().split(" ")
            return kind, oid
    return None


def _parse_log(data: bytes) -> list[GitVersion]:
    """Versions from ``git log -z --raw --format=_LOG_FORMAT`` output.

    The output is NUL-separated: a header, then for each changed path a raw-diff line and
    one or two path names. Path tokens are consumed by count, never inspected, so any byte
    in a name is safe. A commit with no raw line did not change the path on its first-parent
    side and is left out.
    """
    versions: list[GitVersion] = []
    header: bytes | None = None
    tokens = iter(data.split(b"\0"))
    for token in tokens:
        token = token.lstrip(b"\n")
        if token.startswith(b":"):
            path, blob = _raw_entry(token, tokens)
            if header is not None:
                versions.append(_version(header, path, blob))
                header = None
        elif token:
            header = token
    return versions


def _raw_entry(meta: bytes, tokens: Iterator[bytes]) -> tuple[str, str | None]:
    """The path a raw-diff line leaves behind, and its blob id (None when deleted)."""
    _src_mode, _dst_mode, _src, dst, status = meta[1:].split(b" ")
    path = next(tokens)
    if status[:1] in _TWO_PATHS:
        path = next(tokens)
    blob = dst.decode()
    return os.fsdecode(path), None if blob.strip("0") == "" else blob


def _version(header: bytes, path: str, blob: str | None) -> GitVersion:
    commit, seconds, author, summary = header.decode("utf-8", "replace").split("\x1f", 3)
    return GitVersion(commit, int(seconds) * 1_000_000, author, summary, path, blob)


def _failure(argv: list[str], status: int, stderr: bytes) -> SourceUnavailable:
    """A git command failed for a reason other than a missing repository or path.

    Git's own message is kept (it often holds the fix, as for ``safe.directory``); it names
    objects and paths, never file content.
    """
    lines = stderr.decode("utf-8", "replace").splitlines()
    said = " / ".join(line.strip() for line in lines if line.strip())[:500]
    return SourceUnavailable(
        f"`{shlex.join(argv)}` failed with exit status {status}: "
        f"{said or 'no message'}; run it by hand to see why, fix the repository, then retry"
    )


def _timed_out(argv: list[str], timeout: float) -> SourceUnavailable:
    return SourceUnavailable(
        f"`{shlex.join(argv)}` did not answer within {timeout:g} s; check for a stuck git "
        "process or a slow disk, or raise the timeout"
    )


def _cannot_start(argv: list[str], exc: OSError) -> SourceUnavailable:
    return SourceUnavailable(
        f"cannot run `{shlex.join(argv)}`: {exc.strerror or exc}; install git or put it on PATH"
    )
