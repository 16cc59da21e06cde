"""Stored objects: what one pack frame holds, and how an object's id is derived.

An object is a data chunk or a blob list. Its frame payload is a fixed header followed by the
body sealed by the codec, with the header as associated data, so AES-GCM authenticates the
type, length and id along with the content::

    kind u8 | codec flags u8 | reserved u16 | key id u32 | raw length u32 | id 32 bytes

Ids are BLAKE3: keyed with the repository's id key when there is one (ids then leak nothing
about content), plain otherwise. Blob lists use a key derived from the id key, so no data
chunk can ever share an id with a list, whatever bytes it holds.

A store seals *ordinary* objects with its main codec and *secret* objects (the contents of
files classed as secrets) with a codec that always encrypts, naming them with keyed ids.
Where the main codec encrypts, the two are the same. The flags of an object say which one
sealed it: an AES-GCM object in a store whose main codec does not encrypt is a secret one.

Encrypted objects are sealed under the key of the pack they are in (``FileKeys``), so
deleting a pack can destroy its key; moving an object to another pack re-encrypts it
(``reseal_object``). Objects written before pack keys name a ring key and stay readable.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import blake3

from journal.codec import FLAG_AES_GCM, Codec
from journal.errors import AuthError, ConfigError, CorruptionError, RepositoryError
from journal.filekeys import PACKS, FileKeys

__all__ = [
    "ID_BYTES",
    "KIND_DATA",
    "KIND_LIST",
    "LIST_HEAD",
    "OBJECT_HEADER",
    "SECRETS_LOCKED",
    "ObjectCodec",
    "ObjectHeader",
    "ObjectIds",
    "StoreCodecs",
    "bare_reason",
    "checked_by_decoding",
    "decode_object",
    "encode_object",
    "parse_header",
    "reseal_object",
    "seal_object",
]

ID_BYTES = 32
KIND_DATA = 1
KIND_LIST = 2
KIND_NAMES = {KIND_DATA: "data chunk", KIND_LIST: "blob list"}
OBJECT_HEADER = struct.Struct("<BBHII32s")
# A blob list body: content size u64 | content SHA-256, then the chunk ids in order.
LIST_HEAD = struct.Struct("<Q32s")
LIST_KEY_CONTEXT = "hindsight 2024 blob list id v1"
SECRETS_LOCKED = (
    "secret file contents are encrypted: give the repository key with --key-file, "
    "$HINDSIGHT_KEY or $HINDSIGHT_PASSPHRASE"
)
NO_KEY_RING = (
    "this repository was created without a key ring, so it cannot store secret files "
    "(.env, *.pem, *credentials*, ...) encrypted; create a new repository with "
    "`hindsight init`, which always makes a key, and protect the files there"
)


class ObjectHeader(NamedTuple):
    """The clear-text header of one stored object."""

    kind: int
    flags: int
    key_id: int
    raw_len: int
    id: bytes


class ObjectIds:
    """Derives object ids; one instance per repository id key."""

    def __init__(self, id_key: bytes | None) -> None:
        if id_key is not None and len(id_key) != ID_BYTES:
            raise ConfigError(f"the id key must be {ID_BYTES} bytes, got {len(id_key)}")
        self._key = id_key
        self._list_key = blake3.blake3(id_key or b"", derive_key_context=LIST_KEY_CONTEXT).digest()

    def data_id(self, data: bytes | memoryview) -> bytes:
        """Id of a data chunk."""
        h = blake3.blake3(data, key=self._key) if self._key else blake3.blake3(data)
        return bytes(h.digest())

    def list_id(self, body: bytes | memoryview) -> bytes:
        """Id of a blob list (domain-separated from data ids by its own key)."""
        return bytes(blake3.blake3(body, key=self._list_key).digest())

    def of(self, kind: int, body: bytes | memoryview) -> bytes:
        """Id of an object of ``kind``."""
        return self.list_id(body) if kind == KIND_LIST else self.data_id(body)


class ObjectCodec(NamedTuple):
    """How one class of objects is sealed and named: a codec and its id derivation."""

    codec: Codec
    ids: ObjectIds


class StoreCodecs:
    """The ordinary and the secret object codec of one store, and the choice between them.

    ``secret`` is None when the store cannot seal secrets: its repository's key ring was not
    unlocked (``locked``: AuthError) or it has none (legacy: RepositoryError). When the
    ordinary codec encrypts, secrets are sealed like everything else.
    """

    def __init__(
        self,
        ordinary: ObjectCodec,
        secret: ObjectCodec | None,
        locked: bool,
        keys: FileKeys | None = None,
    ) -> None:
        if secret is not None and secret.codec.cipher is None:
            raise ConfigError("the codec for secret objects must encrypt")
        self.ordinary = ordinary
        self.secret = ordinary if ordinary.codec.cipher is not None else secret
        self.locked = locked
        if self.secret is not None and keys is None:
            raise ConfigError("a store that encrypts needs file_keys: each pack has its own key")
        self.keys = keys
        self._bound: dict[str, ObjectCodec] = {}  # pack id -> the secret codec under its key
        self._writing = ""  # the pack whose bound codec can encrypt (its key file exists)

    @property
    def secrets_unreadable(self) -> bool:
        """Whether secret objects may exist that this store cannot open (no key given)."""
        return self.separate and self.secret is None and self.locked

    def bind(self, oc: ObjectCodec, pack_id: str) -> ObjectCodec:
        """``oc`` under the key of ``pack_id`` (read on first use); as is if it does not encrypt."""
        if oc.codec.cipher is None:
            return oc
        bound = self._bound.get(pack_id)
        if bound is None:
            assert self.keys is not None
            cipher = self.keys.cipher(PACKS, pack_id)
            bound = self._bound[pack_id] = ObjectCodec(oc.codec.with_cipher(cipher), oc.ids)
        return bound

    def bind_for_write(self, oc: ObjectCodec, pack_id: str) -> ObjectCodec:
        """``bind``, for appending to ``pack_id``: its key file is created if it has none."""
        if oc.codec.cipher is None:
            return oc
        if self._writing != pack_id:
            assert self.keys is not None
            cipher = self.keys.writer_cipher(PACKS, pack_id)
            self._bound[pack_id] = ObjectCodec(oc.codec.with_cipher(cipher), oc.ids)
            self._writing = pack_id
        return self._bound[pack_id]

    def reseal(self, payload: bytes, src: str, dst: str, path: str, offset: int) -> bytes:
        """An object of pack ``src`` made ready to append to pack ``dst``: re-encrypted under
        ``dst``'s key if it is encrypted (AuthError without the key), else unchanged."""
        flags = parse_header(payload, path, offset).flags
        if not flags & FLAG_AES_GCM:
            return payload
        source = self.for_flags(flags, src)
        assert self.secret is not None  # for_flags raised otherwise
        return reseal_object(payload, source, self.bind_for_write(self.secret, dst), path, offset)

    def forget(self, pack_id: str) -> None:
        """Drop the cached key of a deleted pack."""
        self._bound.pop(pack_id, None)
        if self._writing == pack_id:
            self._writing = ""

    @property
    def separate(self) -> bool:
        """Whether secrets are sealed differently from ordinary objects."""
        return self.ordinary.codec.cipher is None

    def for_put(self, secret: bool) -> ObjectCodec:
        """The codec a new object is sealed with; raises when secrets cannot be sealed."""
        if not secret:
            return self.ordinary
        if self.secret is None:
            raise AuthError(SECRETS_LOCKED) if self.locked else RepositoryError(NO_KEY_RING)
        return self.secret

    def is_secret(self, flags: int) -> bool:
        """Whether an object with these codec flags is a secret object of a separate codec."""
        return self.separate and bool(flags & FLAG_AES_GCM)

    def for_flags(self, flags: int, pack_id: str) -> ObjectCodec:
        """The codec that opens an object of ``pack_id`` stored with ``flags``; AuthError
        without its key."""
        if not self.is_secret(flags):
            return self.bind(self.ordinary, pack_id)
        if self.secret is None:
            if self.locked:
                raise AuthError(SECRETS_LOCKED)
            raise AuthError("object is encrypted, but this repository has no key ring")
        return self.bind(self.secret, pack_id)


