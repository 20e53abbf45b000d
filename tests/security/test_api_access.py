"""API access: loopback only without tokens, bearer tokens with scopes, the API on
its own port, CORS only when configured."""

from __future__ import annotations

import hashlib

import aiohttp

from tests.services.collector import RunningCollector, free_port, run_collector

READ, ADMIN = "read-token-0123456789", "admin-token-0123456789"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def status(
    collector: RunningCollector,
    path: str,
    token: str | None = None,
    method: str = "GET",
    port: int | None = None,
    **headers: str,
) -> int:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://127.0.0.1:{port or collector.port}{path}"
    async with collector.http.request(method, url, headers=headers) as response:
        if response.status >= 400:
            assert set(await response.json()) == {"error", "detail"}
        return response.status


async def test_without_tokens_only_this_host_may_read(collector: RunningCollector) -> None:
    assert await status(collector, "/v1/sessions") == 200
    assert await status(collector, "/metrics") == 200
    # A proxy on this host relays strangers: a forwarded request is not a local one.
    assert await status(collector, "/v1/sessions", **{"X-Forwarded-For": "203.0.113.9"}) == 403
    assert await status(collector, "/metrics", Forwarded="for=203.0.113.9") == 403
    assert await status(collector, "/healthz", **{"X-Forwarded-For": "203.0.113.9"}) == 200


async def test_tokens_and_scopes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tokens = [
        {"name": "grafana", "sha256": sha(READ), "scope": "read"},
        {"name": "ops", "sha256": sha(ADMIN), "scope": "admin"},
    ]
    async with run_collector(tmp_path / "data", {"api": {"tokens": tokens}}) as c:
        session = "0" * 32
        assert await status(c, "/v1/sessions") == 401
        assert await status(c, "/v1/sessions", token="wrong") == 401
        assert await status(c, "/v1/sessions", token=READ) == 200
        assert await status(c, "/metrics", token=READ) == 200
        assert await status(c, f"/v1/sessions/{session}/forward", READ, "POST") == 403
        assert await status(c, f"/v1/sessions/{session}/forward", ADMIN, "POST") == 404
        assert await status(c, "/v1/sessions", token=ADMIN) == 200
        assert await status(c, "/healthz") == 200
        # No CORS unless configured.
        async with c.http.get(
            c.base_url + "/v1/sessions",
            headers={"Authorization": f"Bearer {READ}", "Origin": "https://ui.example.com"},
        ) as response:
            assert "Access-Control-Allow-Origin" not in response.headers


async def test_api_on_its_own_port_and_cors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    api_port = free_port()
    settings = {
        "api": {"listen": f"127.0.0.1:{api_port}", "cors_origins": ["https://ui.example.com"]}
    }
    async with run_collector(tmp_path / "data", settings) as c:
        # Public port: ingest and health only.
        assert await status(c, "/v1/sessions") == 404
        assert await status(c, "/metrics") == 404
        assert await status(c, "/healthz") == 200
        async with c.http.ws_connect(c.ws_url + "/room", protocols=("2.0",)) as ws:
            await ws.close()
        # API port: API, metrics and health, no ingest.
        assert await status(c, "/v1/sessions", port=api_port) == 200
        assert await status(c, "/metrics", port=api_port) == 200
        assert await status(c, "/readyz", port=api_port) == 200
        try:
            async with c.http.ws_connect(f"ws://127.0.0.1:{api_port}/room", protocols=("2.0",)):
                raise AssertionError("the API port took a websocket")
        except aiohttp.WSServerHandshakeError as refused:
            assert refused.status == 404
        origin = {"Origin": "https://ui.example.com"}
        async with c.http.options(
            f"http://127.0.0.1:{api_port}/v1/sessions",
            headers={**origin, "Access-Control-Request-Method": "GET"},
        ) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example.com"
        async with c.http.get(
            f"http://127.0.0.1:{api_port}/v1/sessions", headers={"Origin": "https://evil.com"}
        ) as response:
            assert "Access-Control-Allow-Origin" not in response.headers
