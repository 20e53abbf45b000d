"""``rtcstats-server replay``: stream a stored dump into a collector, as its client did.

Operators prove a deployment before real users arrive: replaying a dump over N
websockets exercises the same path a browser does (upgrade, dialect, handshake,
acknowledgements, close) and the summary says what the collector did with it.

Each dump is sent in the dialect that produced it, whatever layout it is stored in:

- ``3.1_*`` (jitsi clients) and backend pushers: ``{statsSessionId, type, data}``
  envelopes, each connection with its own statsSessionId (in the URL and every
  envelope); clients wait for the server's ``sn`` before sending, as the real client
  does, and end with 3001 (conference left) so the session is finished at once rather
  than held for a resume;
- ``rtcstats#5.0``/``#4.0`` and ``2.0``: the raw arrays, closed with 1000.

Dump lines are sent byte-for-byte (a stats-entry's ``data`` is the stored line), so
a replayed session's dump holds the same event lines as the original; the upgrade
carries the dump's own user agent, so the replayed session keeps its browser.

The summary names every session the replay made: the collector's session id (from the
reason of its closing frame, see ingest/closing.py) and the client's session id. A
collector that cannot be reached at all is one sentence naming the URL, exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import socket
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from rtcstats_server.dumps.codecs import dump_lines, file_chunks
from rtcstats_server.dumps.envelopes import (
    IDENTITY,
    SENT_TYPES,
    SN,
    STATS_ENTRY,
    entry_seq,
    wrap,
)
from rtcstats_server.dumps.layout import (
    JITSI_CLIENTS,
    Scheme,
    default_protocol,
    is_jitsi_protocol,
    is_session_close,
    pusher_protocol,
)
from rtcstats_server.dumps.reader import LINE_LAYOUTS, DumpReader, Span
from rtcstats_server.exceptions import DumpFormatError, RtcstatsError
from rtcstats_server.ingest.closing import session_in_reason
from rtcstats_server.version import installed_version

#: Close codes the replay ends its connections with.
CONFERENCE_LEFT: Final = 3001
NORMAL_CLOSURE: Final = 1000
#: The upgrade's User-Agent when the dump names none (backend pushers have none).
DEFAULT_USER_AGENT: Final = f"rtcstats-server-replay/{installed_version()}"


class ReplayError(RtcstatsError):
    """The file cannot be replayed (no wire form, unreadable)."""


@dataclass(frozen=True)
class Script:
    """What every connection sends: the dialect, the default path and the messages.

    ``arrays`` holds the raw messages of array dialects; ``envelopes`` the
    ``(type, data)`` pairs of 3.1 dialects, rendered per connection with its id.
    """

    layout: str
    subprotocol: str
    path: str
    arrays: list[str] = field(default_factory=list)
    envelopes: list[tuple[str, Any]] = field(default_factory=list)
    #: Highest 3.1 sequence number in the dump (0: none), what a full ack reaches.
    last_seq: int = 0
    #: Damage found while reading (the messages before it are replayed).
    damage: str | None = None
    #: The browser's User-Agent as the dump recorded it (None: the dump has none).
    user_agent: str | None = None
    #: From the dump's first event to its last: how long the original session ran.
    duration_s: float | None = None

    @property
    def uses_envelopes(self) -> bool:
        return is_jitsi_protocol(self.subprotocol)

    @property
    def waits_for_sn(self) -> bool:
        return self.subprotocol in JITSI_CLIENTS

    @property
    def close_code(self) -> int:
        return CONFERENCE_LEFT if self.waits_for_sn else NORMAL_CLOSURE

    def __len__(self) -> int:
        return len(self.envelopes) if self.uses_envelopes else len(self.arrays)

    def messages(self, stats_session_id: str | None) -> Iterator[str]:
        if not self.uses_envelopes:
            yield from self.arrays
            return
        for kind, data in self.envelopes:
            envelope = {"statsSessionId": stats_session_id, "type": kind}
            if data is not None:
                envelope["data"] = data
            yield orjson.dumps(envelope).decode()


# -- reading a dump into a script ----------------------------------------------------------


def _text_lines(reader: DumpReader, path: Path) -> tuple[list[str], str | None]:
    """The lines to send, decompressed: an envelope file's every line, other dumps'
    event lines (after their header); damage ends the list and is returned."""
    if reader.info.layout == "jitsi-envelopes":
        source = dump_lines(file_chunks(path))  # the envelopes themselves are sent
    else:
        source = reader.lines()
    lines: list[str] = []
    try:
        for line in source:
            if line.strip():
                lines.append(line.rstrip(b"\r").decode())
    except (DumpFormatError, UnicodeDecodeError) as exc:
        return lines, f"damaged after line {len(lines)}: {exc}"
    return lines, None


def _sidecar(path: Path) -> dict[str, Any]:
    """A captured stream's ``<name>.meta.json`` (subprotocol, path), when present."""
    name = path.name
    for suffix in (".ws.jsonl", ".jsonl"):
        if name.endswith(suffix):
            meta = path.with_name(name.removesuffix(suffix) + ".meta.json")
            if meta.is_file():
                loaded = orjson.loads(meta.read_bytes())
                return loaded if isinstance(loaded, dict) else {}
    return {}


