"""One finish path: a session streamed live, one recovered after a SIGKILL and one
uploaded end up as the same record (issue 15, "must hold" 2).

The same real capture (npm @jitsi/rtcstats 9.7.1, a loopback call) goes in three
ways into one collector process and its data dir:

1. streamed until every entry is acknowledged (durable), then the collector is
   SIGKILLed with the socket open: at the restart, crash recovery finishes it;
2. streamed live into the restarted collector, closed by the client (3001);
3. uploaded to ``/v1.0/upload`` as the dump a server would have written of it.

The three records (read from the store, as stored) carry the same fields, the same
quality summary for the same events, and a viewer link that opens.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson

from tests.services import streams
from tests.services.collector import analysed, wait_until
from tests.services.process import CollectorProcess

CAPTURE = "jitsi-rtcstats-9.7.1-loopback-call"
ENV = {"RTCSTATS_DUMPS__FLUSH_INTERVAL_S": "0.2"}  # everything durable (and acked) quickly

#: Summary values that come from when the session ended (the close line's time),
#: not from its events: they differ between a stream, a crash and an upload.
NOT_EVENTS = {("dump", "duration_s"), ("dump", "last_event_at")}


def headers_of(fixtures_dir: Path) -> dict[str, str]:
    """The browser's own request headers, as captured."""
    meta = json.loads((fixtures_dir / "captured" / f"{CAPTURE}.meta.json").read_text())
    return {"User-Agent": meta["headers"]["user-agent"], "Origin": meta["headers"]["origin"]}


def dump_of(stream: streams.Stream, close_code: int, headers: dict[str, str]) -> bytes:
    """The capture as our layout holds it: what an upload of it sends."""
    meta = {
        "clientProtocol": stream.subprotocol,
        "url": stream.path,
        "userAgent": headers["User-Agent"],
        "origin": headers["Origin"],
        "statsSessionId": parse_qs(urlsplit(stream.path).query)["statsSessionId"][0],
    }
    last = json.loads(stream.expected_lines[-1])[3]
    lines = ["RTCStatsDump", json.dumps(meta), *stream.expected_lines]
    lines.append(json.dumps(["close", None, close_code, last]))
    return ("\n".join(lines) + "\n").encode()


async def stream_in(
    http: aiohttp.ClientSession,
    collector: CollectorProcess,
    stream: streams.Stream,
    headers: dict[str, str],
) -> aiohttp.ClientWebSocketResponse:
    """Every message of the capture, on a socket left open once the last entry is
    acknowledged, i.e. durable in the dump."""
    ws = await http.ws_connect(
        collector.ws_url + stream.path, protocols=(stream.subprotocol,), headers=headers
    )
    assert (await ws.receive_json(timeout=5))["body"] == {"value": 0, "state": "initial"}
    for message in stream.messages:
        await ws.send_str(message)
    last = max(json.loads(line)[4] for line in stream.expected_lines)
    acked = 0
    while acked < last:
        acked = (await ws.receive_json(timeout=10))["body"]["value"]
    return ws


