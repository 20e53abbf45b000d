#!/usr/bin/env python3
"""Viewer benchmark: time to first render of a session's viewer, cold and warm.

Runs a real collector in-process, stores dumps in it as finished sessions, then opens
each viewer URL:

  * the largest fixtures of ../shared/fixtures/real (the largest of all, and the
    largest with getStats);
  * a synthetic jitsi ``3.1_STANDARD`` dump of ``--mb`` MB raw, made by repeating a
    real SFU call's getStats traffic with shifted times (every repeated delta is a
    valid delta, so the reader does real work on every line).

For each: cold (no cache: the dump is read and the series computed) and warm (the
cached view model). Over HTTP it prints the time to the first byte (the header,
sent before the dump is read), to the whole page, and the page size; in headless
chromium (when installed) the time until the header is on screen and until the page
with every chart has loaded. Peak RSS growth during the cold computation of the big dump shows
that memory stays bounded.

    python bench/viewer.py [--mb 100] [--no-browser]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import async_playwright  # noqa: E402

from rtcstats_server.http.keys import VIEWER  # noqa: E402
from tests.services.collector import RunningCollector, run_collector  # noqa: E402
from tests.services.shared import FIXTURES as _FIXTURES  # noqa: E402  (a worktree too)
from tests.services.stored_dumps import store_dump_file  # noqa: E402

FIXTURES = _FIXTURES / "real"
CHROMIUM = Path("/usr/bin/chromium")


def jitsi_lines(target: int) -> Iterator[str]:
    source = (FIXTURES / "jitsi-google-standard-stats-sfu.jsonl").read_text()
    lines = [line for line in source.splitlines() if line.strip()]
    stats = [json.loads(line) for line in lines if line.startswith('["getstats"')]
    span = stats[-1][3] - stats[0][3] + 1000
    size = 0
    for line in lines:
        size += len(line) + 1
        yield line
    round_ = 1
    while size < target:
        for entry in stats:
            text = json.dumps(
                [entry[0], entry[1], entry[2], entry[3] + round_ * span], separators=(",", ":")
            )
            size += len(text) + 1
            yield text
        round_ += 1


def write_plain(path: Path, lines: Iterator[str]) -> int:
    raw = 0
    with path.open("w") as out:
        for line in lines:
            out.write(line + "\n")
            raw += len(line) + 1
    return raw


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def over_http(collector: RunningCollector, url: str) -> tuple[float, float, int]:
    """Seconds to the first body byte, to the end of the page, and its size."""
    started = time.perf_counter()
    async with collector.http.get(url) as response:
        assert response.status == 200, response.status
        first = await response.content.readany()
        first_s = time.perf_counter() - started
        rest = await response.read()
        return first_s, time.perf_counter() - started, len(first) + len(rest)


async def in_browser(browser: Any, url: str) -> tuple[float, float]:
    """Seconds until the session header is on screen, and until the whole page (every
    chart) has loaded."""
    page = await browser.new_page()
    try:
        started = time.perf_counter()
        await page.goto(url, wait_until="commit")
        await page.wait_for_selector("header h1", state="visible", timeout=900_000)
        header = time.perf_counter() - started
        await page.wait_for_load_state("load", timeout=900_000)
        return header, time.perf_counter() - started
    finally:
        await page.close()


async def measure(
    collector: RunningCollector, browser: Any, name: str, path: Path, size: int
) -> None:
    session_id = await store_dump_file(collector, path, analysis_timeout=1800)
    record = await collector.get_json(f"/v1/sessions/{session_id}")
    url = record["viewer_url"]
    data = collector.app[VIEWER].data
    print(f"{name}: {size / 1e6:.1f} MB raw, stored {record['dump_bytes'] / 1e6:.1f} MB zstd")
    rss = peak_rss_mib()
    for label in ("cold", "warm"):
        if label == "cold":
            await data.forget(session_id)
        first, whole, page_size = await over_http(collector, url)
        line = (
            f"  {label}: HTTP first byte {first * 1000:7.1f} ms, whole page "
            f"{whole * 1000:7.1f} ms ({page_size / 1e3:.0f} kB)"
        )
        if browser is not None:
            if label == "cold":
                await data.forget(session_id)
            header, loaded = await in_browser(browser, url)
            line += f"; chromium header {header * 1000:6.1f} ms, charts {loaded * 1000:7.1f} ms"
        print(line)
    print(f"  peak RSS growth: {peak_rss_mib() - rss:.1f} MiB")


async def main_async(cases: list[tuple[str, Path, int]], mb: float, use_browser: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if mb > 0:
            synthetic = work / "synthetic.jsonl"
            raw = await asyncio.to_thread(write_plain, synthetic, jitsi_lines(int(mb * 1e6)))
            cases = [*cases, ("synthetic jitsi 3.1 dump", synthetic, raw)]
        async with run_collector(work / "data") as collector, async_playwright() as playwright:
            browser = None
            if use_browser:
                browser = await playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True
                )
            try:
                for name, path, size in cases:
                    await measure(collector, browser, name, path, size)
            finally:
                if browser is not None:
                    await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=100, help="raw size of the synthetic dump")
    parser.add_argument("--no-browser", action="store_true", help="HTTP timings only")
    args = parser.parse_args()
    files = [p for p in FIXTURES.iterdir() if p.suffix != ".md"]
    largest = max(files, key=lambda p: p.stat().st_size)
    stats = FIXTURES / "jitsi-safari-standard-stats.jsonl"
    cases = [
        (f"largest fixture {largest.name}", largest, largest.stat().st_size),
        (f"largest fixture with getStats {stats.name}", stats, stats.stat().st_size),
    ]
    use_browser = not args.no_browser and CHROMIUM.exists()
    asyncio.run(main_async(cases, args.mb, use_browser))
    return 0


if __name__ == "__main__":
    sys.exit(main())
