"""The rtcstats.com upload API (DESIGN section 4), as a client.

A dump goes up as multipart POSTs of fixed-size chunks sharing one ``fileId``, then
one JSON ``assemble`` call answers with the ids and viewer URLs. Every attempt uses a
fresh ``fileId``: half-sent chunks of a failed attempt are never mixed into the next.

Which failures are worth another attempt is decided here, from the HTTP status:
429, 5xx, 408, timeouts and dropped connections may pass later; 400, 401, 402, 413
and 415 (and any other 4xx) will fail the same way again, so they are final.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import orjson

from rtcstats_server.config import RtcstatsComConfig
from rtcstats_server.exceptions import UpstreamError
from rtcstats_server.forwarders.base import BeforeCommit, PayloadFormat, Upload, UploadResult

#: Statuses after which the same request can succeed later.
RETRYABLE_STATUSES = frozenset({408, 425, 429})

#: Longest upstream error text kept in a record (bodies of proxies can be whole pages).
MAX_ERROR_CHARS = 300


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None  # an HTTP date: rare enough that our own backoff will do


async def _answer(response: aiohttp.ClientResponse, step: str) -> dict[str, Any]:
    """The JSON body of a successful answer, or the UpstreamError the status means."""
    body = await response.read()
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        data = None
    if response.status == 200 and isinstance(data, dict) and data.get("success") is True:
        return data
    status = response.status
    if isinstance(data, dict) and (data.get("error") or data.get("errorCode")):
        error = str(data.get("error") or data.get("errorCode"))[:MAX_ERROR_CHARS]
        code = str(data["errorCode"])[:64] if data.get("errorCode") is not None else None
    else:
        text = body.decode("utf-8", "replace").strip()
        error = f"{step}: {text[:MAX_ERROR_CHARS] or response.reason or 'empty answer'}"
        code = None
    if status == 200:
        # A 200 without success: the upstream refused on its own terms; the same bytes
        # would be refused again.
        raise UpstreamError(error, retryable=False, status=status, error_code=code)
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    raise UpstreamError(
        error,
        retryable=retryable,
        status=status,
        error_code=code,
        retry_after_s=_retry_after(response) if retryable else None,
    )


class RtcstatsComForwarder:
    name = "rtcstats_com"
    payload_format: PayloadFormat = "file_format_3"

    def __init__(self, config: RtcstatsComConfig) -> None:
        self.config = config
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("forwarder used before open()")
        return self._http

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token.get_secret_value()}"}

    async def upload(
        self, upload: Upload, before_commit: BeforeCommit | None = None
    ) -> UploadResult:
        try:
            return await self._upload(upload, before_commit)
        except UpstreamError:
            raise
        except TimeoutError:
            raise UpstreamError(
                f"no answer within {self.config.timeout_s:g} s", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"connection failed: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS],
                retryable=True,
            ) from None

    async def _upload(self, upload: Upload, before_commit: BeforeCommit | None) -> UploadResult:
        file_id = uuid.uuid4().hex
        size = self.config.chunk_bytes
        total = max(1, -(-upload.size // size))
        handle = await asyncio.to_thread(upload.path.open, "rb")
        try:
            for index in range(total):
                chunk = await asyncio.to_thread(handle.read, size)
                await self._send_chunk(upload, file_id, index, total, chunk)
        finally:
            await asyncio.to_thread(handle.close)
        if before_commit is not None:
            # Chunks alone commit nothing (a fresh fileId per attempt); assemble does.
            await before_commit()
        async with self.http.post(
            self.config.endpoint,
            json={"fileId": file_id, "assemble": True, "fileName": upload.file_name},
            headers=self._headers(),
        ) as response:
            answer = await _answer(response, "assemble")
        rtcstats_id = answer.get("rtcstatsId")
        if not isinstance(rtcstats_id, str | int) or not answer.get("rtcstatsUrl"):
            # Assembled but unusable: another attempt would upload the dump twice.
            raise UpstreamError(
                "assemble answered success without rtcstatsId/rtcstatsUrl",
                retryable=False,
                status=response.status,
                error_code="bad_answer",
            )
        embed_url = answer.get("embedUrl") or None
        return UploadResult(
            upstream_id=str(rtcstats_id),
            record_fields={
                "rtcstats_id": str(rtcstats_id),
                "rtcstats_url": str(answer["rtcstatsUrl"]),
                "embed_url": str(embed_url) if embed_url else None,
                # Plans without embedding answer no embedUrl: say so, so a dashboard
                # can tell "not uploaded yet" from "never embeddable".
                "embed_url_absent": embed_url is None,
            },
        )

    async def _send_chunk(
        self, upload: Upload, file_id: str, index: int, total: int, chunk: bytes
    ) -> None:
        form = aiohttp.FormData()
        form.add_field(
            "chunk", chunk, filename=upload.file_name, content_type="application/octet-stream"
        )
        form.add_field("fileId", file_id)
        form.add_field("chunkIndex", str(index))
        form.add_field("totalChunks", str(total))
        form.add_field("fileName", upload.file_name)
        async with self.http.post(
            self.config.endpoint, data=form, headers=self._headers()
        ) as response:
            await _answer(response, f"chunk {index + 1}/{total}")
