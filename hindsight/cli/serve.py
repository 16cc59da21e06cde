"""``hindsight serve``: the HTTP API on its own, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from hindsight.api.app import serve
from hindsight.api.context import ApiContext, ApiSettings
from hindsight.cli.common import add_key_file, config_from
from hindsight.daemon import install_signal_handlers

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``serve`` command."""
    p = commands.add_parser("serve", parents=[common], help="serve the HTTP API")
    p.add_argument("--host", help="address to listen on (default: [api] host, 127.0.0.1)")
    p.add_argument("--port", type=_port, help="port (default: [api] port, 3000)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="certificate: serve HTTPS (default: [api] tls_cert)")  # fmt: skip
    p.add_argument("--tls-key", type=Path, metavar="FILE",
                   help="the certificate's private key (default: [api] tls_key)")  # fmt: skip
    add_key_file(p)
    p.set_defaults(handler=run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return port


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    config = config_from(args)
    level = logging.DEBUG if args.debug else getattr(logging, config.monitoring.log_level.upper())
    logging.basicConfig(
        stream=sys.stderr, level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = ApiSettings.of(config)
    settings = dataclasses.replace(
        settings,
        host=args.host or settings.host,
        port=args.port or settings.port,
        tls_cert=args.tls_cert or settings.tls_cert,
        tls_key=args.tls_key or settings.tls_key,
    )
    asyncio.run(_serve(ApiContext(config, settings, key_file=args.key_file)))
    return 0


async def _serve(context: ApiContext) -> None:
    stop = asyncio.Event()
    install_signal_handlers(stop)
    await serve(context, stop)
