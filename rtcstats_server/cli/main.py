"""``rtcstats-server``: serve, check-config, replay (and the commands of other issues).

Exit codes: 0 success, 1 the collector could not start (or a command failed; one line
says why), 2 bad configuration or usage (the message names the key).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import typing
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from rtcstats_server.compiled import analysis_build
from rtcstats_server.config import ApiToken, Config, load_config, masked_dump
from rtcstats_server.exceptions import ConfigError, StartupError
from rtcstats_server.version import installed_version

log = logging.getLogger("rtcstats_server")

#: The scopes an API token may have (``api.tokens[].scope``).
TOKEN_SCOPES = typing.get_args(ApiToken.model_fields["scope"].annotation)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtcstats-server", description="Self-hosted rtcstats collector."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"rtcstats-server {installed_version()} (analysis: {analysis_build()})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the collector")
    serve.add_argument("--config", type=Path, help="YAML configuration file")
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port (server.port)")
    serve.add_argument("--data-dir", type=Path, help="data directory (server.data_dir)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes on the port (server.workers; 0: one per CPU, 1: no supervisor)",
    )
    # Given by the supervisor to the workers it starts (cli/supervisor.py), not by users.
    for internal in ("--worker-index", "--worker-count", "--worker-of", "--ready-fd"):
        serve.add_argument(internal, type=int, help=argparse.SUPPRESS)
    check = commands.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("file", type=Path, nargs="?", help="YAML configuration file")
    check.add_argument(
        "--print-defaults",
        action="store_true",
        help="print every key with its default and meaning, as a commented YAML file",
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also check that storage, database and upstream are reachable (exit 1 if not)",
    )
    fwd = commands.add_parser("forward", help="(re)send sessions to rtcstats.com now")
    fwd.add_argument("--config", type=Path, help="YAML configuration file")
    fwd.add_argument("--data-dir", type=Path, help="data directory (server.data_dir)")
    which = fwd.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", action="append", default=[], help="session id (repeatable)")
    which.add_argument("--since", help="every session started since (ISO 8601 date or time)")
    fwd.add_argument(
        "--state",
        choices=["pending", "uploading", "uploaded", "failed"],
        help="with --since: only sessions whose upload is in this state",
    )
    fwd.add_argument("--no-wait", action="store_true", help="queue them and return")
    fwd.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    ana = commands.add_parser(
        "analyze",
        help="run analysis worker processes until SIGTERM, or re-analyse stored sessions",
    )
    ana.add_argument("--config", type=Path, help="YAML configuration file")
    ana.add_argument("--data-dir", type=Path, help="data directory (server.data_dir)")
    ana.add_argument(
        "--workers",
        type=int,
        help="worker processes (default analysis.workers: CPUs - 1, at least 1)",
    )
    ana.add_argument(
        "--since", help="re-analyse every stored session started since (ISO 8601 date or time)"
    )
    ana.add_argument("--until", help="with --since: ... and started before this")
    ana.add_argument("--no-wait", action="store_true", help="with --since: queue them and return")
    ana.add_argument(
        "--timeout", type=float, default=3600.0, help="with --since: seconds to wait (3600)"
    )
    tok = commands.add_parser(
        "hash-token",
        help="print the api.tokens entry (YAML) for an API token read from stdin",
    )
    tok.add_argument(
        "--generate", action="store_true", help="make a new random token; print it and its entry"
    )
    tok.add_argument("--name", default="", help="who holds the token (shown in logs)")
    tok.add_argument("--scope", choices=TOKEN_SCOPES, default="read", help="what it may do (read)")
    summ = commands.add_parser("summarize", help="print the quality summary of a dump as JSON")
    summ.add_argument("file", type=Path, help="dump file: ours (.zst), jitsi or rtcstats, any")
    summ.add_argument("--config", type=Path, help="YAML configuration file (quality thresholds)")
    feat = commands.add_parser("features", help="print the features of a dump as JSON")
    feat.add_argument("file", type=Path, help="dump file: ours (.zst), jitsi or rtcstats, any")
    feat.add_argument(
        "--config", type=Path, help="YAML configuration file (geo databases, connection cap)"
    )
    conv = commands.add_parser(
        "convert", help="write a dump of any dialect as an rtcstats fileFormat 3 dump"
    )
    conv.add_argument("file", type=Path, help="dump file: ours (.zst), jitsi, 2.0, exports, any")
    conv.add_argument(
        "--to", choices=["rtcstats"], required=True, help="rtcstats: fileFormat 3 (rtcstats tools)"
    )
    conv.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    rep = commands.add_parser("replay", help="replay a dump into a running collector")
    rep.add_argument("file", type=Path, help="dump: ours (.zst), jitsi, rtcstats, .ws.jsonl")
    rep.add_argument("url", help="collector URL, e.g. ws://127.0.0.1:8080 (a path overrides)")
    rep.add_argument("--connections", type=int, default=1, help="parallel sessions (1)")
    rep.add_argument("--rate", type=float, help="messages per second over all connections")
    return parser


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    if args.data_dir is not None:
        server["data_dir"] = args.data_dir
    if args.workers is not None:
        server["workers"] = args.workers
    return {"server": server} if server else {}


def serve(config: Config, args: argparse.Namespace | None = None, argv: Sequence[str] = ()) -> int:
    """Run until SIGTERM/SIGINT (0); 1 with one line when the collector cannot start.

    With more than one worker (``server.workers``), this process supervises that many
    copies of itself (cli/supervisor.py); each copy gets ``--worker-index``.
    """
    from rtcstats_server.cli.allocator import pin_mmap_threshold
    from rtcstats_server.cli.event_loop import event_loop
    from rtcstats_server.cli.workers import (
        adopt_orphans,
        node_id,
        worker_config,
        worker_count,
    )
    from rtcstats_server.http.startup import ensure_writable, prepare
    from rtcstats_server.http.viewer.signing import load_key
    from rtcstats_server.http.workers import WorkerInfo
    from rtcstats_server.logs import configure_logging

    index = args.worker_index if args is not None else None
    configure_logging(config.logging, index)
    worker: WorkerInfo | None = None
    ready_fd: int | None = None
    try:
        if args is not None and args.worker_index is not None:
            from rtcstats_server.cli.supervisor import watch_parent

            if None in (args.worker_count, args.worker_of, args.ready_fd):
                sys.stderr.write("rtcstats-server: --worker-index is the supervisor's flag\n")
                return 2

            watch_parent(args.worker_of)
            worker = WorkerInfo(args.worker_index, args.worker_count, str(args.worker_of))
            ready_fd = args.ready_fd
            config = worker_config(config, worker.index, worker.count)
        else:
            count = worker_count(config)
            ensure_writable(config.server.data_dir)
            if count > 1:
                # Workers bind with SO_REUSEPORT, which a second supervisor's workers
                # could share unnoticed; bound once without it here, a port that is
                # anyone's fails now, in one line, as for a single process.
                prepare(config).close()
            adopt_orphans(config.server.data_dir, count)
            if count > 1:
                # Made here, before any worker starts, so they read one id and one key.
                node_id(config, 0)
                load_key(config)
                return _supervise(config, count, argv)
        pin_mmap_threshold()  # before any thread or large buffer: see allocator.py
        # before the app's imports: a busy port fails fast
        listeners = prepare(config, reuse_port=worker is not None)
        from rtcstats_server.cli.supervisor import tell_ready
        from rtcstats_server.http.app import serve_until_signalled

        def ready() -> None:
            if ready_fd is not None:
                tell_ready(ready_fd)

        with event_loop(config) as runner:
            runner.run(serve_until_signalled(config, listeners, worker, ready))
    except StartupError as exc:
        log.error("not started: %s", exc)
        return 1
    log.info("stopped")
    return 0


def _iso_date(flag: str, value: str) -> datetime | None:
    """A command line date (UTC when it names no zone); None (and one line) if not one."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        sys.stderr.write(f"rtcstats-server: {flag} {value!r} is not an ISO date\n")
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _supervise(config: Config, count: int, argv: Sequence[str]) -> int:
    """Start ``count`` workers running this same command line (cli/supervisor.py)."""
    from rtcstats_server.cli.supervisor import supervise
    from rtcstats_server.cli.workers import limits_share

    command = [sys.executable, "-m", "rtcstats_server", *argv]
    log.info(
        "rtcstats-collector %s: %d workers on port %d, data in %s, analysis: %s",
        installed_version(),
        count,
        config.server.port,
        config.server.data_dir.resolve(),
        analysis_build(),
    )
    share = limits_share(config.limits, count)
    log.info(
        "connection limits per worker (1/%d of limits.*, rounded up; 0: none): "
        "%d open, %d per address, %g new per address per s (burst %d)",
        count,
        share.max_connections,
        share.max_connections_per_ip,
        share.connections_per_ip_per_s,
        share.connection_burst_per_ip,
    )
    return supervise(command, count, config.server.shutdown_grace_s)


