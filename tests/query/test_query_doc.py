"""docs/QUERY.md stays true: every view and column is described, every example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from query import VIEWS, QueryEngine
from tests.query.conftest import Built

DOC = Path(__file__).resolve().parents[2] / "docs" / "QUERY.md"
EXAMPLES = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_every_view_and_column_is_documented() -> None:
    text = DOC.read_text()
    for view in VIEWS:
        section = text.split(f"### `{view.name}`", 1)
        assert len(section) == 2, f"no section for view {view.name}"
        table = section[1].split("\n### ", 1)[0]
        for column in view.columns:
            assert f"| `{column.name}` | {column.type} |" in table, (view.name, column.name)


def test_the_examples_are_there() -> None:
    assert len(EXAMPLES) >= 8, "changes per hour, top keys, deletions, restores, ..."


@pytest.mark.parametrize("sql", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_every_example_runs(history_repo: Built, sql: str) -> None:
    with QueryEngine(history_repo.repo) as engine:
        list(engine.sql(sql))
