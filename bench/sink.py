"""A bare aiohttp websocket sink: the floor the collector's CPU cost is compared with.

It does the least an aiohttp server must do for the same load: accept the upgrade on
any path with whatever subprotocol the client offers first, read every message and
throw it away. What the collector spends above this is the price of its own work
(decoding, sessions, dumps, records).

Usage: python bench/sink.py PORT [--deflate] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

#: Same frame limit as the collector's default, so both read frames the same way.
MAX_MESSAGE_BYTES = 1 << 20


def build(deflate: bool) -> web.Application:
    async def sink(request: web.Request) -> web.StreamResponse:
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        first = offered.split(",")[0].strip()
        ws = web.WebSocketResponse(
            protocols=(first,) if first else (),
            compress=deflate,
            max_msg_size=MAX_MESSAGE_BYTES,
        )
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", sink)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop  # bench-only dependency: only this option needs it

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(build(args.deflate), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
