"""One exception tree for all of Hindsight; the CLI maps each class to an exit code.

    HindsightError                  anything Hindsight reports on purpose
    ├── ConfigError                 bad config file, CLI argument or API input
    ├── RepositoryError             no repository, wrong format version, locked, full
    │   ├── NotFound                a key, blob, segment or checkpoint that does not exist
    │   └── JournalLocked           another process (e.g. the daemon) is the journal's writer
    ├── CorruptionError             stored bytes fail a checksum or decode (names file + offset)
    ├── AuthError                   wrong key or passphrase, or ciphertext that was tampered with
    └── SourceUnavailable           a protected source (MongoDB, a directory) cannot be reached

Third-party exceptions are translated where they cross into Hindsight, with ``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "CorruptionError",
    "HindsightError",
    "JournalLocked",
    "NotFound",
    "RepositoryError",
    "SourceUnavailable",
]


class HindsightError(Exception):
    """Root of every error Hindsight raises deliberately; its message names problem and fix.

    ``path`` (relative to the repository) and ``offset`` locate the problem when it has a
    place; ``reason`` is the message without that location.
    """

    def __init__(self, message: str, *, path: str = "", offset: int | None = None) -> None:
        where = f" ({path}" + (f" at offset {offset}" if offset is not None else "") + ")"
        super().__init__(message + (where if path else ""))
        self.reason = message
        self.path = path
        self.offset = offset


class ConfigError(HindsightError):
    """Configuration or user input is invalid; nothing was changed."""


class RepositoryError(HindsightError):
    """The repository is missing, locked, of an unknown format, or cannot be written."""


class NotFound(RepositoryError):
    """The requested key, blob, segment or checkpoint does not exist."""


class JournalLocked(RepositoryError):
    """Another process holds the journal's writer lock; ask it, or wait for it to stop."""


class CorruptionError(HindsightError):
    """Stored bytes failed verification; ``path`` and ``offset`` locate the damage."""


class AuthError(HindsightError):
    """A key does not unlock the repository, or an authentication tag did not verify."""


class SourceUnavailable(HindsightError):
    """A protected source cannot be reached right now; capture retries, the CLI reports."""
