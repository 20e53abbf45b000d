"""The front door of the public port: websocket upgrades to ingest, the rest to aiohttp.

Every connection starts here. Its first request's head is read (bounded in size and
time); a websocket upgrade is handed to the ingest handler, which from then on owns
the socket with its own framing (``ingest/websocket.py``); anything else goes, with
the bytes read so far, to aiohttp's HTTP server, as if it had accepted the connection
itself. Why not let aiohttp serve upgrades too: a websocket it serves keeps its
request, middleware chain, message queue and handler task for the socket's life, and
costs a future and a task switch per message; ingest is most of the collector's work.

A connection aiohttp serves is closed after its response (``Connection: close``), so a
later upgrade always arrives as the first request of a new connection, here. Clients
that pool connections (aiohttp's, Python's) open a new one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Callable
from typing import Final, Protocol, cast

from aiohttp import web

from rtcstats_server.ingest.upgrade import UpgradeRequest

log = logging.getLogger(__name__)

#: The most a first request's head may take before it goes to aiohttp unread (whose
#: own limits refuse it: 8190-byte lines and fields).
MAX_HEAD: Final = 16 * 1024


class Ingest(Protocol):
    """What the front door hands an upgrade to (``ingest.handler.IngestHandler``)."""

    def take(
        self, request: UpgradeRequest, head: bytes, early: bytes, transport: asyncio.Transport
    ) -> None:
        """The connection is the handler's from here (its reading paused); ``early``:
        bytes that came after the head (a client that did not wait for our answer)."""


class FrontDoor(asyncio.Protocol):
    """One accepted connection until its first request's head is read."""

    __slots__ = ("_buffer", "_timer", "doors", "transport")

    def __init__(self, doors: Doors) -> None:
        self.doors = doors
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods, not the base class
        self.transport = cast(asyncio.Transport, transport)
        # A client that sends no whole head in time is cut (slowloris).
        self._timer = asyncio.get_running_loop().call_later(
            self.doors.head_timeout_s, self.transport.abort
        )

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._to_http()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        assert transport is not None
        head = self._buffer[:end]
        request = UpgradeRequest.parse(head, *self.doors.peer(transport))
        ingest = self.doors.ingest()
        if request is None or ingest is None:
            self._to_http()
            return
        transport.pause_reading()
        early = self._buffer[end + 4 :]
        self._buffer = b""
        ingest.take(request, head, early, transport)

    def _to_http(self) -> None:
        """aiohttp takes the connection, as if it had accepted it (it closes it after
        its answer: see ``Doors.served_by_http``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        assert transport is not None
        protocol = self.doors.http()
        self.doors.handed.add(transport)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data, self._buffer = self._buffer, b""
        protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buffer = b""


def _no_http() -> asyncio.Protocol:
    raise RuntimeError("a front door opened before its HTTP server was set up")


class Doors:
    """What every front door of one server shares."""

    def __init__(self, ingest: Callable[[], Ingest | None], head_timeout_s: float) -> None:
        #: aiohttp's protocol factory (``web.Server``), once its runner is set up.
        self.http: Callable[[], asyncio.Protocol] = _no_http
        #: The ingest handler once the app has started (None before: aiohttp answers).
        self.ingest = ingest
        self.head_timeout_s = head_timeout_s
        #: Connections handed over to aiohttp: their answers close them.
        self.handed: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def __call__(self) -> FrontDoor:
        return FrontDoor(self)

    @staticmethod
    def peer(transport: asyncio.Transport) -> tuple[str, bool]:
        """The TCP peer's address, and whether the socket is a Unix one."""
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            return "", True
        peername = transport.get_extra_info("peername")
        return (str(peername[0]) if peername else ""), False

    def served_by_http(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """A response on a handed-over connection closes it (module docstring)."""
        if request.transport in self.handed:
            response.force_close()
            # aiohttp wrote its Connection header before this hook: said here too.
            response.headers["Connection"] = "close"


class DoorSite(web.SockSite):
    """aiohttp's site for a bound socket, with the front door as the protocol."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, doors: Doors) -> None:
        super().__init__(runner, sock)
        self._doors = doors

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._doors, sock=self._sock, backlog=self._backlog)


class UnixDoorSite(web.UnixSite):
    """The same for a Unix socket (a worker's ingest socket: http/workers.py)."""

    def __init__(self, runner: web.BaseRunner, path: str, doors: Doors) -> None:
        super().__init__(runner, path)
        self._doors = doors

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._doors, self._path, backlog=self._backlog)
