"""The brief's RecoveryService, for files: preview and restore to a backup or a moment.

A target is a backup id (its cut) or a moment (``restore.moment``); the state there is the
nearest snapshot plus the events after it (``compaction.state_at``). Files go back in place
(the configured roots) or under ``--to DIR/<root>``. MongoDB restores are not built yet and
say so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import json_util

from compaction.backup_maker import CONFIG_FILES
from compaction.state_at import StateAt, state_at
from hindsight.backup_service import BackupService, MongoResume
from hindsight.config import Config
from hindsight.control import ask_daemon
from hindsight.wiring import mongo_client
from journal.canonical import canonical_key
from journal.errors import ConfigError, HindsightError
from journal.events import FileImage
from journal.repository import Repository
from restore.documents import (
    DocPlan,
    DocResults,
    apply_documents,
    namespaces,
    plan_documents,
)
from restore.files import (
    Action,
    FileItem,
    FilePlan,
    FileResults,
    Strategy,
    apply_files,
    plan_files,
)
from restore.moment import cut_at
from restore.operations import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    Operation,
    OperationCatalog,
    Touched,
    append_restore_start,
)

__all__ = ["RecoveryService", "Target", "documents_dict", "moment", "plan_dict"]

FILE_SCOPES = ("filesystem", "config")


@dataclass(frozen=True)
class Target:
    """What to restore to: a backup, or a moment (UTC microseconds) and how it was given."""

    backup_id: str | None = None
    moment_us: int | None = None
    text: str = ""


class RecoveryService:
    """Preview and restore files of one opened repository under one config."""

    def __init__(self, config: Config, repo: Repository) -> None:
        self.config, self.repo = config, repo
        self.backups = BackupService(config, repo)
        self.snapshots = self.backups.snapshots
        self.operations = OperationCatalog(repo.root, repo.store, repo.record_cipher)
        self.documents: dict[str, DocPlan] = {}
        self._clients: dict[str, Any] = {}

    def close(self) -> None:
        """Close the MongoDB clients and the repository."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self.repo.close()

    def __enter__(self) -> RecoveryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cut(self, target: Target) -> int:
        """The journal seq the target names."""
        if target.backup_id is not None:
            return self.backups.get(target.backup_id).cut_seq
        assert target.moment_us is not None
        return cut_at(self.snapshots, self.repo.log, target.moment_us, target.text)

    def plan(
        self,
        target: Target,
        *,
        to: Path | None = None,
        selective: Sequence[str] = (),
        paths: Sequence[str] = (),
        to_db: str | None = None,
        to_collection: str | None = None,
        keys: Sequence[str] = (),
    ) -> tuple[int, FilePlan]:
        """The cut and what restoring its files would do; what restoring documents would do
        is left in ``self.documents`` (one plan per deployment). ``keys`` (document ``_id``s
        as ``--key`` takes them) limit the restore to those documents, and to no files unless
        ``selective`` or ``paths`` name some."""
        roots, collections = self._select(selective)
        if keys and not paths and not set(selective) & {*roots, *FILE_SCOPES}:
            roots = {}
        globs = list(paths) + (list(CONFIG_FILES) if _only_config(selective) else [])
        cut = self.cut(target)
        resume = MongoResume()  # collection options and indexes at the cut, in the same pass
        at, head = self._states(cut, resume)
        targets = {name: (to / name if to else path) for name, path in roots.items()}
        plan = plan_files(
            at, head, targets, in_place=to is None, paths=globs, sha256_of=self._sha256
        )
        metadata = {
            s.name: resume.known.deployment(s.name).collections for s in self.config.sources.mongodb
        }
        wanted = {canonical_key(parse_key(k)) for k in keys} if keys else None
        self.documents = self._plan_documents(
            at, head, collections, metadata, (to_db, to_collection), wanted
        )
        if keys and not any(
            sum(c.values()) for d in self.documents.values() for c in d.counts.values()
        ):
            raise ConfigError(
                f"--key {', '.join(keys)}: no such document in the selected collections at "
                'that moment or since; give an ObjectId as \'{"$oid": "..."}\' and a '
                "number as 5 (a string that looks like one as '\"5\"')"
            )
        return at.cut_seq, plan

    def _states(self, cut: int, resume: MongoResume) -> tuple[StateAt, StateAt]:
        """The state at ``cut`` (folding ``resume`` on the way) and at the journal's end,
        folded once when they are the same."""
        at = state_at(self.snapshots, self.repo.log, cut, side=[resume])
        end = self.repo.log.next_seq - 1
        return at, at if cut == end else state_at(self.snapshots, self.repo.log, end)

    def _plan_documents(
        self,
        at: StateAt,
        head: StateAt,
        wanted: dict[str, set[str] | None],
        metadata: dict[str, dict[str, bytes]],
        into: tuple[str | None, str | None],
        keys: set[str] | None,
    ) -> dict[str, DocPlan]:
        to_db, to_collection = into
        plans: dict[str, DocPlan] = {}
        for source in self.config.sources.mongodb:
            if source.name not in wanted:
                continue
            chosen = wanted[source.name]
            names = [n for n in namespaces(at, source.name) if chosen is None or _named(n, chosen)]
            missing = {c for c in chosen or () if not any(_named(n, {c}) for n in names)}
            if missing:
                had = ", ".join(namespaces(at, source.name)) or "none"
                raise ConfigError(
                    f"--selective {', '.join(sorted(missing))}: no such collection in "
                    f"{source.name} at that moment; it had {had}"
                )
            if to_collection and len(names) != 1:
                raise ConfigError(
                    f"--to-collection needs exactly one collection; this selection has "
                    f"{len(names)}: choose one with --selective"
                )
            targets = {n: _retarget(n, to_db, to_collection) for n in names}
            in_place = to_db is None and to_collection is None
            client = self._client(source.name)
            plans[source.name] = plan_documents(
                at, head, client, source.name, targets, in_place=in_place,
                metadata=metadata.get(source.name, {}),
                only=None if keys is None else dict.fromkeys(names, keys),
            )  # fmt: skip
        return plans

    def _client(self, name: str) -> Any:
        if name not in self._clients:
            source = next(s for s in self.config.sources.mongodb if s.name == name)
            self._clients[name] = mongo_client(source)
        return self._clients[name]

    def restore(
        self,
        target: Target,
        plan: FilePlan,
        strategy: Strategy,
        *,
        options: dict[str, Any],
        rollback_on_failure: bool = True,
        progress: Callable[[int], None] | None = None,
        ask: Callable[[FileItem], Strategy] | None = None,
    ) -> tuple[Operation, dict[str, Any]]:
        """Carry out a plan under an operation record; a failure part-way rolls back what
        was written unless ``rollback_on_failure`` is False (then the rest stays restored).

        Before the first write the journal gets a ``restore-start`` marker (through the
        daemon when it holds the journal) and the record lists every item the plan may
        touch, so even a restore cut off by a crash can be rolled back.
        """
        op = self.operations.new(target.backup_id, options, self.repo.log.next_seq - 1)
        op.before_seq = self._mark_start(op.id)
        op.touched = _planned(plan, self.documents)
        op.record["status"] = IN_PROGRESS
        self.operations.save(op)
        stamp = datetime.now(UTC).strftime("restored-%Y%m%d_%H%M%S")
        reopen = self.repo.reopener()
        results = apply_files(
            plan, self.repo.blobs, strategy, suffix=stamp, progress=progress, ask=ask, reopen=reopen
        )
        report = _results(results)
        errors = [f"{path}: {why}" for path, why in results.failed.items()]
        documents = {}
        try:
            for name, docs in self.documents.items():
                documents[name] = apply_documents(docs, self._client(name), strategy, progress)
        except HindsightError as exc:  # the server went away: what was written stays listed
            errors.append(str(exc))
        op.touched = Touched(_touched(results), {name: r.touched for name, r in documents.items()})
        report["documents"] = {name: _doc_report(r) for name, r in documents.items()}
        for name, r in documents.items():
            errors += [f"{name} {where}: {why}" for where, why in r.failed.items()]
        failed = bool(errors)
        if failed and rollback_on_failure and _in_place(options):
            rolled = self._rollback(op, op.touched)
            errors.append(f"rolled back {_count_rolled(rolled)} items")
            report["rolled_back"] = rolled
        counts = _counts(results)
        for r in documents.values():
            counts["restored"] += sum(r.written.values()) + sum(r.deleted.values())
            counts["failed"] += len(r.failed)
            counts["skipped"] += sum(r.skipped.values())
            counts["conflicts"] += len(r.merged)
        counts["failed"] = max(counts["failed"], 1 if failed else 0)
        self.operations.finish(op, FAILED if failed else COMPLETED, counts, errors)
        return op, report

    def _mark_start(self, op_id: str) -> int:
        """Append the ``restore-start`` marker; its seq. The daemon appends it when it holds
        the journal (this process then only reads)."""
        if not self.repo.log.writable:
            return int(ask_daemon(self.repo.root, "restore-start", {"operation": op_id}))
        return append_restore_start(self.repo.log, op_id)

    def rollback(self, op_id: str) -> dict[str, Any]:
        """Return every item an in-place restore touched to its state just before it."""
        op = self.operations.get(op_id)
        if not _in_place(op.record["options"]):
            options = op.record["options"]
            where = options.get("to") or options.get("to_db") or options.get("to_collection")
            raise ConfigError(
                f"{op_id} restored into {where}, not in place: delete that copy to undo it"
            )
        return self._rollback(op, self.operations.touched(op))

    def _rollback(self, op: Operation, touched: Touched) -> dict[str, Any]:
        roots = {s.name: s.path for s in self.config.sources.filesystem}
        resume = MongoResume()
        before, head = self._states(op.before_seq, resume)
        files = set(touched.files)
        plan = plan_files(before, head, roots, in_place=True, only=files, sha256_of=self._sha256)
        reopen = self.repo.reopener()
        results = apply_files(
            plan, self.repo.blobs, Strategy.OVERWRITE, suffix="rollback", reopen=reopen
        )
        existed = {f"{i.root}/{i.path}" for i in plan.items}
        for key in sorted(files - existed):  # written by the restore, absent before it
            root, _, path = key.partition("/")
            live = roots.get(root, Path("/nonexistent")) / path
            if live.is_file() or live.is_symlink():
                live.unlink()
                results.deleted.append(key)
        report = _results(results)
        report["documents"] = {}
        for name, per in touched.documents.items():
            only = {ns: set(keys) for ns, keys in per.items() if keys}
            if not only or name not in {s.name for s in self.config.sources.mongodb}:
                continue
            metadata = resume.known.deployment(name).collections
            client = self._client(name)
            docs = plan_documents(
                before, head, client, name, {ns: ns for ns in only}, in_place=True,
                metadata=metadata, only=only, purge=True,
            )  # fmt: skip
            done = apply_documents(docs, client, Strategy.OVERWRITE)
            report["documents"][name] = _doc_report(done)
        return report

    def history(self) -> list[dict[str, Any]]:
        """Every recovery operation's record, oldest first."""
        return [self.operations.get(i).record for i in self.operations.ids()]

    def status(self, op_id: str) -> dict[str, Any]:
        return self.operations.get(op_id).record

    def _select(
        self, selective: Sequence[str]
    ) -> tuple[dict[str, Path], dict[str, set[str] | None]]:
        """Roots to restore, and per deployment the collections (None: all) to restore.

        Names: a root, ``filesystem`` or ``config``; ``mongodb``, a deployment, or a
        collection (``coll`` or ``db.coll``). Nothing named: everything.
        """
        roots = {s.name: s.path for s in self.config.sources.filesystem}
        deployments = [s.name for s in self.config.sources.mongodb]
        if not selective:
            return roots, dict.fromkeys(deployments)
        files = {n for n in selective if n in roots or n in FILE_SCOPES}
        chosen_roots = {n: roots[n] for n in files if n in roots}
        if files & set(FILE_SCOPES):
            chosen_roots = roots
        mongo: dict[str, set[str] | None] = {}
        for name in selective:
            if name in files:
                continue
            if name == "mongodb" or name in deployments:
                for d in deployments if name == "mongodb" else [name]:
                    mongo[d] = None
            elif deployments and "/" not in name:
                for d in deployments:
                    if mongo.get(d, set()) is not None:
                        mongo.setdefault(d, set()).add(name)  # type: ignore[union-attr]
            else:
                raise ConfigError(
                    f"--selective {name}: not a protected root, deployment or collection; use "
                    f"{', '.join([*roots, *FILE_SCOPES, 'mongodb', *deployments])} or a "
                    "collection name"
                )
        return chosen_roots, mongo

    def _sha256(self, image: FileImage) -> str:
        return image.sha256 or self.repo.blobs.stat(image.blob).sha256


