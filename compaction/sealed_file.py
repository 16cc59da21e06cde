"""A seekable encrypted file: Parquet files of an encrypted repository, sealed in chunks.

Parquet readers seek (footer first, then row groups), so a file cannot be one AES-GCM
message. It is cut into fixed-size chunks, each sealed on its own; chunk *i* sits at a
computable offset, so a reader decrypts only the chunks a read touches and memory stays at
one chunk. Each chunk's associated data binds the file's name, the chunk's index and whether
it is the last, so chunks cannot be reordered, swapped between files, or cut off unnoticed.

Layout: a 16-byte header ``"HSSF" | u16 version 1 | u16 reserved | u32 key id | u32 chunk
size``, then the chunks, each ``nonce (12) | ciphertext | tag (16)``; every chunk but the last
holds exactly ``chunk size`` plaintext bytes and the last at least one (an empty file is one
empty last chunk).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path
from typing import BinaryIO

from journal.codec import AesGcm
from journal.errors import AuthError, CorruptionError
from journal.fsutil import write_all

__all__ = ["CHUNK_SIZE", "SealedReader", "SealedWriter"]

MAGIC = b"HSSF"
HEADER = struct.Struct("<4sHHII")
CHUNK_SIZE = 1024 * 1024
OVERHEAD = 12 + 16  # nonce and tag


def _aad(header: bytes, name: str, index: int, last: bool) -> bytes:
    return header + name.encode() + struct.pack("<QB", index, last)


class SealedWriter(io.RawIOBase):
    """Write-only file object that seals what it is given into ``fd`` as chunks.

    ``sha256`` covers the bytes written to disk, so a manifest can check the stored file
    without the key.
    """

    def __init__(self, fd: int, cipher: AesGcm, name: str, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__()
        self._fd, self._cipher, self._name = fd, cipher, name
        self._header = HEADER.pack(MAGIC, 1, 0, cipher.key_id, chunk_size)
        self._chunk_size, self._buffer, self._index = chunk_size, bytearray(), 0
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._emit(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        while len(self._buffer) > self._chunk_size:  # keep one back: it may be the last
            self._seal(bytes(self._buffer[: self._chunk_size]), last=False)
            del self._buffer[: self._chunk_size]
        return len(data)

    def finish(self) -> None:
        """Seal the last chunk; the caller then fsyncs and renames the file."""
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _seal(self, plain: bytes, last: bool) -> None:
        aad = _aad(self._header, self._name, self._index, last)
        self._emit(self._cipher.encrypt(plain, aad))
        self._index += 1

    def _emit(self, data: bytes) -> None:
        write_all(self._fd, data)
        self.sha256.update(data)
        self.size += len(data)


class SealedReader(io.RawIOBase):
    """Read-only, seekable view of the plaintext of a sealed file; one chunk cached."""

    def __init__(self, path: Path, cipher: AesGcm, name: str) -> None:
        super().__init__()
        self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._cipher, self._name = cipher, name
        header = self._f.read(HEADER.size)
        if len(header) < HEADER.size or header[:4] != MAGIC:
            self._f.close()
            raise CorruptionError("not a sealed file (bad header)", path=name)
        _, version, _, self._key_id, self._chunk = HEADER.unpack(header)
        if version != 1 or self._chunk <= 0:
            self._f.close()
            raise CorruptionError(f"unknown sealed file version {version}", path=name)
        self._header = header
        stored = os.fstat(self._f.fileno()).st_size - HEADER.size
        stride = self._chunk + OVERHEAD
        self._chunks = max(1, -(-stored // stride))
        last_stored = stored - (self._chunks - 1) * stride
        if last_stored < OVERHEAD:
            self._f.close()
            raise CorruptionError("sealed file is truncated", path=name)
        self._length = (self._chunks - 1) * self._chunk + last_stored - OVERHEAD
        self._pos, self._cached = 0, (-1, b"")

    @property
    def length(self) -> int:
        """Plaintext length in bytes."""
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._length:
            index, within = divmod(self._pos, self._chunk)
            plain = self._chunk_at(index)
            take = min(len(view) - done, len(plain) - within)
            view[done : done + take] = plain[within : within + take]
            done += take
            self._pos += take
        return done

    def _chunk_at(self, index: int) -> bytes:
        if self._cached[0] == index:
            return self._cached[1]
        stride = self._chunk + OVERHEAD
        self._f.seek(HEADER.size + index * stride)
        sealed = self._f.read(stride)
        last = index == self._chunks - 1
        aad = _aad(self._header, self._name, index, last)
        try:
            plain = self._cipher.decrypt(self._key_id, sealed, aad)
        except AuthError as exc:
            raise CorruptionError(
                f"chunk {index} does not authenticate ({exc.reason})",
                path=self._name,
                offset=HEADER.size + index * stride,
            ) from exc
        self._cached = (index, plain)
        return plain

    def close(self) -> None:
        self._f.close()
        super().close()
