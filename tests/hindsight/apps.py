"""Protected chatbot apps with backups, built through the CLI, for command tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from hindsight.cli.main import main


def app_with_two_backups(
    workdir: Path, capsys: pytest.CaptureFixture[str], *, encrypt: bool = False
) -> Path:
    """``workdir/app`` protected, with two backups: a full one of ``config.py`` and a KB file,
    then an incremental one after ``config.py`` changed, the KB file was deleted and
    ``package.json`` added. The commands' output is consumed."""
    tree = workdir / "app"
    (tree / "kb").mkdir(parents=True)
    (tree / "config.py").write_text("DEBUG = False\n")
    (tree / "kb" / "base_conocimiento_1.json").write_text('{"faq": []}\n')
    assert main(["init", "--protect", str(tree), *(["--encrypt"] if encrypt else [])]) == 0
    assert main(["backup", "create"]) == 0
    (tree / "config.py").write_text("DEBUG = True\n")
    (tree / "kb" / "base_conocimiento_1.json").unlink()
    (tree / "package.json").write_text('{"name": "bot"}\n')
    assert main(["backup", "create", "--incremental"]) == 0
    capsys.readouterr()
    return tree
