"""A session's life: its states, and the only code that moves a session between them.

::

    streaming ──socket lost (3.1 only)──▶ detached ──resume──▶ streaming
        │                                     │
        └─────────────── finish ──────────────┴──▶ finishing ──▶ discarded (no event)
                                                       │
                                                     seal: close line, dump durable
                                                       ▼
           queued ◀── queue ── stored ◀── store ── put ◀── put ── sealed

A live session (``sessions/live.py``) starts streaming. A session a crash left live
(``sessions/recovery.py``) and an uploaded one (``uploads/``) start finishing: their
dump is already whole, or made whole without a socket. From ``sealed`` on, every
session goes the same way through ``sessions/finish.py``: its dump is put into the
dump store (``put``), its record written (``stored``), and the steps that follow it
(analysis, forwarding, the dump's upload to a bucket) queued durably (``queued``),
which ends what this process owes the session. A finish that stops midway (a store
down, a full disk) stays in the state it reached and is taken up again from there.

Each transition is a method that checks the current state and raises
``IllegalTransition`` otherwise; ``state`` is assigned nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from rtcstats_server.exceptions import IllegalTransition
from rtcstats_server.metadata.record import EndReason
from rtcstats_server.storage.base import StoredDump


class State(StrEnum):
    #: A connection feeds the session.
    STREAMING = "streaming"
    #: Its resumable client lost the connection; it may come back within the grace.
    DETACHED = "detached"
    #: No more connections: the close line and the last frame are being written.
    FINISHING = "finishing"
    #: Ended before it held a single event: no dump, no record.
    DISCARDED = "discarded"
    #: The dump is whole (close line included) and durable on local disk.
    SEALED = "sealed"
    #: The dump store has the dump (or there was none to put).
    PUT = "put"
    #: The final record is written.
    STORED = "stored"
    #: Analysis, forwarding and the bucket upload are queued: nothing is left to do here.
    QUEUED = "queued"


#: Every transition: from a state, the states it may move to.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.STREAMING: frozenset({State.STREAMING, State.DETACHED, State.FINISHING}),
    State.DETACHED: frozenset({State.STREAMING, State.FINISHING}),
    State.FINISHING: frozenset({State.SEALED, State.DISCARDED}),
    State.SEALED: frozenset({State.PUT}),
    State.PUT: frozenset({State.STORED}),
    State.STORED: frozenset({State.QUEUED}),
    State.DISCARDED: frozenset(),
    State.QUEUED: frozenset(),
}

#: Where a session can be when this process first learns of it: a new connection's,
#: or one whose dump is whole without a socket (a crash's leftover, an upload).
INITIAL_STATES = frozenset({State.STREAMING, State.FINISHING})
#: A connection may still feed (or resume) the session.
LIVE_STATES = frozenset({State.STREAMING, State.DETACHED})
#: Events may still be appended: live, or finishing before the close line.
OPEN_STATES = frozenset({State.STREAMING, State.DETACHED, State.FINISHING})


@dataclass(frozen=True)
class Ending:
    """How a session ended and what its finish has to store.

    ``dump`` is a local file the finish puts into the dump store, a dump stored
    already (a crash after the put, before the record), or None (there is none).
    ``facts`` are the record fields only the session's source knows (ids, counters,
    an upload's file name); the finish adds the rest (``sessions/fields.py``).
    """

    reason: EndReason
    code: int | None
    ended_at: datetime
    dump: Path | StoredDump | None
    facts: dict[str, Any] = field(default_factory=dict)


class Session:
    """A session's identity and place in its life; live sessions add their stream."""

    __slots__ = ("_state", "ending", "id", "record", "started_at", "stored")

    def __init__(
        self, session_id: str, started_at: datetime, state: State = State.STREAMING
    ) -> None:
        if state not in INITIAL_STATES:
            raise IllegalTransition(session_id, "nothing", state.value)
        self.id = session_id
        self.started_at = started_at
        self._state = state
        #: Set by ``seal``.
        self.ending: Ending | None = None
        #: Set by ``put``: where the dump store keeps the dump (None: there is none).
        self.stored: StoredDump | None = None
        #: Set by ``record``: the final record as written, until the steps are queued.
        self.record: dict[str, Any] | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def live(self) -> bool:
        return self._state in LIVE_STATES

    def _move(self, to: State) -> None:
        if to not in TRANSITIONS[self._state]:
            raise IllegalTransition(self.id, self._state.value, to.value)
        self._state = to

    # -- while it streams -------------------------------------------------------------

    def detach(self) -> None:
        """The resumable client's connection is gone; a resume may follow."""
        self._move(State.DETACHED)

    def resume(self) -> None:
        """A connection feeds the session again (also one taking over a live one)."""
        self._move(State.STREAMING)

    def finish(self) -> None:
        """No connection will feed the session any more."""
        self._move(State.FINISHING)

    # -- the finish -----------------------------------------------------------------------

    def discard(self) -> None:
        """Nothing was received: there is nothing to store."""
        self._move(State.DISCARDED)

    def seal(self, ending: Ending) -> None:
        """The dump is whole and durable: the finish may store it."""
        self._move(State.SEALED)
        self.ending = ending

    def put(self, stored: StoredDump | None) -> None:
        """The dump store holds the dump (None: there was no dump to put)."""
        self._move(State.PUT)
        self.stored = stored

    def store(self, record: dict[str, Any]) -> None:
        """The final record is written."""
        self._move(State.STORED)
        self.record = record

    def queue(self) -> None:
        """The steps that follow the record are queued; this process is done with it."""
        self._move(State.QUEUED)
        self.record = None  # in the store; nothing more to keep in memory
