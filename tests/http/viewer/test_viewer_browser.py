"""The viewer in headless chromium: every real dump renders without a console error,
the page's script works (filter, cursor, drag to zoom), and frame-ancestors lets only
the authorized dashboard frame it, as the browser enforces it.

Screenshots go to ``test-artifacts/viewer/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from playwright.async_api import ConsoleMessage, Error, Frame, Page

from tests.analysis.test_viewmodel import NO_STATS, REAL
from tests.ingest.test_replay_fixtures import replay
from tests.services import streams, uploads
from tests.services.browser import BrowserBed, browser_bed
from tests.services.collector import RunningCollector, free_port, run_collector, wait_until
from tests.services.stored_dumps import store_dump_file
from tests.uploads.test_upload_api import internals_export

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "viewer"


@pytest.fixture
async def bed() -> AsyncIterator[BrowserBed]:
    async with browser_bed() as started:
        yield started


@dataclass
class Opened:
    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)
        if message.type == "error":
            self.errors.append(message.text)

    def on_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")


@asynccontextmanager
async def opened(bed: BrowserBed) -> AsyncIterator[Opened]:
    context = await bed.browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await context.new_page()
        state = Opened(page)
        page.on("console", state.on_console)
        page.on("pageerror", state.on_error)
        yield state
    finally:
        await context.close()


async def show(bed: BrowserBed, url: str, name: str) -> dict[str, Any]:
    """Open a viewer URL, screenshot it, and say what it shows."""
    async with opened(bed) as view:
        response = await view.page.goto(url, wait_until="load")
        assert response is not None and response.status == 200
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await view.page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        found = {
            "charts": await view.page.locator("svg.chart").count(),
            "lines": await view.page.locator("svg.chart polyline, svg.chart circle").count(),
            "events": await view.page.locator("tr.ev").count(),
            "header": await view.page.locator("header h1").inner_text(),
            "computing": await view.page.locator("#computing").count(),
            "cards": await view.page.locator(".card").count(),
            "marks": await view.page.locator("svg.chart line.mark").count(),
            "disconnected": await view.page.locator("tr.ev.st-disconnected").count(),
            "checking": await view.page.locator("tr.ev.st-checking").count(),
            "munged": await view.page.locator("tr.ev.munged").count(),
            "bands": await view.page.locator("svg.strip rect.bandrow").count(),
            "span": " ".join(await view.page.locator("#span").all_inner_texts()),
            # each chart's time axis: no label twice ("+00:01 +00:01" at half seconds)
            "times": await view.page.eval_on_selector_all(
                "svg.chart:not(.strip)",
                "cs => cs.map(c => Array.from(c.querySelectorAll('text.tick.tt'))"
                ".map(t => t.textContent))",
            ),
            "nav": await view.page.locator("nav").inner_text(),
            # each chart's value axis: three labels, all different (not "0 0 0")
            "axes": await view.page.eval_on_selector_all(
                "svg.chart:not(.strip)",
                "cs => cs.map(c => Array.from(c.querySelectorAll('text.tick:not(.tt)'))"
                ".map(t => t.textContent))",
            ),
        }
        assert all(len(set(axis)) == 3 for axis in found["axes"]), found["axes"]
        assert all(len(set(axis)) == len(axis) for axis in found["times"]), found["times"]
        chart = view.page.locator("svg.chart:not(.strip)").first
        if await chart.count():  # hover: the tooltip has a value of this chart
            await chart.scroll_into_view_if_needed()
            box = await chart.bounding_box()
            assert box is not None
            for fraction in (0.5, 0.3, 0.7, 0.9):
                x = box["x"] + box["width"] * (60 + fraction * 890) / 960
                await view.page.mouse.move(x, box["y"] + box["height"] / 2)
                found["tip"] = await view.page.locator("#tip").inner_text()
                if ": " in found["tip"]:
                    break
            assert ": " in found["tip"] and any(c.isdigit() for c in found["tip"]), found["tip"]
            mark = chart.locator("line.mark").first
            if await mark.count():  # on a marker the tooltip names it
                at = float(await mark.get_attribute("x1") or 0)
                x = box["x"] + box["width"] * at / 960
                await view.page.mouse.move(x, box["y"] + box["height"] / 2)
                found["marked_tip"] = await view.page.locator("#tip").inner_text()
                assert "▲ " in found["marked_tip"], found["marked_tip"]
        assert view.errors == [], view.errors
        return found


async def test_real_client_session_in_the_browser(
    bed: BrowserBed, collector: RunningCollector, fixtures_dir: Path
) -> None:
    """The jitsi 9.7.1 loopback call as a client streamed it; then the script at work."""
    await replay(collector, streams.captured(fixtures_dir, "jitsi-rtcstats-9.7.1-loopback-call"))
    record = await collector.wait_for_record(lambda r: r["state"] == "stored")
    url = (await collector.get_json(f"/v1/sessions/{record['id']}"))["viewer_url"]
    found = await show(bed, url, "jitsi-9.7.1-loopback-call")
    assert found["charts"] >= 10 and found["lines"] >= found["charts"]
    assert found["events"] > 50 and found["computing"] == 0
    assert found["header"] == f"Session {record['id']}"
    assert found["cards"] >= 1 and found["checking"] > 0
    assert found["span"].startswith("The dump spans ") and " 0.0 s" not in found["span"]

    async with opened(bed) as view:
        page = view.page
        await page.goto(url)
        rows = page.locator("tr.ev")
        visible = page.locator("tr.ev:not([hidden])")
        total = await rows.count()
        widths = (
            "() => Array.from(document.querySelector('table.tl tr.ev:not([hidden])').cells)"
            ".map(c => Math.round(c.getBoundingClientRect().width))"
        )
        before = await page.evaluate(widths)
        await page.fill("#q", "setremotedescription")
        assert 0 < await visible.count() < total
        assert await page.evaluate(widths) == before  # columns stay put while filtering
        assert "setRemoteDescription" in await visible.first.inner_text()
        await page.fill("#q", "")
        await page.uncheck("input[name=kind][value=api]")
        await page.uncheck("input[name=kind][value=event]")
        await page.uncheck("input[name=kind][value=state]")
        assert await visible.count() == 1  # the one failed setRemoteDescription
        assert "OnFailure" in await visible.first.inner_text()

        # one cursor across every chart: they share the time axis
        chart = page.locator("svg.chart:not(.strip)").first
        await chart.scroll_into_view_if_needed()
        box = await chart.bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
        positions = await page.eval_on_selector_all(
            "svg.chart .cursor",
            "cs => cs.map(c => [c.getAttribute('x1'), c.getAttribute('visibility')])",
        )
        assert len({x for x, _ in positions}) == 1 and {v for _, v in positions} == {"visible"}
        # the tooltip at the cursor: the time and every series' value of that chart
        tip = page.locator("#tip")
        assert await tip.is_visible()
        text = await tip.inner_text()
        lines = await chart.locator("[data-v]").evaluate_all(
            "ls => [...new Set(ls.map(l => l.dataset.l))]"
        )
        assert text.startswith("+") and all(label in text for label in lines), (text, lines)
        assert any(ch.isdigit() for row in text.splitlines()[1:] for ch in row), text
        await page.screenshot(path=ARTIFACTS / "jitsi-9.7.1-tooltip.png")

        # drag across the chart: the window is shown at full resolution
        await page.mouse.down()
        await page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
        async with page.expect_navigation():
            await page.mouse.up()
        assert "from=" in page.url and "to=" in page.url
        await page.wait_for_selector("svg.chart")
        assert "Zoomed to" in await page.locator("nav").inner_text()
        await page.screenshot(path=ARTIFACTS / "jitsi-9.7.1-zoomed.png", full_page=True)
        # (zoomed) any raw property of any report, charted on demand (streamed by the server)
        form = page.locator("form.raw").first
        pair = await form.locator("option", has_text="(candidate-pair)").first.get_attribute(
            "value"
        )
        assert pair is not None
        await form.locator("select").select_option(pair)
        await form.locator("input[name=property]").fill("bytesReceived")
        await form.locator("button").click()
        raw = page.locator("svg.chart.raw")
        await raw.wait_for()
        assert "numeric values" in await form.locator(".note").inner_text()
        values = await raw.locator("polyline").get_attribute("data-v")
        assert values is not None and len(values.split()) > 3
        await raw.scroll_into_view_if_needed()
        rbox = await raw.bounding_box()
        assert rbox is not None
        await page.mouse.move(rbox["x"] + rbox["width"] * 0.5, rbox["y"] + rbox["height"] / 2)
        assert "bytesReceived" in await page.locator("#tip").inner_text()
        await page.screenshot(path=ARTIFACTS / "jitsi-9.7.1-raw-property.png")
        assert view.errors == [], view.errors


async def test_every_real_dump_in_the_browser(
    bed: BrowserBed, collector: RunningCollector, fixtures_dir: Path
) -> None:
    for name in REAL:
        session_id = await store_dump_file(collector, fixtures_dir / "real" / name)
        url = (await collector.get_json(f"/v1/sessions/{session_id}"))["viewer_url"]
        found = await show(bed, url, name)
        assert found["events"] > 0, name
        assert found["computing"] == 0, name
        if name == "jitsi-chrome-standard-pc-failed.jsonl":
            # failed/disconnected connections: markers on the charts, rows marked
            assert found["marks"] > 0 and found["disconnected"] > 0, found
            assert "connection failed" in found["marked_tip"], found["marked_tip"]
            assert found["cards"] == 3
        if name in ("jitsi-google-standard-stats-sfu.jsonl", "jitsi-safari-standard-stats.jsonl"):
            assert found["munged"] > 0 and found["bands"] > 0, found  # jitsi munges answers
        if name in NO_STATS:
            assert found["charts"] == 0, name
            assert "zoom" not in found["nav"], (name, found["nav"])  # nothing to drag across
        else:
            assert found["charts"] >= 3 and found["lines"] >= found["charts"], (name, found)


async def test_an_uploaded_webrtc_internals_export_in_the_browser(
    bed: BrowserBed, collector: RunningCollector
) -> None:
    """Issue 19: such an import read "client protocol 3.1_STANDARD" (the protocol of our
    re-encoding), offered a zoom with no chart, and its card and charts were missing."""
    status, answer = await uploads.post_raw(
        collector.http,
        collector.base_url,
        orjson.dumps(internals_export()),
        content_type="application/json",
    )
    assert status == 200, answer
    record = await collector.wait_for_record(
        lambda r: r["id"] == answer["rtcstatsId"] and r["state"] == "stored"
    )
    url = (await collector.get_json(f"/v1/sessions/{record['id']}"))["viewer_url"]
    found = await show(bed, url, "webrtc-internals-upload")
    assert found["charts"] >= 2 and found["lines"] >= found["charts"], found
    assert found["cards"] == 1
    async with opened(bed) as view:
        await view.page.goto(url)
        source = await view.page.locator("#source").inner_text()
        assert "uploaded as a webrtc-internals file" in source and "3.1_STANDARD" not in source
        header = await view.page.locator("header").inner_text()
        assert "webrtc-internals" in header


def embedding_app() -> web.Application:
    """A customer's dashboard: a page that frames the URL it is given."""

    async def page(request: web.Request) -> web.Response:
        src = request.query["src"].replace('"', "%22")
        html = (
            "<!doctype html><html><head><link rel=icon href='data:,'></head><body>"
            f'<h1>Dashboard</h1><iframe id=viewer src="{src}" width=1200 height=700></iframe>'
            "</body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/dashboard", page)
    return app


