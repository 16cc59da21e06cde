"""An independent reader of the repository format, written from ``docs/FORMAT.md`` alone.

Nothing here imports the journal's reading code: the reader below uses only the standard
library, ``cryptography``, ``zstandard``, ``fastavro`` and ``blake3``, and the Avro schema file
the document points to. The project's API is used only to write test repositories and to get
the events and bytes the reader must reproduce. If this file and the document disagree, the
document (or this reader) is wrong, not the test data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import blake3
import fastavro
import pytest
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

import journal.avro  # only to write a journal while v1 was current (the version patched)
import journal.segments
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.repository import Repository

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "journal" / "schemas"

# --- Frames -------------------------------------------------------------------------------

FRAME_MAGIC = b"HSF1"
ENVELOPE = struct.Struct("<4sIII")  # magic, payload length, payload CRC, header CRC
MAX_PAYLOAD = 256 << 20
FLAG_ZSTD = 0x01
FLAG_AES = 0x02
NONCE = 12
TAG = 16


def read_frames(data: bytes, what: str) -> list[tuple[int, bytes]]:
    """Every (offset, payload) of a file that must be intact from its first to its last byte."""
    frames = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= ENVELOPE.size, f"{what}: torn envelope at {offset}"
        magic, length, payload_crc, header_crc = ENVELOPE.unpack_from(data, offset)
        assert magic == FRAME_MAGIC, f"{what}: bad frame magic {magic!r} at {offset}"
        assert zlib.crc32(data[offset : offset + 12]) == header_crc, f"{what}: header CRC @{offset}"
        assert length <= MAX_PAYLOAD, f"{what}: payload length {length} too large at {offset}"
        payload = data[offset + ENVELOPE.size : offset + ENVELOPE.size + length]
        assert len(payload) == length, f"{what}: file ends inside the frame at {offset}"
        assert zlib.crc32(payload) == payload_crc, f"{what}: payload CRC at {offset}"
        frames.append((offset, payload))
        offset += ENVELOPE.size + length
    return frames


# --- repository.json and keys.json --------------------------------------------------------


MODE_ALL, MODE_SECRETS, MODE_NONE = "aes-256-gcm", "secrets", "none"


@dataclass
class KeyRing:
    """What a reader needs: the mode, the data keys by id, and the id key (None when the
    repository has no key ring or it was not given the key)."""

    mode: str = MODE_NONE
    data: dict[int, bytes] = field(default_factory=dict)
    active: int = 0
    id_key: bytes | None = None
    root: Path = Path()
    repo_id: str = ""

    @property
    def encrypt_all(self) -> bool:
        return self.mode == MODE_ALL


class LockedSecret(Exception):
    """A secret object of a "secrets" repository read without the key."""


def read_repository_info(root: Path) -> dict[str, Any]:
    info = json.loads((root / "repository.json").read_text("utf-8"))
    assert info["format"] == 1, f"unknown repository format {info['format']!r}"
    assert len(info["id"]) == 32 and int(info["id"], 16) >= 0, f"bad repository id {info['id']}"
    modes = (MODE_ALL, MODE_SECRETS, MODE_NONE)
    assert info["encryption"] in modes, f"bad encryption {info['encryption']}"
    return info


def derive_kek(kdf: dict[str, Any], master: bytes | str, repo_id: str) -> bytes:
    salt = base64.b64decode(kdf["salt"])
    if kdf["name"] == "hkdf-sha256":
        assert isinstance(master, bytes), "an hkdf-sha256 key ring needs a key, not a passphrase"
        info = b"hindsight kek v1 " + repo_id.encode("utf-8")
        return HKDF(hashes.SHA256(), 32, salt, info).derive(master)
    assert kdf["name"] == "scrypt", f"unknown kdf {kdf['name']!r}"
    assert isinstance(master, str), "a scrypt key ring needs a passphrase"
    return Scrypt(salt, 32, kdf["n"], kdf["r"], kdf["p"]).derive(master.encode("utf-8"))


def unwrap(kek: bytes, wrapped: str, label: str) -> bytes:
    raw = base64.b64decode(wrapped)
    key = AESGCM(kek).decrypt(raw[:NONCE], raw[NONCE:], label.encode("utf-8"))
    assert len(key) == 32, f"unwrapped key {label} has {len(key)} bytes"
    return key


def load_key_ring(root: Path, info: dict[str, Any], master: bytes | str | None) -> KeyRing:
    mode = info["encryption"]
    if mode == MODE_NONE:
        assert not (root / "keys.json").exists(), "a legacy repository has no keys.json"
        return KeyRing()
    assert (root / "keys.json").exists(), f"a repository of mode {mode} has keys.json"
    if master is None:
        assert mode == MODE_SECRETS, "an aes-256-gcm repository needs the master secret"
        return KeyRing(mode, root=root, repo_id=info["id"])
    doc = json.loads((root / "keys.json").read_text("utf-8"))
    assert doc["version"] == 1, f"unknown keys.json version {doc['version']}"
    repo_id = info["id"]
    kek = derive_kek(doc["kdf"], master, repo_id)
    data = {int(k): unwrap(kek, v, f"{repo_id}/data/{int(k)}") for k, v in doc["keys"].items()}
    assert doc["active"] in data, "the active key must be one of the keys"
    assert all(k < KEY_ID_FILE for k in data), "ring key ids stay below 2**31"
    id_key = unwrap(kek, doc["id_key"], f"{repo_id}/id")
    return KeyRing(mode, data, doc["active"], id_key, root, repo_id)


KEY_ID_FILE = 0x8000_0000
FILE_LABELS = {"segments": "segment", "packs": "pack"}


def file_key(keys: KeyRing, kind: str, name: str) -> bytes:
    """The key of one segment or pack: its key file, unwrapped under the data key it names."""
    path = keys.root / "keys" / kind / f"{name}.key"
    assert path.exists(), f"no key file {path.relative_to(keys.root)}"
    doc = json.loads(path.read_text("utf-8"))
    assert doc["version"] == 1 and set(doc) == {"version", "wrapped_by", "key"}, f"{path}: {doc}"
    assert doc["wrapped_by"] in keys.data, f"{path}: wrapped by unknown key {doc['wrapped_by']}"
    label = f"{keys.repo_id}/{FILE_LABELS[kind]}/{name}"
    return unwrap(keys.data[doc["wrapped_by"]], doc["key"], label)


def subkey(id_key: bytes, label: str) -> bytes:
    info = b"hindsight subkey v1 " + label.encode("utf-8")
    return HKDF(hashes.SHA256(), 32, None, info).derive(id_key)


def unseal(
    aad: bytes, flags: int, key_id: int, body: bytes, keys: KeyRing, file: tuple[str, str]
) -> bytes:
    """Decrypt (flag 0x02, header as associated data), then decompress (flag 0x01).

    ``file`` is (``segments`` or ``packs``, name): whose key file ``KEY_ID_FILE`` means."""
    assert flags & ~(FLAG_ZSTD | FLAG_AES) == 0, f"unknown flag bits {flags:#x}"
    if flags & FLAG_AES:
        assert keys.mode != MODE_NONE, "a legacy repository wrote an encrypted body"
        if not keys.data:
            raise LockedSecret("encrypted body, and no key was given")
        if key_id == KEY_ID_FILE:
            key = file_key(keys, *file)
        else:
            assert key_id in keys.data, f"frame names unknown data key {key_id}"
            key = keys.data[key_id]
        body = AESGCM(key).decrypt(body[:NONCE], body[NONCE:], aad)
    else:
        assert key_id == 0, f"unencrypted body names data key {key_id}"
        assert not keys.encrypt_all, "an aes-256-gcm repository wrote an unencrypted body"
    if flags & FLAG_ZSTD:
        # No size limit given: the zstd frame must carry its content size.
        body = zstandard.ZstdDecompressor().decompress(body)
    return body


# --- Segments -----------------------------------------------------------------------------

BATCH_HEADER = struct.Struct("<BBBBIQIqq")
KIND_SEGMENT_HEADER = 1
KIND_EVENT_BATCH = 2
SCHEMAS: dict[int, Any] = {}


def avro_schema(version: int) -> Any:
    if version not in SCHEMAS:
        text = (SCHEMA_DIR / f"event_batch.v{version}.avsc").read_text("utf-8")
        SCHEMAS[version] = fastavro.parse_schema(json.loads(text))
    return SCHEMAS[version]


@dataclass
class Batch:
    offset: int
    first_seq: int
    count: int
    min_ts: int
    max_ts: int
    events: list[dict[str, Any]]


def expand_runs(column: dict[str, list[Any]], count: int, name: str) -> list[Any]:
    values, lengths = column["values"], column["lengths"]
    assert len(values) == len(lengths), f"{name}: {len(values)} values, {len(lengths)} lengths"
    out: list[Any] = []
    for value, length in zip(values, lengths, strict=True):
        assert length >= 0, f"{name}: run of length {length}"
        out.extend([value] * length)
    assert len(out) == count, f"{name}: runs cover {len(out)} events, batch has {count}"
    return out


def sparse(column: dict[str, Any], count: int, name: str) -> dict[int, Any]:
    out = {int(k): v for k, v in column.items()}
    assert all(str(i) == k for i, k in zip(out, column, strict=True)), f"{name}: non-decimal key"
    assert all(0 <= i < count for i in out), f"{name}: key out of range {sorted(out)}"
    return out


def meta_columns(column: dict[str, Any], count: int) -> dict[int, dict[str, str]]:
    """Version 2's meta: a column of optional strings per key -> each event's map."""
    keys, columns = column["keys"], column["columns"]
    assert keys == sorted(set(keys)), f"meta keys not unique and ascending: {keys}"
    assert len(columns) == len(keys), f"meta: {len(keys)} keys, {len(columns)} columns"
    out: dict[int, dict[str, str]] = {}
    for key, runs in zip(keys, columns, strict=True):
        values = expand_runs(runs, count, f"meta[{key}]")
        assert any(v is not None for v in values), f"meta key {key} has no value"
        for i, value in enumerate(values):
            if value is not None:
                out.setdefault(i, {})[key] = value
    return out


def expand_batch(rec: dict[str, Any], version: int) -> list[dict[str, Any]]:
    """The events of one decoded EventBatch, in the shape of ChangeEvent's fields."""
    count = len(rec["source_ts"])
    for name in ("key", "after", "position"):
        assert len(rec[name]) == count, f"{name}: {len(rec[name])} elements, batch has {count}"
    runs = {
        name: expand_runs(rec[name], count, name)
        for name in ("capture_ts", "source", "namespace", "op", "txn")
    }
    files = sparse(rec["files"], count, "files")
    meta = sparse(rec["meta"], count, "meta") if version == 1 else meta_columns(rec["meta"], count)
    events = []
    for i in range(count):
        after: Any = rec["after"][i] or None  # empty = none
        if i in files:
            assert after is None, f"event {i} has both a BSON after-image and a file image"
            after = files[i]
        events.append(
            {
                "seq": rec["first_seq"] + i,
                "source": runs["source"][i],
                "namespace": runs["namespace"][i],
                "key": rec["key"][i],
                "op": runs["op"][i],
                "source_ts": rec["source_ts"][i],
                "capture_ts": runs["capture_ts"][i],
                "after": after,
                "position": rec["position"][i],
                "txn": runs["txn"][i],
                "meta": meta.get(i),
            }
        )
    return events