def parse_key(text: str) -> Any:
    """A ``--key`` as a document ``_id``: extended JSON (``5``, ``"5"``, ``{"$oid": ...}``),
    or else the text itself as a string."""
    try:
        return json_util.loads(text)
    except ValueError:
        return text


def _only_config(selective: Sequence[str]) -> bool:
    return "config" in selective and "filesystem" not in selective


def _in_place(options: dict[str, Any]) -> bool:
    return not (options.get("to") or options.get("to_db") or options.get("to_collection"))


def _planned(plan: FilePlan, documents: dict[str, DocPlan]) -> Touched:
    """Every item the plans may write or delete (what a restore cut short may have touched)."""
    files = [f"{i.root}/{i.path}" for i in plan.items if i.action is not Action.IDENTICAL]
    docs = {
        name: {target: [w[1] for w in writes] for target, writes in p.writes.items()}
        for name, p in documents.items()
    }
    return Touched(sorted(files), docs)


def _doc_report(results: DocResults) -> dict[str, Any]:
    """A document restore's results without the (long) list of touched keys."""
    report = dataclasses.asdict(results)
    del report["touched"]
    return report


def _count_rolled(report: dict[str, Any]) -> int:
    docs = sum(
        sum(d["written"].values()) + sum(d["deleted"].values())
        for d in report.get("documents", {}).values()
    )
    return len(report["restored"]) + len(report["deleted"]) + docs


