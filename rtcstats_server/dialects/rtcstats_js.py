"""``rtcstats#5.0`` / ``rtcstats#4.0``: rtcstats-js 2.x, the rtcstats.com line.

Messages are JSON arrays ``[method, pcId, value, ...extra, delta]`` stored as sent;
getStats stays delta-compressed in the dump (the reader expands it). The first
message carries an absolute time, later ones milliseconds since the previous one,
so the close line we add carries the delta since the last message too.
"""

from __future__ import annotations

import time

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
from rtcstats_server.dumps.layout import close_line
from rtcstats_server.exceptions import ProtocolViolation


class ArrayDecoder:
    """Plain JSON-array messages; subclasses say how time is written."""

    file_format: int | None = None
    sends_acks = False
    resumable = False
    relative_time = False

    def __init__(self, handshake: Handshake) -> None:
        self.handshake = handshake
        self.subprotocol = handshake.subprotocol
        self.client_session_id: str | None = None
        self.last_message_ms = 0.0

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
        self.last_message_ms = time.time() * 1000
        line = DumpLine(as_line(text, parsed))
        if parsed[0] == "identity":
            return [line, Identity(identity_fields(parsed[2]))]
        return [line]

    def close_line(self, code: int) -> str:
        last = self.last_message_ms or None
        return close_line(code, time.time() * 1000, relative=self.relative_time, last_ms=last)


class RtcstatsJsDecoder(ArrayDecoder):
    file_format: int | None = 3
    relative_time = True