def read_batch(offset: int, payload: bytes, keys: KeyRing, where: str, segment: str) -> Batch:
    header = payload[: BATCH_HEADER.size]
    kind, version, flags, reserved, key_id, first_seq, count, min_ts, max_ts = BATCH_HEADER.unpack(
        header
    )
    assert kind == KIND_EVENT_BATCH, f"{where}: frame kind {kind}, expected an event batch"
    assert reserved == 0, f"{where}: reserved byte {reserved}"
    if not keys.encrypt_all:
        assert flags & FLAG_AES == 0, f"{where}: an encrypted batch outside aes-256-gcm"
    body = unseal(header, flags, key_id, payload[BATCH_HEADER.size :], keys, ("segments", segment))
    stream = io.BytesIO(body)
    rec = fastavro.schemaless_reader(stream, avro_schema(version))
    assert stream.tell() == len(body), f"{where}: {len(body) - stream.tell()} bytes after Avro"
    assert isinstance(rec, dict)
    assert rec["first_seq"] == first_seq, f"{where}: body first_seq {rec['first_seq']}"
    events = expand_batch(rec, version)
    assert len(events) == count, f"{where}: header count {count}, body has {len(events)}"
    stamps = [e["source_ts"] for e in events]
    assert (min_ts, max_ts) == (min(stamps), max(stamps)), f"{where}: time span"
    return Batch(offset, first_seq, count, min_ts, max_ts, events)


