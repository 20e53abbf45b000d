"""``3.1_STANDARD`` / ``3.1_LEGACY`` (npm ``@jitsi/rtcstats`` 9.x) and backend pushers.

Envelopes ``{statsSessionId, type, data}``. The client sends nothing until we send
``sn`` with state ``initial``; later ``sn`` messages let it trim its replay buffer,
so we only send them for entries already durable in the dump. A stats-entry's
``data`` is a JSON string that becomes the dump line without re-encoding.
"""

from __future__ import annotations

import re
import time

import orjson

from rtcstats_server.dialects.base import (
    DumpLine,
    EndOfSession,
    Handshake,
    Identity,
    Reply,
    Result,
    identity_fields,
    parse_json,
)
from rtcstats_server.exceptions import HandshakeRefused, ProtocolViolation
from rtcstats_server.metadata.record import fits_int64

STATS_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
CLIENT_SUBPROTOCOLS = frozenset({"3.1_STANDARD", "3.1_LEGACY"})
PUSHER_SUBPROTOCOL = re.compile(r"^[0-9]+(\.[0-9]+)?_(JVB|JICOFO|JIBRI|JIGASI)$")

#: Close codes after which the jitsi client does not reconnect.
FINAL_CLOSE_CODES = frozenset({3001, 3002})


def _seq(value: object) -> int | None:
    """The seq of an entry (its last element), refused when no store could hold it."""
    if type(value) is not int:
        return None
    if not fits_int64(value):
        raise ProtocolViolation("seq_out_of_range", "seq must fit in a signed 64-bit integer")
    return value


def _sn(value: int, state: str) -> Reply:
    return Reply(orjson.dumps({"type": "sn", "body": {"value": value, "state": state}}).decode())


class JitsiDecoder:
    file_format: int | None = None
    relative_time = False

    def __init__(self, handshake: Handshake) -> None:
        self.handshake = handshake
        self.subprotocol = handshake.subprotocol
        self.sends_acks = self.subprotocol in CLIENT_SUBPROTOCOLS
        self.resumable = self.sends_acks
        session_id = handshake.query.get("statsSessionId")
        if session_id is None and self.sends_acks:
            raise HandshakeRefused(400, "bad_session_id", "statsSessionId is required")
        if session_id is not None and not STATS_SESSION_ID.match(session_id):
            raise HandshakeRefused(
                400, "bad_session_id", "statsSessionId must match ^[A-Za-z0-9_-]{1,128}$"
            )
        self.client_session_id = session_id
        self.is_reconnect = handshake.query.get("isReconnect", "false") == "true"

    def opening(self, last_seq: int) -> list[Result]:
        return [_sn(last_seq, "initial")] if self.sends_acks else []

    def ack(self, seq: int) -> Reply | None:
        return _sn(seq, "ack") if self.sends_acks else None

    def _check_session(self, envelope: dict[str, object]) -> None:
        claimed = envelope.get("statsSessionId")
        if self.client_session_id is None:
            # Pushers may name the session only in their messages.
            if not isinstance(claimed, str) or not STATS_SESSION_ID.match(claimed):
                raise ProtocolViolation("bad_session_id", "statsSessionId missing or malformed")
            self.client_session_id = claimed
        elif claimed is not None and claimed != self.client_session_id:
            raise ProtocolViolation("session_mismatch", "statsSessionId differs from the URL's")

    def feed(self, text: str) -> list[Result]:
        envelope = parse_json(text)
        if type(envelope) is not dict:
            raise ProtocolViolation("wrong_shape", "3.1 messages are JSON objects")
        kind = envelope.get("type")
        if kind == "stats-entry":
            data = envelope.get("data")
            if type(data) is not str:
                raise ProtocolViolation("wrong_shape", "stats-entry data must be a JSON string")
            self._check_session(envelope)
            entry = parse_json(data)
            if "\n" in data or "\r" in data:
                data = orjson.dumps(entry).decode()
            seq = _seq(entry[-1]) if type(entry) is list and len(entry) >= 5 else None
            return [DumpLine(data, seq)]
        if kind == "keepalive":
            return []
        if kind == "identity":
            self._check_session(envelope)
            return self._identity(envelope.get("data"))
        if kind == "close":
            return [EndOfSession()]
        if kind == "sn":
            raise ProtocolViolation("control_from_client", "sn is sent by the server only")
        raise ProtocolViolation("unknown_type", "type must be identity|stats-entry|keepalive|close")

    def _identity(self, data: object) -> list[Result]:
        if type(data) is list and len(data) >= 3:
            seq = _seq(data[4]) if len(data) >= 5 else None
            return [DumpLine(orjson.dumps(data).decode(), seq), Identity(identity_fields(data[2]))]
        if type(data) is dict:
            # Pushers send the bare object: store it in the dump's array form.
            line = orjson.dumps(["identity", None, data, round(time.time() * 1000)]).decode()
            return [DumpLine(line), Identity(identity_fields(data))]
        raise ProtocolViolation("wrong_shape", "identity data must be an array or an object")
