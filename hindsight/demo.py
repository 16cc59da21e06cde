"""A realistic chatbot application tree, generated deterministically from a seed.

Tests and benchmarks need the kind of directory the brief protects (section 2): a React and
TypeScript front end, Python scripts, n8n workflows, a Spanish knowledge base with product
prices, test scenarios, logs, a ``.env`` with keys, a ``node_modules`` tree that backups skip,
a few large binaries and some exact duplicates (copies of knowledge-base exports).
``make_tree`` writes one; ``mutate`` then changes about a given fraction of it, the way a day
of development would.

The same seed and arguments always give the same bytes. About 60% of ``total_bytes`` goes to
a handful of incompressible binaries (``assets/*.bin``, standing in for product images and
model files); the rest is many small text files. Every secret in the tree is fake. This
module plans the tree (which files, where, how big) and mutates it; what each file says comes
from ``hindsight.demo_content``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

from hindsight.demo_content import (
    AREAS,
    LARGE_NAMES,
    LIB_ROLES,
    LIBS,
    NODE_MODULES,
    NOUNS,
    PASCAL,
    REQUIREMENTS,
    SERVICES,
    TOPICS,
    VERBS,
    WIDGETS,
    ContentGen,
    catalog_json,
    config_py,
    env_file,
    kb_json,
    log_line,
    log_text,
    n8n_json,
    package_json,
    python_source,
    scenario_json,
    ts_source,
    tsx_source,
)

__all__ = ["LARGE_SHARE", "TreeStats", "make_tree", "mutate"]

LARGE_SHARE = 0.6
"""Fraction of ``total_bytes`` that goes to the large binaries."""
_PER_DIR = 200  # files per directory before a kind spreads into subdirectories
_MIB = 2**20
_APPENDABLE = (".log", ".py", ".ts", ".tsx", ".txt")


class TreeStats(NamedTuple):
    """What ``make_tree`` wrote: regular files and their total size in bytes."""

    files: int
    bytes: int


class _Out:
    """Writes files under a root, creating directories once, and counts what it wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self.bytes = 0
        self.paths: dict[str, list[str]] = {}  # kind -> relative paths written
        self._dirs: set[Path] = set()

    def write(self, rel: str, data: bytes, kind: str = "") -> None:
        """Write ``data`` to ``root/rel``."""
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        path.write_bytes(data)
        self.files += 1
        self.bytes += len(data)
        self.paths.setdefault(kind, []).append(rel)


# --- where each kind goes ----------------------------------------------------------------------


def _spread(base: str, i: int, name: str) -> str:
    """``base/name`` for the first files, then subdirectories of ``_PER_DIR`` files each."""
    if i < _PER_DIR:
        return f"{base}/{name}"
    batch = i // _PER_DIR
    return f"{base}/{AREAS[batch % len(AREAS)]}_{batch}/{name}"


def _name(i: int, firsts: tuple[str, ...], seconds: tuple[str, ...], suffix: str) -> str:
    """The ``i``-th distinct file name from two word lists, numbered once they run out.

    ``suffix`` is an optional one-character separator followed by the extension: "_.py".
    """
    sep, ext = ("", suffix) if suffix.startswith(".") else (suffix[0], suffix[1:])
    n = len(firsts) * len(seconds)
    name = f"{firsts[i % len(firsts)]}{sep}{seconds[(i // len(firsts)) % len(seconds)]}"
    return f"{name}{ext}" if i < n else f"{name}{sep or '_'}{i // n}{ext}"


