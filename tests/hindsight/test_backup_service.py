"""``BackupService``: capture state survives pruning, because snapshots carry it."""

from __future__ import annotations

from pathlib import Path

from capture.mongo_state import KnownMongo
from capture.state import KnownFiles
from compaction.backup_maker import Scope
from compaction.retention import RetentionPolicy, TypePolicy
from hindsight.backup_service import BackupService, rebuild_known
from hindsight.cli.main import main
from hindsight.config import default_config, load_config
from hindsight.wiring import open_repository
from journal.events import ChangeEvent, Op, Source
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository


def _known(repo: Repository, service: BackupService) -> tuple[KnownFiles, KnownMongo]:
    files, mongo = KnownFiles(), KnownMongo()
    rebuild_known(repo, service.snapshots, files, mongo)
    return files, mongo


def _state(files: KnownFiles, root: str) -> dict[str, object]:
    return {p: files.get(root, p) for p in files.paths(root)}


def test_capture_resumes_from_a_snapshot_after_old_segments_are_pruned(workdir: Path) -> None:
    tree = workdir / "app"
    (tree / "src").mkdir(parents=True)
    for i in range(20):
        (tree / "src" / f"m{i}.py").write_text(f"x = {i}\n")
    assert main(["init", "--protect", str(tree)]) == 0
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config, writable=True) as repo:
        service = BackupService(config, repo)
        service.create("full", Scope())
        repo.log.seal()  # as an incremental backup or the segment's age would
        (tree / "src" / "m3.py").write_text("x = 'changed'\n")
        (tree / "src" / "m4.py").unlink()
        mongo_event = ChangeEvent(
            Source.MONGODB, "", "sync-start", Op.MARKER, 1, b"\x05\x00\x00\x00\x00",
            meta={META_DEPLOYMENT: "mongodb"},
        )  # fmt: skip
        repo.log.append([mongo_event])
        service.create("full", Scope())
        repo.log.seal()
        before_files, before_mongo = _known(repo, service)
        full_replay = KnownFiles()
        full_replay.apply_all(repo.log.read())
        assert _state(before_files, "app") == _state(full_replay, "app"), "snapshot + tail"
        pruner = service.pruner()
        pruner.policy = RetentionPolicy(TypePolicy(keep_last=1), TypePolicy(), point_in_time_s=0)
        report = pruner.prune()
        assert report.segments_removed and repo.log.first_seq > 1, report
        after_files, after_mongo = _known(repo, service)
        assert _state(after_files, "app") == _state(before_files, "app")
        assert after_mongo.dump() == before_mongo.dump() != {}, "MongoDB positions carried"
        captured = service.capture_now(Scope())
        assert captured["unchanged"] == 19 and captured["new"] == captured["changed"] == 0


def test_a_daemon_without_a_config_uses_every_default(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    assert config.backup.retention.full.keep_within == "30d"
    assert config.storage.repository == tmp_path / "backups"