def _envelopes_from_lines(lines: list[str]) -> tuple[list[tuple[str, Any]], int]:
    """Stored 3.1 dump lines back into what the client sent."""
    envelopes: list[tuple[str, Any]] = []
    last_seq = 0
    for text in lines:
        entry = orjson.loads(text)
        last_seq = max(last_seq, entry_seq(entry) or 0)
        envelopes.append(wrap(text, entry))
    return envelopes, last_seq


def _envelopes_from_stream(lines: list[str]) -> tuple[list[tuple[str, Any]], int, str | None]:
    """A captured or pushed envelope stream; also the pusher's protocol, when it names
    one in an identity."""
    envelopes: list[tuple[str, Any]] = []
    last_seq = 0
    pusher: str | None = None
    for text in lines:
        envelope = orjson.loads(text)
        if type(envelope) is not dict or envelope.get("type") not in SENT_TYPES:
            continue
        kind, data = envelope["type"], envelope.get("data")
        if kind == STATS_ENTRY and type(data) is str:
            last_seq = max(last_seq, entry_seq(orjson.loads(data)) or 0)
        elif kind == IDENTITY:
            last_seq = max(last_seq, entry_seq(data) or 0)
            if type(data) is dict:
                pusher = pusher_protocol(data.get("applicationName")) or pusher
        envelopes.append((kind, data))
    return envelopes, last_seq, pusher


def load_script(path: Path) -> Script:
    """Read ``path`` (any layout the dump reader knows) into what a client would send.

    Blocking: run it in a thread from async code.
    """
    try:
        reader = DumpReader(file_chunks(path))
    except DumpFormatError as exc:
        raise ReplayError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror}") from None
    info = reader.info
    if info.layout not in LINE_LAYOUTS:
        reader.close()
        raise ReplayError(
            f"{path}: a {info.layout} export has no websocket form to replay (it was not streamed)"
        )
    try:
        lines, damage = _text_lines(reader, path)
        script = _script(
            path, info.layout, info.scheme, info.client_protocol, info.metadata, lines, damage
        )
    except orjson.JSONDecodeError as exc:
        raise ReplayError(f"{path}: a line is not JSON ({exc})") from None
    headers = _sidecar(path).get("headers")
    agent = headers.get("user-agent") if isinstance(headers, dict) else None
    agent = info.user_agent or (agent if isinstance(agent, str) else None)
    return replace(script, user_agent=agent, duration_s=_duration_s(path))


def _duration_s(path: Path) -> float | None:
    """The span of the dump's events, read through the one event model (every dialect's
    times, relative or absolute, become epoch milliseconds there)."""
    span = Span()
    for event in DumpReader(file_chunks(path)):
        span.add(event)
    return span.duration_s


def _script(
    path: Path,
    layout: str,
    scheme: Scheme,
    protocol: str | None,
    metadata: dict[str, Any],
    lines: list[str],
    damage: str | None,
) -> Script:
    sidecar = _sidecar(path)
    if layout == "rtcstats-dump":
        events = lines
        if (
            events
            and events[-1].startswith('["close"')
            and is_session_close(orjson.loads(events[-1]))
        ):
            events.pop()
        subprotocol = protocol or default_protocol(scheme)
        url = str(metadata.get("url") or "/")
        if is_jitsi_protocol(subprotocol):
            envelopes, last_seq = _envelopes_from_lines(events)
            return Script(
                layout, subprotocol, url, envelopes=envelopes, last_seq=last_seq, damage=damage
            )
        return Script(layout, subprotocol, url, arrays=events, damage=damage)
    if layout == "jitsi-disk":
        envelopes, last_seq = _envelopes_from_lines(lines)
        url = str(metadata.get("path") or "/")
        return Script(
            layout,
            protocol or "3.1_STANDARD",
            url,
            envelopes=envelopes,
            last_seq=last_seq,
            damage=damage,
        )
    if layout == "jitsi-envelopes":
        envelopes, last_seq, pusher = _envelopes_from_stream(lines)
        subprotocol = str(sidecar.get("subprotocol") or pusher or "3.1_STANDARD")
        url = str(sidecar.get("path") or "/")
        return Script(
            layout, subprotocol, url, envelopes=envelopes, last_seq=last_seq, damage=damage
        )
    subprotocol = str(sidecar.get("subprotocol") or default_protocol(scheme))
    return Script(layout, subprotocol, str(sidecar.get("path") or "/"), arrays=lines, damage=damage)