def read_segment(path: Path, keys: KeyRing, repo_id: str) -> list[Batch]:
    frames = read_frames(path.read_bytes(), path.name)
    assert frames and frames[0][0] == 0, f"{path.name}: no segment header"
    head = frames[0][1]
    kind, version, flags, reserved, key_id, first_seq, count, min_ts, max_ts = (
        BATCH_HEADER.unpack_from(head)
    )
    assert (kind, flags, reserved, key_id, count) == (KIND_SEGMENT_HEADER, 0, 0, 0, 0), (
        f"{path.name}: bad segment header {(kind, flags, reserved, key_id, count)}"
    )
    assert first_seq == int(path.stem), f"{path.name}: header first_seq {first_seq}"
    assert version in (1, 2), f"{path.name}: schema version {version} in the header"
    assert (min_ts, max_ts) == (0, 0), f"{path.name}: {(min_ts, max_ts)}"
    info = json.loads(head[BATCH_HEADER.size :].decode("utf-8"))
    assert info["format"] == 1 and info["repo_id"] == repo_id, f"{path.name}: header {info}"
    assert isinstance(info["created_us"], int), f"{path.name}: header {info}"
    batches = [read_batch(o, p, keys, f"{path.name}@{o}", path.stem) for o, p in frames[1:]]
    expected_seq = first_seq
    for batch in batches:
        assert batch.first_seq == expected_seq, f"{path.name}: gap before {batch.first_seq}"
        expected_seq += batch.count
    return batches