def encode_object(codec: Codec, kind: int, raw_id: bytes, body: bytes) -> bytes:
    """The frame payload for one object: header, then the body sealed under it.

    Compression is decided per object (incompressible chunks are stored as they are), so
    the header's flags say what was done; the header is then the AES-GCM associated data.
    """
    zflag, data = codec.compress_if_worth_it(body)
    return seal_object(codec, kind, raw_id, zflag, data, len(body))


def seal_object(
    codec: Codec, kind: int, raw_id: bytes, zflag: int, data: bytes, raw_len: int
) -> bytes:
    """``encode_object`` after compression (``zflag``, ``data``): header, encrypted body."""
    flags = zflag | (FLAG_AES_GCM if codec.cipher else 0)
    header = OBJECT_HEADER.pack(kind, flags, 0, codec.key_id, raw_len, raw_id)
    return header + codec.encrypt(data, header)[1]


def reseal_object(
    payload: bytes, source: ObjectCodec, target: ObjectCodec, path: str, offset: int
) -> bytes:
    """An encrypted object's payload re-encrypted from ``source``'s key under ``target``'s,
    to move it to another pack (authenticated on the way); others are returned unchanged."""
    header = parse_header(payload, path, offset)
    if not header.flags & FLAG_AES_GCM:
        return payload
    old, new = source.codec.cipher, target.codec.cipher
    assert old is not None and new is not None, "an encrypted object needs encrypting codecs"
    aad = payload[: OBJECT_HEADER.size]
    try:
        data = old.decrypt(header.key_id, payload[OBJECT_HEADER.size :], aad)
    except AuthError as exc:
        raise AuthError(exc.reason, path=path, offset=offset) from exc
    head = OBJECT_HEADER.pack(header.kind, header.flags, 0, new.key_id, header.raw_len, header.id)
    return head + new.encrypt(data, head)


