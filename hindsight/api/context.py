"""What every request handler needs: the configuration, the tokens, the repository."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from hindsight.api.jobs import JobQueue
from hindsight.api.ratelimit import RateLimiter
from hindsight.config import Config
from hindsight.status_report import status_report
from hindsight.tokens import TokenStore
from hindsight.wiring import open_repository
from journal.repository import Repository

__all__ = ["CONTEXT", "JOBS", "ApiContext", "ApiSettings"]

T = TypeVar("T")
log = logging.getLogger("hindsight.api")
STATUS_TTL_S = 1.0  # a status this fresh is answered again, not rebuilt


@dataclass(frozen=True)
class ApiSettings:
    """Where and how the API serves."""

    host: str = "127.0.0.1"
    port: int = 3000
    rate_limit_per_minute: int = 600
    max_body_bytes: int = 1024 * 1024
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def of(cls, config: Config) -> ApiSettings:
        """The settings the config's ``[api]`` table gives (TLS files relative to it)."""
        api, base = config.api, config.path.parent
        return cls(
            api.host,
            api.port,
            api.rate_limit_per_minute,
            api.max_body_kib * 1024,
            base / api.tls_cert if api.tls_cert else None,
            base / api.tls_key if api.tls_key else None,
        )


@dataclass
class ApiContext:
    """Shared by the handlers of one server. Repository work runs in threads, each opening
    the repository read-only, so a daemon writing it is never blocked and every answer sees
    what it has written."""

    config: Config
    settings: ApiSettings = field(default_factory=ApiSettings)
    key_file: Path | None = None
    tokens: TokenStore = field(init=False)
    limiter: RateLimiter = field(init=False)
    _status: tuple[float, dict[str, Any], bytes] | None = None
    _status_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _rebuild: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.config.storage.repository)
        self.limiter = RateLimiter(self.settings.rate_limit_per_minute)

    @contextmanager
    def repository(self) -> Iterator[Repository]:
        """The repository, read-only, for one piece of work."""
        with open_repository(self.config, key_file=self.key_file) as repo:
            yield repo

    async def run(self, work: Callable[[Repository], T]) -> T:
        """``work`` on the repository, in a thread."""

        def opened() -> T:
            with self.repository() as repo:
                return work(repo)

        return await asyncio.to_thread(opened)

    async def status(self) -> dict[str, Any]:
        """The status, at most ``STATUS_TTL_S`` old plus one rebuild: an older one is answered
        while a single rebuild runs in the background, so no request waits for it (only the
        very first does)."""
        return (await self._cached())[0]

    async def status_json(self) -> bytes:
        """The status as JSON, encoded once per rebuild (not once per request)."""
        return (await self._cached())[1]

    async def _cached(self) -> tuple[dict[str, Any], bytes]:
        if self._status is None:
            async with self._status_lock:
                if self._status is None:
                    await self._rebuilt()
            assert self._status is not None, "the first build raised, or it is here"
            return self._status[1:]
        stale = time.monotonic() - self._status[0] > STATUS_TTL_S
        if stale and (self._rebuild is None or self._rebuild.done()):
            self._rebuild = asyncio.create_task(self._rebuilt(background=True))
        return self._status[1:]

    async def _rebuilt(self, *, background: bool = False) -> None:
        def built(repo: Repository) -> tuple[dict[str, Any], bytes]:
            report = status_report(self.config, repo)
            return report, json.dumps(report).encode()

        try:
            report, encoded = await self.run(built)
        except Exception:
            if not background:
                raise
            log.exception("rebuilding the status failed; the next request tries again")
            return
        self._status = (time.monotonic(), report, encoded)


CONTEXT = web.AppKey("context", ApiContext)
JOBS = web.AppKey("jobs", JobQueue)