async def record_when_analysed(
    http: aiohttp.ClientSession, collector: CollectorProcess, session_id: str
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def done() -> bool:
        async with http.get(f"{collector.base_url}/v1/sessions/{session_id}") as response:
            found.update(await response.json() if response.status == 200 else {})
        return found.get("state") == "stored" and analysed(found)

    await wait_until(done, 30, f"session {session_id} stored and analysed")
    return found


def stored_documents(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The records as the embedded store holds them (not the API's view, which shows
    every known field, set or not)."""
    with sqlite3.connect(data_dir / "sessions.sqlite3") as db:
        rows = db.execute("SELECT id, doc FROM sessions").fetchall()
    return {session_id: orjson.loads(doc) for session_id, doc in rows}


def differences(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths where two summaries differ in shape or value."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = [(*path, key) for key in a.keys() ^ b.keys()]
        for key in a.keys() & b.keys():
            found += differences(a[key], b[key], (*path, key))
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for n, (x, y) in pairs for d in differences(x, y, (*path, str(n)))]
    return [] if a == b else [path]


async def test_live_recovered_and_uploaded_sessions_make_the_same_record(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    stream = streams.captured(fixtures_dir, CAPTURE)
    headers = headers_of(fixtures_dir)
    data_dir = tmp_path / "data"
    collector = CollectorProcess(data_dir, env=ENV)
    async with aiohttp.ClientSession() as http:
        try:
            collector.start()
            await collector.wait_healthy(http)
            await stream_in(http, collector, stream, headers)
            collector.kill()  # SIGKILL, the socket still open: no close line, no record

            collector.start()
            await collector.wait_healthy(http)  # recovery ran before it listens
            ws = await stream_in(http, collector, stream, headers)
            await ws.close(code=stream.close_code)

            async with http.post(
                collector.base_url + "/v1.0/upload",
                data=dump_of(stream, stream.close_code, headers),
                headers={"Content-Type": "application/octet-stream"},
            ) as response:
                assert response.status == 200, await response.text()
                uploaded_id = (await response.json())["rtcstatsId"]

            async def three() -> bool:
                async with http.get(collector.base_url + "/v1/sessions") as response:
                    listed = (await response.json())["sessions"]
                return len(listed) == 3 and all(r["state"] == "stored" for r in listed)

            await wait_until(three, 30, "three stored sessions")
            async with http.get(collector.base_url + "/v1/sessions") as response:
                by_reason = {r["end_reason"]: r["id"] for r in (await response.json())["sessions"]}
            assert set(by_reason) == {"recovered", "conference_left", "uploaded"}
            assert by_reason["uploaded"] == uploaded_id
            api = {
                reason: await record_when_analysed(http, collector, session_id)
                for reason, session_id in by_reason.items()
            }
            for reason, record in api.items():  # a viewer link each, and it opens
                async with http.get(record["viewer_url"]) as page:
                    assert page.status == 200, reason
                    assert record["id"] in await page.text()
        finally:
            code, _ = await collector.terminate() if collector.proc else (0, 0.0)
    assert code == 0, collector.log()

    documents = stored_documents(data_dir)
    live, recovered, uploaded = (
        documents[by_reason[reason]] for reason in ("conference_left", "recovered", "uploaded")
    )
    # The same fields, whatever the source; what a source cannot know is null.
    assert set(live) == set(recovered) == set(uploaded), (
        set(live) ^ set(recovered),
        set(live) ^ set(uploaded),
    )
    assert {"quality", "findings", "viewer_url", "dump_key", "messages"} <= set(live)
    for document in (live, recovered, uploaded):
        assert document["summary_error"] is None and document["dump_key"]
    # Ids the client gave, kept by all three (the upload reads them from the dump).
    for name in ("conference_id", "user_id", "meeting_id", "app", "endpoint_id"):
        assert live[name] == recovered[name] == uploaded[name] is not None, name
    assert live["client_session_id"] == recovered["client_session_id"]
    for name in ("url", "user_agent"):
        assert live[name] == recovered[name] == uploaded[name] is not None, name
    # Not ``origin``: an upload masks the address in its dump's metadata line (privacy
    # is on by default), a stream keeps its Origin header as sent; no finish's doing.
    assert live["origin"] == recovered["origin"] == "http://127.0.0.1:18722"
    assert (recovered["close_code"], live["close_code"]) == (1006, 3001)
    # The same summary for the same events: its shape and every value.
    assert live["quality"]["peer_connections"], "the capture's calls are summarized"
    for other in (recovered, uploaded):
        assert set(differences(live["quality"], other["quality"])) <= NOT_EVENTS
        for name in ("findings", "max_loss_pct", "max_rtt_ms", "pc_count", "browser", "os"):
            assert other[name] == live[name], name