# --- Manifest and sparse index ------------------------------------------------------------

IDX_ENTRY = struct.Struct("<QQIqq")


def read_manifest(root: Path, keys: KeyRing) -> tuple[int, list[dict[str, Any]]]:
    """The journal's first seq and its sealed segments."""
    path = root / "journal" / "manifest.json"
    if not path.exists():  # no segment sealed yet
        return 1, []
    manifest = json.loads(path.read_text("utf-8"))
    assert manifest["format"] == 1, f"unknown manifest format {manifest['format']}"
    segments: list[dict[str, Any]] = manifest["segments"]
    first_seq = manifest.get("first_seq", 1)
    assert (isinstance(first_seq, int) and first_seq > 1) or "first_seq" not in manifest
    if not keys.encrypt_all:
        assert manifest["mac"] is None, f"a {keys.mode} repository's manifest has no MAC"
    else:
        assert keys.id_key is not None
        covered: Any = segments
        if "first_seq" in manifest:
            covered = {"first_seq": first_seq, "segments": segments}
        text = json.dumps(covered, separators=(",", ":"), sort_keys=True)
        mac = hmac.new(subkey(keys.id_key, "manifest"), text.encode("utf-8"), hashlib.sha256)
        assert isinstance(manifest["mac"], str), "an encrypted repository's manifest has a MAC"
        assert hmac.compare_digest(mac.hexdigest(), manifest["mac"]), "manifest MAC mismatch"
    for entry in segments:
        data = (root / "journal" / entry["name"]).read_bytes()
        assert len(data) == entry["size"], f"{entry['name']}: size {len(data)}"
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{entry['name']}: sha256"
    if segments:
        assert segments[0]["first_seq"] == first_seq, "the journal starts at first_seq"
    return first_seq, segments


def check_sparse_index(path: Path, batches: list[Batch]) -> None:
    frames = read_frames(path.read_bytes(), path.name)
    assert len(frames) == 1, f"{path.name}: {len(frames)} frames, expected 1"
    payload = frames[0][1]
    assert payload[:5] == b"HSIX\x01", f"{path.name}: bad header {payload[:5]!r}"
    body = payload[5:]
    assert len(body) % IDX_ENTRY.size == 0, f"{path.name}: {len(body)} bytes of entries"
    entries = [e for e in IDX_ENTRY.iter_unpack(body)]
    spans = [(b.offset, b.first_seq, b.count, b.min_ts, b.max_ts) for b in batches]
    assert entries == spans, f"{path.name}: index {entries} != frames {spans}"


def check_segment_against_manifest(entry: dict[str, Any], batches: list[Batch]) -> None:
    last = batches[-1]
    got = {
        "first_seq": batches[0].first_seq,
        "last_seq": last.first_seq + last.count - 1,
        "min_ts": min(b.min_ts for b in batches),
        "max_ts": max(b.max_ts for b in batches),
    }
    want = {k: entry[k] for k in got}
    assert got == want, f"{entry['name']}: manifest {want}, segment {got}"


def read_journal(root: Path, master: bytes | str | None) -> list[dict[str, Any]]:
    """Every event of the repository, checking manifest, sealed files and sparse indexes."""
    info = read_repository_info(root)
    keys = load_key_ring(root, info, master)
    first_seq, segments = read_manifest(root, keys)
    sealed = {entry["name"]: entry for entry in segments}
    names = sorted(p.name for p in (root / "journal").glob("*.seg") if not p.name.startswith("."))
    names = [n for n in names if int(n[:-4]) >= first_seq]  # older: left over from a drop
    assert list(sealed) == names[: len(sealed)], f"manifest {list(sealed)} vs files {names}"
    assert len(names) - len(sealed) <= 1, f"more than one active segment: {names}"
    events: list[dict[str, Any]] = []
    for name in names:
        path = root / "journal" / name
        assert name == f"{int(path.stem):020d}.seg", f"bad segment name {name}"
        expect = first_seq + len(events)
        assert int(path.stem) == expect, f"{name} does not follow seq {expect - 1}"
        batches = read_segment(path, keys, info["id"])
        if name in sealed:
            check_segment_against_manifest(sealed[name], batches)
            check_sparse_index(path.with_suffix(".idx"), batches)
            assert path.stat().st_mode & 0o222 == 0, f"sealed {name} is writable"
        else:
            assert not path.with_suffix(".idx").exists(), f"active {name} has an index"
        events.extend(e for b in batches for e in b.events)
    return events


# --- Blob store ---------------------------------------------------------------------------

PACK_HEADER = struct.Struct("<4sHH16s")
OBJECT_HEADER = struct.Struct("<BBHII32s")
PACK_INDEX_HEADER = struct.Struct("<4sHH16sQ32sI")
PACK_INDEX_ENTRY = struct.Struct("<32sBQII")
KIND_CHUNK = 1
KIND_LIST = 2
LIST_ID_CONTEXT = "hindsight 2024 blob list id v1"


