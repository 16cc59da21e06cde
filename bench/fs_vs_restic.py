"""Filesystem backup: Hindsight against restic and BorgBackup on one generated chatbot tree.

Generates a tree with ``hindsight.demo.make_tree`` (default 20,000 files, 1 GiB: many small
JSON, Python and text files plus eight large binaries), then for each tool measures a full
backup, an incremental backup after ``mutate`` changed 1% of the files, the repository size
on disk (du), and a restore of everything into an empty directory, checked file by file.
All three encrypt and compress: restic with its default (zstd, auto), borg with
``--compression zstd,3`` and a repokey, Hindsight with its default (zstd 3) and a key file.
All three back up the same files: everything but ``node_modules``.

The page cache is not dropped (that needs privileges); the tree is read once before the
first backup so every tool starts warm. Tool output goes to a log file in the working
directory; a failing step shows the tail of its stderr and the other tools carry on.
A missing restic or borg is installed with apt-get.

    python bench/fs_vs_restic.py [--files N] [--bytes N] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hindsight.config import DEFAULT_INCLUDE, load_config
from hindsight.demo import make_tree, mutate
from journal.errors import HindsightError

ROOT = Path(__file__).resolve().parent.parent

TARGETS = {"full": 1.5, "incremental": 1.0, "size": 1.1}
"""Hindsight / restic ratios to stay at or under."""
ROWS = {
    "full": "full backup",
    "incremental": "incremental",
    "size": "repository size",
    "restore": "restore",
}
PASSWORD = "fs-vs-restic-bench"
EXCLUDED = "node_modules"
TAIL_LINES = 8


class StepFailed(Exception):
    """A step of one tool failed; ``detail`` holds the tail of what the tool printed."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class Unsupported(Exception):
    """The tool cannot do this step yet; the message is what the table shows."""


class Log:
    """Runs commands, writing each command line, exit code, stdout and stderr to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO = path.open("w", encoding="utf-8")

    def run(
        self, cmd: Sequence[str], env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` to completion and log everything it printed."""
        start = time.perf_counter()
        proc = subprocess.run(
            list(cmd), env=env, cwd=cwd, capture_output=True, text=True, errors="replace"
        )
        secs = time.perf_counter() - start
        self.file.write(f"\n$ {' '.join(cmd)}\n[exit {proc.returncode} after {secs:.2f} s]\n")
        self.file.write(proc.stdout + proc.stderr)
        self.file.flush()
        return proc

    def close(self) -> None:
        """Close the log file."""
        self.file.close()


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of ``text``, indented."""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    | {line}" for line in kept)


def checked(proc: subprocess.CompletedProcess[str], what: str) -> str:
    """``proc``'s stdout, or StepFailed with the tail of its stderr."""
    if proc.returncode != 0:
        raise StepFailed(f"{what} exited with {proc.returncode}", tail(proc.stderr or proc.stdout))
    return proc.stdout


