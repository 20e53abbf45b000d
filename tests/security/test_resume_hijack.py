"""Resume hijack (issue 14, item 2) against a live collector.

A stranger who knows a jitsi client's ``statsSessionId`` must not take its session
over: with tokens a resume needs the same token holder (else 403 before the upgrade);
without tokens a resume is allowed (the documented trust model), but the stranger
can neither rename the session nor push its seq so far that the real client's next
entries look like duplicates; a fresh connection reusing the id gets its own session.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from tests.services.collector import RunningCollector, run_collector, wait_until

SID = "victim-stats-session"
SECRET = "resume-hijack-test-secret-0123456789"


def entry(seq: int, sid: str = SID) -> str:
    data = json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000 + seq, seq])
    return json.dumps({"statsSessionId": sid, "type": "stats-entry", "data": data})


def identity(conference: str, user: str) -> str:
    data = ["identity", None, {"confName": conference, "displayName": user}, 1_700_000_000_000]
    return json.dumps({"statsSessionId": SID, "type": "identity", "data": data})


def token(user: str, exp_in: float = 300) -> str:
    claims = {
        "exp": int(time.time() + exp_in),
        "sub": user,
        "rtcStats": {"user": user, "session": f"meeting-of-{user}", "conference": "room@conf"},
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


def path(reconnect: bool, jwt_token: str | None = None) -> str:
    query = f"statsSessionId={SID}&isReconnect={'true' if reconnect else 'false'}"
    if jwt_token is not None:
        query += f"&rtcstats-token={jwt_token}"
    return f"/room?{query}"


def url(collector: RunningCollector, reconnect: bool, jwt_token: str | None = None) -> str:
    return collector.ws_url + path(reconnect, jwt_token)


async def connect(collector: RunningCollector, target: str) -> aiohttp.ClientWebSocketResponse:
    ws = await collector.http.ws_connect(target, protocols=("3.1_STANDARD",))
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "sn" and hello["body"]["state"] == "initial"
    return ws


async def send_acked(ws: aiohttp.ClientWebSocketResponse, seqs: range) -> None:
    """Send entries and wait until the server acknowledged the last (durable)."""
    for seq in seqs:
        await ws.send_str(entry(seq))
    acked = 0
    while acked < seqs[-1]:
        acked = (await ws.receive_json(timeout=5))["body"]["value"]


def stored_seqs(dump: str) -> list[int]:
    entries = [json.loads(line) for line in dump.splitlines()[2:-1]]
    return [e[4] for e in entries if e[0] != "identity"]


SETTINGS: dict[str, Any] = {
    "ingest": {"ack_every_entries": 5, "resume_grace_s": 30},
    "dumps": {"flush_interval_s": 0.2},
}


@pytest.fixture
async def open_collector(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    async with run_collector(tmp_path / "data", SETTINGS) as running:
        yield running


@pytest.fixture
async def token_collector(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    settings = {**SETTINGS, "auth": {"require_token": True, "jwt_secret": SECRET, "leeway_s": 0}}
    async with run_collector(tmp_path / "data", settings) as running:
        yield running


async def test_with_tokens_only_the_holder_resumes(token_collector: RunningCollector) -> None:
    collector = token_collector
    alice = await connect(collector, url(collector, False, token("alice")))
    await alice.send_str(identity("room@conf", "alice"))
    await send_acked(alice, range(1, 11))
    (session,) = collector.manager.sessions.values()

    # Mallory holds a valid token of her own, and knows Alice's statsSessionId.
    mallory = token("mallory")
    assert await collector.upgrade_status(path(True, mallory)) == 403
    assert await collector.upgrade_status(path(True)) == 401  # no token at all
    assert not alice.closed and session.connection is not None  # Alice was not cut off

    await alice.close(code=4000)  # Alice's network drops: her session waits for her
    await wait_until(lambda: session.state.value == "detached", what="detached")
    assert await collector.upgrade_status(path(True, mallory)) == 403
    assert session.state.value == "detached" and session.connections == 1

    # Alice comes back with a refreshed token (new exp, same claims): her session.
    alice = await connect(collector, url(collector, True, token("alice", exp_in=600)))
    assert session.connections == 2
    await send_acked(alice, range(11, 21))
    await alice.close(code=3001)

    record = await collector.wait_for_record(lambda r: r["state"] == "stored")
    assert record["id"] == session.id and record["end_reason"] == "conference_left"
    assert record["user_id"] == "alice" and record["meeting_id"] == "meeting-of-alice"
    assert record["connections"] == 2
    assert stored_seqs(await collector.dump_text(record["id"])) == list(range(1, 21))
    text = await collector.metrics_text()
    assert 'rtcstats_connections_refused_total{reason="resume_not_owner"} 2.0' in text
    assert 'rtcstats_connections_refused_total{reason="token_missing"} 1.0' in text
    assert len((await collector.get_json("/v1/sessions"))["sessions"]) == 1


async def test_a_fresh_connection_with_a_live_id_never_captures_its_resumes(
    open_collector: RunningCollector,
) -> None:
    collector = open_collector
    alice = await connect(collector, url(collector, False))
    await alice.send_str(identity("standup", "alice"))
    await send_acked(alice, range(1, 11))
    (original,) = collector.manager.sessions.values()

    # Mallory opens a new session (isReconnect=false) under Alice's id: hers alone.
    mallory = await collector.http.ws_connect(url(collector, False), protocols=("3.1_STANDARD",))
    assert (await mallory.receive_json(timeout=5))["body"]["value"] == 0
    await mallory.send_str(identity("evil", "mallory"))
    await mallory.send_str(entry(1))
    await mallory.close(code=3001)  # ends Mallory's session, not Alice's
    await wait_until(lambda: len(collector.manager.sessions) == 1, what="Mallory's session ends")
    assert original.state.value == "streaming" and not alice.closed

    # Alice's socket drops; her client resumes and lands in her own session.
    await alice.close(code=4000)
    await wait_until(lambda: original.state.value == "detached", what="detached")
    alice = await connect(collector, url(collector, True))
    assert original.connections == 2
    await send_acked(alice, range(11, 21))
    await alice.close(code=3001)

    mine = await collector.wait_for_record(
        lambda r: r["id"] == original.id and r["state"] == "stored"
    )
    assert mine["conference_id"] == "standup" and mine["user_id"] == "alice"
    assert stored_seqs(await collector.dump_text(mine["id"])) == list(range(1, 21))
    hers = await collector.wait_for_record(lambda r: r["id"] != original.id)
    assert hers["conference_id"] == "evil" and hers["client_session_id"] == SID
    assert stored_seqs(await collector.dump_text(hers["id"])) == [1]


async def test_a_resumer_without_tokens_cannot_rename_or_push_the_seq(
    open_collector: RunningCollector,
) -> None:
    """The reported attack: seq 2^62 made 73 of the real client's next 76 entries
    duplicates; seq 2^63 made PyMongo raise and left the session streaming forever."""
    collector = open_collector
    alice = await connect(collector, url(collector, False))
    await alice.send_str(identity("standup", "alice"))
    await send_acked(alice, range(1, 11))
    (session,) = collector.manager.sessions.values()

    # Without tokens anyone who knows the id may resume (README: trust model) ...
    mallory = await connect(collector, url(collector, True))
    closed = await alice.receive(timeout=5)  # Alice's socket is replaced
    assert closed.type == aiohttp.WSMsgType.CLOSE
    await mallory.send_str(identity("evil", "mallory"))
    await mallory.send_str(entry(1 << 62))
    await mallory.send_str(entry(1 << 63))
    await mallory.send_str(entry(10 + 1_000_001))
    await mallory.close(code=4000)
    await wait_until(lambda: session.state.value == "detached", what="detached")
    assert session.last_seq == 10

    # ... but the real client comes back to an ack that did not move, and loses nothing.
    alice = await connect(collector, url(collector, True))
    await send_acked(alice, range(11, 87))
    await alice.close(code=3001)

    record = await collector.wait_for_record(lambda r: r["state"] == "stored")
    assert record["id"] == session.id
    assert record["conference_id"] == "standup" and record["user_id"] == "alice"
    assert record["last_seq"] == 86
    assert stored_seqs(await collector.dump_text(record["id"])) == list(range(1, 87))
    text = await collector.metrics_text()
    assert 'rtcstats_messages_dropped_total{reason="seq_too_far"} 2.0' in text
    assert 'rtcstats_messages_dropped_total{reason="seq_out_of_range"} 1.0' in text
    assert 'rtcstats_messages_dropped_total{reason="duplicate_seq"}' not in text
