"""The frame pipeline: compress, then encrypt. Each stage is optional (``None``), never a flag.

Every sealed body records which stages ran (``flags``) and which data key encrypted it
(``key_id``), so a reader needs no configuration to open old frames. The caller's header
bytes are passed as associated data: AES-GCM then authenticates them along with the body.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from journal.errors import AuthError, CorruptionError
from journal.keys import KeyRing

__all__ = ["FLAG_AES_GCM", "FLAG_ZSTD", "AesGcm", "Codec", "Zstd"]

FLAG_ZSTD = 0x01
FLAG_AES_GCM = 0x02
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

    def decompress(self, data: bytes) -> bytes:
        """Decompress one frame body; damaged input is a CorruptionError."""
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        try:
            return bytes(d.decompress(data, max_output_size=MAX_DECOMPRESSED))
        except zstandard.ZstdError as exc:
            raise CorruptionError(f"zstd cannot decompress the frame: {exc}") from exc


class AesGcm:
    """AES-256-GCM with a random 96-bit nonce per frame, under the ring's active key."""

    def __init__(self, ring: KeyRing) -> None:
        self.use(ring)

    def use(self, ring: KeyRing) -> None:
        """Switch to ``ring`` (after a rotation): its active key encrypts from now on."""
        self._aeads = {kid: AESGCM(key) for kid, key in ring.keys.items()}
        self.ring = ring

    @property
    def key_id(self) -> int:
        """Id of the key new frames are encrypted with."""
        return self.ring.active

    def encrypt(self, data: bytes, aad: bytes) -> bytes:
        """nonce || ciphertext || tag."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aeads[self.ring.active].encrypt(nonce, data, aad)

    def decrypt(self, key_id: int, data: bytes, aad: bytes) -> bytes:
        """Authenticate and decrypt; a wrong key or any tampering raises AuthError."""
        aead = self._aeads.get(key_id)
        if aead is None:
            raise AuthError(f"frame was encrypted with data key {key_id}, which this key lacks")
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

    def open(self, flags: int, key_id: int, data: bytes, aad: bytes) -> bytes:
        """Decode a body sealed with ``flags`` and ``key_id``."""
        if flags & FLAG_AES_GCM:
            if self.cipher is None:
                raise AuthError("data is encrypted; open the repository with its key")
            data = self.cipher.decrypt(key_id, data, aad)
        if flags & FLAG_ZSTD:
            data = (self.compressor or Zstd()).decompress(data)
        if flags & ~(FLAG_ZSTD | FLAG_AES_GCM):
            raise CorruptionError(f"unknown codec flags {flags:#x}")
        return data
