"""One ingest websocket on its transport: frames in, messages handed on in the same call.

An ``asyncio.Protocol``, so an arriving message costs no future, no queue and no task
switch: ``data_received`` parses the frames and calls the listener for each message.
When the listener must wait (a dump frame to write, a record to create) it says so by
returning False: delivery stops, the transport stops reading, and the frames already
received wait here in their bytes until ``resume``. That is the only backpressure:
a slow disk slows the client down and nothing queues up without bound.

The close handshake (RFC 6455 5.5.1) lives here too: ``close`` sends our close frame
and ends the connection when the client answers or after ``close_timeout_s``; a client's
close frame is handed to the listener, which answers it with ``close``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

from rtcstats_server.ingest.frames import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameReader,
    close_frame,
    close_payload,
    frame,
    text_frame,
)
from rtcstats_server.sessions.connection import ABNORMAL_CLOSURE

log = logging.getLogger(__name__)

#: What we let the kernel and the transport hold for a client that does not read
#: (acknowledgements, pongs): past it, the client is cut off.
MAX_WRITE_BUFFER = 1 << 20


class Listener(Protocol):
    """What the ingest handler does with a connection's messages."""

    def on_text(self, text: str) -> bool:
        """One text message; False: hold the next ones until ``resume``."""

    def on_binary(self) -> None:
        """A binary message (the handler refuses them)."""

    def on_error(self, code: int, detail: str) -> None:
        """The client broke the protocol; ``code`` answers it (the handler closes)."""

    def on_close_frame(self, code: int) -> None:
        """The client's close frame (its code; 1005 without one): answer with ``close``."""

    def on_lost(self) -> None:
        """The connection is gone, whichever side ended it."""


class WebSocket:
    """The transport's protocol: asyncio calls its methods by name (``connection_made``,
    ``data_received``, ``pause_writing``...) and asks no base class of it, so it has
    none: a subclass of ``asyncio.Protocol`` (a Python class) could not be a native
    class of the compiled build (``rtcstats_server/compiled.py``), and mypyc refuses
    ``__slots__`` on a class that is not native."""

    __slots__ = (
        "_close_timer",
        "_paused",
        "close_code",
        "close_sent",
        "close_timeout_s",
        "closed",
        "listener",
        "reader",
        "transport",
    )

    def __init__(self, reader: FrameReader, close_timeout_s: float) -> None:
        self.reader = reader
        self.close_timeout_s = close_timeout_s
        self.listener: Listener | None = None
        self.transport: asyncio.Transport | None = None
        #: The client's close code once its close frame came; ours when we cut it off
        #: for a protocol error; 1006 when the connection dropped without one.
        self.close_code: int | None = None
        self.close_sent = False
        self.closed = False
        self._paused = True  # until the listener is attached and says go
        self._close_timer: asyncio.TimerHandle | None = None

    # -- set-up -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods, not the base class
        self.transport = cast(asyncio.Transport, transport)
        self.transport.pause_reading()  # until start(): the session is being opened

    def start(self, listener: Listener) -> None:
        """Begin handing messages to ``listener`` (bytes that came early are read first)."""
        self.listener = listener
        self.resume()

    # -- reading ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        if not self._paused:
            self._deliver()

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def pause_writing(self) -> None:
        """Nothing: ``write`` cuts off a client whose unread bytes pass ``MAX_WRITE_BUFFER``."""

    def resume_writing(self) -> None:
        """Nothing to resume (``pause_writing`` stops nothing)."""

    def resume(self) -> None:
        """Deliver again: what is buffered now, then what the socket brings."""
        if self.closed:
            return
        self._paused = False
        self._deliver()
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _deliver(self) -> None:
        reader = self.reader
        listener = self.listener
        if listener is None:
            return  # gone
        while not self.closed:
            try:
                message = reader.take()
            except FrameError as error:
                self._paused = True
                self.close_code = error.code
                listener.on_error(error.code, str(error))
                return
            if message is None:
                return
            opcode, payload = message
            if opcode == TEXT:
                if self.close_sent:
                    continue  # after our close frame: only the client's close counts
                if not listener.on_text(payload):  # type: ignore[arg-type]
                    self._paused = True
                    if self.transport is not None:
                        self.transport.pause_reading()
                    return
            elif opcode == PING:
                assert isinstance(payload, bytes)
                self.write(frame(PONG, payload))
            elif opcode == CLOSE:
                assert isinstance(payload, bytes)
                try:
                    code, _reason = close_payload(payload)
                except FrameError as error:
                    self._paused = True
                    self.close_code = error.code
                    listener.on_error(error.code, str(error))
                    return
                self.close_code = code
                if self.close_sent:  # the answer to ours: the handshake is over
                    self._end()
                    return
                self._paused = True
                listener.on_close_frame(code)
                return
            elif opcode == BINARY:
                if not self.close_sent:
                    self._paused = True
                    listener.on_binary()
                    return
            # PONG: nothing to do

    # -- writing ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.info("websocket client does not read what it is sent: cut off")
            transport.abort()

    def send_text(self, text: str) -> None:
        if not self.close_sent:
            self.write(text_frame(text))

    def close(self, code: int, reason: bytes = b"", wait_s: float | None = None) -> None:
        """Send our close frame (once); the connection ends when the client answers
        (at once if it closed first) or after ``wait_s`` (``close_timeout_s``)."""
        if self.close_sent or self.closed:
            return
        self.write(close_frame(code, reason))
        self.close_sent = True
        if self.close_code is not None:  # the client closed first, or broke the protocol
            self._end()
            return
        wait = self.close_timeout_s if wait_s is None else wait_s
        self._close_timer = asyncio.get_running_loop().call_later(wait, self._end)
        # Read on, for the client's close frame; later (not inside a listener's call).
        asyncio.get_running_loop().call_soon(self.resume)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _end(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reader.discard()
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        listener, self.listener = self.listener, None  # no cycle left for the collector
        if listener is not None:
            listener.on_lost()
