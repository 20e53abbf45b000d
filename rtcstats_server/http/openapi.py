"""``/openapi.json``: the OpenAPI document of both APIs, kept beside the code.

Hand-written (``openapi.yaml``) rather than generated from the routes: the routes
are plain aiohttp handlers with no declarations to generate from, and the tests
hold the document to the truth instead (schemathesis against a live server).
"""

from __future__ import annotations

import asyncio
import functools
from importlib import resources

import orjson
import yaml
from aiohttp import web

DOCUMENT = "openapi.yaml"


@functools.cache
def document_json() -> bytes:
    """The document as JSON bytes (read once; blocking: call it from a thread)."""
    text = resources.files("rtcstats_server.http").joinpath(DOCUMENT).read_text(encoding="utf-8")
    return orjson.dumps(yaml.safe_load(text))


async def openapi_json(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(document_json)
    return web.Response(body=body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
