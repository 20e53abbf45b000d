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
import contextlib
import logging

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from rtcstats_server.config import Config
from rtcstats_server.http.workers import RELAYED_FOR, WorkerInfo, relayed_address
from rtcstats_server.ingest.handler import echo_close_code
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.live import Client

log = logging.getLogger(__name__)

#: Request headers the holder reads from an upgrade (besides the subprotocol).
PASSED_HEADERS = ("Origin", "User-Agent")
#: How long a sibling may take to say whether it holds a session.
ASK_TIMEOUT_S = 2.0
#: The close code a relayed holder sees when the client's socket dropped without a
#: close frame: "going away", not final, so the session waits for the next resume.
DROPPED = 1001


class WorkerRelay:
    """The ``ingest.handler.Elsewhere`` of one worker."""

    def __init__(self, worker: WorkerInfo, config: Config, metrics: Metrics) -> None:
        self.worker = worker
        self.config = config
        self.metrics = metrics

    def relayed_for(self, request: web.Request) -> str | None:
        return relayed_address(request)

    async def holder(self, client: Client) -> int | None:
        """The sibling holding ``client``'s live session, if one does."""
        siblings = [i for i in range(self.worker.count) if i != self.worker.index]
        answers = await asyncio.gather(*(self._holds(i, client) for i in siblings))
        return next((i for i, yes in zip(siblings, answers, strict=True) if yes), None)

    async def _holds(self, index: int, client: Client) -> bool:
        assert client.client_session_id is not None
        connector = aiohttp.UnixConnector(path=self.worker.metrics_socket(index))
        timeout = aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)
        query = {"client": client.client_session_id, "dialect": client.dialect}
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                async with http.get("http://worker/holds", params=query) as response:
                    return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False  # restarting: its sessions are being recovered, not resumable

    async def relay(
        self, request: web.Request, client: Client, client_ip: str
    ) -> web.StreamResponse | None:
        holder = await self.holder(client)
        if holder is None:
            return None
        headers = {
            name: request.headers[name] for name in PASSED_HEADERS if name in request.headers
        }
        headers[RELAYED_FOR] = client_ip
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        protocols = tuple(p.strip() for p in offered.split(",") if p.strip())
        connector = aiohttp.UnixConnector(path=self.worker.ingest_socket(holder))
        http = aiohttp.ClientSession(connector=connector)
        try:
            try:
                upstream = await http.ws_connect(
                    URL("http://worker" + request.raw_path, encoded=True),
                    protocols=protocols,
                    headers=headers,
                    autoclose=False,
                    max_msg_size=self.config.ingest.max_message_bytes,
                )
            except aiohttp.WSServerHandshakeError as refused:
                return web.Response(status=refused.status, text=f"{refused.message}\n")
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("resume of %s not relayed: %r", client.client_session_id, exc)
                return None
            ws = web.WebSocketResponse(
                protocols=(upstream.protocol,) if upstream.protocol else (),
                compress=self.config.ingest.permessage_deflate,
                max_msg_size=self.config.ingest.max_message_bytes,
                autoclose=False,
            )
            await ws.prepare(request)
            self.metrics.relayed.inc()
            log.info("session of %s: resume relayed to worker %d", client.client_session_id, holder)
            try:
                await _copy_both_ways(ws, upstream)
            finally:
                with contextlib.suppress(Exception):
                    await upstream.close(code=DROPPED)
                with contextlib.suppress(Exception):
                    await ws.close(code=1011)
            return ws
        finally:
            await http.close()


async def _copy_both_ways(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    """Until either side closes; each close is passed on with its code."""
    down = asyncio.create_task(_downstream(client, upstream))
    try:
        await _upstream(client, upstream)
    finally:
        if not down.done():
            # the client is gone or closed: the holder's last frames have nowhere to go
            down.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await down


async def _upstream(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    """Client → holder. Returns once the client's side is over."""
    while True:
        msg = await client.receive()
        if msg.type is WSMsgType.TEXT:
            await upstream.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await upstream.send_bytes(msg.data)  # the holder refuses it (1003)
        elif msg.type is WSMsgType.CLOSE:
            # The holder answers the client's code (and names the session); its answer
            # goes back to the client as the holder sent it.
            await upstream.close(code=echo_close_code(msg.data))
            code = upstream.close_code or echo_close_code(msg.data)
            await client.close(code=code, drain=False)
            return
        else:  # dropped without a close frame, or the holder closed (see _downstream)
            if not upstream.closed:
                await upstream.close(code=DROPPED)
            return


async def _downstream(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse
) -> None:
    """Holder → client: acknowledgements, replies, and the holder's close."""
    while True:
        msg = await upstream.receive()
        if msg.type is WSMsgType.TEXT:
            await client.send_str(msg.data)
        elif msg.type is WSMsgType.CLOSE:
            await upstream.close()
            reason = (msg.extra or "").encode()[:123]
            await client.close(code=msg.data or 1000, message=reason)
            return
        elif msg.type is WSMsgType.CLOSING:
            return  # _upstream is closing it, with the client's code
        else:
            # the holder died (a killed worker): the client reconnects and resumes
            await client.close(code=1011)
            return


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
    connector = aiohttp.UnixConnector(path=worker.ingest_socket(index))
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
