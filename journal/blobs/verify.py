"""Full verification of the blob files on disk: every frame, tag, id, hash and reference.

It reads the directories afresh rather than trusting the store's in-memory index, so a file
the index forgot (or an index whose pack vanished) is reported too.

Without the repository's key, secret objects cannot be opened: their frame checksums, and a
sealed pack's SHA-256, are still checked, but their tags, ids and chunk references are not.
Each pack holding such objects gets one problem saying how many went unchecked and how to
give the key, so a verification that could not see everything never passes as clean.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from journal.blobs.objects import (
    ID_BYTES,
    KIND_LIST,
    KIND_NAMES,
    LIST_HEAD,
    SECRETS_LOCKED,
    StoreCodecs,
    bare_reason,
    decode_object,
    parse_header,
)
from journal.blobs.packs import (
    PackIndex,
    PackLayout,
    PackObject,
    iter_pack,
    read_index,
)
from journal.errors import AuthError, CorruptionError
from journal.framing import BadFrame
from journal.fsutil import file_sha256
from journal.integrity import Problem

__all__ = ["verify_packs"]


def verify_packs(
    layout: PackLayout,
    codecs: StoreCodecs,
    known: Collection[bytes],
    doomed: Collection[str] = (),
) -> list[Problem]:
    """Problems in every pack and index file under ``layout``; ``known`` are stored ids.

    ``doomed`` packs (an interrupted collect was deleting them) are no longer part of the
    store and are skipped.
    """
    problems: list[Problem] = []
    indexes = _read_indexes(layout, problems, set(doomed))
    sealed = layout.ids_in(layout.packs_dir, ".pack") - set(doomed)
    opened = layout.ids_in(layout.open_dir, ".pack") - set(doomed)
    checker = _PackChecker(layout, codecs, known)
    for pid in sorted(sealed):
        path = layout.sealed_path(pid)
        problems += checker.check(path, pid, indexes.get(pid))
        if not layout.index_path(pid).exists():
            problems.append(Problem(layout.rel(path), None, "sealed pack has no index file"))
    for pid in sorted(opened):
        problems += checker.check(layout.open_path(pid), pid, indexes.get(pid))
    for pid in sorted(indexes.keys() - sealed - opened):
        rel = layout.rel(layout.index_path(pid))
        problems.append(Problem(rel, None, f"the pack this indexes ({pid}) is missing"))
    return problems


def _read_indexes(
    layout: PackLayout, problems: list[Problem], doomed: set[str]
) -> dict[str, PackIndex]:
    indexes = {}
    for pid in sorted(layout.ids_in(layout.index_dir, ".idx") - doomed):
        path = layout.index_path(pid)
        try:
            indexes[pid] = read_index(path, pid, layout.rel(path))
        except CorruptionError as exc:
            problems.append(
                Problem(layout.rel(path), exc.offset, bare_reason(exc, layout.rel(path)))
            )
    return indexes


class _PackChecker:
    """Checks one pack file at a time against its index and the set of known ids."""

    def __init__(self, layout: PackLayout, codecs: StoreCodecs, known: Collection[bytes]) -> None:
        self.layout, self.codecs, self.known = layout, codecs, known

    def check(self, path: Path, pack_id: str, index: PackIndex | None) -> list[Problem]:
        """Problems in the pack at ``path``."""
        rel = self.layout.rel(path)
        problems, found, unchecked = [], set(), 0
        with open(path, "rb") as f:
            for item in iter_pack(f, pack_id, rel):
                if isinstance(item, BadFrame):
                    problems.append(Problem(rel, item.offset, item.reason))
                    continue
                found.add((item.entry.offset, item.entry.id))
                if self._locked_secret(item, rel):
                    unchecked += 1
                else:
                    problems += self._check_object(item, rel, pack_id)
        if unchecked:
            reason = f"{unchecked} secret objects were not checked: {SECRETS_LOCKED}"
            problems.append(Problem(rel, None, reason))
        if index is not None:
            problems += _against_index(path, rel, index, found)
        return problems

    def _locked_secret(self, obj: PackObject, rel: str) -> bool:
        """A secret object this store has no key for (its header already parsed once)."""
        if self.codecs.secret is not None or not self.codecs.locked:
            return False
        return self.codecs.is_secret(parse_header(obj.payload, rel, obj.entry.offset).flags)

    def _check_object(self, obj: PackObject, rel: str, pack_id: str) -> list[Problem]:
        offset = obj.entry.offset
        try:
            header, body = decode_object(self.codecs, obj.payload, rel, offset, pack_id)
        except (CorruptionError, AuthError) as exc:
            return [Problem(rel, offset, bare_reason(exc, rel))]
        if header.kind != KIND_LIST:
            return []
        chunk_ids = body[LIST_HEAD.size :]
        missing = [
            chunk_ids[i : i + ID_BYTES].hex()
            for i in range(0, len(chunk_ids), ID_BYTES)
            if chunk_ids[i : i + ID_BYTES] not in self.known
        ]
        return [
            Problem(rel, offset, f"blob list needs chunk {m}, which is missing") for m in missing
        ]


def _against_index(
    path: Path, rel: str, index: PackIndex, found: set[tuple[int, bytes]]
) -> list[Problem]:
    problems = []
    if file_sha256(path) != index.sha256:
        problems.append(Problem(rel, None, "SHA-256 differs from the one in its index file"))
    for e in index.entries:
        if (e.offset, e.id) not in found:
            what = KIND_NAMES.get(e.kind, "object")
            reason = f"index lists {what} {e.id.hex()} here, but no intact object is here"
            problems.append(Problem(rel, e.offset, reason))
    return problems
