"""The frame pipeline: compress, then encrypt. Each stage is optional (``None``), never a flag.

Every sealed body records which stages ran (``flags``) and which key encrypted it
(``key_id``), so a reader needs no configuration to open old frames. The caller's header
bytes are passed as associated data: AES-GCM then authenticates them along with the body.

Key ids: a ring data key's id (1, 2, ...: data written before per-file keys), or
``KEY_ID_FILE``: the key of the file (segment or pack) the frame is in. A codec is bound to
one file's key with ``codec.with_cipher(cipher.for_file(load_key))``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from journal.errors import AuthError, CorruptionError
from journal.keys import KeyRing

__all__ = ["FLAG_AES_GCM", "FLAG_ZSTD", "KEY_ID_FILE", "AesGcm", "Codec", "Zstd"]

FLAG_ZSTD = 0x01
FLAG_AES_GCM = 0x02
KEY_ID_FILE = 0x8000_0000
"""Key id of data encrypted under its own file's key; ring key ids stay below it."""
NONCE_BYTES = 12
MAX_DECOMPRESSED = 512 * 1024 * 1024
SAMPLE_FROM = 16 * 1024
SAMPLE_BYTES = 4096
INCOMPRESSIBLE_RATIO = 0.97
_FAST = zstandard.ZstdCompressor(level=1)  # one-shot compress of a sample: thread-safe


class Zstd:
    """zstd at a fixed level; one (de)compressor per thread, as the library requires."""

    def __init__(self, level: int = 3) -> None:
        self.level = level
        self._local = threading.local()

    def compress(self, data: bytes) -> bytes:
        """Compress one frame body."""
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level)
        return bytes(c.compress(data))

    def worth_trying(self, data: bytes) -> bool:
        """False when a sample of ``data`` does not shrink at the fastest level (random-like)."""
        if len(data) < SAMPLE_FROM:
            return True
        sample = data[:SAMPLE_BYTES]
        return len(_FAST.compress(sample)) < len(sample) * INCOMPRESSIBLE_RATIO

    def decompress(self, data: bytes | memoryview) -> bytes:
        """Decompress one frame body; damaged input is a CorruptionError."""
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        try:
            return bytes(d.decompress(data, max_output_size=MAX_DECOMPRESSED))
        except zstandard.ZstdError as exc:
            raise CorruptionError(f"zstd cannot decompress the frame: {exc}") from exc


class AesGcm:
    """AES-256-GCM with a random 96-bit nonce per frame.

    It encrypts under the ring's active key, or, bound to one file with ``for_file``, under
    that file's own key (``KEY_ID_FILE``). Either opens frames that name a ring key.
    """

    _aeads: dict[int, AESGCM]  # the ring's keys, set on the root cipher only
    _ring: KeyRing

    def __init__(self, ring: KeyRing) -> None:
        self._root = self  # holds the ring; every cipher bound to a file shares it
        self._file_key: Callable[[], bytes] | None = None
        self._file_aead: AESGCM | None = None
        self.use(ring)

    def use(self, ring: KeyRing) -> None:
        """Switch to ``ring`` (after a rotation): its active key wraps and encrypts from now on."""
        root = self._root
        root._aeads = {kid: AESGCM(key) for kid, key in ring.keys.items()}
        root._ring = ring

    @property
    def ring(self) -> KeyRing:
        """The key ring in use."""
        return self._root._ring

    def for_file(self, load: Callable[[], bytes]) -> AesGcm:
        """A cipher for one file: it encrypts under the key ``load`` returns (called once, at
        first use; it raises when the key is gone) and opens ring-key frames as this does."""
        bound = object.__new__(AesGcm)
        bound._root, bound._file_key, bound._file_aead = self._root, load, None
        return bound

    @property
    def key_id(self) -> int:
        """Id of the key new frames are encrypted with."""
        return KEY_ID_FILE if self._file_key is not None else self._root._ring.active

    def encrypt(self, data: bytes, aad: bytes) -> bytes:
        """nonce || ciphertext || tag."""
        nonce = os.urandom(NONCE_BYTES)
        if self._file_key is not None:
            return nonce + self._file().encrypt(nonce, data, aad)
        root = self._root
        return nonce + root._aeads[root._ring.active].encrypt(nonce, data, aad)

    def decrypt(self, key_id: int, data: bytes | memoryview, aad: bytes | memoryview) -> bytes:
        """Authenticate and decrypt; a wrong key or any tampering raises AuthError."""
        if key_id == KEY_ID_FILE:
            if self._file_key is None:
                raise AuthError("frame is encrypted under its file's own key, which was not given")
            return _open(self._file(), data, aad)
        aead = self._root._aeads.get(key_id)
        if aead is None:
            raise AuthError(f"frame was encrypted with data key {key_id}, which this key lacks")
        return _open(aead, data, aad)

    def _file(self) -> AESGCM:
        if self._file_aead is None:  # a race only loads the same key twice
            assert self._file_key is not None
            self._file_aead = AESGCM(self._file_key())
        return self._file_aead


def _open(aead: AESGCM, data: bytes | memoryview, aad: bytes | memoryview) -> bytes:
    try:
        return aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad)
    except InvalidTag:
        raise AuthError(
            "authentication tag did not verify: the frame was altered or the key is wrong"
        ) from None


@dataclass(frozen=True, slots=True)
class Codec:
    """Compress-then-encrypt pipeline for frame bodies."""

    compressor: Zstd | None = None
    cipher: AesGcm | None = None

    def with_cipher(self, cipher: AesGcm) -> Codec:
        """This codec encrypting with ``cipher`` (a file's own key) instead."""
        return replace(self, cipher=cipher)

    @property
    def flags(self) -> int:
        """Flags that ``seal`` will record."""
        return (FLAG_ZSTD if self.compressor else 0) | (FLAG_AES_GCM if self.cipher else 0)

    @property
    def key_id(self) -> int:
        """Key id that ``seal`` will record (0 when unencrypted)."""
        return self.cipher.key_id if self.cipher else 0

    def seal(self, data: bytes, aad: bytes) -> bytes:
        """Encode a body; the caller records ``flags`` and ``key_id`` in its header."""
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data, aad)
        return data

    def compress_if_worth_it(self, data: bytes) -> tuple[int, bytes]:
        """Compress unless ``data`` is incompressible; the flag to record, and the bytes.

        For content of unknown kind (file chunks): media and archives do not shrink, and
        compressing them would cost time now and at every restore.
        """
        if self.compressor is None or not self.compressor.worth_trying(data):
            return 0, data
        packed = self.compressor.compress(data)
        return (FLAG_ZSTD, packed) if len(packed) < len(data) else (0, data)

    def encrypt(self, data: bytes, aad: bytes) -> tuple[int, bytes]:
        """Encrypt when this codec has a cipher; the flag to record, and the bytes."""
        return (FLAG_AES_GCM, self.cipher.encrypt(data, aad)) if self.cipher else (0, data)

    def open(
        self, flags: int, key_id: int, data: bytes | memoryview, aad: bytes | memoryview
    ) -> bytes | memoryview:
        """Decode a body sealed with ``flags`` and ``key_id`` (``data`` itself when it was
        neither compressed nor encrypted)."""
        if flags & FLAG_AES_GCM:
            if self.cipher is None:
                raise AuthError("data is encrypted; open the repository with its key")
            data = self.cipher.decrypt(key_id, data, aad)
        if flags & FLAG_ZSTD:
            data = (self.compressor or Zstd()).decompress(data)
        if flags & ~(FLAG_ZSTD | FLAG_AES_GCM):
            raise CorruptionError(f"unknown codec flags {flags:#x}")
        return data
