"""Glob semantics of protected roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from capture.paths import FileRoot, GlobSet

CASES = [
    ("*.pem", "certs/server.pem", True),
    ("*.pem", "server.pem", True),
    (".env", ".env", True),
    (".env", "sub/.env", True),
    (".env", ".env.local", False),
    ("src/**", "src/a/b.ts", True),
    ("src/**", "other/src/a.ts", False),
    ("**/node_modules/**", "node_modules/x.js", True),
    ("**/node_modules/**", "src/node_modules/y/z.js", True),
    ("base_conocimiento_*.json", "base_conocimiento_2025.json", True),
    ("base_conocimiento_*.json", "kb/base_conocimiento_v2.json", True),
    ("base_conocimiento_*.json", "base_conocimiento_a/b.json", False),
    ("python-scripts/*.py", "python-scripts/sub/x.py", False),
    ("*credentials*", "config/aws_credentials.json", True),
    ("file?.txt", "file1.txt", True),
    ("file?.txt", "file10.txt", False),
]


@pytest.mark.parametrize(
    ("pattern", "path", "expected"), CASES, ids=[f"{p}:{f}" for p, f, _ in CASES]
)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert GlobSet([pattern]).matches(path) is expected, f"{pattern!r} vs {path!r}"


def test_excluded_directories_are_pruned() -> None:
    root = FileRoot.of("app", Path("/app"), ["**"], ["**/node_modules/**", "**/.git/**"])
    assert not root.wants_dir("node_modules") and not root.wants_dir("src/node_modules")
    assert root.wants_dir("src") and root.wants("src/a.ts")
    assert not root.wants("src/node_modules/a.js")


def test_empty_globset_matches_nothing() -> None:
    assert not GlobSet([]).matches("anything") and not GlobSet([]).matches_dir("x")


def test_relpath_outside_root_is_none() -> None:
    root = FileRoot.of("app", Path("/srv/app"), ["**"])
    assert root.relpath(Path("/srv/app/src/x.ts")) == "src/x.ts"
    assert root.relpath(Path("/srv/other/x.ts")) is None
