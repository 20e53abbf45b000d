"""A resume that lands on the wrong worker is relayed to the worker that has it.

Under ``serve --workers N`` the kernel picks a worker for every new connection, so a
jitsi client that reconnects (``isReconnect=true``) usually lands on another worker
than the one holding its live session. That worker asks its siblings, over their
Unix sockets, which one holds the session; if one does, it opens the same upgrade to
that sibling (its ingest socket, ``workers.WorkerInfo.ingest_socket``) and moves
frames both ways for the rest of the connection. The holder sees an ordinary resume:
it answers ``sn`` from the session, drops duplicates by seq, writes the one dump and
finishes the one record. The relaying worker only copies frames; its cost is paid
only by reconnected sockets, and only until they reconnect again (a new connection
may land on the holder itself).

Why relay rather than move the session: a live session is an open dump file, timers,
a decoder's state and a record owned by one node id; moving all of it between
processes, with a crash possible at every step, is a larger surface than copying
frames. A session is final, as in one process, when its holder says so.

The holder learns the client's address from ``X-Rtcstats-Relayed-For``, believed only
on its Unix ingest socket (another worker of the same supervisor is the only caller
there: abstract sockets are visible to this network namespace only).
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import aiohttp
from aiohttp import web
from yarl import URL

from rtcstats_server.config import Config
from rtcstats_server.http.workers import (
    RELAYED_FOR,
    WORKER_HEADER,
    SiblingConnector,
    WorkerInfo,
    connect_unix,
)
from rtcstats_server.ingest.upgrade import UpgradeRequest
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.live import Client

log = logging.getLogger(__name__)

#: How long a sibling may take to say whether it holds a session.
ASK_TIMEOUT_S = 2.0


class WorkerRelay:
    """The ``ingest.handler.Elsewhere`` of one worker."""

    def __init__(self, worker: WorkerInfo, config: Config, metrics: Metrics) -> None:
        self.worker = worker
        self.config = config
        self.metrics = metrics

    def relayed_for(self, request: UpgradeRequest) -> str | None:
        """Believed only on the Unix ingest socket (see ``workers.relayed_address``)."""
        return request.headers.get(RELAYED_FOR.lower()) if request.via_unix else None

    async def holder(self, client: Client) -> int | None:
        """The sibling holding ``client``'s live session, if one does."""
        siblings = [i for i in range(self.worker.count) if i != self.worker.index]
        answers = await asyncio.gather(*(self._holds(i, client) for i in siblings))
        return next((i for i, yes in zip(siblings, answers, strict=True) if yes), None)

    async def _holds(self, index: int, client: Client) -> bool:
        assert client.client_session_id is not None
        connector = SiblingConnector(path=self.worker.metrics_socket(index))
        timeout = aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)
        query = {"client": client.client_session_id, "dialect": client.dialect}
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                async with http.get("http://worker/holds", params=query) as response:
                    return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False  # restarting: its sessions are being recovered, not resumable

    async def relay(
        self,
        request: UpgradeRequest,
        sent: bytes,
        client_ip: str,
        client: Client,
        transport: asyncio.Transport,
    ) -> bool:
        """Splice the client's connection to the holder's ingest socket: the upgrade
        as the client sent it (with the client's address added), then every byte both
        ways until either side closes. The holder speaks the websocket; this worker
        only copies."""
        holder = await self.holder(client)
        if holder is None:
            return False
        ours = _ClientSide(transport)
        try:
            connected, _ = await connect_unix(
                lambda: _HolderSide(ours, self.worker.index), self.worker.ingest_socket(holder)
            )
            upstream = cast(asyncio.Transport, connected)
        except OSError as exc:
            log.warning("resume of %s not relayed: %r", client.client_session_id, exc)
            return False
        if transport.is_closing():
            upstream.close()
            return True  # the client left meanwhile: nothing to serve here either
        ours.upstream = upstream
        upstream.write(with_relayed_for(sent, client_ip))
        transport.set_protocol(ours)
        transport.resume_reading()
        self.metrics.relayed.inc()
        log.info("session of %s: resume relayed to worker %d", client.client_session_id, holder)
        return True


def with_relayed_for(sent: bytes, client_ip: str) -> bytes:
    """The upgrade's bytes with ``X-Rtcstats-Relayed-For`` naming the client; one the
    client wrote itself is dropped (the holder believes the header on this socket)."""
    head, _, rest = sent.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    name = RELAYED_FOR.lower().encode() + b":"
    kept = [line for line in lines[1:] if not line.lower().startswith(name)]
    added = f"{RELAYED_FOR}: {client_ip}".encode("latin-1")
    return b"\r\n".join([lines[0], *kept, added]) + b"\r\n\r\n" + rest


class _ClientSide(asyncio.Protocol):
    """The client's socket, relayed: its bytes go to the holder."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.upstream: asyncio.Transport | None = None

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.write(data)

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:  # the client reads slower than the holder writes
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # Without a close frame: the holder sees 1006, not final; the session waits
        # for the client's next resume.
        if self.upstream is not None:
            self.upstream.close()


class _HolderSide(asyncio.Protocol):
    """The holder's socket: its bytes go back to the client, its answer's
    ``X-Rtcstats-Worker`` naming this worker (where the client's socket is)."""

    def __init__(self, client: _ClientSide, index: int) -> None:
        self.client = client
        self.index = index
        #: The holder's answer head until it is whole (then passed on): None after.
        self.head: bytes | None = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods, not the base class
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            head = self.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0 and len(head) < 16384:
                self.head = head
                return
            data, self.head = self._renamed(head, end), None
        self.client.transport.write(data)

    def _renamed(self, answer: bytes, end: int) -> bytes:
        if end < 0:
            return answer
        name = WORKER_HEADER.lower().encode() + b":"
        lines = answer[:end].split(b"\r\n")
        renamed = [
            f"{WORKER_HEADER}: {self.index}".encode() if line.lower().startswith(name) else line
            for line in lines
        ]
        return b"\r\n".join(renamed) + answer[end:]

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:  # the holder reads slower than the client writes
        if not self.client.transport.is_closing():
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.client.transport.is_closing():
            self.client.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        # The holder closed (its close frame went before) or died (a killed worker):
        # the client reconnects and resumes.
        self.client.transport.close()


#: Headers of one hop, not passed on (RFC 9110 7.6.1), and the ones aiohttp sets.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


async def relay_request(request: web.Request, worker: WorkerInfo, index: int) -> web.StreamResponse:
    """Serve ``request`` by worker ``index``: its body streamed there, the answer back.

    For what must happen in one process, whichever worker a connection reached: the
    chunks of a ``/v1.0/upload`` file and their assembly (uploads/chunks.py keeps
    them, and serializes their assembly, in one process: worker 0's).
    """
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    headers[RELAYED_FOR] = request.remote or ""
    connector = SiblingConnector(path=worker.ingest_socket(index))
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
        try:
            async with http.request(
                request.method,
                URL("http://worker" + request.raw_path, encoded=True),
                headers=headers,
                data=request.content.iter_chunked(64 * 1024) if request.body_exists else None,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            ) as answer:
                response = web.StreamResponse(
                    status=answer.status,
                    reason=answer.reason,
                    headers={
                        k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS
                    },
                )
                await response.prepare(request)
                async for data in answer.content.iter_chunked(64 * 1024):
                    await response.write(data)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError) as exc:
            log.warning(
                "%s %s not relayed to worker %d: %r", request.method, request.path, index, exc
            )
            return web.json_response(
                {"error": "worker restarting; retry", "errorCode": "busy"}, status=503
            )
