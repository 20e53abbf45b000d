"""The client dialects, chosen by websocket subprotocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rtcstats_server.dialects.base import Handshake, Reply, Result
from rtcstats_server.dialects.jitsi import JitsiDecoder
from rtcstats_server.dialects.legacy import LegacyDecoder
from rtcstats_server.dialects.rtcstats_js import RtcstatsJsDecoder
from rtcstats_server.dumps.layout import JITSI_CLIENTS, PUSHER_PROTOCOL
from rtcstats_server.exceptions import HandshakeRefused


class Decoder(Protocol):
    subprotocol: str
    client_session_id: str | None
    sends_acks: bool
    resumable: bool
    #: The client asks to continue a session it streamed before (3.1 ``isReconnect``).
    is_reconnect: bool
    file_format: int | None
    #: Times in the dump are ms since the previous event (rtcstats-js), not epoch ms.
    relative_time: bool
    #: getStats reports are named as the W3C names them (``3.1_STANDARD``): masking
    #: tells the ones that can hold an address by one marker (dumps/privacy.py).
    standard_stats: bool

    def opening(self, last_seq: int) -> list[Result]: ...

    def ack(self, seq: int) -> Reply | None: ...

    def feed(self, text: str) -> list[Result]: ...


_BY_NAME: dict[str, Callable[[Handshake], Decoder]] = {
    "rtcstats#5.0": RtcstatsJsDecoder,
    "rtcstats#4.0": RtcstatsJsDecoder,
    "2.0": LegacyDecoder,
    **{name: JitsiDecoder for name in JITSI_CLIENTS},
}


def known(subprotocol: str) -> bool:
    return subprotocol in _BY_NAME or bool(PUSHER_PROTOCOL.match(subprotocol))


def metric_label(subprotocol: str) -> str:
    """The ``dialect`` label of the traffic metrics: a closed set, whatever clients offer.

    Pushers put a version of their own in the subprotocol (``<n>.<n>_JVB``), so it names
    the component only (``JVB``, ``JICOFO``, ``JIBRI``, ``JIGASI``): one series per
    version would let anyone grow ``/metrics`` without bound. The record's ``dialect``
    keeps the exact subprotocol.
    """
    if subprotocol in _BY_NAME:
        return subprotocol
    pusher = PUSHER_PROTOCOL.match(subprotocol)
    return pusher.group(2) if pusher else "other"


def choose_subprotocol(offered: str) -> str:
    """The first offered subprotocol we speak, or a 400 naming what we accept."""
    candidates = [part.strip() for part in offered.split(",") if part.strip()]
    for name in candidates:
        if known(name):
            return name
    if not candidates:
        raise HandshakeRefused(
            400, "no_subprotocol", "Sec-WebSocket-Protocol is required (e.g. 3.1_STANDARD)"
        )
    raise HandshakeRefused(
        400,
        "unknown_subprotocol",
        "unsupported Sec-WebSocket-Protocol; use rtcstats#5.0, rtcstats#4.0, 3.1_STANDARD, "
        "3.1_LEGACY, <n>_JVB|_JICOFO|_JIBRI|_JIGASI or 2.0",
    )


def open_decoder(handshake: Handshake) -> Decoder:
    cls = _BY_NAME.get(handshake.subprotocol)
    if cls is None:
        if not PUSHER_PROTOCOL.match(handshake.subprotocol):
            raise HandshakeRefused(400, "unknown_subprotocol", "unsupported subprotocol")
        cls = JitsiDecoder
    return cls(handshake)