def _forward(args: argparse.Namespace) -> int:
    from rtcstats_server.cli.forward import forward

    overrides = {"server": {"data_dir": args.data_dir}} if args.data_dir else {}
    config = load_config(args.config, overrides=overrides)
    since = None
    if args.since:
        since = _iso_date("--since", args.since)
        if since is None:
            return 2
    return asyncio.run(
        forward(config, args.session, since, args.state, not args.no_wait, args.timeout)
    )


def _analyze(args: argparse.Namespace) -> int:
    """Workers until SIGTERM (0), or a re-analysis (0 all done, 1 not all, 3 off)."""
    from rtcstats_server.analysis.processes import worker_count
    from rtcstats_server.cli.analyze import reanalyse, run_workers
    from rtcstats_server.logs import configure_logging

    if args.workers is not None and args.workers < 1:
        sys.stderr.write("rtcstats-server: --workers must be at least 1\n")
        return 2
    if args.until and not args.since:
        sys.stderr.write("rtcstats-server: --until needs --since\n")
        return 2
    overrides = {"server": {"data_dir": args.data_dir}} if args.data_dir else {}
    config = load_config(args.config, overrides=overrides)
    configure_logging(config.logging)
    workers = args.workers or max(1, worker_count(config.analysis))
    if not args.since:
        return asyncio.run(run_workers(config, workers))
    since = _iso_date("--since", args.since)
    until = _iso_date("--until", args.until) if args.until else None
    if since is None or (args.until and until is None):
        return 2
    return asyncio.run(reanalyse(config, since, until, workers, not args.no_wait, args.timeout))


