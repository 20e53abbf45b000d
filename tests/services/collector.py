"""A real collector for tests: the aiohttp app on a free loopback port, in-process.

In-process (not a subprocess) so a test can reach the app's session manager, e.g. to
drop a client's socket, while clients still talk to it over real TCP.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from rtcstats_server.config import Config, build_config
from rtcstats_server.http.app import start_server, stop_server
from rtcstats_server.http.keys import MANAGER
from rtcstats_server.sessions.live import SessionManager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningCollector:
    app: web.Application
    config: Config
    port: int
    http: aiohttp.ClientSession

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def manager(self) -> SessionManager:
        return self.app[MANAGER]

    async def get_json(
        self, path: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> Any:
        async with self.http.get(self.base_url + path, headers=headers) as response:
            assert response.status == status, await response.text()
            return await response.json()

    async def wait_for_record(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first stored record matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            page = await self.get_json("/v1/sessions?limit=1000")
            for record in page["sessions"]:
                if predicate(record):
                    return record  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching record; have {page['sessions']}")
            await asyncio.sleep(0.05)

    async def wait_for_analysis(
        self, session_id: str, timeout: float = 30.0, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The record of a stored session once its analysis has set the quality summary
        (or said why there is none): the analysis runs after the finish, on its own."""
        deadline = time.monotonic() + timeout
        while True:
            path = f"/v1/sessions/{session_id}"
            record: dict[str, Any] = await self.get_json(path, headers=headers)
            if analysed(record):
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"session {session_id} not analysed; record {record}")
            await asyncio.sleep(0.05)

    async def upgrade_status(self, path: str, protocol: str = "3.1_STANDARD") -> int:
        """101 when a websocket upgrade to ``path`` (with its query) is accepted (the
        socket is closed again at once), else the HTTP status it was refused with."""
        try:
            ws = await self.http.ws_connect(self.ws_url + path, protocols=(protocol,))
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
        await ws.close()
        return 101

    async def metrics_text(self) -> str:
        async with self.http.get(self.base_url + "/metrics") as response:
            assert response.status == 200, await response.text()
            return await response.text()

    async def dump_text(self, session_id: str) -> str:
        async with self.http.get(f"{self.base_url}/v1/sessions/{session_id}/dump") as response:
            assert response.status == 200, await response.text()
            return await response.text()


def analysed(record: dict[str, Any]) -> bool:
    """The analysis fields are in the record (a summary, or why there is none)."""
    return record.get("quality") is not None or record.get("summary_error") is not None


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0, what: str = ""
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def run_collector(
    data_dir: Path, settings: dict[str, Any] | None = None, port: int | None = None
) -> AsyncIterator[RunningCollector]:
    """Start a collector with ``settings`` (config sections) over the defaults."""
    tree: dict[str, Any] = {k: dict(v) for k, v in (settings or {}).items()}
    tree.setdefault("server", {})
    tree["server"].setdefault("data_dir", str(data_dir))
    tree["server"].setdefault("host", "127.0.0.1")
    port = port or free_port()
    tree["server"]["port"] = port
    # Replay tests compare stored lines byte-for-byte with what was sent; tests of the
    # masking itself turn it back on.
    tree.setdefault("privacy", {}).setdefault("obfuscate_ip_addresses", False)
    config = build_config(tree, environ={})
    runner = await start_server(config)
    async with aiohttp.ClientSession() as http:
        try:
            yield RunningCollector(app=runner.app, config=config, port=port, http=http)
        finally:
            await stop_server(runner)