def _kb_path(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    version = "" if i < len(TOPICS) else f"_v{i // len(TOPICS) + 1}"
    return f"base_conocimiento_{topic}{version}.json"


def _catalog_path(i: int) -> str:
    return f"kb_populated_{(date(2023, 1, 1) + timedelta(days=7 * i)):%Y%m%d}.json"


def _log_path(i: int) -> str:
    day = date(2024, 1, 1) + timedelta(days=i // len(SERVICES))
    return f"logs/{SERVICES[i % len(SERVICES)]}-{day:%Y-%m-%d}.log"


class _Kind(NamedTuple):
    """One kind of small file: how many (share of the small files, at most ``cap``), how big
    (``typical`` size before scaling to the byte budget), where (``path`` of the i-th) and what
    (``body`` of about a given size)."""

    share: float
    cap: int
    typical: int
    path: Callable[[int], str]
    body: Callable[[ContentGen, int], bytes]


def _python_path(i: int) -> str:
    return _spread("python-scripts", i, _name(i, VERBS, NOUNS, "_.py"))


def _tsx_path(i: int) -> str:
    return _spread("src/components", i, _name(i, PASCAL, WIDGETS, ".tsx"))


def _ts_path(i: int) -> str:
    return _spread("src/lib", i, _name(i, LIBS, LIB_ROLES, ".ts"))


def _n8n_path(i: int) -> str:
    return _spread("n8n_workflows", i, _name(i, NOUNS, VERBS, "_.json"))


def _scenario_path(i: int) -> str:
    return _spread("test_scenarios", i, f"escenario_{i:05d}.json")


_NO_CAP = 10**9
_KINDS: dict[str, _Kind] = {
    "kb": _Kind(0.04, len(TOPICS), 100_000, _kb_path, kb_json),
    "catalog": _Kind(0.04, 24, 150_000, _catalog_path, catalog_json),
    "python": _Kind(0.20, _NO_CAP, 6_000, _python_path, python_source),
    "tsx": _Kind(0.22, _NO_CAP, 4_000, _tsx_path, tsx_source),
    "ts": _Kind(0.10, _NO_CAP, 3_000, _ts_path, ts_source),
    "n8n": _Kind(0.08, _NO_CAP, 12_000, _n8n_path, n8n_json),
    "log": _Kind(0.03, _NO_CAP, 100_000, _log_path, log_text),
    "scenario": _Kind(0.0, _NO_CAP, 2_500, _scenario_path, scenario_json),  # takes the rest
}


# --- the fixed files ---------------------------------------------------------------------------


def _write_fixed(out: _Out, g: ContentGen, small_budget: int) -> None:
    """The singleton files of the brief, ``node_modules``, and the consolidated knowledge base."""
    out.write(".env", env_file(g), "env")
    out.write("config.py", config_py(g), "config")
    out.write("package.json", package_json(), "config")
    out.write("requirements.txt", REQUIREMENTS, "config")
    for rel, data in NODE_MODULES.items():
        out.write(rel, data, "node_modules")
    size = max(4_000, small_budget // 25)
    out.write("conocimiento_consolidado.json", kb_json(g, size), "consolidated")


# --- the plan ----------------------------------------------------------------------------------


def _counts(n: int) -> dict[str, int]:
    """Split ``n`` small files among the kinds by share and cap; every kind gets at least one."""
    counts = {k: min(kind.cap, max(1, round(n * kind.share))) for k, kind in _KINDS.items()}
    counts["scenario"] = max(1, n - sum(counts.values()) + 1)
    return counts


def _sizes(
    rng: random.Random, counts: dict[str, int], budget: int, n_dups: int
) -> dict[str, list[int]]:
    """Log-normal sizes around each kind's typical size, scaled so that they and the
    ``n_dups`` duplicates ``_write_duplicates`` will make sum to ``budget``."""
    raw = {
        k: [_KINDS[k].typical * rng.lognormvariate(0, 0.7) for _ in range(n)]
        for k, n in counts.items()
    }
    sources = raw["kb"] + raw["catalog"]
    copied = sum(sources[_copy_of(j, len(sources))[0]] for j in range(n_dups))
    scale = budget / max(1.0, sum(sum(v) for v in raw.values()) + copied)
    return {k: [max(200, int(s * scale)) for s in v] for k, v in raw.items()}


def _write_small(out: _Out, g: ContentGen, sizes: dict[str, list[int]]) -> None:
    for k, kind_sizes in sizes.items():
        kind = _KINDS[k]
        for i, size in enumerate(kind_sizes):
            out.write(kind.path(i), kind.body(g, size), k)


_COPIES = (
    *("python-scripts/exports/", " (copia)", "n8n_workflows/datos/", "test_scenarios/fixtures/"),
    *("src/data/", " (copia 2)", "python-scripts/data/", " (copia 3)"),
)
"""Where duplicates go: a folder prefix, or a suffix before ``.json`` for a top-level copy."""


def _copy_of(j: int, n_sources: int) -> tuple[int, int]:
    """Source index and flavour of the ``j``-th duplicate: two flavours of each source in turn."""
    return (j // 2) % n_sources, 2 * (j // (2 * n_sources)) + j % 2


def _copy_path(src: str, flavour: int) -> str:
    how = _COPIES[flavour] if flavour < len(_COPIES) else f" (copia {flavour})"
    return how + src if how.endswith("/") else src.removesuffix(".json") + how + ".json"


def _write_duplicates(out: _Out, n: int) -> None:
    """Exact copies of knowledge-base exports, alternating folder copies and ' (copia)' files."""
    sources = out.paths["kb"] + out.paths["catalog"]
    for j in range(n):
        i, flavour = _copy_of(j, len(sources))
        out.write(
            _copy_path(sources[i], flavour), (out.root / sources[i]).read_bytes(), "duplicate"
        )


def _write_large(out: _Out, rng: random.Random, n: int, budget: int, seed: int) -> None:
    """``n`` random binaries sharing ``budget`` bytes, written 1 MiB at a time."""
    weights = [rng.uniform(0.5, 1.5) for _ in range(n)]
    for i, w in enumerate(weights):
        size = max(1024, int(budget * w / sum(weights)))
        name = f"assets/{LARGE_NAMES[i % len(LARGE_NAMES)]}_{i}.bin"
        noise = random.Random(f"{seed}:{name}")
        path = out.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for start in range(0, size, _MIB):
                f.write(noise.randbytes(min(_MIB, size - start)))
        out.files += 1
        out.bytes += size
        out.paths.setdefault("large", []).append(name)


def make_tree(
    root: Path, *, files: int = 200, total_bytes: int = 5 * _MIB, seed: int = 1
) -> TreeStats:
    """Write a chatbot application tree of about ``files`` files and ``total_bytes`` bytes.

    About 60% of the bytes are in a few large random binaries (8 when ``files`` >= 200), about
    1% of the files are exact duplicates of knowledge-base exports, six are under
    ``node_modules``; the rest are small JSON, Python, TypeScript and log files. Very small
    requests are rounded up to one file of each kind. Output depends only on the arguments.
    """
    rng = random.Random(seed)
    g = ContentGen(rng)
    out = _Out(root)
    root.mkdir(parents=True, exist_ok=True)
    n_large = 8 if files >= 200 else max(1, files // 25)
    n_dups = max(2, files // 100)
    small_budget = int(total_bytes * (1 - LARGE_SHARE))
    _write_fixed(out, g, small_budget)
    n_small = max(len(_KINDS), files - out.files - n_large - n_dups)
    sizes = _sizes(rng, _counts(n_small), max(0, small_budget - out.bytes), n_dups)
    _write_small(out, g, sizes)
    _write_duplicates(out, n_dups)
    _write_large(out, rng, n_large, max(0, total_bytes - out.bytes), seed)
    return TreeStats(out.files, out.bytes)


# --- mutate ------------------------------------------------------------------------------------


def _ops(n: int) -> list[str]:
    """The first ``n`` operations: one of each kind early, then modify/append alternately."""
    head = ["large", "delete", "create", "modify", "append", "delete", "create"]
    return (head + ["modify", "append"] * n)[:n]


def _edit_json(text: str, g: ContentGen) -> str:
    """Insert a reworded copy of an entry into the longest list and bump ``actualizado``."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        return text + "\n"  # still valid JSON, and a change
    lists = [v for v in doc.values() if isinstance(v, list) and v]
    if lists:
        items = max(lists, key=len)
        entry = items[g.rng.randrange(len(items))]
        if isinstance(entry, dict):
            entry = {
                k: g.sentence() if isinstance(v, str) and len(v) > 30 else v
                for k, v in entry.items()
            }
            if "precio" in entry:
                entry["precio"] = round(entry["precio"] * g.rng.uniform(0.8, 1.2), 2)
        items.insert(g.rng.randrange(len(items) + 1), entry)
    doc["actualizado"] = g.timestamp()
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def _comment(path: Path, g: ContentGen) -> str:
    if path.suffix == ".log":
        return log_line(g)
    prefix = "// " if path.suffix in (".ts", ".tsx") else "# "
    return f"{prefix}{g.sentence()}\n"


def _modify(path: Path, g: ContentGen) -> None:
    """Edit a small file in place: structured for JSON, one inserted line for text."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        path.write_text(_edit_json(text, g), encoding="utf-8")
        return
    lines = text.splitlines(keepends=True)
    lines.insert(g.rng.randrange(len(lines) + 1), _comment(path, g))
    path.write_text("".join(lines), encoding="utf-8")


def _append(path: Path, g: ContentGen) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.writelines(_comment(path, g) for _ in range(g.rng.randint(3, 30)))


def _edit_large(path: Path, g: ContentGen) -> None:
    """Overwrite up to 64 KiB in the middle of a large file."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(g.rng.randbytes(max(1, min(64 * 1024, size // 4))))


def _create(root: Path, g: ContentGen, i: int) -> Path:
    if i % 2:
        path = root / f"python-scripts/nuevo_{g.hex(8)}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(python_source(g, 3_000))
    else:
        path = root / f"test_scenarios/escenario_nuevo_{g.hex(8)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(scenario_json(g, 2_000))
    return path


def _pick(
    rng: random.Random, root: Path, small: list[Path], ops: list[str]
) -> dict[str, list[Path]]:
    """Distinct small files for each operation; deletions only below the top level."""
    appendable = [p for p in small if p.suffix in _APPENDABLE]
    append = rng.sample(appendable, min(ops.count("append"), len(appendable)))
    taken = set(append)
    deletable = [p for p in small if p not in taken and len(p.relative_to(root).parts) > 1]
    delete = rng.sample(deletable, min(ops.count("delete"), len(deletable)))
    taken.update(delete)
    modifiable = [p for p in small if p not in taken]
    modify = rng.sample(modifiable, min(ops.count("modify"), len(modifiable)))
    return {"append": append, "delete": delete, "modify": modify}


def mutate(root: Path, fraction: float = 0.01, seed: int = 2) -> list[Path]:
    """Change about ``fraction`` of the files under ``root`` (``node_modules`` aside).

    Edits small files in place (JSON structurally, text by an inserted line), appends to
    logs and source files, overwrites 64 KiB in the middle of one large binary, deletes a
    couple of files in subdirectories and creates a couple of new ones. Returns the paths
    changed, created or deleted, sorted. The same tree and seed give the same changes.
    """
    g = ContentGen(random.Random(seed))
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "node_modules" not in p.relative_to(root).parts
    )
    large = [p for p in files if p.suffix == ".bin"]
    small = [p for p in files if p.suffix != ".bin"]
    ops = _ops(max(1, round(fraction * len(files))))
    if not large:
        ops = ["modify" if op == "large" else op for op in ops]
    picked = _pick(g.rng, root, small, ops)
    for p in picked["append"]:
        _append(p, g)
    for p in picked["modify"]:
        _modify(p, g)
    for p in picked["delete"]:
        p.unlink()
    changed = [p for paths in picked.values() for p in paths]
    if "large" in ops:
        changed.append(g.rng.choice(large))
        _edit_large(changed[-1], g)
    changed += [_create(root, g, i) for i in range(ops.count("create"))]
    return sorted(changed)
