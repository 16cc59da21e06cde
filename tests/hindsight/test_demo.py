"""hindsight.demo: the generated chatbot tree is deterministic, sized as asked, and mutable."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from hindsight.demo import LARGE_SHARE, TreeStats, make_tree, mutate

BRIEF_NAMES = (
    *(".env", "config.py", "package.json", "requirements.txt", "conocimiento_consolidado.json"),
    *("base_conocimiento_*.json", "kb_populated_*.json", "python-scripts/*.py"),
    *("src/components/*.tsx", "src/lib/*.ts", "n8n_workflows/*.json", "test_scenarios/*.json"),
    *("logs/*.log", "node_modules/**/*", "assets/*.bin"),
)


def digests(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TreeStats]:
    """One default-sized tree, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("demo") / "tree"
    return root, make_tree(root)


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", files=120, total_bytes=600_000, seed=5)
    b = make_tree(tmp_path / "b", files=120, total_bytes=600_000, seed=5)
    assert a == b
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_another_seed_gives_other_content(tmp_path: Path) -> None:
    make_tree(tmp_path / "a", files=120, total_bytes=600_000, seed=5)
    make_tree(tmp_path / "b", files=120, total_bytes=600_000, seed=6)
    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert sum(a[k] != b.get(k) for k in a) > len(a) // 2, "seeds 5 and 6 gave similar trees"


@pytest.mark.parametrize(
    ("files", "total"), [(200, 5 * 2**20), (1_000, 8 * 2**20)], ids=["default", "1000-files"]
)
def test_counts_and_size_match_the_request(tmp_path: Path, files: int, total: int) -> None:
    stats = make_tree(tmp_path, files=files, total_bytes=total)
    on_disk = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert stats == TreeStats(len(on_disk), sum(p.stat().st_size for p in on_disk))
    assert abs(stats.files - files) <= files * 0.02, stats
    assert abs(stats.bytes - total) <= total * 0.05, stats
    large = sum(p.stat().st_size for p in on_disk if p.suffix == ".bin")
    assert abs(large / stats.bytes - LARGE_SHARE) < 0.05, f"binaries hold {large / stats.bytes:.0%}"


def test_brief_file_names_are_present(tree: tuple[Path, TreeStats]) -> None:
    root, _ = tree
    missing = [pattern for pattern in BRIEF_NAMES if not any(root.glob(pattern))]
    assert not missing, f"no file matches {missing}"
    env = (root / ".env").read_text()
    assert "OPENAI_API_KEY=sk-demo-" in env and "MONGODB_URI=mongodb://app:demo@" in env, env


def test_json_files_parse_and_the_knowledge_base_has_prices(tree: tuple[Path, TreeStats]) -> None:
    root, _ = tree
    for path in root.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))  # raises on a malformed file
    entries = json.loads((root / "kb_populated_20230101.json").read_text())["entradas"]
    assert any("pregunta" in e for e in entries) and any("precio" in e for e in entries)


def test_some_knowledge_base_exports_are_exact_duplicates(tree: tuple[Path, TreeStats]) -> None:
    root, _ = tree
    files = digests(root)
    by_digest = Counter(files.values())
    copies = sorted(k for k, v in files.items() if by_digest[v] > 1)
    assert len(copies) - len({files[k] for k in copies}) >= 2, f"too few duplicates: {copies}"
    kb_names = ("base_conocimiento_", "kb_populated_")
    assert all(any(n in k for n in kb_names) for k in copies), copies


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.2], ids=["1%", "5%", "20%"])
def test_mutate_changes_about_the_requested_fraction(tmp_path: Path, fraction: float) -> None:
    make_tree(tmp_path, files=1_000, total_bytes=4 * 2**20)
    before = {k: v for k, v in digests(tmp_path).items() if not k.startswith("node_modules/")}
    changed = mutate(tmp_path, fraction=fraction)
    after = {k: v for k, v in digests(tmp_path).items() if not k.startswith("node_modules/")}
    differ = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {p.relative_to(tmp_path).as_posix() for p in changed} == differ
    expected = fraction * len(before)
    assert abs(len(changed) - expected) <= max(1, expected * 0.1), (len(changed), expected)
    assert len(before.keys() - after.keys()) == 2 and len(after.keys() - before.keys()) == 2
    assert any(k.endswith(".bin") for k in differ), "no large binary was edited"


def test_mutate_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        make_tree(tmp_path / name, files=300, total_bytes=2**20)
        mutate(tmp_path / name, fraction=0.05, seed=9)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
