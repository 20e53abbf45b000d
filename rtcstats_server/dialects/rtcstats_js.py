"""``rtcstats#5.0`` / ``rtcstats#4.0``: rtcstats-js 2.x, the rtcstats.com line.

Messages are JSON arrays ``[method, pcId, value, ...extra, delta]`` stored as sent;
getStats stays delta-compressed in the dump (the reader expands it). The first
message carries an absolute time, later ones milliseconds since the previous one
(``relative_time``: the close line the session adds carries such a delta too).
"""

from __future__ import annotations

from rtcstats_server.dialects.base import (
    DumpLine,
    Handshake,
    Identity,
    Reply,
    Result,
    as_line,
    identity_fields,
    parse_json,
)
from rtcstats_server.exceptions import ProtocolViolation


class ArrayDecoder:
    """Plain JSON-array messages; subclasses say how time is written."""

    file_format: int | None = None
    sends_acks = False
    resumable = False
    is_reconnect = False
    relative_time = False
    standard_stats = False

    def __init__(self, handshake: Handshake) -> None:
        self.handshake = handshake
        self.subprotocol = handshake.subprotocol
        self.client_session_id: str | None = None

    def opening(self, last_seq: int) -> list[Result]:
        return []

    def ack(self, seq: int) -> Reply | None:
        return None

    def feed(self, text: str) -> list[Result]:
        parsed = parse_json(text)
        if type(parsed) is not list or len(parsed) < 3:
            raise ProtocolViolation(
                "wrong_shape", f"{self.subprotocol} messages are arrays [method, pcId, value, ...]"
            )
        line = DumpLine(as_line(text, parsed))
        if parsed[0] == "identity":
            return [line, Identity(identity_fields(parsed[2]))]
        return [line]


class RtcstatsJsDecoder(ArrayDecoder):
    file_format: int | None = 3
    relative_time = True
