"""Credentials that must not stick, and proxies that must not pass for this host.

A JWT sent as ``?rtcstats%2Dtoken=`` was read as the token (the query parser decodes
names) but not cut from the url we store, so every record and dump kept it. And with
no API token configured, a request relayed by a proxy on this host that names its
client with ``X-Real-IP`` (or any header but the two we looked for) was served as a
local one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from yarl import URL

from tests.services.collector import RunningCollector, run_collector

SECRET = "hs256-secret-for-token-leak-tests-0123"

#: The parameter name as clients may write it: any byte percent-encoded, either case.
TOKEN_NAMES = [
    "rtcstats-token",
    "rtcstats%2Dtoken",
    "rtcstats%2dtoken",
    "%72tcstats-token",
    "%72%74%63%73%74%61%74%73%2d%74%6F%6B%65%6E",
]

PROXY_HEADERS = {
    "X-Real-IP": "203.0.113.9",
    "X-Client-IP": "203.0.113.9",
    "Client-IP": "203.0.113.9",
    "CF-Connecting-IP": "203.0.113.9",
    "True-Client-IP": "203.0.113.9",
    "Fastly-Client-IP": "203.0.113.9",
    "X-Cluster-Client-IP": "203.0.113.9",
    "X-Original-Forwarded-For": "203.0.113.9",
    "X-Envoy-External-Address": "203.0.113.9",
    "X-Forwarded-Host": "collector.example.com",
    "X-Forwarded-Proto": "https",
    "x-forwarded-for": "203.0.113.9",
    "Forwarded": "for=203.0.113.9",
    "Via": "1.1 proxy.example.com",
}


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    settings = {"auth": {"require_token": True, "jwt_secret": SECRET}}
    async with run_collector(tmp_path / "data", settings) as running:
        yield running


def token(user: str) -> str:
    claims = {"exp": int(time.time() + 300), "rtcStats": {"user": user}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_an_encoded_token_name_is_cut_from_the_stored_url(guarded: RunningCollector) -> None:
    for n, name in enumerate(TOKEN_NAMES):
        value = token(f"user-{n}")
        # encoded=True: sent byte for byte, as a client that encodes the name sends it.
        url = URL(f"{guarded.ws_url}/room-{n}?x=1&{name}={value}&y=2", encoded=True)
        async with guarded.http.ws_connect(url, protocols=("2.0",)) as ws:
            await ws.send_str('["create","PC_0",{},1]')
            await ws.close()
        record = await guarded.wait_for_record(
            lambda r, n=n: r["state"] == "stored" and r["url"].startswith(f"/room-{n}?")
        )
        assert record["user_id"] == f"user-{n}", name  # the server did read it as the token
        assert record["url"] == f"/room-{n}?x=1&y=2", name
        dump = await guarded.dump_text(record["id"])
        assert value not in dump and value.split(".")[2] not in str(record), name


async def test_proxy_headers_make_a_request_not_local(collector: RunningCollector) -> None:
    async def answer(path: str, headers: dict[str, str]) -> tuple[int, set[str]]:
        async with collector.http.get(collector.base_url + path, headers=headers) as response:
            body = await response.json() if response.status >= 400 else {}
            return response.status, set(body)

    for path in ("/v1/sessions", "/v1.0/sessions", "/metrics"):
        assert (await answer(path, {}))[0] == 200, path  # this host, asking itself
    for name, value in PROXY_HEADERS.items():
        status, fields = await answer("/v1/sessions", {name: value})
        assert (status, fields) == (403, {"error", "detail"}), name
        status, fields = await answer("/v1.0/sessions", {name: value})
        assert (status, fields) == (403, {"error", "errorCode"}), name
        assert (await answer("/metrics", {name: value}))[0] == 403, name
        assert (await answer("/healthz", {name: value}))[0] == 200, name
