"""``hindsight recover scan --source filesystem`` over 100,000 unchanged protected files.

Creates a tree of small files (``--files``, default 100,000, 100 per directory under
``src/``, which the default chatbot profile protects), a repository protecting it
(``hindsight init``, mode "secrets" unless ``--encrypted``), and captures it once, as
``backup create`` would before a backup (``BackupService.capture_now``). Then times the scan
through the service (``ScanService.scan(["filesystem"])``: the journal's state at its end,
the recent window, a stat of every file, nothing read), ``--repeat`` times (default 3), and
reports the median. Target: under 10 s, and no finding (every file is unchanged).

The baseline is a bare walk of the same tree: ``os.scandir`` and an ``lstat`` of every
entry, nothing else; the ratio shows what the journal side and the comparisons cost on top.
Both run on a warm page cache (the baseline runs first, untimed, once). ``--snapshot`` also
times the scan after a full backup, when the state comes from a snapshot instead of the
journal. Everything lives in a temporary directory (``--dir``), removed at the end.

    python bench/scan.py [--files N] [--repeat N] [--encrypted] [--snapshot] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import scratch_dir
from compaction.backup_maker import Scope
from hindsight.backup_service import BackupService
from hindsight.cli.main import main as hindsight
from hindsight.config import load_config
from hindsight.scan_service import ScanService
from hindsight.wiring import open_repository

TARGET_S = 10.0
PER_DIR = 100


def make_files(tree: Path, count: int) -> None:
    """``count`` small files of distinct content, ``PER_DIR`` per directory; the first is
    the knowledge base the scan expects by default."""
    tree.mkdir(parents=True)
    (tree / "conocimiento_consolidado.json").write_text('{"faq": []}\n')
    for i in range(1, count):
        folder = tree / "src" / f"d{i // PER_DIR:05d}"
        if i % PER_DIR == 0 or i == 1:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.json").write_text(f'{{"n": {i}}}\n')


def bare_walk(top: Path) -> int:
    """The baseline: every entry's lstat, nothing more."""
    stack, files = [str(top)], 0
    while stack:
        for entry in os.scandir(stack.pop()):
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif st.st_size >= 0:
                files += 1
    return files


def timed(runs: int, call: Callable[[], object]) -> tuple[float, object]:
    """Median wall seconds of ``runs`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def scan_once(config_path: Path) -> dict[str, object]:
    config = load_config(config_path)
    with ScanService(config, open_repository(config)) as service:
        return service.scan(["filesystem"]).to_dict()


def run(args: argparse.Namespace, work: Path) -> bool:
    tree, config_path = work / "app", work / "hindsight.toml"
    start = time.perf_counter()
    make_files(tree, args.files)
    print(f"tree: {args.files:,} files in {time.perf_counter() - start:.1f} s")
    init = ["init", "--repo", "repo", "--protect", "app"]
    init += ["--encrypt"] if args.encrypted else []
    with contextlib.redirect_stdout(io.StringIO()):
        if hindsight(init) != 0:  # in ``work``: config, repository and key file all there
            raise SystemExit("bench: `hindsight init` failed")
    config = load_config(config_path)
    start = time.perf_counter()
    with open_repository(config, writable=True) as repo:
        captured = BackupService(config, repo).capture_now(Scope(("filesystem",)))
    print(f"captured once: {captured['new']:,} files in {time.perf_counter() - start:.1f} s")

    bare_walk(tree)  # warm the page cache
    baseline, walked = timed(args.repeat, lambda: bare_walk(tree))
    ok = _report(args, "captured once (state from the journal)", config_path, baseline)
    if args.snapshot:
        with open_repository(config, writable=True) as repo:
            BackupService(config, repo).create("full", Scope(), capture=False)
        ok &= _report(args, "after a full backup (state from a snapshot)", config_path, baseline)
    print(f"baseline: bare os.scandir + lstat walk of {walked:,} entries  {baseline:.2f} s")
    return ok


def _report(args: argparse.Namespace, label: str, config_path: Path, baseline: float) -> bool:
    seconds, result = timed(args.repeat, lambda: scan_once(config_path))
    report = result if isinstance(result, dict) else {}
    files = report["sources"]["filesystem"]  # type: ignore[index]
    findings = report["findings"]
    clean = not findings and files["files_found"] == args.files
    verdict = "PASS" if seconds < TARGET_S and clean else "MISS"
    print(
        f"target scan of {args.files:,} unchanged files < {TARGET_S:.0f} s  got {seconds:.2f} s  "
        f"{verdict}  [{label}; {files['files_found']:,} found, {len(findings)} findings; "
        f"{seconds / baseline:.1f}x the bare walk]"
    )
    return verdict == "PASS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--encrypted", action="store_true", help="an aes-256-gcm repository")
    parser.add_argument("--snapshot", action="store_true", help="also time after a full backup")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary tree goes")
    args = parser.parse_args()
    sys.exit(0 if measure(args) else 1)


def measure(args: argparse.Namespace) -> bool:
    """``run`` in a fresh temporary directory (the working directory meanwhile), removed
    after; whether every target passed. ``bench/query.py`` calls it too."""
    work = scratch_dir("bench-scan-", args.dir)
    here = Path.cwd()
    os.chdir(work)
    try:
        return run(args, work)
    finally:
        os.chdir(here)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