class Location(NamedTuple):
    pack: Path
    offset: int
    frame_length: int
    kind: int
    raw_length: int


def scan_pack(path: Path) -> dict[bytes, Location]:
    frames = read_frames(path.read_bytes(), path.name)
    assert frames, f"{path.name}: empty pack"
    magic, fmt, reserved, pack_id = PACK_HEADER.unpack(frames[0][1])
    assert (magic, fmt, reserved) == (b"HSPK", 1, 0), f"{path.name}: bad pack header"
    assert pack_id.hex() == path.stem, f"{path.name}: header names pack {pack_id.hex()}"
    found = {}
    for offset, payload in frames[1:]:
        kind, _flags, _reserved, _key_id, raw_length, oid = OBJECT_HEADER.unpack_from(payload)
        found[oid] = Location(path, offset, ENVELOPE.size + len(payload), kind, raw_length)
    return found


def read_pack_index(path: Path, pack: Path) -> dict[bytes, Location]:
    frames = read_frames(path.read_bytes(), path.name)
    magic, fmt, reserved, pack_id, size, digest, count = PACK_INDEX_HEADER.unpack(frames[0][1])
    assert (magic, fmt, reserved) == (b"HSIX", 1, 0), f"{path.name}: bad index header"
    assert pack_id.hex() == path.stem, f"{path.name}: names pack {pack_id.hex()}"
    data = pack.read_bytes()
    assert (size, digest) == (len(data), hashlib.sha256(data).digest()), f"{pack.name}: digest"
    found = {}
    for _, payload in frames[1:]:
        assert len(payload) % PACK_INDEX_ENTRY.size == 0, f"{path.name}: partial entry"
        assert len(payload) // PACK_INDEX_ENTRY.size <= 4096, f"{path.name}: frame too full"
        for oid, kind, offset, length, raw in PACK_INDEX_ENTRY.iter_unpack(payload):
            found[oid] = Location(pack, offset, length, kind, raw)
    assert len(found) == count, f"{path.name}: header says {count} entries, has {len(found)}"
    return found


def blob_catalog(root: Path) -> dict[bytes, Location]:
    """id -> location: index files for sealed packs, a frame scan for the open pack."""
    blobs = root / "blobs"
    catalog: dict[bytes, Location] = {}
    for idx in sorted((blobs / "index").glob("[!.]*.idx")):
        pack = blobs / "packs" / f"{idx.stem}.pack"
        indexed = read_pack_index(idx, pack)
        assert indexed == scan_pack(pack), f"{idx.name} does not match the frames of its pack"
        catalog.update(indexed)
    open_packs = sorted((blobs / "open").glob("[!.]*.pack"))
    assert len(open_packs) <= 1, f"more than one open pack: {open_packs}"
    for pack in open_packs:
        catalog.update(scan_pack(pack))
    return catalog


def id_key_for(flags: int, keys: KeyRing) -> bytes | None:
    """Keyed ids for encrypted objects (all of them, or a secrets repository's secrets)."""
    if flags & FLAG_AES:
        assert keys.id_key is not None
        return keys.id_key
    return None


def object_id(kind: int, body: bytes, id_key: bytes | None) -> bytes:
    if kind == KIND_CHUNK:
        hasher = blake3.blake3(body, key=id_key) if id_key else blake3.blake3(body)
        return hasher.digest()
    list_key = blake3.blake3(id_key or b"", derive_key_context=LIST_ID_CONTEXT).digest()
    return blake3.blake3(body, key=list_key).digest()


def read_object(catalog: dict[bytes, Location], oid: bytes, kind: int, keys: KeyRing) -> bytes:
    loc = catalog[oid]
    assert loc.kind == kind, f"object {oid.hex()} has kind {loc.kind}, expected {kind}"
    with loc.pack.open("rb") as f:
        f.seek(loc.offset)
        frame = f.read(loc.frame_length)
    [(_, payload)] = read_frames(frame, f"{loc.pack.name}@{loc.offset}")
    header = payload[: OBJECT_HEADER.size]
    got_kind, flags, reserved, key_id, raw_length, got_id = OBJECT_HEADER.unpack(header)
    assert (got_kind, reserved, raw_length, got_id) == (kind, 0, loc.raw_length, oid), (
        f"{loc.pack.name}@{loc.offset}: header does not match the catalog"
    )
    body = unseal(
        header, flags, key_id, payload[OBJECT_HEADER.size :], keys, ("packs", loc.pack.stem)
    )
    assert len(body) == raw_length, f"{oid.hex()}: {len(body)} bytes, raw length {raw_length}"
    assert object_id(kind, body, id_key_for(flags, keys)) == oid, f"{oid.hex()}: id mismatch"
    return body