def _summarize(args: argparse.Namespace) -> int:
    """Exit 0 with the summary (damage is reported inside it), 1 if unreadable."""
    import orjson

    from rtcstats_server.analysis.summary import summarize_file

    config = load_config(args.config)
    try:
        summary = summarize_file(args.file, config.quality)
    except OSError as exc:
        sys.stderr.write(f"rtcstats-server: cannot read {args.file}: {exc.strerror}\n")
        return 1
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _features(args: argparse.Namespace) -> int:
    """Exit 0 with the features, 1 if the file cannot be read as a dump."""
    import orjson

    from rtcstats_server.analysis.features.extract import extract_features
    from rtcstats_server.analysis.geo import open_locator
    from rtcstats_server.dumps.reader import open_dump
    from rtcstats_server.exceptions import DumpFormatError

    config = load_config(args.config)
    locator = open_locator(config.geo)
    try:
        reader = open_dump(args.file)
        features = extract_features(reader, reader.info, locator, config.quality)
    except OSError as exc:
        sys.stderr.write(f"rtcstats-server: cannot read {args.file}: {exc.strerror}\n")
        return 1
    except DumpFormatError as exc:
        sys.stderr.write(f"rtcstats-server: {args.file}: {exc}\n")
        return 1
    finally:
        if locator is not None:
            locator.close()
    sys.stdout.write(orjson.dumps(features, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _convert(args: argparse.Namespace) -> int:
    """Exit 0 with the converted dump written, 1 if the file cannot be read as a dump
    (an ``--output`` file is then not left behind, half written)."""
    import os

    from rtcstats_server.dumps.encode import write_rtcstats
    from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge

    target: Path | None = args.output
    partial = None if target is None else target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        if partial is None:
            write_rtcstats(args.file, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with partial.open("wb") as out:
                write_rtcstats(args.file, out)
            partial.replace(typing.cast(Path, target))
    except BrokenPipeError:
        # The reader of standard output stopped (``| head``): nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        sys.stderr.write(f"rtcstats-server: {exc.filename or args.file}: {exc.strerror}\n")
        return 1
    except (DumpFormatError, DumpTooLarge) as exc:
        sys.stderr.write(f"rtcstats-server: {args.file}: {exc}\n")
        return 1
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    return 0


def _check_connect(config: Config) -> int:
    """One line per backend after the config; 1 if any is unreachable."""
    from rtcstats_server.cli.check import check_all

    checks = asyncio.run(check_all(config))
    sys.stdout.write("# reachability\n")
    for check in checks:
        sys.stdout.write(check.line + "\n")
    return 1 if any(check.error for check in checks) else 0


def _check_config(args: argparse.Namespace) -> int:
    """The effective configuration (secrets masked), or every default with --print-defaults."""
    if args.print_defaults:
        from rtcstats_server.cli.config_reference import render_yaml

        sys.stdout.write(render_yaml())
        return 0
    from rtcstats_server.http.viewer.advice import viewer_warnings

    config = load_config(args.file)
    sys.stdout.write(yaml.safe_dump(masked_dump(config), sort_keys=False))
    # warnings go to stderr: stdout stays the configuration, usable as a file
    for key, problem in viewer_warnings(config):
        sys.stderr.write(f"rtcstats-server: warning: {key} {problem}\n")
    return _check_connect(config) if args.connect else 0


def _replay(args: argparse.Namespace) -> int:
    from rtcstats_server.cli.replay import ReplayError, ReplayOptions, Unreachable
    from rtcstats_server.cli.replay import main as replay_main

    if args.connections < 1 or (args.rate is not None and args.rate <= 0):
        sys.stderr.write("rtcstats-server: --connections and --rate must be positive\n")
        return 2
    try:
        return replay_main(args.file, args.url, ReplayOptions(args.connections, args.rate))
    except Unreachable as exc:
        sys.stderr.write(f"rtcstats-server: {exc}\n")
        return 1
    except ReplayError as exc:
        sys.stderr.write(f"rtcstats-server: {exc}\n")
        return 2


def _hash_token(args: argparse.Namespace) -> int:
    """The token comes from stdin, not argv: argv shows in ``ps`` and shell history.

    Prints the ``api.tokens`` entry to paste (YAML); with ``--generate``, the new token
    first, in comments, since it is shown only this once.
    """
    import secrets

    from pydantic import ValidationError

    from rtcstats_server.http.access import hash_token

    if args.generate:
        token = secrets.token_urlsafe(32)
    else:
        token = sys.stdin.readline().strip()
        if not token:
            sys.stderr.write("rtcstats-server: give the token on stdin (or use --generate)\n")
            return 2
    try:
        entry = ApiToken(name=args.name, sha256=hash_token(token), scope=args.scope)
    except ValidationError:
        sys.stderr.write("rtcstats-server: --name is longer than 64 characters\n")
        return 2
    if args.generate:
        sys.stdout.write(
            "# the token: send it as 'Authorization: Bearer <token>'. It is shown only now\n"
            f"# and stored nowhere (the configuration keeps its hash):\n#   {token}\n"
        )
    sys.stdout.write("# paste under api.tokens in the configuration:\n")
    sys.stdout.write(yaml.safe_dump([entry.model_dump()], sort_keys=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            config = load_config(args.config, overrides=_serve_overrides(args))
            return serve(config, args, argv)
        if args.command == "forward":
            return _forward(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "hash-token":
            return _hash_token(args)
        if args.command == "summarize":
            return _summarize(args)
        if args.command == "features":
            return _features(args)
        if args.command == "convert":
            return _convert(args)
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "replay":
            return _replay(args)
    except ConfigError as exc:
        sys.stderr.write(config_report(exc))
        return 2
    return 2


def config_report(exc: ConfigError) -> str:
    """Every problem of a configuration, one line each (``serve`` and ``check-config``)."""
    if len(exc.problems) == 1:
        return f"rtcstats-server: configuration error: {exc.key}: {exc.problem}\n"
    lines = [f"rtcstats-server: {len(exc.problems)} configuration errors:"]
    lines += [f"  {key}: {problem}" for key, problem in exc.problems]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
