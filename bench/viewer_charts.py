#!/usr/bin/env python3
"""Server-rendered SVG charts vs uPlot, on the same view model: page weight and paint.

Issue 19 asked to decide between growing the hand-written SVG renderer and serving
uPlot (MIT, ~50 kB) from the package, by measurement. This builds, for one dump's
view model (the model the viewer caches), two self-contained pages with the same
header, card and timelines:

  * ``svg``: the viewer's page as served (``render.page_head`` + ``page_body``);
  * ``uplot``: the same page with every ``<svg class=chart>`` replaced by a ``<div>``
    and its series as inline JSON, drawn by uPlot (its script and CSS inline, as a
    package would serve them under the nonce CSP).

Each is opened in headless chromium from a local server; printed per page: its
bytes (and gzip'd), first contentful paint, and the time until every chart is drawn
(``load`` for SVG; uPlot's last chart constructed, after ``load``).

    npm install --no-save --prefix bench uplot   # once: bench/node_modules/uplot
    python bench/viewer_charts.py [--mb 40] [--dump FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from bench.viewer import CHROMIUM, FIXTURES, jitsi_lines, write_plain  # noqa: E402
from rtcstats_server.analysis.viewmodel import build_view_model  # noqa: E402
from rtcstats_server.dumps.reader import file_chunks  # noqa: E402
from rtcstats_server.http.viewer import render  # noqa: E402

UPLOT = ROOT / "bench" / "node_modules" / "uplot" / "dist"
NONCE = "bench"
_CHART = re.compile(r"<svg class=chart .*?</svg>", re.S)


def svg_page(model: dict[str, Any]) -> str:
    record = {"id": "0" * 32, "state": "stored"}
    head = render.page_head(record, NONCE)
    return head + render.page_body(model, "0" * 32, "sig=x", NONCE, model.get("session_first"))


def uplot_page(model: dict[str, Any], page: str) -> str:
    """The SVG page with each chart's series as JSON for uPlot instead of SVG."""
    datasets: list[dict[str, Any]] = []
    for group in model["groups"]:
        by_metric: dict[str, list[dict[str, Any]]] = {}
        for series in group["series"]:
            by_metric.setdefault(series["metric"], []).append(series)
        for metric in render.METRICS:
            lines = by_metric.get(metric)
            if not lines:
                continue
            lines = sorted(lines, key=lambda s: (-s["samples"], s["label"]))[: render.MAX_LINES]
            times = sorted({p[0] for line in lines for p in line["points"]})
            index = {t: i for i, t in enumerate(times)}
            columns: list[list[float | None]] = [[t / 1000 for t in times]]
            for line in lines:
                column: list[float | None] = [None] * len(times)
                for point in line["points"]:
                    column[index[point[0]]] = round(point[3], 4)
                columns.append(column)
            datasets.append({"labels": [line["label"] for line in lines], "data": columns})
    charts = iter(range(len(datasets)))
    body = _CHART.sub(lambda _: f"<div class=u id=u{next(charts, 0)}></div>", page)
    script = (UPLOT / "uPlot.iife.min.js").read_text()
    css = (UPLOT / "uPlot.min.css").read_text()
    draw = (
        "const sets = JSON.parse(document.getElementById('sets').textContent);"
        "sets.forEach((s, i) => new uPlot({width: 960, height: 150, series: [{},"
        "...s.labels.map((l, j) => ({label: l, stroke: ['#1f77b4','#d62728','#2ca02c',"
        "'#ff7f0e','#9467bd','#8c564b','#e377c2','#17becf'][j % 8]}))]}, s.data,"
        "document.getElementById('u' + i)));"
        "window.drawnAt = performance.now();"
    )
    tail = (
        f"<script type=application/json id=sets>{json.dumps(datasets)}</script>"
        f'<style nonce="{NONCE}">{css}</style><script nonce="{NONCE}">{script}</script>'
        f'<script nonce="{NONCE}">{draw}</script>'
    )
    return body.replace("</main></body></html>", tail + "</main></body></html>")


async def measure(browser: Any, url: str, uplot: bool) -> tuple[float, float]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        started = time.perf_counter()
        await page.goto(url, wait_until="load", timeout=600_000)
        loaded = (time.perf_counter() - started) * 1000
        fcp = await page.evaluate(
            "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
        )
        if uplot:
            drawn = await page.evaluate("window.drawnAt")
            assert await page.locator(".uplot").count() > 0
            return fcp, drawn
        assert await page.locator("svg.chart").count() > 0
        return fcp, loaded
    finally:
        await page.close()


async def main_async(dump: Path) -> None:
    started = time.perf_counter()
    model = await asyncio.to_thread(build_view_model, file_chunks(dump), 300)
    print(f"{dump.name}: view model in {time.perf_counter() - started:.1f} s")
    svg = svg_page(model)
    pages = {"svg": svg, "uplot": uplot_page(model, svg)}
    app = web.Application()
    for name, text in pages.items():
        app.router.add_get(
            f"/{name}", lambda _r, text=text: web.Response(text=text, content_type="text/html")
        )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            for name, text in pages.items():
                raw = text.encode()
                fcps, drawns = [], []
                for _ in range(3):
                    fcp, drawn = await measure(
                        browser, f"http://127.0.0.1:{port}/{name}", name == "uplot"
                    )
                    fcps.append(fcp)
                    drawns.append(drawn)
                packed = len(gzip.compress(raw)) / 1e3
                print(
                    f"  {name:5}: {len(raw) / 1e3:7.0f} kB ({packed:5.0f} kB "
                    f"gzip), first paint {min(fcps):6.0f} ms, every chart drawn "
                    f"{min(drawns):6.0f} ms (best of 3)"
                )
        finally:
            await browser.close()
            await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=40, help="raw size of a synthetic dump")
    parser.add_argument("--dump", type=Path, help="a dump file instead of the synthetic one")
    args = parser.parse_args()
    if not (UPLOT / "uPlot.iife.min.js").exists():
        print("npm install --no-save --prefix bench uplot  (bench/node_modules/uplot is missing)")
        return 2
    if args.dump is not None:
        asyncio.run(main_async(args.dump))
        return 0
    asyncio.run(main_async(FIXTURES / "jitsi-safari-standard-stats.jsonl"))
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp) / f"synthetic-{args.mb:.0f}MB.jsonl"
        write_plain(synthetic, jitsi_lines(int(args.mb * 1e6)))
        asyncio.run(main_async(synthetic))
    return 0


if __name__ == "__main__":
    sys.exit(main())