def read_blob(root: Path, master: bytes | str | None, blob_id: str) -> bytes:
    keys = load_key_ring(root, read_repository_info(root), master)
    catalog = blob_catalog(root)
    listing = read_object(catalog, bytes.fromhex(blob_id), KIND_LIST, keys)
    size, digest = struct.unpack_from("<Q32s", listing)
    ids = listing[40:]
    assert len(ids) % 32 == 0, f"blob list of {len(ids)} id bytes"
    content = b"".join(
        read_object(catalog, ids[i : i + 32], KIND_CHUNK, keys) for i in range(0, len(ids), 32)
    )
    assert len(content) == size, f"blob has {len(content)} bytes, list says {size}"
    assert hashlib.sha256(content).digest() == digest, "blob content does not match its SHA-256"
    return content


# --- Tests --------------------------------------------------------------------------------

BASE_TS = 1_700_000_000_000_000


def mongo_meta(i: int) -> dict[str, str] | None:
    """Meta of many shapes: shared keys, runs of values, keys on some events, none at all."""
    if i % 13 == 0:
        return None
    meta = {"deployment": "main", "mongo_op": "insert" if i % 7 else "update"}
    if i == 24:
        meta["txn_end"] = "1"
    return meta


def mongo_events(n: int) -> list[ChangeEvent]:
    """Mongo inserts and updates with 300-byte after-images, some in a transaction."""
    return [
        ChangeEvent(
            source=Source.MONGODB,
            namespace=f"db.c{i // 40}",
            key=json.dumps({"_id": {"$oid": f"{i:024x}"}}),
            op=Op.INSERT if i % 7 else Op.UPDATE,
            source_ts=BASE_TS + i * 1000 - (i % 5),
            after=b"\x10\x00\x00\x00" + os.urandom(300),
            position=b"tok" if i % 2 else b"",
            txn="t1" if 10 <= i < 25 else "",
            meta=mongo_meta(i),
        )
        for i in range(n)
    ]


def other_events(image: FileImage) -> list[ChangeEvent]:
    """A file modify, a symlink, a move, a delete and a marker."""
    link = FileImage("", 6, hashlib.sha256(b"target").hexdigest(), 0o777, 9, "target")
    fs, mongo = Source.FILESYSTEM, Source.MONGODB
    return [
        ChangeEvent(fs, "root", "dir/f.bin", Op.MODIFY, BASE_TS + 1, after=image),
        ChangeEvent(fs, "root", "dir/link", Op.CREATE, BASE_TS + 2, after=link),
        ChangeEvent(fs, "root", "b", Op.MOVE, BASE_TS + 3, meta={"old_path": "a"}),
        ChangeEvent(mongo, "db.c0", '{"_id": 1}', Op.DELETE, BASE_TS + 4, txn="t1"),
        ChangeEvent(Source.SYSTEM, "system", "backup-42", Op.MARKER, BASE_TS + 5),
    ]


def normalise(event: ChangeEvent) -> dict[str, Any]:
    out = event._asdict()
    out["source"] = event.source.value
    out["op"] = event.op.value
    if isinstance(event.after, FileImage):
        out["after"] = event.after._asdict()
    return out


def append_in_batches(repo: Repository, events: list[ChangeEvent]) -> None:
    for start in range(0, len(events), 17):
        repo.log.append(events[start : start + 17])


SECRET_ENV = b"OPENAI_API_KEY=sk-test-5d1f0c9a7e3b2d4c6a8f\nMONGO_PASSWORD=pw-Qx93!\n" * 40


@dataclass
class Built:
    """What ``build`` stored: a large ordinary blob and a secret one."""

    content: bytes
    blob_id: str
    secret_content: bytes
    secret_id: str
    secret_sha256: str


