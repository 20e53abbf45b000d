"""Helpers of the cluster tests: collector settings and a real-protocol 3.1 client.

``Client31`` behaves as the jitsi client's trace-ws.js does: every stats entry goes
into a buffer; an ``sn`` drops the buffer up to that seq (a seq it does not hold:
nothing dropped); on an ``initial`` sn after a (re)connect the whole buffer is sent
again; it reconnects with ``isReconnect=true`` under the same statsSessionId.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.services.seaweedfs import SeaweedFS
from tests.services.session_stores import TEST_DATABASE


def cluster_settings(
    node_id: str, uri: str, collection: str, bucket: SeaweedFS, prefix: str, **ingest: Any
) -> dict[str, Any]:
    return {
        "server": {"cluster": True, "node_id": node_id},
        "metadata": {
            "backend": "mongodb",
            "uri": uri,
            "database": TEST_DATABASE,
            "collection": collection,
            "timeout_s": 10.0,
            "retry_interval_s": 0.2,
        },
        "storage": bucket.storage_settings(prefix),
        "ingest": {"ack_every_entries": 20, "resume_grace_s": 1.0, **ingest},
        "dumps": {"flush_interval_s": 0.2},
        "quality": {"enabled": False},
    }


def settings_env(tree: dict[str, Any]) -> dict[str, str]:
    """``RTCSTATS_<SECTION>__<KEY>`` variables for a collector started as a process."""
    env: dict[str, str] = {}
    for section, values in tree.items():
        for key, value in values.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            env[f"RTCSTATS_{section.upper()}__{key.upper()}"] = text
    return env


class Client31:
    def __init__(
        self, http: aiohttp.ClientSession, base_ws: str, sid: str, query: str = ""
    ) -> None:
        self.http = http
        self.query = query
        self.base_ws = base_ws
        self.sid = sid
        self.buffer: list[tuple[int, str]] = []
        self.next_seq = 1
        self.connections = 0
        #: Connects the balancer refused (retried, as the real client does).
        self.refused = 0
        #: The highest seq a collector acknowledged on the current connection.
        self.acked = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    def entry(self, seq: int) -> str:
        data = json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000 + seq, seq])
        return json.dumps({"statsSessionId": self.sid, "type": "stats-entry", "data": data})

    async def connect(self) -> int:
        reconnect = "true" if self.connections else "false"
        self.connections += 1
        url = f"{self.base_ws}/room?statsSessionId={self.sid}&isReconnect={reconnect}"
        if self.query:
            url += f"&{self.query}"
        for attempt in range(20):  # as the real client: a refused connect is retried
            try:
                self.ws = await self.http.ws_connect(
                    url, protocols=("3.1_STANDARD",), heartbeat=None
                )
                break
            except (aiohttp.WSServerHandshakeError, aiohttp.ClientConnectionError):
                if attempt == 19:
                    raise
                self.refused += 1
                await asyncio.sleep(0.2)
        assert self.ws is not None
        hello = await self.ws.receive_json(timeout=10)
        assert hello["type"] == "sn", hello
        value = int(hello["body"]["value"])
        self.acked = 0
        self._acked(value)
        for _, text in self.buffer:
            await self.ws.send_str(text)
        self._reader = asyncio.create_task(self._read(self.ws))
        return value

    def _acked(self, value: int) -> None:
        seqs = [seq for seq, _ in self.buffer]
        if value in seqs:
            self.buffer = self.buffer[seqs.index(value) + 1 :]

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                body = json.loads(message.data)
                if body.get("type") == "sn":
                    value = int(body["body"]["value"])
                    self.acked = max(self.acked, value)
                    self._acked(value)

    async def send(self, count: int) -> None:
        assert self.ws is not None
        for _ in range(count):
            seq = self.next_seq
            self.next_seq += 1
            text = self.entry(seq)
            self.buffer.append((seq, text))
            await self.ws.send_str(text)

    async def wait_acked(self, seq: int, timeout: float = 15.0) -> None:
        """Until the current connection acknowledged ``seq`` (it is durable there)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.acked < seq:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{self.sid}: seq {seq} not acknowledged (at {self.acked})")
            await asyncio.sleep(0.02)

    @property
    def cut_off(self) -> bool:
        """The collector's side went away (its socket closed under the client)."""
        return self._reader is not None and self._reader.done()

    async def drop(self) -> None:
        """The socket goes away without a close the server would read as final."""
        assert self.ws is not None
        await self.ws.close(code=4000)
        if self._reader is not None:
            await self._reader

    async def leave(self) -> None:
        assert self.ws is not None
        await self.ws.close(code=3001)
        if self._reader is not None:
            await self._reader
