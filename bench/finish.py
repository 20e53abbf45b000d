#!/usr/bin/env python3
"""Event-loop CPU of a session's record writes and finish, on the embedded store.

Starts the collector in this process (``start_server``: the app with its hooks as
deployed, data dir on tmpfs) and drives sessions straight through its
``SessionManager``, without sockets: a session opens, its lines are appended (the
rtcstats-js 2.4 capture, ``--repeat`` times, 1,940 lines by default as in
``bench/ingest``'s load), then its client closes and the finish runs (close line,
last frame, the dump's move, the final record, the hooks' queueing).

What is timed is the event-loop thread's CPU (``time.thread_time``) in the store
calls and the finish of each session: the record's creation and any flush the
appends asked for (``settle``) and the whole ``disconnected`` call. The appends
themselves are not timed (the same code before and after any change of the store).
The process CPU over the same calls (``time.process_time``: also the store's own
thread) is printed beside it. ``--batch`` sessions finish together, as 200 sockets
of the load do; each round is one fresh server.

    python bench/finish.py [--sessions 200] [--rounds 5] [--quality]

``BENCH_CODE=DIR`` runs the code of another checkout (see ``ROOT``).
``--quality`` keeps the analysis on (its job is queued at every finish) with no
analysis worker, so only the queueing is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: BENCH_CODE=DIR imports rtcstats_server from DIR instead (``git archive`` of the code
#: before a change there): rounds of both, alternated, on the same load.
sys.path[:0] = [os.environ.get("BENCH_CODE", str(ROOT)), str(ROOT)]

from rtcstats_server.config import build_config  # noqa: E402
from rtcstats_server.dialects.base import DumpLine, Handshake  # noqa: E402
from rtcstats_server.http.app import start_server, stop_server  # noqa: E402
from rtcstats_server.http.keys import MANAGER  # noqa: E402
from rtcstats_server.sessions.connection import Connection  # noqa: E402
from rtcstats_server.sessions.live import Client, LiveSession, SessionManager  # noqa: E402
from tests.services.collector import free_port  # noqa: E402
from tests.services.shared import FIXTURES  # noqa: E402

CAPTURE = FIXTURES / "captured" / "rtcstats-js-2.4.0-loopback-call.ws.jsonl"
CLIENT = Client(
    dialect="2.0",
    client_session_id=None,
    sends_acks=False,
    resumable=False,
    is_reconnect=False,
    file_format=2,
    relative_time=False,
)
HANDSHAKE = Handshake(
    path="/bench",
    query={},
    subprotocol="2.0",
    user_agent="bench",
    origin="",
    remote="127.0.0.1",
)


class ClosingConnection(Connection):
    """Closes as soon as the manager asks (the socket side of a finish)."""

    __slots__ = ()

    def changed(self) -> None:
        if self.close_request is not None:
            self.ended()


async def opened(
    manager: SessionManager, lines: list[str], flush_every: int, clock: list[float]
) -> Any:
    """A session with every line appended; the settles it asked for are timed."""
    connection = ClosingConnection()
    session, _ = await manager.connect(CLIENT, HANDSHAKE, connection)
    assert isinstance(session, LiveSession)
    for n, text in enumerate(lines, 1):
        if n % flush_every == 0:  # the sweeper's periodic flush: untimed
            await manager.flush(session)
        if manager.append(session, DumpLine(text)):
            t0, p0 = time.thread_time(), time.process_time()
            await manager.settle(session)
            clock[0] += time.thread_time() - t0
            clock[1] += time.process_time() - p0
    return session, connection


async def one_round(
    args: argparse.Namespace, lines: list[str], data_dir: Path
) -> tuple[float, float]:
    tree: dict[str, Any] = {
        "server": {"data_dir": str(data_dir), "host": "127.0.0.1", "port": free_port()},
        "quality": {"enabled": args.quality},
        "analysis": {"workers": 0},
        "privacy": {"obfuscate_ip_addresses": True},
    }
    config = build_config(tree, environ={})
    runner = await start_server(config)
    try:
        manager: SessionManager = runner.app[MANAGER]
        clock = [0.0, 0.0]
        done = 0
        while done < args.sessions:
            batch = [
                await opened(manager, lines, args.flush_every, clock)
                for _ in range(min(args.batch, args.sessions - done))
            ]
            # the finishes of a batch overlap, as those of sockets closing together do:
            # timed as a whole
            t0, p0 = time.thread_time(), time.process_time()
            await asyncio.gather(*(manager.disconnected(s, c, 1000, final=True) for s, c in batch))
            clock[0] += time.thread_time() - t0
            clock[1] += time.process_time() - p0
            done += len(batch)
        stored = len(list((data_dir / "dumps").rglob("*.rtcstats.zst")))
        if stored != args.sessions:
            raise SystemExit(f"stored {stored} dumps of {args.sessions}")
        return clock[0] / args.sessions, clock[1] / args.sessions
    finally:
        await stop_server(runner)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20, help="captures per session")
    parser.add_argument("--batch", type=int, default=20, help="sessions finishing together")
    parser.add_argument(
        "--flush-every",
        type=int,
        default=1000,
        help="lines between the sweeper's flushes (2 s of a socket of the load)",
    )
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--tmp", default="/dev/shm")
    args = parser.parse_args()
    # the server's log lines are formatted and written, as a deployment's are
    logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler(os.devnull)])
    lines = CAPTURE.read_text().splitlines() * args.repeat
    loop_ms: list[float] = []
    proc_ms: list[float] = []
    for n in range(args.rounds + 1):  # the first round warms up
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            loop_s, proc_s = await one_round(args, lines, Path(tmp))
        if n:
            loop_ms.append(loop_s * 1000)
            proc_ms.append(proc_s * 1000)
    print(
        f"sessions {args.sessions} x {len(lines)} lines, batch {args.batch}, "
        f"quality {'on' if args.quality else 'off'}, {args.rounds} rounds"
    )
    print(
        f"loop thread  ms/session median {statistics.median(loop_ms):.3f} "
        f"({min(loop_ms):.3f}-{max(loop_ms):.3f})"
    )
    print(
        f"process      ms/session median {statistics.median(proc_ms):.3f} "
        f"({min(proc_ms):.3f}-{max(proc_ms):.3f})"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