def _touched(results: FileResults) -> list[str]:
    """Every file a restore wrote or deleted, as ``<root>/<path>``."""
    beside = []
    for line in results.renamed:  # "<root>/<path> -> <new name>"
        source, _, name = line.partition(" -> ")
        beside.append(f"{source.rsplit('/', 1)[0]}/{name}")
    return sorted([*results.restored, *results.deleted, *results.merged, *beside])


def _named(namespace: str, names: set[str]) -> bool:
    """Whether ``db.coll`` is one of ``names`` (``coll`` or ``db.coll``)."""
    return namespace in names or namespace.partition(".")[2] in names


def _retarget(namespace: str, to_db: str | None, to_collection: str | None) -> str:
    db, _, coll = namespace.partition(".")
    return f"{to_db or db}.{to_collection or coll}"


def _results(results: FileResults) -> dict[str, Any]:
    return dataclasses.asdict(results)


def _counts(results: FileResults) -> dict[str, int]:
    """The brief's ``results``: restored, failed, skipped, conflicts."""
    return {
        "restored": len(results.restored) + len(results.deleted),
        "failed": len(results.failed),
        "skipped": len(results.skipped),
        "conflicts": len(results.renamed) + len(results.merged),
    }


def plan_dict(cut: int, plan: FilePlan) -> dict[str, Any]:
    """A plan as JSON-ready data (sizes, never contents)."""
    return {
        "cut_seq": cut,
        "counts": plan.counts(),
        "bytes": {a.value: plan.bytes(a) for a in Action},
        "items": [
            {"root": i.root, "path": i.path, "action": i.action.value, "size": i.size}
            for i in plan.items
        ],
    }


def documents_dict(plans: dict[str, DocPlan]) -> dict[str, Any]:
    """Document plans as JSON-ready data: each item to write or delete (identical ones are
    only counted) with its size, and bytes per action; ids, never contents."""
    items, sizes = [], {a.value: 0 for a in Action}
    for name, plan in plans.items():
        for target, writes in plan.writes.items():
            for action, key, body, live, _ in writes:
                size = len(body if body is not None else live or b"")
                sizes[action.value] += size
                items.append(
                    {"deployment": name, "collection": target, "key": key,
                     "action": action.value, "size": size}
                )  # fmt: skip
    return {"document_items": items, "document_bytes": sizes}


def moment(text: str, parse: Callable[[str], int]) -> Target:
    """A target from a ``--at`` text."""
    return Target(moment_us=parse(text), text=f"--at {text!r}")
