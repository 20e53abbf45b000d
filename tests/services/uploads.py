"""The /v1.0/upload protocol as the rtcstats.com clients speak it (our forwarder too):
one raw body, or multipart chunks then a JSON ``assemble`` call. For tests against an
in-process collector and a collector process alike."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp


async def post_raw(
    http: aiohttp.ClientSession,
    base_url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> tuple[int, dict[str, Any]]:
    headers = {**(headers or {}), "Content-Type": content_type}
    async with http.post(base_url + "/v1.0/upload", data=body, headers=headers) as response:
        return response.status, await response.json()


async def post_chunk(
    http: aiohttp.ClientSession,
    base_url: str,
    part: bytes,
    fields: dict[str, str],
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("chunk", part, filename=fields.get("fileName", "f"))
    for name, value in fields.items():
        form.add_field(name, value)
    async with http.post(base_url + "/v1.0/upload", data=form, headers=headers) as response:
        return response.status, await response.json()


async def assemble(
    http: aiohttp.ClientSession,
    base_url: str,
    file_id: str,
    name: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    call = {"fileId": file_id, "assemble": True, "fileName": name}
    async with http.post(base_url + "/v1.0/upload", json=call, headers=headers) as response:
        return response.status, await response.json()


async def send_chunks(
    http: aiohttp.ClientSession,
    base_url: str,
    body: bytes,
    name: str,
    size: int = 64 * 1024,
    headers: dict[str, str] | None = None,
    file_id: str | None = None,
    skip: int | None = None,
) -> tuple[int, dict[str, Any], str]:
    """Every chunk of ``body`` (but ``skip``): the first answer that is not 200, or
    ``{"success": true}``; and the fileId to assemble."""
    file_id = file_id or uuid.uuid4().hex
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    for index, part in enumerate(parts):
        if index == skip:
            continue
        fields = {
            "fileId": file_id,
            "chunkIndex": str(index),
            "totalChunks": str(len(parts)),
            "fileName": name,
        }
        status, answer = await post_chunk(http, base_url, part, fields, headers)
        if status != 200:
            return status, answer, file_id
        assert answer == {"success": True}
    return 200, {"success": True}, file_id


async def post_chunks(
    http: aiohttp.ClientSession,
    base_url: str,
    body: bytes,
    name: str,
    size: int = 64 * 1024,
    headers: dict[str, str] | None = None,
    file_id: str | None = None,
    skip: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """Every chunk, then the assemble call: its answer (or the first chunk refused)."""
    status, answer, file_id = await send_chunks(
        http, base_url, body, name, size, headers, file_id, skip
    )
    if status != 200:
        return status, answer
    return await assemble(http, base_url, file_id, name, headers)
