"""``3.1_STANDARD`` / ``3.1_LEGACY`` (npm ``@jitsi/rtcstats`` 9.x) and backend pushers.

Envelopes ``{statsSessionId, type, data}``. The client sends nothing until we send
``sn`` with state ``initial``; later ``sn`` messages let it trim its replay buffer,
so we only send them for entries already durable in the dump. The dump line each
envelope carries is ``dumps.envelopes``' to say (a stats-entry's ``data`` string,
without re-encoding).
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
from rtcstats_server.dumps.envelopes import (
    CLOSE,
    KEEPALIVE,
    SN,
    STATS_ENTRY,
    entry_seq,
    open_envelope,
    stats_entry_seq,
)
from rtcstats_server.dumps.layout import JITSI_CLIENTS, STANDARD_STATS_CLIENT
from rtcstats_server.exceptions import HandshakeRefused, ProtocolViolation
from rtcstats_server.metadata.record import fits_int64

STATS_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

#: Close codes after which the jitsi client does not reconnect.
FINAL_CLOSE_CODES = frozenset({3001, 3002})


def _seq(entry: object) -> int | None:
    """The seq of an entry, refused when no store could hold it."""
    return _checked(entry_seq(entry))


def _checked(seq: int | None) -> int | None:
    if seq is not None and not fits_int64(seq):
        raise ProtocolViolation("seq_out_of_range", "seq must fit in a signed 64-bit integer")
    return seq


def _now_ms() -> float:
    return time.time() * 1000


def _sn(value: int, state: str) -> Reply:
    return Reply(orjson.dumps({"type": SN, "body": {"value": value, "state": state}}).decode())


class JitsiDecoder:
    file_format: int | None = None
    relative_time = False

    def __init__(self, handshake: Handshake) -> None:
        self.handshake = handshake
        self.subprotocol = handshake.subprotocol
        self.sends_acks = self.subprotocol in JITSI_CLIENTS
        self.standard_stats = self.subprotocol == STANDARD_STATS_CLIENT
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
        kind = envelope.get("type") if type(envelope) is dict else None
        if kind == KEEPALIVE:
            return []
        if kind == CLOSE:
            return [EndOfSession()]
        if kind == SN:
            raise ProtocolViolation("control_from_client", "sn is sent by the server only")
        line = open_envelope(envelope, _now_ms)  # refuses what is not an envelope
        if line is None:
            raise ProtocolViolation(
                "unknown_type", "type must be identity|stats-entry|keepalive|close"
            )
        self._check_session(envelope)
        data = envelope["data"]
        if kind == STATS_ENTRY:
            return [DumpLine(line, _checked(stats_entry_seq(data)))]
        if type(data) is list:  # an identity, as an array or (pushers) an object
            return [DumpLine(line, _seq(data)), Identity(identity_fields(data[2]))]
        return [DumpLine(line), Identity(identity_fields(data))]
