"""Child of the large-file test: capture one big file, edit its middle, capture again.

Run as ``python large_file_child.py DIR SIZE_MIB``. Prints one JSON line with the peak RSS
(MiB) and the bytes the blob store grew by on the first and on the second capture, measured
in this fresh process so nothing else inflates the peak.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

from capture.filesystem import FileCapture
from capture.paths import FileRoot
from capture.state import KnownFiles
from journal.repository import Repository

MIB = 1024 * 1024


def write_big(path: Path, size_mib: int) -> None:
    """Incompressible content, written 8 MiB at a time."""
    with path.open("wb") as f:
        for _ in range(0, size_mib, 8):
            f.write(os.urandom(8 * MIB))


def peak_rss_mib() -> float:
    """This process's peak RSS. ``ru_maxrss`` will not do on Linux: it survives ``execve``,
    so a child of a big process (pytest, late in a long suite) reports its parent's peak;
    the memory map's high-water mark (``VmHWM``) starts fresh with the new program."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(workdir: Path, size_mib: int) -> None:
    """Capture, edit 4 KiB in the middle, capture again; report RSS and growth."""
    tree, repo_path = workdir / "tree", workdir / "repo"
    tree.mkdir()
    big = tree / "assets.bin"
    write_big(big, size_mib)
    Repository.init(repo_path, None)
    with Repository.open(repo_path, None, writable=True) as repo:
        capture = FileCapture(
            [FileRoot.of("app", tree, ["**"])], repo.log, repo.blobs, KnownFiles()
        )
        start = repo.blobs.stats().stored_bytes
        capture.scan()
        first = repo.blobs.stats().stored_bytes - start
        with big.open("r+b") as f:
            f.seek(size_mib * MIB // 2)
            f.write(os.urandom(4096))
        summary = capture.scan()
        second = repo.blobs.stats().stored_bytes - start - first
    rss_mib = peak_rss_mib()
    print(
        json.dumps(
            {"rss_mib": rss_mib, "first": first, "second": second, "changed": summary.changed}
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
