"""The rtcstats.com-compatible API on a live collector: every real fixture uploaded by
chunks and raw becomes a session; list filters, detail and delete; the documented
errors; chunk expiry; and our own forwarder uploading to our own server."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import zstandard

from rtcstats_server.uploads.chunks import UPLOAD_COST
from tests.services import streams, uploads
from tests.services.collector import RunningCollector, run_collector, wait_until

READ, UPLOAD, ADMIN = "read-token-0123456789", "upload-token-0123456789", "admin-token-012345678"
TOKENS = [
    {"name": "dash", "sha256": hashlib.sha256(READ.encode()).hexdigest(), "scope": "read"},
    {"name": "backend", "sha256": hashlib.sha256(UPLOAD.encode()).hexdigest(), "scope": "upload"},
    {"name": "ops", "sha256": hashlib.sha256(ADMIN.encode()).hexdigest(), "scope": "admin"},
]

#: Fixture → the layout the reader finds in it.
LAYOUTS = {
    "jitsi-chrome-standard-pc-failed.jsonl": "jitsi-disk",
    "jitsi-chrome-standard-pc-reconnect.jsonl": "jitsi-disk",
    "jitsi-clienttest.legacy-import.json": "legacy-import",
    "jitsi-firefox97-standard-stats-sfu.jsonl": "jitsi-disk",
    "jitsi-google-standard-stats-sfu.jsonl": "jitsi-disk",
    "jitsi-jvb-sample.jsonl": "jitsi-envelopes",
    "jitsi-safari-standard-stats.jsonl": "jitsi-disk",
    "jitsi-undefined-ice-candidate.jsonl": "jitsi-disk",
    "rtcstats-gumonly.rtcstatsdump.jsonl": "rtcstats-dump",
    "rtcstats-gumonly.webrtc-internals.json.gz": "webrtc-internals",
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post_raw(
    c: RunningCollector,
    body: bytes,
    token: str = UPLOAD,
    content_type: str = "application/octet-stream",
) -> tuple[int, dict[str, Any]]:
    return await uploads.post_raw(c.http, c.base_url, body, auth(token), content_type)


async def post_chunks(
    c: RunningCollector,
    body: bytes,
    name: str,
    size: int = 64 * 1024,
    token: str = UPLOAD,
    file_id: str | None = None,
    skip: int | None = None,
) -> tuple[int, dict[str, Any]]:
    return await uploads.post_chunks(
        c.http, c.base_url, body, name, size, auth(token), file_id, skip
    )


async def get(c: RunningCollector, path: str, token: str = READ) -> tuple[int, Any]:
    async with c.http.get(c.base_url + path, headers=auth(token)) as response:
        return response.status, await response.json()


def stored_answer(status: int, answer: dict[str, Any]) -> str:
    assert status == 200, answer
    assert answer["success"] is True
    session_id = answer["rtcstatsId"]
    assert answer["rtcstatsUrl"].split("?")[0].endswith(f"/view/{session_id}")
    assert answer["embedUrl"] == answer["rtcstatsUrl"]
    return str(session_id)


@pytest.fixture
async def collector(tmp_path: Path) -> Any:
    async with run_collector(tmp_path / "data", {"api": {"tokens": TOKENS}}) as running:
        yield running


async def test_every_fixture_uploads_by_chunks_and_raw(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    c = collector
    for name, layout in LAYOUTS.items():
        body = (fixtures_dir / "real" / name).read_bytes()
        raw_id = stored_answer(*await post_raw(c, body))
        chunked_id = stored_answer(*await post_chunks(c, body, name, size=16 * 1024))
        for session_id in (raw_id, chunked_id):
            status, record = await get(c, f"/v1/sessions/{session_id}")
            assert status == 200
            record = await c.wait_for_analysis(session_id, headers=auth(READ))
            assert record["state"] == "stored" and record["dialect"] == "upload", name
            assert record["upload_layout"] == layout, name
            assert record["end_reason"] == "uploaded"
            assert record["messages"] > 0 and record["dump_key"], name
            assert record["quality"] is not None and record["summary_error"] is None, name
            async with c.http.get(
                f"{c.base_url}/v1/sessions/{session_id}/dump", headers=auth(READ)
            ) as response:
                lines = (await response.text()).splitlines()
            assert lines[0] == "RTCStatsDump"
            meta = orjson.loads(lines[1])
            assert meta["sessionId"] == session_id and meta["uploadLayout"] == layout
            assert orjson.loads(lines[-1])[0] == "close"
        # Both ways store the same events (the ids in the metadata line differ).
        dumps = []
        for session_id in (raw_id, chunked_id):
            async with c.http.get(
                f"{c.base_url}/v1/sessions/{session_id}/dump", headers=auth(READ)
            ) as response:
                dumps.append((await response.text()).splitlines()[2:])
        assert dumps[0] == dumps[1], name
        # The viewer link in the answer opens the session without any token.
        async with c.http.get((await get(c, f"/v1.0/sessions/{raw_id}"))[1]["embedUrl"]) as page:
            assert page.status == 200, name
    # Lines of dumps that have lines are kept byte for byte.
    source = (fixtures_dir / "real" / "jitsi-firefox97-standard-stats-sfu.jsonl").read_bytes()
    stored_id = stored_answer(*await post_raw(c, gzip.compress(source)))
    async with c.http.get(f"{c.base_url}/v1/sessions/{stored_id}/dump", headers=auth(READ)) as r:
        stored_lines = (await r.text()).splitlines()
    assert stored_lines[2:-1] == source.decode().splitlines()[1:]


async def test_list_filters_detail_pagination_and_delete(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    c = collector
    ids: dict[str, str] = {}
    for name in LAYOUTS:
        body = (fixtures_dir / "real" / name).read_bytes()
        packed = body if name.endswith(".gz") else zstandard.compress(body)
        ids[name] = stored_answer(*await post_raw(c, packed))
    for session_id in ids.values():  # browser, os and findings come from the analysis
        await c.wait_for_analysis(session_id, headers=auth(READ))
    status, page = await get(c, "/v1.0/sessions")
    assert status == 200 and page["total"] == len(LAYOUTS) and page["nextCursor"] is None
    item = page["data"][0]
    assert set(item) == {
        "rtcstatsId", "createdAt", "sessionStart", "sessionEnd", "title", "rtcstatsUrl",
        "embedUrl", "abstract",
    }  # fmt: skip
    # Newest session start first.
    starts = [i["sessionStart"] for i in page["data"]]
    assert starts == sorted(starts, reverse=True)

    async def listed(query: str) -> set[str]:
        status, answer = await get(c, "/v1.0/sessions?" + query)
        assert status == 200, answer
        return {i["rtcstatsId"] for i in answer["data"]}

    firefox = ids["jitsi-firefox97-standard-stats-sfu.jsonl"]
    safari = ids["jitsi-safari-standard-stats.jsonl"]
    assert await listed("browser=Firefox") == {firefox}
    assert await listed("browser=Safari&os=macOS") == {safari}
    assert await listed("userId=andreig-safari") == {safari}
    assert await listed("conferenceId=ObviousGroupsAnticipateCertainly") == {firefox}
    assert await listed("sessionId=1605197674060") == {safari}
    critical = await listed("hasCritical=true")
    failed = ids["jitsi-chrome-standard-pc-failed.jsonl"]
    assert failed in critical
    for session_id in critical:
        _, detail = await get(c, f"/v1.0/sessions/{session_id}")
        severities = {o["severity"] for o in detail["data"]["observations"]}
        assert "critical" in severities
        assert detail["data"]["abstract"]["observationsCritical"] >= 1
    assert await listed("hasMedium=true") == set()  # no finding of ours is medium
    _, detail = await get(c, f"/v1.0/sessions/{failed}")
    types = detail["data"]["abstract"]["observationTypes"]
    assert types and await listed("observationTypes=" + ",".join(types)) >= {failed}
    assert detail["data"]["pConnectionsNumber"] == 3
    assert detail["processorVersion"].startswith("rtcstats-collector")
    # A UUID with dashes names the same session.
    dashed = str(uuid.UUID(failed))
    assert (await get(c, f"/v1.0/sessions/{dashed}"))[1]["rtcstatsId"] == failed
    # Cursor pagination (an extension): each session exactly once.
    seen: list[str] = []
    query = "limit=3"
    while True:
        _, answer = await get(c, "/v1.0/sessions?" + query)
        seen += [i["rtcstatsId"] for i in answer["data"]]
        if answer["nextCursor"] is None:
            break
        query = f"limit=3&cursor={answer['nextCursor']}"
    assert sorted(seen) == sorted(ids.values())
    # Delete: admin only; record and dump both go.
    _, record = await get(c, f"/v1/sessions/{firefox}")
    dump_path = c.config.dumps_dir / record["dump_key"]
    assert dump_path.exists()
    for token, want in ((READ, 403), (UPLOAD, 403), (ADMIN, 200)):
        async with c.http.delete(f"{c.base_url}/v1.0/sessions/{firefox}", headers=auth(token)) as r:
            assert r.status == want, await r.text()
            body = await r.json()
            assert body == {"success": True} if want == 200 else set(body) == {"error", "errorCode"}
    assert not dump_path.exists()
    assert (await get(c, f"/v1.0/sessions/{firefox}"))[0] == 404
    assert (await get(c, f"/v1/sessions/{firefox}"))[0] == 404
    async with c.http.delete(f"{c.base_url}/v1.0/sessions/{firefox}", headers=auth(ADMIN)) as r:
        assert r.status == 404 and (await r.json())["errorCode"] == "not_found"


def internals_export() -> dict[str, Any]:
    """A chrome://webrtc-internals export with one peer connection, in Chrome's layout:
    an update log and one evenly sampled series per report property."""
    start, end = "2025-03-01T10:00:00.000Z", "2025-03-01T10:00:04.000Z"

    def series(kind: str, values: list[Any]) -> dict[str, Any]:
        return {
            "startTime": start,
            "endTime": end,
            "statsType": kind,
            "values": orjson.dumps(values).decode(),
        }

    log = [
        {"time": "2025-03-01T09:59:59.000Z", "type": "createOffer", "value": ""},
        {
            "time": "2025-03-01T09:59:59.500Z",
            "type": "iceconnectionstatechange",
            "value": "checking",
        },
        {
            "time": "2025-03-01T10:00:00.000Z",
            "type": "iceconnectionstatechange",
            "value": "connected",
        },
        {"time": "2025-03-01T10:00:00.100Z", "type": "connectionstatechange", "value": "connected"},
    ]
    stats = {
        "T1-selectedCandidatePairId": series("transport", ["CP1"] * 5),
        "CP1-currentRoundTripTime": series("candidate-pair", [0.02, 0.03, 0.5, 0.6, 0.7]),
        "CP1-state": series("candidate-pair", ["succeeded"] * 5),
        "CP1-nominated": series("candidate-pair", [True] * 5),
        "IT1-packetsReceived": series("inbound-rtp", [100, 200, 300, 400, 500]),
        "IT1-packetsLost": series("inbound-rtp", [0, 0, 0, 1, 2]),
        "IT1-kind": series("inbound-rtp", ["audio"] * 5),
        "IT1-[packetsReceived/s]": series("inbound-rtp", [100] * 5),
    }
    return {
        "getUserMedia": [],
        "PeerConnections": {
            "1234-1": {
                "pid": 1234,
                "rtcConfiguration": "{ iceServers: [] }",
                "constraints": "",
                "url": "https://meet.example.com/room",
                "updateLog": log,
                "stats": stats,
            }
        },
        "UserAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    }


async def test_webrtc_internals_export_is_converted_with_its_peer_connections(
    collector: RunningCollector,
) -> None:
    c = collector
    text = orjson.dumps(internals_export())
    # A .txt export sent as JSON (not an assemble call: a dump), and the .gz form.
    for status, answer in (
        await post_raw(c, text, content_type="application/json"),
        await post_chunks(c, gzip.compress(text), "internals.gz", size=1024),
    ):
        session_id = stored_answer(status, answer)
        record = await c.wait_for_analysis(session_id, headers=auth(READ))
        assert record["upload_layout"] == "webrtc-internals"
        assert record["pc_count"] == 1 and record["browser"] == "Chrome"
        pcs = record["quality"]["peer_connections"]
        assert [pc["pc_id"] for pc in pcs] == ["1234-1"]
        assert record["max_rtt_ms"] >= 500  # from the stats series
        assert "high_rtt" in record["findings"]
        # Measured from the connection's first update, not from 0.
        assert pcs[0]["connect_time_ms"] == 1100.0
        assert "slow_connect" not in record["findings"]
        assert record["started_at"].startswith("2025-03-01T09:59:59")
        async with c.http.get(
            f"{c.base_url}/v1/sessions/{session_id}/dump", headers=auth(READ)
        ) as response:
            lines = [orjson.loads(line) for line in (await response.text()).splitlines()[2:]]
        stats = [line for line in lines if line[0] == "getstats"]
        assert len(stats) == 5
        assert stats[-1][2]["IT1"]["packetsLost"] == 2
        assert "[packetsReceived/s]" not in stats[-1][2]["IT1"]  # the page's own rates


async def test_documented_errors(tmp_path: Path, fixtures_dir: Path) -> None:
    settings = {
        "api": {"tokens": TOKENS},
        # Room for one raw upload in progress (1 MiB besides its bytes) and 60 kB more.
        "uploads": {
            "max_bytes": 50_000,
            "max_chunk_bytes": 20_000,
            "max_pending_bytes": UPLOAD_COST + 60_000,
        },
    }
    body = (fixtures_dir / "real" / "jitsi-firefox97-standard-stats-sfu.jsonl").read_bytes()
    big = (fixtures_dir / "real" / "jitsi-google-standard-stats-sfu.jsonl").read_bytes()
    async with run_collector(tmp_path / "data", settings) as c:

        async def error(status: int, answer: dict[str, Any], want: int, code: str) -> None:
            assert status == want, answer
            assert set(answer) == {"error", "errorCode"} and answer["errorCode"] == code
            assert answer["error"]

        await error(*await post_raw(c, body, token="wrong-token"), 401, "unauthorized")
        await error(*await post_raw(c, body, token=""), 401, "unauthorized")
        await error(*await post_raw(c, body, token=READ), 403, "forbidden")
        await error(*await get(c, "/v1.0/sessions", token="wrong"), 401, "unauthorized")
        await error(*await post_raw(c, big), 413, "too_large")
        await error(*await post_chunks(c, big, "big.jsonl", size=15_000), 413, "too_large")
        await error(*await post_chunks(c, big[:25_000], "one.jsonl", size=25_000), 413, "too_large")
        await error(*await post_raw(c, b"\x00garbage\xff" * 100), 415, "parsing_issue")
        await error(*await post_raw(c, gzip.compress(b"not a dump\n")), 415, "parsing_issue")
        await error(*await post_raw(c, gzip.compress(body)[:-50]), 415, "parsing_issue")
        await error(*await post_raw(c, b""), 400, "bad_request")
        await error(*await post_chunks(c, body, "x.jsonl", size=5_000, skip=2), 400, "bad_request")
        call = {"fileId": "never-sent", "assemble": True, "fileName": "x"}
        async with c.http.post(c.base_url + "/v1.0/upload", json=call, headers=auth(UPLOAD)) as r:
            await error(r.status, await r.json(), 400, "bad_request")
        await error(*await get(c, "/v1.0/sessions?hasCritical=maybe"), 400, "bad_request")
        await error(*await get(c, "/v1.0/sessions/not-an-id"), 400, "bad_request")
        await error(*await get(c, "/v1.0/sessions/" + "0" * 32), 404, "not_found")
        # Unassembled chunks are bounded (the chunks of x.jsonl included): files keeping
        # chunks waiting fill the area, then uploads get 503 until they expire.
        answers = []
        for index in range(200):
            form = aiohttp.FormData()
            form.add_field("chunk", b"x" * 14_000, filename="f", content_type="text/plain")
            for field, value in (
                ("fileId", f"f{index}"),
                ("chunkIndex", "0"),
                ("totalChunks", "9"),
            ):
                form.add_field(field, value)
            async with c.http.post(
                c.base_url + "/v1.0/upload", data=form, headers=auth(UPLOAD)
            ) as r:
                answers.append((r.status, await r.json()))
            if r.status != 200:
                break
        # Each file: its 14,000 bytes, 4 KiB for the chunk and 4 KiB for the file.
        assert answers[0][0] == 200 and answers[-1][0] == 503
        assert 40 < len(answers) < 60
        await error(*answers[-1], 503, "busy")
        await error(*await post_raw(c, body[:20_000] + b"\n"), 503, "busy")
        metrics = await (await c.http.get(c.base_url + "/metrics", headers=auth(READ))).text()
        assert 'rtcstats_received_uploads_total{outcome="parsing_issue"} 3.0' in metrics


async def test_unassembled_chunks_expire(tmp_path: Path, fixtures_dir: Path) -> None:
    body = (fixtures_dir / "real" / "jitsi-firefox97-standard-stats-sfu.jsonl").read_bytes()
    settings = {"uploads": {"chunk_ttl_s": 0.3}}
    async with run_collector(tmp_path / "data", settings) as c:
        chunks_dir = c.config.uploads_dir / "chunks"
        status, _ = await post_chunks(c, body, "late.jsonl", size=10_000, skip=1)
        assert status == 400  # chunk 1 never came
        assert any(chunks_dir.iterdir())

        def empty() -> bool:
            return not any(chunks_dir.iterdir())

        await wait_until(empty, 10, "unassembled chunks to expire")
        # What is sent later finds nothing to join.
        call = {"fileId": "x", "assemble": True, "fileName": "late.jsonl"}
        async with c.http.post(c.base_url + "/v1.0/upload", json=call) as r:
            assert r.status == 400


async def test_our_forwarder_uploads_to_our_own_server(tmp_path: Path, fixtures_dir: Path) -> None:
    """Collector A forwards a streamed session to collector B's /v1.0/upload."""
    async with run_collector(tmp_path / "b", {"api": {"tokens": TOKENS}}) as b:
        forwarder = {
            "endpoint": b.base_url + "/v1.0/upload",
            "token": UPLOAD,
            "chunk_bytes": 16 * 1024,  # several chunks
            "timeout_s": 20.0,
            "poll_interval_s": 0.1,
        }
        async with run_collector(tmp_path / "a", {"forwarders": {"rtcstats_com": forwarder}}) as a:
            stream = streams.jitsi_disk_dump(
                fixtures_dir, "jitsi-chrome-standard-pc-failed.jsonl", "fw-own"
            )
            async with a.http.ws_connect(
                a.ws_url + stream.path, protocols=(stream.subprotocol,)
            ) as ws:
                await ws.receive_json(timeout=5)  # the sn handshake
                for message in stream.messages:
                    await ws.send_str(message)
                await ws.close(code=stream.close_code)
            record = await a.wait_for_record(
                lambda r: r["client_session_id"] == "fw-own" and r["state"] == "stored"
            )
            record = await a.wait_for_analysis(record["id"])
            found: dict[str, Any] = {}

            async def uploaded() -> bool:
                found.update(await a.get_json(f"/v1/sessions/{record['id']}"))
                return found.get("forward_state") in ("uploaded", "failed")

            await wait_until(uploaded, 30, "the forwarder's upload to collector B")
            assert found["forward_state"] == "uploaded", found.get("forward_error")
            remote_id = found["rtcstats_id"]
            assert found["embed_url"].startswith(b.base_url + f"/view/{remote_id}?")
            # B holds the session, converted to fileFormat 3 by A's forwarder.
            remote = await b.wait_for_analysis(remote_id, headers=auth(READ))
            assert remote["dialect"] == "upload"
            assert remote["upload_layout"] == "rtcstats-dump"
            assert remote["pc_count"] == record["pc_count"] == 3
            assert remote["findings"] == record["findings"]
            # The viewer URL A recorded opens the session on B.
            async with a.http.get(found["embed_url"]) as page:
                assert page.status == 200
                assert remote_id in await page.text()
            # B does not send the upload on (no forwarder there, and never for uploads).
            assert remote.get("forward_state") is None