# -- sending -------------------------------------------------------------------------------


def connection_url(base: str, script: Script, stats_session_id: str | None) -> str:
    """The collector URL for one connection: the operator's path if they gave one,
    else the dump's; 3.1 connections carry their own statsSessionId."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ReplayError(f"URL must be ws://, wss://, http:// or https:// (got {base!r})")
    if parts.path not in ("", "/"):
        path, query = parts.path, parts.query
    else:
        dump = urlsplit(script.path)
        path, query = dump.path or "/", dump.query
    pairs = [(k, v) for k, v in parse_qsl(query) if k not in ("statsSessionId", "isReconnect")]
    if stats_session_id is not None:
        pairs += [("statsSessionId", stats_session_id), ("isReconnect", "false")]
    return urlunsplit((scheme, parts.netloc, path, urlencode(pairs), ""))


class Pacer:
    """Spaces sends of every connection so the total stays at ``rate`` per second."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(self._next, now)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass
class Tally:
    """What happened, for the progress line and the summary."""

    connections: int
    accepted: int = 0
    open: int = 0
    sent: int = 0
    acknowledged: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[str] = field(default_factory=Counter)
    #: Per connection that closed, by its index: the sessions the collector made.
    sessions: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Why the first connection that failed to connect did, in words.
    connect_problem: str | None = None


@dataclass(frozen=True)
class ReplayOptions:
    connections: int = 1
    #: Messages per second over all connections; None: as fast as the collector reads.
    rate: float | None = None
    open_timeout_s: float = 10.0
    #: How long a 3.1 connection waits for the acknowledgement of its last entry.
    ack_timeout_s: float = 5.0
    run_id: str = field(default_factory=lambda: "replay-" + secrets.token_hex(4))


class Replay:
    def __init__(self, script: Script, url: str, options: ReplayOptions) -> None:
        self.script = script
        self.url = url
        self.options = options
        self.tally = Tally(options.connections)
        self.pacer = Pacer(options.rate)
        # validates the URL before any connection is tried
        connection_url(url, script, None)

    def session_id(self, index: int) -> str | None:
        return f"{self.options.run_id}-{index}" if self.script.uses_envelopes else None

    async def run(self) -> Tally:
        await asyncio.gather(*(self._one(i) for i in range(self.options.connections)))
        return self.tally

    async def _one(self, index: int) -> None:
        tally = self.tally
        session_id = self.session_id(index)
        url = connection_url(self.url, self.script, session_id)
        try:
            async with connect(
                url,
                subprotocols=[Subprotocol(self.script.subprotocol)],
                open_timeout=self.options.open_timeout_s,
                user_agent_header=self.script.user_agent or DEFAULT_USER_AGENT,
                max_size=1 << 20,
                proxy=None,  # a smoke test talks to the collector it names, directly
            ) as ws:
                tally.accepted += 1
                tally.open += 1
                try:
                    await self._stream(ws, session_id)
                finally:
                    tally.open -= 1
            tally.close_codes[str(ws.close_code)] += 1
            tally.sessions[index] = {
                "session_id": session_in_reason(ws.close_reason),
                "client_session_id": session_id,
                "close_code": ws.close_code,
            }
        except InvalidStatus as exc:
            tally.refusals[str(exc.response.status_code)] += 1
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            tally.errors[type(exc).__name__] += 1
            if tally.connect_problem is None:
                tally.connect_problem = connect_problem(exc, self.options.open_timeout_s)
        except ReplayError:
            tally.errors["no_sn_from_server"] += 1

    async def _stream(self, ws: ClientConnection, session_id: str | None) -> None:
        tally = self.tally
        acked = 0
        all_acked = asyncio.Event()
        last_seq = self.script.last_seq

        async def read() -> None:
            nonlocal acked
            async for message in ws:
                try:
                    reply = orjson.loads(message)
                    value = int(reply["body"]["value"]) if reply.get("type") == SN else None
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                    continue
                if value is not None and value > acked:
                    tally.acknowledged += value - acked
                    acked = value
                if last_seq and acked >= last_seq:
                    all_acked.set()

        try:
            if self.script.waits_for_sn:
                # The real client sends nothing before the server's first ``sn``.
                first = orjson.loads(await asyncio.wait_for(ws.recv(), self.options.open_timeout_s))
                if not isinstance(first, dict) or first.get("type") != SN:
                    raise ReplayError(f"expected the server's sn, got {first!r}")
            reader = asyncio.create_task(read())
            try:
                for message in self.script.messages(session_id):
                    await self.pacer.wait()
                    await ws.send(message)
                    tally.sent += 1
                if self.script.waits_for_sn and last_seq:
                    # Durable before we leave, as a client trims only acknowledged entries.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(all_acked.wait(), self.options.ack_timeout_s)
            finally:
                await ws.close(code=self.script.close_code)
                await asyncio.wait_for(reader, self.options.open_timeout_s)
        except ConnectionClosed:
            pass  # the collector closed first: its code is in the summary


