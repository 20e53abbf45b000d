"""The session state machine (sessions/state.py): every legal transition works, every
other one raises, whichever state the session is in.

The legal moves are written out here by hand, not read from the module's table, so a
wrong table (or a method that moves without checking) fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rtcstats_server.exceptions import IllegalTransition
from rtcstats_server.metadata.record import EndReason
from rtcstats_server.sessions.state import Ending, Session, State
from rtcstats_server.storage.base import StoredDump

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ENDING = Ending(EndReason.CLIENT_CLOSED, 1000, T0, Path("/nowhere.zst"), {"messages": 3})
STORED = StoredDump("2025/01/01/x.rtcstats.zst", 10)

#: (from, to) for every move a session may make.
LEGAL = {
    (State.STREAMING, State.STREAMING),  # a resume that replaces a live connection
    (State.STREAMING, State.DETACHED),
    (State.STREAMING, State.FINISHING),
    (State.DETACHED, State.STREAMING),
    (State.DETACHED, State.FINISHING),
    (State.FINISHING, State.DISCARDED),
    (State.FINISHING, State.SEALED),
    (State.SEALED, State.PUT),
    (State.PUT, State.STORED),
    (State.STORED, State.QUEUED),
}

#: The method that moves a session into each state.
MOVES: dict[State, Callable[[Session], None]] = {
    State.STREAMING: lambda s: s.resume(),
    State.DETACHED: lambda s: s.detach(),
    State.FINISHING: lambda s: s.finish(),
    State.DISCARDED: lambda s: s.discard(),
    State.SEALED: lambda s: s.seal(ENDING),
    State.PUT: lambda s: s.put(STORED),
    State.STORED: lambda s: s.store({"state": "stored"}),
    State.QUEUED: lambda s: s.queue(),
}

#: A legal way into each state, from a new live session.
PATHS: dict[State, list[State]] = {
    State.STREAMING: [],
    State.DETACHED: [State.DETACHED],
    State.FINISHING: [State.FINISHING],
    State.DISCARDED: [State.FINISHING, State.DISCARDED],
    State.SEALED: [State.FINISHING, State.SEALED],
    State.PUT: [State.FINISHING, State.SEALED, State.PUT],
    State.STORED: [State.FINISHING, State.SEALED, State.PUT, State.STORED],
    State.QUEUED: [State.FINISHING, State.SEALED, State.PUT, State.STORED, State.QUEUED],
}


def session_in(state: State) -> Session:
    session = Session("s" * 32, T0)
    for step in PATHS[state]:
        MOVES[step](session)
    assert session.state is state
    return session


@pytest.mark.parametrize("source", list(State), ids=lambda s: s.value)
@pytest.mark.parametrize("target", list(State), ids=lambda s: s.value)
def test_a_move_works_exactly_when_it_is_legal(source: State, target: State) -> None:
    session = session_in(source)
    if (source, target) in LEGAL:
        MOVES[target](session)
        assert session.state is target
    else:
        with pytest.raises(IllegalTransition) as refused:
            MOVES[target](session)
        assert (refused.value.current, refused.value.wanted) == (source.value, target.value)
        assert session.state is source  # a refused move changes nothing


def test_what_each_step_of_the_finish_keeps() -> None:
    session = session_in(State.FINISHING)
    assert (session.ending, session.stored, session.record) == (None, None, None)
    session.seal(ENDING)
    assert session.ending is ENDING
    session.put(STORED)
    assert session.stored is STORED
    session.store({"state": "stored", "messages": 3})
    assert session.record == {"state": "stored", "messages": 3}
    session.queue()
    assert session.record is None  # in the store: not held in memory any more
    assert session.stored is STORED and session.ending is ENDING


def test_put_without_a_dump() -> None:
    session = session_in(State.SEALED)
    session.put(None)
    assert session.state is State.PUT and session.stored is None


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_where_a_session_may_start(state: State) -> None:
    """Streaming (a new connection) or finishing (a crash's leftover, an upload): a
    session is never created detached, sealed or further on."""
    if state in (State.STREAMING, State.FINISHING):
        assert Session("a" * 32, T0, state).state is state
    else:
        with pytest.raises(IllegalTransition):
            Session("a" * 32, T0, state)


def test_live_means_a_connection_may_still_feed_it() -> None:
    assert {s for s in State if session_in(s).live} == {State.STREAMING, State.DETACHED}
