"""``RecoveryService``: a restore that fails part-way rolls back, unless told not to."""

from __future__ import annotations

from pathlib import Path

import pytest

import restore.files
from compaction.backup_maker import Scope
from hindsight.backup_service import BackupService
from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.recovery_service import RecoveryService, Target
from hindsight.wiring import open_repository
from restore.files import Strategy
from restore.workers import run_in_processes


@pytest.mark.parametrize("rollback", [True, False], ids=["rolls-back", "no-rollback"])
def test_a_failure_part_way_rolls_back(workdir: Path, rollback: bool) -> None:
    app = workdir / "app"
    app.mkdir()
    for name in ("config.py", "package.json", "requirements.txt"):
        (app / name).write_text(f"{name} v1\n")
    assert main(["init", "--protect", str(app)]) == 0
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config, writable=True) as repo:
        backup = BackupService(config, repo).create("full", Scope()).backup
        for name in ("config.py", "package.json", "requirements.txt"):
            (app / name).write_text(f"{name} v2\n")
        BackupService(config, repo).capture_now(Scope(("filesystem",)))
        service = RecoveryService(config, repo)
        target = Target(backup_id=backup.id)
        _, plan = service.plan(target)
        broken = next(i for i in plan.items if i.path == "package.json")
        assert broken.image is not None
        real = repo.blobs.opened

        def damaged(blob_id: str):  # type: ignore[no-untyped-def]
            if blob_id == broken.image.blob:  # type: ignore[union-attr]
                raise FileNotFoundError(2, "pack gone", "blobs/packs/x.pack")
            return real(blob_id)

        repo.blobs.opened = damaged  # type: ignore[method-assign]
        op, report = service.restore(
            target, plan, Strategy.OVERWRITE, options={"to": None}, rollback_on_failure=rollback
        )
        record = service.status(op.id)
    assert record["status"] == "failed" and record["results"]["failed"] == 1
    assert any("package.json" in e for e in record["errors"]), record["errors"]
    v = "v2" if rollback else "v1"
    assert (app / "config.py").read_text() == f"config.py {v}\n"
    assert (app / "requirements.txt").read_text() == f"requirements.txt {v}\n"
    assert (app / "package.json").read_text() == "package.json v2\n", "never touched"
    assert ("rolled_back" in report) is rollback


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "secrets-only"])
def test_a_restore_and_its_rollback_can_use_worker_processes(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, encrypt: bool
) -> None:
    """The workers open the service's repository with its key: they decrypt everything, or
    (secrets-only) the secret files."""
    used: list[int] = []

    def counted(batches, reopen, work, done, processes):  # type: ignore[no-untyped-def]
        used.append(sum(map(len, batches)))
        return run_in_processes(batches, reopen, work, done, processes)

    monkeypatch.setattr(restore.files, "process_count", lambda _: 2)
    monkeypatch.setattr(restore.files, "run_in_processes", counted)
    app = workdir / "app"
    app.mkdir()
    names = [f"kb/base_conocimiento_{i}.json" for i in range(11)] + [".env"]
    for name in names:
        (app / name).parent.mkdir(exist_ok=True)
        (app / name).write_text(f'{{"v": 1, "name": "{name}"}}\n')
    assert main(["init", *(["--encrypt"] if encrypt else []), "--protect", str(app)]) == 0
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config, writable=True) as repo:
        assert repo.encrypted is encrypt
        backup = BackupService(config, repo).create("full", Scope()).backup
        for name in names:
            (app / name).write_text('{"v": 2}\n')
        BackupService(config, repo).capture_now(Scope(("filesystem",)))
        with RecoveryService(config, repo) as service:
            target = Target(backup_id=backup.id)
            _, plan = service.plan(target)
            op, _ = service.restore(target, plan, Strategy.OVERWRITE, options={"to": None})
            restored = {name: (app / name).read_text() for name in names}
            service.rollback(op.id)
    assert service.status(op.id)["status"] == "completed"
    assert restored == {name: f'{{"v": 1, "name": "{name}"}}\n' for name in names}
    assert all((app / name).read_text() == '{"v": 2}\n' for name in names), "rolled back"
    assert used == [12, 12], "the restore and the rollback each sent every file to workers"
    assert "worker process failed" not in caplog.text, "and the workers did them"
