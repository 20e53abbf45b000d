"""What a reader keeps per peer connection, within a memory budget.

getStats deltas (getstats.py) and rtcstats-js descriptions (descriptions.py) can only
be read with what came before on the same peer connection, so the reader keeps that
per connection. A dump may name any number of connections, and within one the
rtcstats-js and 2015 schemes only ever add reports: an upload of 990k events on 990k
connections once held 9.8 GB. So every state is weighed (an estimate in bytes, from
what it holds) and the total kept within ``budget``: past it, the states used least
recently are dropped. A connection whose state was dropped and that shows up again
gets a note (the reader turns it into a ``dumpError`` event before its event), and
its later results lack what came before; a connection that alone outgrows the budget,
or holds more than ``MAX_REPORTS`` reports (each rtcstats-js result rebuilds every
held report, so that count is what one event costs), is started afresh the same way.
Real connections are far below both (a 100-report SFU connection weighs about
300 KB); the notes are for dumps made to hurt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Final, Generic, Protocol, TypeVar

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
#: Reports one connection may hold: far more than any real one (a 100-track SFU
#: connection holds about 500), and what bounds the CPU of one getStats event in the
#: schemes where every held report is rebuilt with the result's time (rtcstats-js).
MAX_REPORTS: Final = 2000
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

    @property
    def reports(self) -> int:
        return len(self.stats.reports) if self.stats is not None else 0

    def weigh(self) -> int:
        weight = CONNECTION_BYTES
        if self.stats is not None:
            weight += CELL_BYTES * self.stats.cells + REPORT_BYTES * len(self.stats.reports)
        if self.descriptions is not None:
            weight += SDP_CHAR_BYTES * self.descriptions.held_chars()
        self.weight = weight
        return weight


class Weighed(Protocol):
    """A state that knows what it weighs (estimated bytes) since its last ``weigh``."""

    weight: int

    def weigh(self) -> int: ...


S = TypeVar("S", bound=Weighed)


class LruStates(Generic[S]):
    """States by peer connection within ``budget`` (their weights together), the least
    recently used first in line to be dropped. Readers keep their decoders here, the
    fileFormat 3 encoder its encoders."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        #: States dropped so far.
        self.dropped = 0
        # An OrderedDict: the least recently used leave from the front in O(1) (a dict
        # emptied from the front rescans its deleted slots on every ``next(iter())``).
        self._states: OrderedDict[str | None, S] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, pc_id: str | None) -> S | None:
        state = self._states.get(pc_id)
        if state is not None:
            self._states.move_to_end(pc_id)  # the most recently used, last
        return state

    def add(self, pc_id: str | None, state: S) -> S:
        self._states[pc_id] = state
        self.held += state.weight
        return state

    def settle(self, pc_id: str | None, state: S) -> list[tuple[str | None, S]]:
        """Weigh ``pc_id``'s state again after a change; drop the least recently used
        others while the budget is exceeded. The connections dropped, with their state."""
        before = state.weight
        self.held += state.weigh() - before
        dropped: list[tuple[str | None, S]] = []
        while self.held > self.budget and len(self._states) > 1:  # pc_id is the last
            victim, old = self._states.popitem(last=False)
            self.held -= old.weight
            self.dropped += 1
            dropped.append((victim, old))
        return dropped

    def drop(self, pc_id: str | None) -> None:
        state = self._states.pop(pc_id, None)
        if state is not None:
            self.held -= state.weight
            self.dropped += 1

    def values(self) -> Iterator[tuple[str | None, S]]:
        yield from self._states.items()


class PeerStates:
    """The per-connection state of one reader (decoders), and the notes it owes."""

    def __init__(self, scheme: Scheme, budget: int) -> None:
        self.scheme = scheme
        self.states: LruStates[_State] = LruStates(budget)
        #: What the reader must report before the event it is decoding.
        self.notes: list[str] = []
        self._forgotten: OrderedDict[str | None, None] = OrderedDict()

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
        state = self.states.get(pc_id)
        if state is not None:
            return state
        if self._forgotten and pc_id in self._forgotten:
            del self._forgotten[pc_id]
            self._note(pc_id, "its state was dropped for others")
        return self.states.add(pc_id, _State())

    def _settle(self, pc_id: str | None, state: _State) -> None:
        for victim, _ in self.states.settle(pc_id, state):
            if victim is None or len(victim) <= REMEMBERED_ID_CHARS:
                self._forgotten[victim] = None
                if len(self._forgotten) > REMEMBERED:
                    self._forgotten.popitem(last=False)
        if self.states.held > self.states.budget or state.reports > MAX_REPORTS:
            self.states.drop(pc_id)
            self._note(pc_id, "it held more state than one connection may")

    def _note(self, pc_id: str | None, why: str) -> None:
        name = (
            pc_id
            if pc_id is None or len(pc_id) <= QUOTED_ID_CHARS
            else pc_id[:QUOTED_ID_CHARS] + "…"
        )
        self.notes.append(
            f"peer connection {name!r}: {why}, so its later results lack what came before "
            f"(a reader keeps {self.states.budget >> 20} MiB of state at most, "
            f"{MAX_REPORTS} reports a connection)"
        )
