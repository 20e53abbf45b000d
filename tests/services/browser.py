"""Real rtcstats clients in headless Debian chromium, driven through Playwright.

The page (``browser/page/call.js``) makes a loopback call traced by a bundled client
(``browser/dist``, built by ``scripts/install.d/20-browser-clients.sh``) and keeps its
state in ``window.harness``; this module serves it over http://127.0.0.1, opens it with
the collector's URL in the query, and waits on that state with deadlines.
Playwright only drives the system chromium: its own browser downloads are never used.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright
from playwright.async_api import TimeoutError as PageTimeout

from tests.services.collector import free_port

CLIENTS_DIR = Path(__file__).resolve().parent / "browser"
DIST_DIR = CLIENTS_DIR / "dist"
PAGE_DIR = CLIENTS_DIR / "page"
CHROMIUM = Path("/usr/bin/chromium")
BUNDLES = {"jitsi": DIST_DIR / "jitsi.js", "legacy": DIST_DIR / "legacy.js"}
PAGE_FILES = frozenset({"call.html", "call.js"})
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def missing_parts() -> list[str]:
    """What the browser tests need that this machine lacks, each with its installer."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (scripts/install.d/10-chromium.sh)")
    for path in BUNDLES.values():
        if not path.exists():
            missing.append(f"{path} (scripts/install.d/20-browser-clients.sh)")
    return missing


def static_app() -> web.Application:
    """The page under ``/<room>/`` (the 2015 client names its socket after the page's
    path) and the client bundles under ``/dist/``; nothing else."""

    async def page(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in PAGE_FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(PAGE_DIR / name)

    async def bundle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        paths = {path.name: path for path in BUNDLES.values()}
        if name not in paths:
            raise web.HTTPNotFound()
        return web.FileResponse(paths[name], headers={"Cache-Control": "no-store"})

    async def no_icon(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)  # else every page logs a 404 console error

    app = web.Application()
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/dist/{name}", bundle)
    app.router.add_get("/{room:[A-Za-z0-9_-]+}/{name}", page)
    return app


@dataclass
class CallPage:
    """One open page; ``errors`` collects console errors and uncaught exceptions."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def uncaught(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")

    async def harness(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.page.evaluate("() => window.harness")
        return state

    async def wait_phase(self, phase: str, timeout: float) -> dict[str, Any]:
        """Wait until the page has reached ``phase`` (or ended); fail with its state if not."""
        script = (
            "phase => window.harness !== undefined"
            " && (window.harness.phases.includes(phase) || window.harness.state !== 'running')"
        )
        try:
            await self.page.wait_for_function(script, arg=phase, timeout=timeout * 1000, polling=50)
        except PageTimeout as exc:
            state = await self.harness()
            pytest.fail(
                f"page never reached {phase!r} in {timeout}s: {exc}\n{state}\n{self.errors}"
            )
        state = await self.harness()
        if state["state"] == "failed":
            pytest.fail(f"page failed: {state['error']}\n{self.errors}")
        return state

    async def finished(self, timeout: float) -> dict[str, Any]:
        state = await self.wait_phase("done", timeout)
        assert state["state"] == "done", state
        return state


@dataclass
class BrowserBed:
    browser: Browser
    base_url: str
    launch_s: float = 0.0

    @asynccontextmanager
    async def call(
        self,
        client: str,
        ws_url: str,
        conf: str,
        user: str,
        seconds: float = 5,
        mode: str = "call",
    ) -> AsyncIterator[CallPage]:
        """Open the call page in a fresh browser context; closed when the block ends."""
        context = await self.browser.new_context()
        try:
            page = await context.new_page()
            opened = CallPage(page)
            page.on("console", opened.console)
            page.on("pageerror", opened.uncaught)
            query = urlencode(
                {
                    "client": client,
                    "ws": ws_url,
                    "conf": conf,
                    "user": user,
                    "seconds": seconds,
                    "mode": mode,
                }
            )
            await page.goto(f"{self.base_url}/{conf}/call.html?{query}")
            yield opened
        finally:
            await context.close()


@asynccontextmanager
async def browser_bed() -> AsyncIterator[BrowserBed]:
    """Serve the page and start headless chromium; fail naming what is not installed."""
    missing = missing_parts()
    if missing:
        pytest.fail("browser test bed incomplete, missing: " + ", ".join(missing))

    runner = web.AppRunner(static_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with async_playwright() as playwright:
            started = time.monotonic()
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield BrowserBed(browser, f"http://127.0.0.1:{port}", time.monotonic() - started)
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
