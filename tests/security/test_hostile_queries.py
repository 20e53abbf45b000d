"""Query strings a stranger writes by hand against a live collector: Unicode digits,
non-ASCII signatures, numbers of 400 digits, times outside any calendar we keep.

Each must get a 4xx in the shape of its route (``{error, detail}`` on ``/v1``,
``{error, errorCode}`` on ``/v1.0``, an HTML page under ``/view``) and must leave no
ERROR line and no traceback in the log: aiohttp answers an exception that escapes a
handler with a 500 and logs its traceback, which is what these used to do.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest

from rtcstats_server.http.access import hash_token
from tests.services.collector import RunningCollector, run_collector
from tests.services.stored_dumps import store_dump_file

NINES = "9" * 400
#: Digits that are not ASCII: ``str.isdigit()`` and ``int()`` take them, we do not.
FULLWIDTH_123 = "\uff11\uff12\uff13"
ARABIC_INDIC_3 = "\u0663"


def cursor(*parts: Any) -> str:
    """A cursor as the API encodes one, around whatever a stranger puts inside."""
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


#: Query strings of GET /v1/sessions and GET /v1.0/sessions that name no session.
LIST_QUERIES = [
    "since=²",
    "until=²",
    "since=" + FULLWIDTH_123,
    "until=" + ARABIC_INDIC_3,
    "since=" + NINES,
    "until=0001-01-01T00:00:00",
    "since=0001-01-01T00:00:00%2B01:00",  # valid ISO 8601, not representable in UTC
    "until=9999-12-31T23:00:00-05:00",
    "since=-62135596800000",
    "since=%FF%FE",
    "cursor=" + cursor("0001-01-01T00:00:00", "a" * 32),
    "cursor=" + cursor("0001-01-01T00:00:00+01:00", "a" * 32),
    "cursor=" + cursor("0001-01-01T00:00:00+00:00", "a" * 32),
    "cursor=" + cursor("9999-12-31T23:59:59-12:00", "a" * 32),
    "cursor=" + cursor(1, 2),
    "cursor=" + cursor("2024-01-01T00:00:00+00:00"),
    "cursor=" + base64.urlsafe_b64encode(b'{"a": 1}').decode(),
    "cursor=" + quote("é"),
    "cursor=" + quote("@@@"),
    "limit=²",
    "limit=" + ARABIC_INDIC_3,
    "limit=" + NINES,
]
V1_ONLY_QUERIES = ["min_loss_pct=²", "min_loss_pct=nan", "min_loss_pct=1e999", "state=²"]


@pytest.fixture
async def stored(collector: RunningCollector, fixtures_dir: Path) -> dict[str, Any]:
    """A stored session and the query string of an expiring signed viewer link."""
    path = fixtures_dir / "real" / "jitsi-firefox97-standard-stats-sfu.jsonl"
    session_id = await store_dump_file(collector, path)
    url = f"{collector.base_url}/v1/sessions/{session_id}/viewer-url"
    async with collector.http.post(url) as response:
        link = (await response.json())["viewer_url"]
    return {"id": session_id, "query": urlsplit(link).query}


async def answer(collector: RunningCollector, path: str) -> tuple[int, str, bytes]:
    async with collector.http.get(collector.base_url + path) as response:
        return response.status, response.content_type, await response.read()


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def test_api_queries(
    collector: RunningCollector, stored: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Sanity: the session is listed, so a 400 below is the parameter's, not an empty store.
    listed = await collector.get_json("/v1/sessions?since=0")
    assert [r["id"] for r in listed["sessions"]] == [stored["id"]]
    for query in LIST_QUERIES + V1_ONLY_QUERIES:
        status, kind, body = await answer(collector, f"/v1/sessions?{query}")
        assert status == 400, (query, status, body)
        assert kind == "application/json", query
        assert set(orjson.loads(body)) == {"error", "detail"}, query
    for query in LIST_QUERIES:
        status, kind, body = await answer(collector, f"/v1.0/sessions?{query}")
        assert status == 400, (query, status, body)
        assert kind == "application/json", query
        assert set(orjson.loads(body)) == {"error", "errorCode"}, query
    for path in (
        f"/v1/sessions/{stored['id']}/dump?format=²",
        "/v1/sessions/²",
        "/v1.0/sessions/²",
        "/v1.0/sessions/" + NINES,
    ):
        status, kind, body = await answer(collector, path)
        assert 400 <= status < 500 and kind == "application/json", (path, status, body)
    no_traceback(caplog)


async def test_viewer_links(
    collector: RunningCollector, stored: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base = f"/view/{stored['id']}"
    good = stored["query"]
    exp = dict(part.split("=", 1) for part in good.split("&"))["exp"]
    status, kind, _ = await answer(collector, f"{base}?{good}")
    assert (status, kind) == (200, "text/html")  # the link itself works
    hostile = {
        "exp=²": f"exp=²&sig={good.split('sig=', 1)[1]}",
        "fullwidth exp": f"exp={FULLWIDTH_123}&sig={good.split('sig=', 1)[1]}",
        "exp of 400 digits": f"exp={NINES}&sig={good.split('sig=', 1)[1]}",
        "non-ASCII sig": f"exp={exp}&sig=" + quote("é" * 20),
        "sig of one non-ASCII char": f"exp={exp}&sig=" + quote("²"),
        "lasting, non-ASCII sig": "sig=" + quote("é" * 20),
        "lasting, sig of 400 digits": f"sig={NINES}",
        "empty exp": f"exp=&sig={good.split('sig=', 1)[1]}",
    }
    for name, query in hostile.items():
        for sub in ("", "/samples.jsonl", "/events/0", "/property.jsonl"):
            status, kind, _ = await answer(collector, f"{base}{sub}?{query}")
            assert (status, kind) == (403, "text/html"), (name, sub, status)
    windows = {
        "from/to=²": "from=²&to=²",
        "fullwidth window": f"from={ARABIC_INDIC_3}&to={FULLWIDTH_123}",
        "to of 400 nines": f"from=0&to={NINES}",
        "from of 400 nines": f"from={NINES}&to={NINES}9",
        "to only": "to=5",
        "empty": "from=&to=",
    }
    for name, window in windows.items():
        for sub in ("", "/samples.jsonl", "/property.jsonl"):
            status, kind, _ = await answer(collector, f"{base}{sub}?{good}&{window}")
            assert (status, kind) == (400, "text/html"), (name, sub, status)
    for index in ("²", FULLWIDTH_123, NINES, "-1"):
        status, kind, _ = await answer(collector, f"{base}/events/{quote(index)}?{good}")
        assert (status, kind) == (404, "text/html"), (index, status)
    # the raw property chart: names are client data, looked up, never parsed; too long → 400
    for pick in (f"pc=PC_0&report=x&property={'p' * 301}", "pc=&report=x&property=y", "pc=x"):
        status, kind, _ = await answer(collector, f"{base}/property.jsonl?{good}&{pick}")
        assert (status, kind) == (400, "text/html"), (pick, status)
    odd = f"pc={quote(FULLWIDTH_123)}&report=%00&property={quote('²')}"
    status, kind, _ = await answer(collector, f"{base}/property.jsonl?{good}&{odd}")
    assert (status, kind) == (200, "application/x-ndjson"), status
    no_traceback(caplog)


UPGRADE = (
    b"GET /room HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: 2.0\r\n"
)
ADMIN = "admin-token-hostile-queries"


async def raw_status(port: int, request: bytes) -> int:
    """The status of one request sent byte for byte (clients refuse to send these)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(head.split(b" ")[1])


