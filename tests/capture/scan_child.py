"""Child process: one reconciling scan of a tree into a new repository; prints the summary.

Run as ``python scan_child.py TREE REPO``, possibly as another user (the unreadable-file
test runs it as ``nobody`` so that permissions apply even when the suite runs as root).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from capture.filesystem import FileCapture
from capture.paths import FileRoot
from capture.state import KnownFiles
from journal.repository import Repository


def main(tree: Path, repo_path: Path) -> None:
    """Scan ``tree`` (every file) into a fresh repository at ``repo_path``."""
    Repository.init(repo_path, None)
    with Repository.open(repo_path, None, writable=True) as repo:
        capture = FileCapture(
            [FileRoot.of("app", tree, ["**"])], repo.log, repo.blobs, KnownFiles()
        )
        summary = capture.scan()
        keys = sorted(e.key for e in repo.log.read() if e.source.value == "FILESYSTEM")
    print(json.dumps({**dataclasses.asdict(summary), "keys": keys}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
