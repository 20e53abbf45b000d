"""What a reader keeps per peer connection, within a memory budget.

getStats deltas (getstats.py) and rtcstats-js descriptions (descriptions.py) can only
be read with what came before on the same peer connection, so the reader keeps that
per connection. A dump may name any number of connections, and within one the
rtcstats-js and 2015 schemes only ever add reports: an upload of 990k events on 990k
connections once held 9.8 GB. So every state is weighed (an estimate in bytes, from
what it holds) and the total kept within ``budget``: past it, the states used least
recently are dropped. A connection whose state was dropped and that shows up again
gets a note (the reader turns it into a ``dumpError`` event before its event), and
its later results lack what came before; a connection that alone outgrows the budget
is started afresh the same way. Real connections are far below it (a 100-report SFU
connection weighs about 300 KB); the notes are for dumps made to hurt.
"""

from __future__ import annotations

from typing import Any, Final

from rtcstats_server.dumps.descriptions import DescriptionState
from rtcstats_server.dumps.getstats import LegacyStats, Reports, RtcstatsJsStats
from rtcstats_server.dumps.layout import Scheme

#: Estimated bytes per property of a held report, per report, and per connection
#: (objects, dict slots; measured on the real fixtures at 80-120 bytes a property,
#: reports included), and per SDP character held.
CELL_BYTES: Final = 100
REPORT_BYTES: Final = 200
CONNECTION_BYTES: Final = 1000
SDP_CHAR_BYTES: Final = 2
#: How many dropped connections are remembered (to mark their return), and the
#: longest id remembered: the memory of what was dropped is bounded too.
REMEMBERED: Final = 10_000
REMEMBERED_ID_CHARS: Final = 256
#: Characters of a peer connection id quoted in a note.
QUOTED_ID_CHARS: Final = 64

StatsDecoder = RtcstatsJsStats | LegacyStats


class _State:
    __slots__ = ("descriptions", "stats", "weight")

    def __init__(self) -> None:
        self.stats: StatsDecoder | None = None
        self.descriptions: DescriptionState | None = None
        self.weight = CONNECTION_BYTES

    def weigh(self) -> int:
        weight = CONNECTION_BYTES
        if self.stats is not None:
            weight += CELL_BYTES * self.stats.cells + REPORT_BYTES * len(self.stats.reports)
        if self.descriptions is not None:
            weight += SDP_CHAR_BYTES * self.descriptions.held_chars()
        self.weight = weight
        return weight


class PeerStates:
    """The per-connection state of one reader, least recently used first."""

    def __init__(self, scheme: Scheme, budget: int) -> None:
        self.scheme = scheme
        self.budget = budget
        self.held = 0
        #: Connections whose state was dropped since the reader began.
        self.dropped = 0
        #: What the reader must report before the event it is decoding.
        self.notes: list[str] = []
        self._states: dict[str | None, _State] = {}
        self._forgotten: dict[str | None, None] = {}

    def stats(self, pc_id: str | None, delta: object) -> Reports:
        """The full reports of a getStats delta of ``pc_id``."""
        state = self._state(pc_id)
        if state.stats is None:
            if self.scheme == "rtcstats-js":
                state.stats = RtcstatsJsStats()
            else:
                state.stats = LegacyStats(absent_removed=self.scheme == "jitsi")
        try:
            return state.stats.apply(delta)
        finally:
            self._settle(pc_id, state)

    def description(self, pc_id: str | None, method: str, value: Any, request: object) -> Any:
        """The expanded value of an rtcstats-js description event of ``pc_id``."""
        state = self._state(pc_id)
        if state.descriptions is None:
            state.descriptions = DescriptionState()
        try:
            return state.descriptions.apply(method, value, request)
        finally:
            self._settle(pc_id, state)

    def _state(self, pc_id: str | None) -> _State:
        state = self._states.pop(pc_id, None)
        if state is None:
            state = _State()
            self.held += state.weight
            if self._forgotten and pc_id in self._forgotten:
                del self._forgotten[pc_id]
                self._note(pc_id, "its state was dropped to keep within the reader's budget")
        self._states[pc_id] = state  # the most recently used, last
        return state

    def _settle(self, pc_id: str | None, state: _State) -> None:
        before = state.weight
        self.held += state.weigh() - before
        if self.held <= self.budget:
            return
        for victim in list(self._states):
            if self.held <= self.budget or victim == pc_id:
                break
            self._drop(victim)
        if self.held > self.budget:  # this connection alone holds more than the budget
            self._drop(pc_id, remember=False)
            self._note(pc_id, "it alone held more state than the reader's budget")

    def _drop(self, pc_id: str | None, remember: bool = True) -> None:
        state = self._states.pop(pc_id)
        self.held -= state.weight
        self.dropped += 1
        if remember and (pc_id is None or len(pc_id) <= REMEMBERED_ID_CHARS):
            self._forgotten[pc_id] = None
            if len(self._forgotten) > REMEMBERED:
                del self._forgotten[next(iter(self._forgotten))]

    def _note(self, pc_id: str | None, why: str) -> None:
        name = (
            pc_id
            if pc_id is None or len(pc_id) <= QUOTED_ID_CHARS
            else pc_id[:QUOTED_ID_CHARS] + "…"
        )
        self.notes.append(
            f"peer connection {name!r}: {why} ({self.budget >> 20} MiB), so its later "
            "results lack what came before"
        )
