"""What a collector's log says about HTTP: a cancelled download is a counted DEBUG line,
not a 30-line ERROR traceback; with ``logging.access: true`` one line per API and
viewer request, JSON when the log is JSON, with no token or signature in it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtcstats_server.cli.replay import ReplayOptions, replay_file
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess
from tests.services.uploads import post_raw

#: 3.6 MB of JVB statistics.
BIG_DUMP = "real/jitsi-jvb-sample.jsonl"
ABORTS = 10
#: How long the aborting client waits between its first read and its reset: a client
#: (or a machine) that is slow must not let the server finish the response first.
CLIENT_PAUSE_S = 0.2
ADMIN = "admin-token-that-must-not-be-logged"


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts a collector process with the given environment; stops it at the end."""
    servers: list[CollectorProcess] = []

    async def starter(**env: str) -> CollectorProcess:
        server = CollectorProcess(tmp_path / f"data-{len(servers)}", env=env)
        servers.append(server)
        server.start()
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
        return server

    yield starter
    for server in servers:
        server.kill()


async def one_stored_session(server: CollectorProcess, fixtures: Path, **headers: str) -> str:
    summary, ok = await replay_file(fixtures / BIG_DUMP, server.ws_url, ReplayOptions())
    assert ok, summary
    (session,) = summary["sessions"]
    session_id: str = session["session_id"]
    async with aiohttp.ClientSession(headers=headers) as http:

        async def stored() -> bool:
            async with http.get(f"{server.base_url}/v1/sessions/{session_id}") as response:
                return response.status == 200 and (await response.json())["state"] == "stored"

        await wait_until(stored, what="the stored record")
    return session_id


def unsent_bound() -> int:
    """More bytes than a response can have left the server while its client reads
    nothing: the kernel's largest send buffer (``tcp_wmem``'s maximum, which
    autotuning reaches on loopback: 3.4 MB were buffered here) plus a margin for the
    server's own write buffers and the client's small receive window."""
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return wmem_max + (2 << 20)


async def session_larger_than(server: CollectorProcess, size: int) -> str:
    """A session whose dump (an upload, kept line for line) is at least ``size`` bytes."""
    header = {"fileFormat": 2, "clientProtocol": "3.1_STANDARD", "startTime": 1_700_000_000_000}
    pad = "x" * 8000
    lines = [b"RTCStatsDump", json.dumps(header).encode()]
    for i in range(size // len(pad) + 1):
        lines.append(json.dumps(["padding", "PC_0", f"{i} {pad}", 1_700_000_000_000 + i]).encode())
    async with aiohttp.ClientSession() as http:
        status, answer = await post_raw(http, server.base_url, b"\n".join(lines) + b"\n")
    assert status == 200, answer
    session_id: str = answer["rtcstatsId"]
    return session_id


def abort_download(port: int, path: str) -> None:
    """Ask for a dump, read a little, pause, then reset the connection (SO_LINGER 0)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: collector\r\n\r\n".encode())
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
        time.sleep(CLIENT_PAUSE_S)  # as a loaded machine might
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def aborted_total(http: aiohttp.ClientSession, server: CollectorProcess) -> float:
    async with http.get(server.base_url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("rtcstats_http_responses_aborted_total "):
                return float(line.split()[1])
    raise AssertionError("rtcstats_http_responses_aborted_total is not exposed")


async def test_cancelled_downloads_are_counted_debug_lines(start: Callable[..., Any]) -> None:
    server = await start(RTCSTATS_LOGGING__LEVEL="DEBUG")
    # A download the server cannot finish while the client reads nothing, however late
    # the client resets: with a smaller one (the 3.4 MB JVB dump fits in a loopback send
    # buffer) a slow client let the server complete, and nothing was aborted. So each
    # reset finds the server waiting for the client to read (aiohttp's "Connection
    # lost", once an uncounted ERROR traceback).
    bound = unsent_bound()
    session_id = await session_larger_than(server, bound)
    path = f"/v1/sessions/{session_id}/dump"
    async with aiohttp.ClientSession() as http:
        async with http.get(server.base_url + path) as response:
            assert response.status == 200
            assert len(await response.read()) > bound
    for _ in range(ABORTS):
        await asyncio.to_thread(abort_download, server.port, path)
    async with aiohttp.ClientSession() as http:

        async def all_counted() -> bool:
            return await aborted_total(http, server) == ABORTS

        await wait_until(all_counted, what=f"{ABORTS} aborted responses counted")
    log = server.log()
    assert "Traceback" not in log and " ERROR " not in log, log
    went_away = [line for line in log.splitlines() if "went away during the response" in line]
    assert len(went_away) == ABORTS and all(" DEBUG " in line for line in went_away)
    assert "http_request" not in log and "rtcstats_server.access" not in log  # off by default


async def test_access_log_in_json_without_credentials(
    start: Callable[..., Any], fixtures_dir: Path
) -> None:
    digest = hashlib.sha256(ADMIN.encode()).hexdigest()
    server = await start(
        RTCSTATS_LOGGING__ACCESS="true",
        RTCSTATS_LOGGING__FORMAT="json",
        RTCSTATS_LOGGING__LEVEL="WARNING",  # the access log has its own switch
        RTCSTATS_API__TOKENS=f"[{{name: ops, sha256: {digest}, scope: admin}}]",
    )
    bearer = {"Authorization": f"Bearer {ADMIN}"}
    session_id = await one_stored_session(server, fixtures_dir, **bearer)
    async with aiohttp.ClientSession() as http:
        url = f"{server.base_url}/v1/sessions/{session_id}/viewer-url"
        async with http.post(url, headers=bearer) as response:
            viewer_url = (await response.json())["viewer_url"]
        signature = viewer_url.split("sig=")[1].split("&")[0]
        view_path = viewer_url.split(str(server.port), 1)[1]
        async with http.get(server.base_url + view_path) as response:
            assert response.status == 200
            await response.read()
        # a client token in any spelling of its name, on a route that ignores it
        async with http.get(f"{server.base_url}/healthz?rtcstats%2Dtoken=jwt-secret-1&a=b"):
            pass
        async with http.get(server.base_url + "/v1/sessions?limit=5") as response:
            assert response.status == 401  # no token: still logged, with its status
    code, _ = await server.terminate()
    assert code == 0
    log = server.log()
    for secret in (ADMIN, signature, "jwt-secret-1", "Bearer"):
        assert secret not in log, secret
    entries = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    access = [e for e in entries if e.get("event") == "http_request"]
    assert all(e["logger"] == "rtcstats_server.access" and e["level"] == "INFO" for e in access)
    seen = [(e["method"], e["path"], e["status"]) for e in access]
    exp = view_path.split("exp=")[1].split("&")[0]
    assert ("POST", f"/v1/sessions/{session_id}/viewer-url", 200) in seen
    assert ("GET", f"/view/{session_id}?exp={exp}", 200) in seen  # exp kept, sig cut
    assert ("GET", "/healthz?a=b", 200) in seen
    assert ("GET", "/v1/sessions?limit=5", 401) in seen
    # the websocket session of the replay is not an access-log line
    assert not [e for e in access if e["status"] == 101 or "statsSessionId" in e["path"]]
    viewer = next(e for e in access if e["path"].startswith("/view/"))
    assert viewer["bytes_sent"] > 1000 and viewer["duration_ms"] >= 0
    assert viewer["remote"] == "127.0.0.x"  # masked like the records (privacy default)
    assert viewer["user_agent"].startswith("Python/")
