"""Label values of /metrics come from closed sets, whatever clients send.

The attack: each pusher connection offers a subprotocol with a version of its own
(``<n>.<n>_JVB``), closes with a code of its own and asks for a path of its own. When
the subprotocol was the ``dialect`` label, 20,000 such connections made 80,000 series
(``/metrics`` from 5 KB to 5 MB) and kept a counter object per version in memory.
Two rounds of such connections against a live collector: the second round adds no
series and (counter digits aside) no bytes.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp

from rtcstats_server.dialects import metric_label
from rtcstats_server.metrics import close_code_label
from tests.services.collector import RunningCollector

#: Every ``dialect`` label value there may be.
DIALECTS = {
    "rtcstats#5.0",
    "rtcstats#4.0",
    "2.0",
    "3.1_STANDARD",
    "3.1_LEGACY",
    "JVB",
    "JICOFO",
    "JIBRI",
    "JIGASI",
    "other",
}
COMPONENTS = ("JVB", "JICOFO", "JIBRI", "JIGASI")
SERIES = re.compile(r"^(\w+)(?:\{(.*)\})? ", re.MULTILINE)


def test_label_values_are_closed_sets() -> None:
    assert metric_label("2.0") == "2.0"
    assert metric_label("3.1_STANDARD") == "3.1_STANDARD"
    assert metric_label("12.345_JIGASI") == "JIGASI"
    assert metric_label("7_JVB") == "JVB"
    assert metric_label("7_JVBX") == "other"
    # The server chooses its close codes today; the label could not carry another.
    assert close_code_label(1009) == "1009"
    assert close_code_label(3001) == "3001"
    assert {close_code_label(code) for code in range(3003, 5000)} == {"other"}


async def scrape(collector: RunningCollector) -> str:
    """/metrics after a sweep (which sets the live-session gauges about once a second):
    a series that only timing adds is not one the clients added."""
    await collector.manager.sweep()
    async with collector.http.get(collector.base_url + "/metrics") as response:
        assert response.status == 200
        return await response.text()


def series(text: str) -> list[tuple[str, str]]:
    return SERIES.findall(text)


async def pusher(collector: RunningCollector, n: int, identity: str) -> None:
    """One pusher with its own version, path and close code; one identity message."""
    component = COMPONENTS[n % len(COMPONENTS)]
    async with collector.http.ws_connect(
        f"{collector.ws_url}/pusher-{n}/{'x' * (n % 50)}",
        protocols=(f"{n}.{n * 7}_{component}",),
    ) as ws:
        await ws.send_str(identity)
        await ws.close(code=3003 + n % 1997)


async def refused(collector: RunningCollector, n: int) -> None:
    """An offer we do not speak, each one different: 400 before the upgrade."""
    try:
        async with collector.http.ws_connect(
            collector.ws_url + f"/x{n}", protocols=(f"{n}.{n}_EVIL{n}", f"rtcstats#{n}")
        ):
            raise AssertionError("an unknown subprotocol was accepted")
    except aiohttp.WSServerHandshakeError as error:
        assert error.status == 400


async def hostile_round(collector: RunningCollector, first: int, count: int, identity: str) -> None:
    for start in range(first, first + count, 20):  # 20 sockets at a time
        batch = range(start, min(start + 20, first + count))
        await asyncio.gather(*(pusher(collector, n, identity) for n in batch))
        await asyncio.gather(*(refused(collector, n) for n in batch))


async def test_hostile_subprotocols_paths_and_close_codes_add_no_series(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    identity = (fixtures_dir / "real" / "jitsi-jvb-sample.jsonl").open().readline().strip()
    baseline = await scrape(collector)
    await hostile_round(collector, 1, 100, identity)
    first = await scrape(collector)
    await hostile_round(collector, 101, 300, identity)
    second = await scrape(collector)
    sys.stdout.write(
        f"/metrics: {len(baseline)} B, {len(series(baseline))} series at start; "
        f"{len(first)} B, {len(series(first))} series after 100 hostile pushers; "
        f"{len(second)} B, {len(series(second))} series after 400\n"
    )
    assert [name for name, _ in series(second)] == [name for name, _ in series(first)]
    assert [labels for _, labels in series(second)] == [labels for _, labels in series(first)]
    assert len(second) - len(first) < 200  # counter values grew a digit at most
    dialects = set(re.findall(r'dialect="([^"]*)"', second))
    assert dialects == set(COMPONENTS), dialects
    assert dialects <= DIALECTS
    # The connections did happen: 400 pushers, 400 refusals.
    assert (
        sum(
            float(v)
            for v in re.findall(r"^rtcstats_connections_total\{[^}]*\} (\S+)", second, re.M)
        )
        == 400
    )
    assert 'rtcstats_connections_refused_total{reason="unknown_subprotocol"} 400.0' in second