def parse_header(payload: bytes | memoryview, path: str, offset: int) -> ObjectHeader:
    """The header of an object frame; CorruptionError when it is malformed."""
    if len(payload) < OBJECT_HEADER.size:
        raise CorruptionError("object frame is shorter than its header", path=path, offset=offset)
    kind, flags, _, key_id, raw_len, raw_id = OBJECT_HEADER.unpack_from(payload)
    header = ObjectHeader(kind, flags, key_id, raw_len, raw_id)
    if header.kind not in KIND_NAMES:
        raise CorruptionError(f"unknown object kind {header.kind}", path=path, offset=offset)
    return header


def checked_by_decoding(payload: bytes | memoryview) -> bool:
    """Whether ``decode_object`` checks every byte of this payload, so its frame checksum
    need not be computed: the body against the id (and, encrypted, the tag, which covers
    the header too), kind, length and id by comparison, flags by decoding. The reserved
    field, and an unencrypted object's key id, are never used: only zero there is checked."""
    if len(payload) < OBJECT_HEADER.size:
        return False
    _, flags, reserved, key_id, _, _ = OBJECT_HEADER.unpack_from(payload)
    return reserved == 0 and (bool(flags & FLAG_AES_GCM) or key_id == 0)


def decode_object(
    codecs: StoreCodecs, payload: bytes | memoryview, path: str, offset: int, pack_id: str
) -> tuple[ObjectHeader, bytes | memoryview]:
    """Open an object frame of pack ``pack_id``; check its body against its length and id.

    The object's flags choose the codec and id derivation (ordinary or secret).
    """
    header = parse_header(payload, path, offset)
    aad, sealed = payload[: OBJECT_HEADER.size], payload[OBJECT_HEADER.size :]
    codec, ids = codecs.for_flags(header.flags, pack_id)  # a missing key is no damage
    try:
        body = codec.open(header.flags, header.key_id, sealed, aad)
    except (CorruptionError, AuthError) as exc:
        raise type(exc)(exc.reason, path=path, offset=offset) from exc
    name = KIND_NAMES[header.kind]
    if len(body) != header.raw_len:
        msg = f"{name} decodes to {len(body)} bytes, its header says {header.raw_len}"
        raise CorruptionError(msg, path=path, offset=offset)
    if ids.of(header.kind, body) != header.id:
        msg = f"{name} {header.id.hex()} does not hash to its id"
        raise CorruptionError(msg, path=path, offset=offset)
    return header, body


def bare_reason(exc: Exception, path: str) -> str:
    """An error's message without the ``(path at offset N)`` suffix a Problem shows anyway."""
    text = str(exc)
    cut = text.rfind(f" ({path}")
    return text[:cut] if cut > 0 and text.endswith(")") else text
