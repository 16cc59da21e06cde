"""``hindsight run``: the daemon in the foreground, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from capture.mongo_state import KnownMongo
from hindsight.alerts import Alerter
from hindsight.api.app import serve
from hindsight.api.context import ApiContext, ApiSettings
from hindsight.backup_service import BackupService
from hindsight.cli.common import add_key_file, config_from
from hindsight.config import Config
from hindsight.daemon import Daemon, install_signal_handlers
from hindsight.wiring import alert_settings, file_roots, mongo_captures, open_repository
from journal.errors import ConfigError

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``run`` command."""
    p = commands.add_parser("run", parents=[common], help="protect continuously (the daemon)")
    add_key_file(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start capture for every configured source; stop cleanly on SIGINT/SIGTERM."""
    config = config_from(args)
    roots = file_roots(config)
    if not roots and not config.sources.mongodb:
        raise ConfigError(
            f"{config.path} protects nothing: add a [[sources.filesystem]] or "
            "[[sources.mongodb]] table (or run `hindsight init --protect DIR --mongodb URI`)"
        )
    level = logging.DEBUG if args.debug else getattr(logging, config.monitoring.log_level.upper())
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    with open_repository(config, writable=True, key_file=args.key_file) as repo:
        for note in repo.log.notes + repo.blobs.recovery_notes:
            logging.getLogger("hindsight.daemon").warning("recovery: %s", note)
        known_mongo = KnownMongo()
        daemon = Daemon(
            repo,
            roots,
            mongo=mongo_captures(config, repo.log, known_mongo),
            known_mongo=known_mongo,
            service=BackupService(config, repo),
            schedule=dataclasses.asdict(config.backup.schedule),
            scan_interval_s=config.backup.scan_interval_s,
            status_interval_s=config.monitoring.status_interval_s,
            alerter=Alerter(alert_settings(config)),
        )
        try:
            asyncio.run(_main(daemon, api_context(config, args.key_file)))
        finally:
            for capture in daemon.mongo:
                capture.close()
    return 0


async def _main(daemon: Daemon, api: ApiContext | None) -> None:
    """The daemon, and the HTTP API beside it when ``[api] enabled``; both stop together."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    if api is None:
        await daemon.run(stop)
        return
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(serve(api, stop))
        tasks.create_task(daemon.run(stop))


def api_context(config: Config, key_file: Path | None) -> ApiContext | None:
    """The API's context when the config enables it (``[api] enabled``), else None."""
    if not config.api.enabled:
        return None
    return ApiContext(config, ApiSettings.of(config), key_file=key_file)
