"""An rtcstats.com upload API stand-in (DESIGN section 4), with faults on demand.

It keeps the chunk bookkeeping of the real protocol: multipart chunks with ``chunk``,
``fileId``, ``chunkIndex``, ``totalChunks``, ``fileName``; a JSON ``assemble`` call
that needs every chunk; the ``{error, errorCode}`` bodies with 400 / 401 / 402 /
413 / 415. Assembled files are parsed the way the rtcstats.com reader needs them
(``RTCStatsDump``, a metadata object with ``fileFormat: 3``, arrays ending in a time)
and kept, so tests can count uploads and read what arrived.

One assumption is ours: an assemble whose client hangs up before the answer (a
timeout, a stopped collector) is not committed. The real service may behave
otherwise; then such a retry could create a second upload upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.services.collector import free_port

MAX_CHUNK = 1 << 20


@dataclass
class Fault:
    """What to do instead of answering normally, for the next ``times`` matching calls."""

    step: Literal["chunk", "assemble"]
    action: Literal["status", "drop", "hold", "slow"] = "status"
    status: int = 500
    error: str = "Internal server error"
    error_code: str | None = "internal_error"
    chunk_index: int | None = None
    times: int = 1
    delay_s: float = 0.0


@dataclass
class Assembled:
    rtcstats_id: str
    file_id: str
    file_name: str
    content: bytes


@dataclass
class _File:
    total: int
    name: str
    chunks: dict[int, bytes] = field(default_factory=dict)


def _refuse(status: int, error: str, code: str) -> web.Response:
    return web.json_response({"error": error, "errorCode": code}, status=status)


def parse_issue(content: bytes) -> str | None:
    """Why the rtcstats.com reader could not read this file, or None."""
    lines = content.split(b"\n")
    if lines[0] != b"RTCStatsDump":
        return "first line is not RTCStatsDump"
    try:
        meta = orjson.loads(lines[1])
    except (orjson.JSONDecodeError, IndexError):
        return "metadata line is not JSON"
    if not isinstance(meta, dict) or meta.get("fileFormat") != 3:
        return "metadata must be an object with fileFormat 3"
    for number, line in enumerate(lines[2:], start=3):
        if not line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return f"line {number} is not JSON"
        if not isinstance(entry, list) or len(entry) < 4:
            return f"line {number} is not [method, pcId, value, ..., delta]"
        if not isinstance(entry[-1], int | float) or isinstance(entry[-1], bool):
            return f"line {number} does not end with a time delta"
    return None


class Upstream:
    def __init__(self, token: str = "test-token", embed: bool = True) -> None:
        self.token = token
        self.embed = embed
        self.faults: list[Fault] = []
        self.files: dict[str, _File] = {}
        self.assembled: list[Assembled] = []
        self.abandoned = 0
        self.requests: list[tuple[str, int]] = []
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0/upload"

    def inject(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def uploads_of(self, session_id: str) -> list[Assembled]:
        return [a for a in self.assembled if a.file_name == f"{session_id}.jsonl"]

    def _fault(self, step: str, index: int | None = None) -> Fault | None:
        for fault in self.faults:
            if fault.step == step and (fault.chunk_index is None or fault.chunk_index == index):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def _apply(self, request: web.Request, fault: Fault | None) -> web.Response | None:
        if fault is None:
            return None
        if fault.action == "status":
            body: dict[str, Any] = {"error": fault.error}
            if fault.error_code is not None:
                body["errorCode"] = fault.error_code
            return web.json_response(body, status=fault.status)
        if fault.action == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never reaches the client
        try:
            if fault.action == "hold":
                self.holding.set()
                await self.release.wait()
            else:
                await asyncio.sleep(fault.delay_s)  # the upstream being slow, not a test wait
        except asyncio.CancelledError:
            self.abandoned += 1  # the client hung up: nothing is committed
            raise
        return None

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.requests.append(("auth", 401))
            return _refuse(401, "Invalid or missing token", "unauthorized")
        if request.content_type == "multipart/form-data":
            response = await self._chunk(request)
            step = "chunk"
        else:
            response = await self._assemble(request)
            step = "assemble"
        self.requests.append((step, response.status))
        return response

    async def _chunk(self, request: web.Request) -> web.Response:
        form = await request.post()
        values: dict[str, Any] = {}
        for name in ("chunk", "fileId", "chunkIndex", "totalChunks", "fileName"):
            if name not in form:
                return _refuse(400, f"missing field {name}", "bad_request")
            values[name] = form[name]
        chunk = values["chunk"]
        if not isinstance(chunk, web.FileField):
            return _refuse(400, "chunk must be a file", "bad_request")
        data = chunk.file.read()
        try:
            index, total = int(values["chunkIndex"]), int(values["totalChunks"])
        except ValueError:
            return _refuse(400, "chunkIndex and totalChunks are integers", "bad_request")
        if not 0 <= index < total:
            return _refuse(400, "chunkIndex out of range", "bad_request")
        if len(data) > MAX_CHUNK:
            return _refuse(413, "chunk larger than 1 MiB", "too_large")
        refused = await self._apply(request, self._fault("chunk", index))
        if refused is not None:
            return refused
        file_id, name = str(values["fileId"]), str(values["fileName"])
        upload = self.files.setdefault(file_id, _File(total, name))
        if upload.total != total or upload.name != name:
            return _refuse(400, "totalChunks/fileName differ between chunks", "bad_request")
        upload.chunks[index] = data
        return web.json_response({"success": True})

    async def _assemble(self, request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=orjson.loads)
        except orjson.JSONDecodeError:
            return _refuse(400, "body is not JSON", "bad_request")
        if not isinstance(body, dict) or body.get("assemble") is not True:
            return _refuse(400, "expected {fileId, assemble: true, fileName}", "bad_request")
        upload = self.files.get(str(body.get("fileId")))
        if upload is None or upload.name != body.get("fileName"):
            return _refuse(400, "unknown fileId", "bad_request")
        if len(upload.chunks) != upload.total:
            return _refuse(400, "chunks missing", "bad_request")
        refused = await self._apply(request, self._fault("assemble"))
        if refused is not None:
            return refused
        content = b"".join(upload.chunks[i] for i in range(upload.total))
        problem = parse_issue(content)
        if problem is not None:
            return _refuse(415, problem, "parsing_issue")
        del self.files[str(body["fileId"])]
        rtcstats_id = uuid.uuid4().hex
        self.assembled.append(Assembled(rtcstats_id, str(body["fileId"]), upload.name, content))
        answer: dict[str, Any] = {
            "success": True,
            "rtcstatsId": rtcstats_id,
            "rtcstatsUrl": f"https://rtcstats.example/dumps/{rtcstats_id}",
        }
        if self.embed:
            answer["embedUrl"] = f"https://rtcstats.example/embed/{rtcstats_id}"
        return web.json_response(answer)


@asynccontextmanager
async def run_upstream(token: str = "test-token", embed: bool = True) -> AsyncIterator[Upstream]:
    upstream = Upstream(token, embed)
    app = web.Application(client_max_size=4 << 20)
    app.router.add_post("/v1.0/upload", upstream.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", upstream.port).start()
    try:
        yield upstream
    finally:
        upstream.release.set()
        with contextlib.suppress(Exception):
            await runner.cleanup()
