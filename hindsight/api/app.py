"""The aiohttp application and the server that runs it (``hindsight serve``, ``hindsight run``)."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hindsight.api import backup_routes, live, openapi, recovery_routes, routes
from hindsight.api.auth import auth_middleware
from hindsight.api.context import CONTEXT, JOBS, ApiContext
from hindsight.api.errors import error_middleware
from hindsight.api.jobs import JobQueue
from hindsight.api.metrics import Metrics
from hindsight.api.routes import METRICS
from hindsight.api.trail import trail_middleware
from journal.errors import ConfigError

__all__ = ["make_app", "serve"]

log = logging.getLogger("hindsight.api")


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot even parse (a client's mistake, or a probe) with a
    traceback; one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed request refused: %s", (exc.message,)
            record.exc_info, record.levelno, record.levelname = None, logging.INFO, "INFO"
        return True


logging.getLogger("aiohttp.server").addFilter(_MalformedRequests())


def make_app(context: ApiContext) -> web.Application:
    """The API: metrics, the audit trail, errors as JSON, authentication, then the routes."""
    metrics = Metrics()
    app = web.Application(
        middlewares=[metrics.middleware, trail_middleware, error_middleware, auth_middleware],
        client_max_size=context.settings.max_body_bytes,
    )
    app[CONTEXT] = context
    app[METRICS] = metrics
    app[JOBS] = JobQueue()
    for module in (routes, backup_routes, recovery_routes, live, openapi):
        module.add_routes(app)
    app.on_shutdown.append(_finish_jobs)
    return app


async def _finish_jobs(app: web.Application) -> None:
    """A stopping server lets running jobs end (they write the repository)."""
    await app[JOBS].wait()


async def serve(context: ApiContext, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; HTTPS when the settings name a certificate and key."""
    settings = context.settings
    runner = web.AppRunner(make_app(context), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=_tls(context))
        try:
            await site.start()
        except OSError as exc:
            where = f"{settings.host}:{settings.port}"
            msg = f"cannot listen on {where}: {exc.strerror}; choose another --host/--port"
            raise ConfigError(msg) from exc
        scheme = "https" if settings.tls_cert else "http"
        log.info("API listening on %s://%s:%d", scheme, settings.host, settings.port)
        await stop.wait()
    finally:
        await runner.cleanup()


def _tls(context: ApiContext) -> ssl.SSLContext | None:
    settings = context.settings
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ConfigError("HTTPS needs both --tls-cert and --tls-key")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate and key: {exc}") from exc
    return tls
