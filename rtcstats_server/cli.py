"""``rtcstats-server``: serve, check-config.

Exit codes: 0 success, 2 bad configuration or usage (the message names the key).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from rtcstats_server.config import Config, load_config, masked_dump
from rtcstats_server.exceptions import ConfigError

log = logging.getLogger("rtcstats_server")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtcstats-server", description="Self-hosted rtcstats collector."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the collector")
    serve.add_argument("--config", type=Path, help="YAML configuration file")
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port (server.port)")
    serve.add_argument("--data-dir", type=Path, help="data directory (server.data_dir)")
    check = commands.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("file", type=Path, nargs="?", help="YAML configuration file")
    return parser


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    if args.data_dir is not None:
        server["data_dir"] = args.data_dir
    return {"server": server} if server else {}


def serve(config: Config) -> int:
    from rtcstats_server.app import build_app
    from rtcstats_server.logs import configure_logging

    configure_logging(config.logging)
    app = build_app(config)
    log.info(
        "rtcstats-collector listening on %s:%d, data in %s",
        config.server.host,
        config.server.port,
        config.server.data_dir.resolve(),
    )
    web.run_app(
        app,
        host=config.server.host,
        port=config.server.port,
        shutdown_timeout=config.server.shutdown_grace_s,
        print=None,
        access_log=None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            config = load_config(args.config, overrides=_serve_overrides(args))
            return serve(config)
        if args.command == "check-config":
            config = load_config(args.file)
            sys.stdout.write(yaml.safe_dump(masked_dump(config), sort_keys=False))
            return 0
    except ConfigError as exc:
        sys.stderr.write(f"rtcstats-server: configuration error: {exc}\n")
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