def ensure_installed(program: str, package: str, log: Log) -> None:
    """Install ``package`` with apt-get if ``program`` is not on PATH, saying so."""
    if shutil.which(program):
        return
    cmd = ["apt-get", "install", "-y", package]
    print(f"{program} is not on PATH; running: {' '.join(cmd)}")
    if not shutil.which("apt-get"):
        raise StepFailed(f"apt-get not found; install {package} by hand")
    proc = log.run(cmd, {**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    for line in proc.stdout.splitlines():
        if line.startswith(("Get:", "Unpacking", "Setting up", "E:")):
            print(f"  apt-get: {line}")
    hint = f"`apt-get update` first, or install {package} by hand"
    checked(proc, f"apt-get install {package} (try {hint})")
    if not shutil.which(program):
        raise StepFailed(f"{package} installed but {program} is still not on PATH")


def human_bytes(n: float) -> str:
    """1.5 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path``, like ``du -s``."""
    total = path.lstat().st_blocks * 512
    for p in path.rglob("*"):
        total += p.lstat().st_blocks * 512
    return total


def manifest(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (size, sha256) of every file under ``root`` outside ``node_modules``."""
    files: dict[str, tuple[int, str]] = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and not p.is_symlink() and EXCLUDED not in rel.parts:
            with p.open("rb") as f:
                files[rel.as_posix()] = (
                    p.stat().st_size,
                    hashlib.file_digest(f, "sha256").hexdigest(),
                )
    return files


# --- the tools ---------------------------------------------------------------------------------


class Tool:
    """One backup program driven through its command line, in its own directory."""

    name = ""

    def __init__(self, base: Path, log: Log) -> None:
        self.home = base / self.name
        self.repo = self.home / "repo"
        self.log = log
        self.home.mkdir()

    def env(self) -> dict[str, str]:
        """The environment every command of this tool runs with."""
        return dict(os.environ)

    def run(self, what: str, cmd: Sequence[str], cwd: Path | None = None) -> str:
        """Run one command; its stdout, or StepFailed."""
        return checked(self.log.run(cmd, self.env(), cwd), what)

    def setup(self, tree: Path) -> None:
        """Make sure the program exists and create an empty encrypted repository."""
        raise NotImplementedError

    def backup(self, tree: Path, label: str) -> str:
        """Back up ``tree``; a one-line summary of what the tool reported."""
        raise NotImplementedError

    def restore(self, target: Path, tree: Path) -> Path:
        """Restore the latest backup under ``target``; where the tree's files landed."""
        raise NotImplementedError


class Restic(Tool):
    """restic: content-defined chunks, zstd (auto), AES-256 in counter mode with Poly1305."""

    name = "restic"

    def env(self) -> dict[str, str]:
        cache = str(self.home / "cache")
        return {**os.environ, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": cache}

    def setup(self, tree: Path) -> None:
        ensure_installed("restic", "restic", self.log)
        self.run("restic init", ["restic", "init", "--repo", str(self.repo)])

    def backup(self, tree: Path, label: str) -> str:
        cmd = ["restic", "--repo", str(self.repo), "backup", "--json", "--tag", label]
        out = self.run(f"restic backup ({label})", [*cmd, "--exclude", EXCLUDED, str(tree)])
        s = last_json_line(out, lambda d: d.get("message_type") == "summary")
        return (
            f"new {s['files_new']}, changed {s['files_changed']}, "
            f"unmodified {s['files_unmodified']}; added {human_bytes(s['data_added'])}"
        )

    def restore(self, target: Path, tree: Path) -> Path:
        cmd = ["restic", "--repo", str(self.repo), "restore", "latest", "--target", str(target)]
        self.run("restic restore", cmd)
        return target / tree.relative_to(tree.anchor)


class Borg(Tool):
    """BorgBackup 1.x: content-defined chunks, ``zstd,3``, repokey (AES-256-CTR + HMAC)."""

    name = "borg"

    def __init__(self, base: Path, log: Log) -> None:
        super().__init__(base, log)
        self.archives: list[str] = []

    def env(self) -> dict[str, str]:
        base = str(self.home / "home")  # keeps borg's cache and security files in the bench dir
        return {**os.environ, "BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": base}

    def setup(self, tree: Path) -> None:
        ensure_installed("borg", "borgbackup", self.log)
        self.run("borg init", ["borg", "init", "--encryption=repokey", str(self.repo)])

    def backup(self, tree: Path, label: str) -> str:
        cmd = ["borg", "create", "--json", "--compression", "zstd,3"]
        cmd += ["--exclude", f"{tree.name}/{EXCLUDED}", f"{self.repo}::{label}", tree.name]
        out = self.run(f"borg create ({label})", cmd, cwd=tree.parent)
        self.archives.append(label)
        stats = json.loads(out)["archive"]["stats"]
        return f"{stats['nfiles']} files; added {human_bytes(stats['deduplicated_size'])}"

    def restore(self, target: Path, tree: Path) -> Path:
        target.mkdir()
        self.run("borg extract", ["borg", "extract", f"{self.repo}::{self.archives[-1]}"], target)
        return target / tree.name


class Hindsight(Tool):
    """Hindsight's ``backup create``, run as a separate process like the other two."""

    name = "hindsight"
    cli = (sys.executable, "-m", "hindsight.cli.main")

    def __init__(self, base: Path, log: Log) -> None:
        super().__init__(base, log)
        self.config = self.home / "hindsight.toml"
        self.backups: list[str] = []

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HINDSIGHT_KEY", "HINDSIGHT_PASSPHRASE")
        }
        path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        # HINDSIGHT_CONFIG as well as --config: the file is found wherever --config is parsed
        return {**env, "PYTHONPATH": path, "HINDSIGHT_CONFIG": str(self.config)}

    def setup(self, tree: Path) -> None:
        probe = self.log.run([*self.cli, "backup", "create", "--help"], self.env())
        if probe.returncode != 0:
            raise StepFailed(
                "`hindsight backup create` is not available yet; rerun once it exists",
                tail(probe.stderr, 2),
            )
        cmd = ["init", "--encrypt", "--repo", str(self.repo), "--protect", str(tree)]
        self.run("hindsight init", [*self.cli, *cmd, "--config", str(self.config)], self.home)
        self._protect_everything_but_node_modules()

    def _protect_everything_but_node_modules(self) -> None:
        """Add assets and logs to the default chatbot profile, so all tools back up the same.

        ``init`` writes the ``[[sources.filesystem]]`` table last, so appended keys land in it.
        """
        include = [*DEFAULT_INCLUDE, "assets/**"]
        with self.config.open("a", encoding="utf-8") as f:
            f.write(f"include = {json.dumps(include)}\ninclude_logs = true\n")
        try:
            source = load_config(self.config).sources.filesystem[-1]
        except (HindsightError, IndexError) as exc:
            raise StepFailed(f"could not widen the protected set in {self.config}: {exc}") from exc
        if "assets/**" not in source.effective_include:
            raise StepFailed(f"assets/** did not reach the filesystem source in {self.config}")

    def backup(self, tree: Path, label: str) -> str:
        cmd = [*self.cli, "--config", str(self.config), "backup", "create", "--json"]
        out = self.run(f"hindsight backup create ({label})", cmd, self.home)
        try:
            r = json.loads(out)
            c, b = r["captured"], r["backup"]
            self.backups.append(b["backup_id"])
            return (
                f"new {c['new']}, changed {c['changed']}, deleted {c['deleted']}, "
                f"unchanged {c['unchanged']}; read {human_bytes(c['bytes_read'])}; "
                f"{b['type']} backup {b['backup_id']}, stored {human_bytes(b['compressed_size'])}"
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StepFailed(
                f"unexpected `backup create --json` output ({exc!r})", tail(out)
            ) from exc

    def restore(self, target: Path, tree: Path) -> Path:
        if not self.backups:
            raise Unsupported("n/a (no backup)")
        cmd = [*self.cli, "--config", str(self.config), "recover", "restore", self.backups[-1]]
        self.run("hindsight recover restore", [*cmd, "--to", str(target), "--json"], self.home)
        return target / tree.name


def last_json_line(out: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The last line of ``out`` that is a JSON object ``wanted`` accepts."""
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            if wanted(data):
                return dict(data)
    raise StepFailed("no summary line in the tool's JSON output", tail(out))


# --- measuring ---------------------------------------------------------------------------------


class Sheet:
    """Per tool and row: a measured number, or the text shown instead (FAILED, skipped, n/a)."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self.tools = [t.name for t in tools]
        self.values: dict[str, dict[str, float]] = {t: {} for t in self.tools}
        self.notes: dict[str, dict[str, str]] = {t: {} for t in self.tools}

    def cell(self, tool: str, row: str) -> str:
        """How one result is shown in the table."""
        if row in self.notes[tool]:
            return self.notes[tool][row]
        value = self.values[tool].get(row)
        if value is None:
            return "-"
        return human_bytes(value) if row == "size" else f"{value:.2f} s"

    def table(self) -> str:
        """Rows full / incremental / size / restore; one column per tool."""
        width = max([22, *(len(n) + 2 for notes in self.notes.values() for n in notes.values())])
        lines = [f"{'':18s}" + "".join(f"{t:>{width}s}" for t in self.tools)]
        for row, label in ROWS.items():
            cells = "".join(f"{self.cell(t, row):>{width}s}" for t in self.tools)
            lines.append(f"{label:18s}{cells}")
        return "\n".join(lines)

    def verdicts(self) -> list[str]:
        """Hindsight / restic per target, with PASS or MISS."""
        lines = []
        for row, target in TARGETS.items():
            h, r = self.values["hindsight"].get(row), self.values["restic"].get(row)
            if h is None or not r:
                got, verdict = "n/a", "MISS (no result)"
            else:
                got, verdict = f"{h / r:.2f}", "PASS" if h / r <= target else "MISS"
            lines.append(f"hindsight/restic {row:12s} {got:>6s}  target <= {target}  {verdict}")
        return lines


def step(sheet: Sheet, tool: Tool, row: str, fn: Callable[[], float | None]) -> bool:
    """Run one measured step; record its value, or show why it failed and record that."""
    try:
        value = fn()
    except Unsupported as exc:
        sheet.notes[tool.name][row] = str(exc)
        return True
    except StepFailed as exc:
        print(f"{tool.name}: {ROWS.get(row, row)} FAILED: {exc}")
        if exc.detail:
            print(exc.detail)
        for later in list(ROWS)[list(ROWS).index(row) if row in ROWS else 0 :]:
            sheet.notes[tool.name].setdefault(later, "FAILED" if later == row else "skipped")
        return False
    if value is not None:
        sheet.values[tool.name][row] = value
    return True


def timed_backup(tool: Tool, tree: Path, label: str) -> float:
    """Seconds one backup took; prints the tool's own summary."""
    start = time.perf_counter()
    summary = tool.backup(tree, label)
    secs = time.perf_counter() - start
    print(f"  {tool.name:9s} {label:11s} {secs:8.2f} s  {summary}")
    return secs


def timed_restore(
    tool: Tool, base: Path, tree: Path, expected: dict[str, tuple[int, str]]
) -> float:
    """Seconds a full restore took; StepFailed if the restored files differ from ``tree``."""
    target = base / f"restore-{tool.name}"
    start = time.perf_counter()
    landed = tool.restore(target, tree)
    secs = time.perf_counter() - start
    got = manifest(landed) if landed.is_dir() else {}
    bad = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    if bad:
        raise StepFailed(f"restored tree differs in {len(bad)} files", tail("\n".join(bad)))
    print(f"  {tool.name:9s} restore     {secs:8.2f} s  {len(got)} files, all identical")
    shutil.rmtree(target, ignore_errors=True)
    return secs


def generate(tree: Path, files: int, nbytes: int) -> None:
    """Make the tree, then read it once so every tool starts with a warm page cache."""
    start = time.perf_counter()
    stats = make_tree(tree, files=files, total_bytes=nbytes)
    made = time.perf_counter() - start
    start = time.perf_counter()
    for p in tree.rglob("*"):
        if p.is_file():
            with p.open("rb") as f:
                while f.read(1 << 20):
                    pass
    print(
        f"tree {tree}: {stats.files:,} files, {human_bytes(stats.bytes)} "
        f"(made in {made:.1f} s, read in {time.perf_counter() - start:.1f} s to warm the cache)"
    )


def apply_mutation(tree: Path) -> None:
    """Change 1% of the files and say how."""
    before = {p for p in tree.rglob("*") if p.is_file()}
    changed = mutate(tree, fraction=0.01)
    created = sum(p not in before for p in changed)
    deleted = sum(not p.exists() for p in changed)
    print(
        f"mutate: {len(changed)} files changed "
        f"({len(changed) - created - deleted} modified, {created} created, {deleted} deleted)"
    )


def run_all(base: Path, tree: Path, sheet: Sheet, tools: list[Tool]) -> None:
    """Full backups, mutation, incrementals, sizes and restores, tool by tool within each."""
    p = functools.partial
    print("full backups:")
    live = [t for t in tools if step(sheet, t, "full", p(setup_and_backup, t, tree))]
    apply_mutation(tree)
    print("incremental backups:")
    live = [
        t for t in live if step(sheet, t, "incremental", p(timed_backup, t, tree, "incremental"))
    ]
    for t in live:
        step(sheet, t, "size", p(repo_size, t))
    print("restores:")
    expected = manifest(tree)
    for t in live:
        step(sheet, t, "restore", p(timed_restore, t, base, tree, expected))


def repo_size(tool: Tool) -> float:
    """Bytes the tool's repository takes on disk."""
    return float(disk_usage(tool.repo))


def setup_and_backup(tool: Tool, tree: Path) -> float:
    """Install if needed, init the repository, then time the full backup."""
    tool.setup(tree)
    return timed_backup(tool, tree, "full")


def main() -> None:
    """Generate the tree, run every tool, print the table, the ratios and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--bytes", type=int, default=2**30)
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="default: current dir")
    parser.add_argument("--keep", action="store_true", help="keep the tree and repositories")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = Log(workdir / "fs_vs_restic.log")
    base = Path(tempfile.mkdtemp(prefix="fs_vs_restic-", dir=workdir))
    try:
        tree = base / "tree"
        generate(tree, args.files, args.bytes)
        tools: list[Tool] = [cls(base, log) for cls in (Hindsight, Restic, Borg)]
        sheet = Sheet(tools)
        run_all(base, tree, sheet, tools)
    finally:
        log.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(sheet.table())
    print()
    print("\n".join(sheet.verdicts()))
    print(
        f"\ntool output: {log.path}"
        + (f"; tree and repositories kept in {base}" if args.keep else "")
    )


if __name__ == "__main__":
    main()