async def framed(page: Page, viewer_origin: str) -> Frame:
    element = await page.wait_for_selector("#viewer")
    assert element is not None
    frame = await element.content_frame()
    assert frame is not None
    return frame


async def test_only_the_authorized_origin_can_frame_the_viewer(
    bed: BrowserBed, tmp_path: Path, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    authorized = f"http://127.0.0.1:{port}"
    runner = web.AppRunner(embedding_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settings = {"viewer": {"authorized_domains": [authorized]}}
    try:
        async with run_collector(tmp_path / "data", settings) as collector:
            session_id = await store_dump_file(
                collector, fixtures_dir / "real" / "jitsi-chrome-standard-pc-failed.jsonl"
            )
            record = await collector.get_json(f"/v1/sessions/{session_id}")
            url = record["viewer_url"]  # the stored link: it never expires
            assert record["viewer_url_expires_at"] is None and "exp=" not in url
            query = f"/dashboard?src={url.replace('&', '%26')}"
            refused = "rtcstats_viewer_frame_refused_total"

            async with opened(bed) as view:
                await view.page.goto(authorized + query)
                frame = await framed(view.page, collector.base_url)
                await frame.wait_for_selector("svg.chart")
                assert frame.url == url
                assert await frame.locator("header h1").inner_text() == f"Session {session_id}"
                await view.page.screenshot(path=ARTIFACTS / "embedded-authorized.png")
                assert view.errors == [], view.errors
            assert f"\n{refused} 0.0\n" in await collector.metrics_text()

            # the same page from another origin (localhost is not 127.0.0.1 to a browser)
            async with opened(bed) as view:
                await view.page.goto(f"http://localhost:{port}{query}")
                await wait_until(
                    lambda: any("frame-ancestors" in text for text in view.console),
                    timeout=10,
                    what="chromium refusing the frame (frame-ancestors)",
                )
                frame = await framed(view.page, collector.base_url)
                assert not frame.url.startswith(collector.base_url), frame.url
                assert await frame.locator("svg.chart").count() == 0
                assert await frame.locator("header h1").count() == 0
                await view.page.screenshot(path=ARTIFACTS / "embedded-refused.png")
            # the collector saw the attempt: chromium said it was a frame, and by whom
            assert f"\n{refused} 1.0\n" in await collector.metrics_text()
            logged = [r.getMessage() for r in caplog.records if "tried to frame" in r.getMessage()]
            assert len(logged) == 1 and logged[0].startswith(f"viewer: http://localhost:{port} ")
    finally:
        await runner.cleanup()
