"""The peer's viewer (``dump-importer`` of github rtcstats/rtcstats) opens our fileFormat 3
conversion of a jitsi dump in headless chromium and dates its events as the dump does
(2022, not 2071: the first line's time is epoch ms, every next one a delta).

Needs the peer's checkout (``RTCSTATS_PEER``, default /work/peer, with ``npm install
--omit=dev`` run: the viewer imports ``node_modules/sdp``) and chromium; skipped
without them (CI has no peer: tests/analysis/features/test_converted_parity.py checks
the conversion against the peer's recorded outputs there). The viewer loads adapter.js
and Highcharts from CDNs: adapter.js is given the peer's own ``sdp`` package (all the
viewer takes from it), Highcharts a stand-in that draws nothing (graphs are not what
is checked); every other outside request is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest
from aiohttp import web
from playwright.async_api import Route, async_playwright

from rtcstats_server.dumps.encode import write_rtcstats
from rtcstats_server.dumps.reader import open_dump
from tests.services.browser import CHROMIUM
from tests.services.collector import free_port

pytestmark = pytest.mark.browser

PEER: Final = Path(os.environ.get("RTCSTATS_PEER", "/work/peer"))
SDP: Final = PEER / "node_modules" / "sdp" / "sdp.js"
#: A chart that accepts every call and draws nothing.
HIGHCHARTS: Final = """
window.Highcharts = (function () {
  const inert = () => new Proxy(function () {}, {
    get: (target, key) => (key === 'series' || key === 'points') ? [] : inert(),
    apply: () => inert(),
    construct: () => inert(),
  });
  return inert();
})();
"""


def _adapter() -> str:
    return (
        "(function () { var module = {exports: {}}; var exports = module.exports;\n"
        + SDP.read_text()
        + "\nwindow.adapter = {sdp: module.exports}; })();"
    )


async def _viewer_rows(dump: Path) -> tuple[list[str], list[str]]:
    """The time cells of every event row the viewer shows (ISO date, time), and the
    page errors."""
    app = web.Application()
    app.router.add_static("/", PEER, show_index=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    adapter = _adapter()
    errors: list[str] = []

    async def outside(route: Route) -> None:
        url = route.request.url
        if url.startswith(f"http://127.0.0.1:{port}/"):
            await route.continue_()
        elif url.startswith("https://webrtchacks.github.io/"):
            await route.fulfill(body=adapter, content_type="text/javascript")
        elif url.startswith("https://code.highcharts.com/"):
            await route.fulfill(body=HIGHCHARTS, content_type="text/javascript")
        else:
            await route.abort()

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
            try:
                page = await browser.new_page()
                page.on("pageerror", lambda error: errors.append(f"{error.name}: {error}"))
                await page.route("**/*", outside)
                await page.goto(f"http://127.0.0.1:{port}/dump-importer/index.html")
                await page.set_input_files("#import", dump)
                await page.wait_for_function("window.rtcStatsDumpImporterSuccess === true")
                # Connections are drawn one per task after the file is read: wait for all.
                await page.wait_for_function(
                    "document.querySelectorAll('td[nowrap]').length > 0", timeout=10_000
                )
                await page.wait_for_timeout(500)
                titles: list[str] = await page.eval_on_selector_all(
                    "td[nowrap]", "cells => cells.map(cell => cell.title)"
                )
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    return titles, errors


async def test_the_peer_viewer_dates_a_converted_jitsi_dump(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    if not CHROMIUM.exists() or not SDP.exists() or not (PEER / "dump-importer").is_dir():
        pytest.skip(f"chromium and the peer's checkout at {PEER} (RTCSTATS_PEER) are needed")
    source = fixtures_dir / "real" / "jitsi-chrome-standard-pc-reconnect.jsonl"
    target = tmp_path / "reconnect.rtcstats"
    with target.open("wb") as out:
        write_rtcstats(source, out)
    titles, errors = await _viewer_rows(target)
    assert errors == []
    # The viewer lists every event but getStats (those go to graphs), page-level ones too.
    events = [e for e in open_dump(source) if not e.is_stats]
    assert len(titles) == len(events) + 1  # and the page-level create the conversion adds
    days = {title.split(",")[0] for title in titles}
    assert days == {"2022-03-14"}  # the session's day; as stored, these would be in 2071