def build(
    root: Path, secret: MasterSecret | None, seal_pack: bool, encrypt_all: bool = True
) -> Built:
    """A repository with several sealed segments, one ordinary blob and (when the repository
    has a key ring) one secret blob; each blob has a file event pointing to it.

    A repository with a key ring rotates its data key half-way; the writer picks the new key
    up when it is next opened, so frames and pack objects use both keys.
    """
    content = os.urandom(150 * 1024) + b"hindsight" * (150 * 1024 // 9)
    Repository.init(root, secret, encrypt_all=encrypt_all)
    options: dict[str, Any] = {"writable": True, "segment_max_bytes": 20_000}
    with Repository.open(root, secret, **options) as repo:
        if secret is not None:
            old_secret = repo.blobs.put_bytes(b"OLD_TOKEN=t0k3n-before-rotation\n", secret=True)
        append_in_batches(repo, mongo_events(70))
        if secret is not None:
            assert repo.rotate_key(secret) == 2, "rotation should add data key 2"
    with Repository.open(root, secret, **options) as repo:
        ref = repo.blobs.put_bytes(content)
        hidden = repo.blobs.put_bytes(SECRET_ENV, secret=True) if secret is not None else ref
        repo.blobs.flush()
        if seal_pack:
            repo.blobs.seal()
        image = FileImage(ref.id, len(content), hashlib.sha256(content).hexdigest(), 0o644, 7, None)
        env = FileImage(hidden.id, hidden.size, hidden.sha256, 0o600, 8, None)
        secret_event = ChangeEvent(Source.FILESYSTEM, "root", ".env", Op.MODIFY, BASE_TS, after=env)
        append_in_batches(repo, [*mongo_events(80), *other_events(image), secret_event])
    if secret is not None:
        assert (
            read_blob(root, _master(secret), old_secret.id) == b"OLD_TOKEN=t0k3n-before-rotation\n"
        )
    secret_content = SECRET_ENV if secret is not None else content  # legacy: no secret
    return Built(content, ref.id, secret_content, hidden.id, hidden.sha256)


def _master(secret: MasterSecret) -> bytes | str:
    master = secret.key if secret.key is not None else secret.passphrase
    assert master is not None
    return master


def key_ids_used(root: Path) -> set[int]:
    """The data key ids named by the event batch frames of every segment."""
    used = set()
    for seg in (root / "journal").glob("*.seg"):
        for _, payload in read_frames(seg.read_bytes(), seg.name)[1:]:
            used.add(BATCH_HEADER.unpack_from(payload)[4])
    return used


def wrapping_keys(root: Path, kind: str) -> set[int]:
    """The data key ids that wrap the key files of ``kind``."""
    files = (root / "keys" / kind).glob("[!.]*.key")
    return {json.loads(f.read_text("utf-8"))["wrapped_by"] for f in files}


def object_flags(root: Path) -> dict[bytes, int]:
    """Codec flags of every object in every pack, by id."""
    flags = {}
    for pack in (root / "blobs").rglob("[!.]*.pack"):
        for _, payload in read_frames(pack.read_bytes(), pack.name)[1:]:
            header = OBJECT_HEADER.unpack_from(payload)
            flags[header[5]] = header[1]
    return flags


CASES: dict[str, tuple[bytes | str | None, bool, bool]] = {
    "encrypted-sealed-pack": (os.urandom(32), True, True),
    "encrypted-open-pack": (os.urandom(32), False, True),
    "passphrase-sealed-pack": ("correct horse battery staple", True, True),
    "secrets-sealed-pack": (os.urandom(32), True, False),
    "secrets-open-pack": (os.urandom(32), False, False),
    "secrets-passphrase": ("correct horse battery staple", True, False),
    "legacy-sealed-pack": (None, True, True),
    "legacy-open-pack": (None, False, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_independent_reader_matches_the_api(tmp_path: Path, case: str) -> None:
    master, seal_pack, encrypt_all = CASES[case]
    if master is None:
        secret = None
    elif isinstance(master, bytes):
        secret = MasterSecret(key=master, origin="test")
    else:
        secret = MasterSecret(passphrase=master, origin="test")
    root = tmp_path / "repo"
    built = build(root, secret, seal_pack, encrypt_all)
    with Repository.open(root, secret) as repo:
        expected = [normalise(e) for e in repo.log.read()]

    got = read_journal(root, master)
    sealed = json.loads((root / "journal" / "manifest.json").read_text())["segments"]
    assert len(sealed) >= 2, f"expected at least two sealed segments, got {len(sealed)}"
    assert len(got) == len(expected), f"reader found {len(got)} events, API {len(expected)}"
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == theirs, f"seq {theirs['seq']}: reader {mine} != API {theirs}"

    assert read_blob(root, master, built.blob_id) == built.content, "blob content differs"
    assert read_blob(root, master, built.secret_id) == built.secret_content, "secret differs"
    packs = list((root / "blobs" / ("packs" if seal_pack else "open")).glob("*.pack"))
    assert len(packs) == 1, f"expected one {'sealed' if seal_pack else 'open'} pack: {packs}"
    want_keys = {KEY_ID_FILE} if master is not None and encrypt_all else {0}
    assert key_ids_used(root) == want_keys, f"batches use keys {key_ids_used(root)}"
    if master is not None and encrypt_all:
        assert wrapping_keys(root, "segments") == {1, 2}, "segment keys follow the rotation"
    if master is not None:
        assert wrapping_keys(root, "packs"), "encrypted objects have pack keys"
    if master is not None and not encrypt_all:
        flags = object_flags(root)
        assert flags[bytes.fromhex(built.blob_id)] & FLAG_AES == 0, "ordinary blob in clear"
        assert flags[bytes.fromhex(built.secret_id)] & FLAG_AES, "secret blob encrypted"
        assert built.secret_sha256 == "", "a secret's hash stays out of a clear journal"


def batch_versions(root: Path) -> set[int]:
    """The schema versions named by the event batch frames of every segment."""
    versions = set()
    for seg in (root / "journal").glob("*.seg"):
        for _, payload in read_frames(seg.read_bytes(), seg.name)[1:]:
            versions.add(BATCH_HEADER.unpack_from(payload)[1])
    return versions


def test_reader_of_a_journal_with_batches_of_both_schema_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = MasterSecret(key=os.urandom(32), origin="test")
    root = tmp_path / "repo"
    Repository.init(root, secret)
    options: dict[str, Any] = {"writable": True, "segment_max_bytes": 20_000}
    with monkeypatch.context() as old:  # a journal written while v1 was current
        old.setattr(journal.avro, "CURRENT_SCHEMA_VERSION", 1)
        old.setattr(journal.segments, "CURRENT_SCHEMA_VERSION", 1)
        with Repository.open(root, secret, **options) as repo:
            append_in_batches(repo, mongo_events(70))
    with Repository.open(root, secret, **options) as repo:
        image = FileImage("ab" * 32, 5, "cd" * 32, 0o644, 7, None)
        append_in_batches(repo, [*mongo_events(80), *other_events(image)])
        expected = [normalise(e) for e in repo.log.read()]
    assert batch_versions(root) == {1, 2}, "the journal should hold batches of both versions"
    got = read_journal(root, secret.key)
    assert len(got) == len(expected) == 155, f"reader {len(got)} events, API {len(expected)}"
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == theirs, f"seq {theirs['seq']}: reader {mine} != API {theirs}"
    assert any(e["meta"] and "txn_end" in e["meta"] for e in got[:70]), "v1 meta read"
    assert any(e["meta"] and "txn_end" in e["meta"] for e in got[70:]), "v2 meta read"


@pytest.mark.parametrize("seal_pack", [True, False], ids=["sealed-pack", "open-pack"])
def test_reader_without_the_key_of_a_secrets_repository(tmp_path: Path, seal_pack: bool) -> None:
    root = tmp_path / "repo"
    built = build(root, MasterSecret(key=os.urandom(32), origin="test"), seal_pack, False)
    events = read_journal(root, None)
    env = events[-1]["after"]
    assert events[-1]["key"] == ".env" and env["sha256"] == "", "no hash of the secret"
    assert env["size"] == len(SECRET_ENV) and env["blob"] == built.secret_id
    assert read_blob(root, None, built.blob_id) == built.content, "ordinary blobs read keyless"
    with pytest.raises(LockedSecret):
        read_blob(root, None, built.secret_id)
    plain_ids = {blake3.blake3(SECRET_ENV).digest(), hashlib.sha256(SECRET_ENV).digest()}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"sk-test-5d1f0c9a7e3b2d4c6a8f" not in data, f"{path} holds the secret"
            assert not any(i in data for i in plain_ids), f"{path} holds a plain hash of it"


def test_reader_rejects_a_forged_manifest(tmp_path: Path) -> None:
    key = os.urandom(32)
    root = tmp_path / "repo"
    build(root, MasterSecret(key=key, origin="test"), seal_pack=False)
    path = root / "journal" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["segments"][0]["max_ts"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(AssertionError, match="manifest MAC mismatch"):
        read_journal(root, key)


@pytest.mark.parametrize("encrypt_all", [True, False], ids=["encrypted", "secrets"])
def test_reader_after_dropping_segments_and_collecting_blobs(
    tmp_path: Path, encrypt_all: bool
) -> None:
    master = os.urandom(32)
    secret = MasterSecret(key=master, origin="test")
    root = tmp_path / "repo"
    built = build(root, secret, seal_pack=True, encrypt_all=encrypt_all)
    with Repository.open(root, secret, writable=True) as repo:
        cut = repo.log.manifest.segments[1].first_seq
        assert repo.log.drop_before(cut).first_seq == cut
        repo.blobs.collect([built.blob_id], protect_newer_than_s=0, rewrite_threshold=0.0)
        expected = [normalise(e) for e in repo.log.read()]
    got = read_journal(root, master)
    assert got[0]["seq"] == cut and len(got) == len(expected), "the journal starts at first_seq"
    assert got == expected, "the reader and the API agree after a drop"
    assert read_blob(root, master, built.blob_id) == built.content, "a live blob survives"
    assert bytes.fromhex(built.secret_id) not in blob_catalog(root), "garbage is gone"
    for kind in ("segments", "packs"):
        names = {p.stem for p in (root / "keys" / kind).glob("*.key")}
        live = {p.stem for p in root.glob(f"{'journal' if kind == 'segments' else 'blobs/*'}/*")}
        assert names <= live, f"every {kind} key belongs to a file that still exists"