async def test_headers_that_are_not_utf8_or_not_urls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp hands header bytes that are not UTF-8 over as lone surrogates: hashing,
    parsing or storing them raised (Authorization, Origin, User-Agent)."""
    caplog.set_level(logging.DEBUG)
    tokens = [{"name": "a", "sha256": hash_token(ADMIN), "scope": "admin"}]
    settings = {"api": {"tokens": tokens}, "auth": {"allowed_origins": ["https://a.example"]}}
    async with run_collector(tmp_path / "guarded", settings) as c:
        bearer = b"GET /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
        assert await raw_status(c.port, bearer) == 401
        for origin in (b"http://\xff", b"http://[::1", b"https://a.example:99999"):
            assert await raw_status(c.port, UPGRADE + b"Origin: " + origin + b"\r\n\r\n") == 403
    async with run_collector(tmp_path / "open") as c:
        reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
        writer.write(UPGRADE + b"User-Agent: Mozilla \xff\xfe\r\nOrigin: http://\xff\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 10)).split(b" ")[1] == b"101"
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(masked_frame(0x1, b'["create","PC_0",{},1]'))
        writer.write(masked_frame(0x8, (1000).to_bytes(2, "big")))
        await writer.drain()
        record = await c.wait_for_record(lambda r: r["state"] == "stored")
        writer.close()
        assert record["user_agent"] == "Mozilla \ufffd\ufffd"
        assert record["origin"] == "http://\ufffd"
        assert record["messages"] == 1
    no_traceback(caplog)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One short websocket frame as a client sends it (RFC 6455: masked)."""
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body
