"""What a session asks of the connection that feeds it; the handler does it.

The ingest handler (``ingest/handler.py``) owns the websocket and its dialect
decoder: it is the only code that writes to the socket or calls the decoder. The
session layer talks to a connection through this small object only, in one
direction: "this seq is durable, acknowledge it" and "close with this code". The
handler's subclass acts on each request (``changed``) and says when the socket is
closed (``ended``).

Kept small on purpose: one exists per open socket, and an idle socket must cost
little (no task, no event until someone waits for the close).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

#: Close code of a connection that ended without a close frame (RFC 6455).
ABNORMAL_CLOSURE = 1006


@dataclass(frozen=True)
class CloseRequest:
    code: int
    reason: str
    #: The handler first lets the message under way be stored (a drain: what the
    #: client sent before the close is kept).
    catch_up: bool = False
    #: Counted in ``rtcstats_connections_closed_by_server`` (a session's end is; a
    #: connection replaced by its client's resume is not).
    counted: bool = True


class Connection:
    __slots__ = ("_closed", "_waiter", "close_request", "durable_seq", "told_seq")

    def __init__(self) -> None:
        #: The highest seq durable in the dump, for the client to trim its buffer to.
        self.durable_seq = 0
        #: The highest seq the handler has acknowledged to the client (handler-owned).
        self.told_seq = 0
        self.close_request: CloseRequest | None = None
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    # -- asked by the session layer ---------------------------------------------------

    def acknowledge(self, seq: int) -> None:
        if seq > self.durable_seq:
            self.durable_seq = seq
            self.changed()

    def close(self, request: CloseRequest) -> None:
        """Ask for the socket to be closed; the first request is the one carried out."""
        if self.close_request is None and not self._closed:
            self.close_request = request
            self.changed()

    async def wait_closed(self) -> None:
        if self._closed:
            return
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    # -- the handler's side -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def changed(self) -> None:
        """Something was asked. The handler's subclass acts on it."""

    def ended(self) -> None:
        """The socket is closed (by either side); nothing asked of it will be done."""
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
