"""The one event model every dump reader yields, and the caps a reader enforces.

Its own module so that the line reader (reader.py) and the whole-document reader
(documents.py) share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from rtcstats_server.dumps.getstats import Reports, moment

#: The method of every getStats event, whatever the dialect called it.
STATS_METHOD: Final = "getStats"
#: The method of the marker event that stands where the dump was damaged.
ERROR_METHOD: Final = "dumpError"
#: The method of a backend pusher's (JVB, Jicofo) statistics object.
BACKEND_STATS_METHOD: Final = "backendStats"

#: A longer line is damage, not data (the collector refuses 1 MiB messages).
MAX_LINE_BYTES: Final = 64 << 20

#: Per-peer-connection state a reader keeps at most (estimated; see connections.py):
#: with what its callers hold, one read stays well inside 256 MiB.
MAX_STATE_BYTES: Final = 64 << 20

#: ``DumpTooLarge.cap`` values, each the ``errorCode`` an upload past it gets.
LINE_TOO_LONG: Final = "line_too_long"
EXPANDED_TOO_LARGE: Final = "expanded_too_large"
TOO_MANY_EVENTS: Final = "too_many_events"


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How much one dump may make a reader hold or produce; past a cap, ``DumpTooLarge``.

    A line (or, in a JSON export, one token or one entry) is never held past
    ``max_line_bytes``; ``max_expanded_bytes`` caps the decompressed bytes and, for an
    export, the events rebuilt from it; ``max_events`` the events. ``max_state_bytes``
    is not refused past: the states of the least recently used peer connections are
    dropped instead (connections.py). Stored dumps are read with the defaults (ingest
    bounded what they hold); uploads with ``uploads.*``.
    """

    max_line_bytes: int = MAX_LINE_BYTES
    max_expanded_bytes: int | None = None
    max_events: int | None = None
    #: Estimated bytes of per-peer-connection state (connections.py) the reader keeps.
    max_state_bytes: int = MAX_STATE_BYTES


@dataclass(slots=True)
class Event:
    """One thing that happened in the client, as the client reported it.

    ``value`` is what the client sent, except: getStats carries the full report dict
    ``{stats id: report}`` (rtcstats-js ids stay the short "0", "1", ... the client
    chose; reports are shared between events and must not be modified), and
    rtcstats-js descriptions carry their full SDP. ``extra`` holds what rtcstats-js
    sends between the value and the time (request ids such as ``"8-2"``, the reason
    of a getStats call); ``seq`` is the 3.1 sequence number; ``line`` the 1-based line
    of the decompressed dump.
    """

    timestamp: float
    method: str
    pc_id: str | None
    value: Any
    extra: tuple[Any, ...] = ()
    seq: int | None = None
    line: int = 0

    @property
    def is_stats(self) -> bool:
        return self.method == STATS_METHOD

    @property
    def stats(self) -> Reports:
        """The full reports of a getStats event (empty for any other event)."""
        return self.value if self.method == STATS_METHOD and isinstance(self.value, dict) else {}

    def __init__(
        self,
        timestamp: float,
        method: str,
        pc_id: str | None,
        value: Any,
        extra: tuple[Any, ...] = (),
        seq: int | None = None,
        line: int = 0,
    ) -> None:
        """Written out: a dataclass-generated ``__init__`` stays interpreted in the
        compiled build (mypyc), and one is called per event."""
        self.timestamp = timestamp
        self.method = method
        self.pc_id = pc_id
        self.value = value
        self.extra = extra
        self.seq = seq
        self.line = line


def as_number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (booleans included)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def epoch_ms(value: object) -> float | None:
    """A time as clients write it (epoch ms, or an ISO 8601 string) in epoch ms."""
    when = moment(value)
    return None if when is None else float(when)