def connect_problem(exc: BaseException, open_timeout_s: float) -> str:
    """Why a connection could not be made, in a few words."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {open_timeout_s:g} s"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})" if exc.strerror else "unknown host"
    if isinstance(exc, OSError):
        if exc.errno is not None and exc.errno in errno.errorcode:
            return os.strerror(exc.errno).lower()
        return str(exc) or type(exc).__name__
    if isinstance(exc, InvalidURI):
        return "not a websocket URL"
    return f"it did not answer as a websocket server ({exc})"


def summary(script: Script, path: Path, url: str, tally: Tally, elapsed: float) -> dict[str, Any]:
    return {
        "file": str(path),
        "layout": script.layout,
        "dialect": script.subprotocol,
        "url": url,
        "user_agent": script.user_agent,
        "dump_duration_s": script.duration_s,
        "connections": tally.connections,
        "messages_per_connection": len(script),
        "accepted": tally.accepted,
        "refused": sum(tally.refusals.values()),
        "failed": sum(tally.errors.values()),
        "refusals": dict(tally.refusals),
        "errors": dict(tally.errors),
        "sent": tally.sent,
        "acknowledged": tally.acknowledged if script.waits_for_sn and script.last_seq else None,
        "close_codes": dict(tally.close_codes),
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(tally.sent / elapsed, 1) if elapsed > 0 else None,
        "damage": script.damage,
        "sessions": [tally.sessions[index] for index in sorted(tally.sessions)],
    }


def succeeded(script: Script, tally: Tally) -> bool:
    """Every connection accepted, and every one closed the way the replay closed it."""
    return tally.close_codes == Counter({str(script.close_code): tally.connections})


async def _progress(replay: Replay, started: float, interval: float, out: IO[str]) -> None:
    loop = asyncio.get_running_loop()
    last_sent, last_time = 0, started
    while True:
        await asyncio.sleep(interval)
        now = loop.time()
        tally = replay.tally
        rate = (tally.sent - last_sent) / (now - last_time)
        last_sent, last_time = tally.sent, now
        out.write(
            f"replay: {now - started:6.1f}s  open {tally.open}/{tally.connections}  "
            f"sent {tally.sent} ({rate:.0f}/s)  acked {tally.acknowledged}  "
            f"refused {sum(tally.refusals.values())}  failed {sum(tally.errors.values())}\n"
        )
        out.flush()


class Unreachable(ReplayError):
    """No connection to the collector could be made at all."""


async def replay_file(
    path: Path,
    url: str,
    options: ReplayOptions,
    progress: IO[str] | None = None,
    progress_interval_s: float = 1.0,
) -> tuple[dict[str, Any], bool]:
    """Replay ``path`` into ``url``; the summary and whether everything went through.

    Raises ``Unreachable`` when not one connection reached the collector.
    """
    script = await asyncio.to_thread(load_script, path)
    replay = Replay(script, url, options)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ticker: asyncio.Task[None] | None = None
    if progress is not None:
        ticker = asyncio.create_task(_progress(replay, started, progress_interval_s, progress))
    try:
        tally = await replay.run()
    finally:
        if ticker is not None:
            ticker.cancel()
    if tally.connect_problem is not None and not tally.accepted and not tally.refusals:
        raise Unreachable(f"cannot connect to {url}: {tally.connect_problem}")
    return summary(script, path, url, tally, loop.time() - started), succeeded(script, tally)


def main(
    path: Path, url: str, options: ReplayOptions, write: Callable[[str], Any] = sys.stdout.write
) -> int:
    """CLI entry: the summary as JSON on stdout, progress on stderr; 1 if anything failed.

    ``Unreachable`` is left to the caller, which prints its one sentence."""
    result, ok = asyncio.run(replay_file(path, url, options, progress=sys.stderr))
    write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if ok else 1


__all__ = [
    "ReplayError",
    "ReplayOptions",
    "Script",
    "Unreachable",
    "load_script",
    "main",
    "replay_file",
]
