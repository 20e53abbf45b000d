"""Links that last (issue 19, item 1) on a running collector: the stored link never
expires unless configured to, expiring links on demand, a new public_base_url keeps
stored links' paths working, check-config's warnings, and framing by a stranger
logged once per origin and counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest

from rtcstats_server.http.viewer import framing
from tests.http.viewer.test_viewer_http import metric, query_of
from tests.services.cli import run_cli
from tests.services.collector import RunningCollector, run_collector
from tests.services.stored_dumps import store_dump_file

GUM_ONLY = Path("real") / "rtcstats-gumonly.rtcstatsdump.jsonl"


async def stored(collector: RunningCollector, fixtures_dir: Path) -> dict[str, Any]:
    session_id = await store_dump_file(collector, fixtures_dir / GUM_ONLY)
    return await collector.get_json(f"/v1/sessions/{session_id}")


async def status_of(collector: RunningCollector, url: str, **kwargs: Any) -> int:
    async with collector.http.get(url, **kwargs) as response:
        return response.status


async def test_the_stored_link_outlives_the_url_ttl(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    record = await stored(collector, fixtures_dir)
    url = record["viewer_url"]
    assert record["viewer_url_expires_at"] is None and "exp" not in query_of(url)
    # years later (the clock moved on, the link did not change)
    later = time.time() + 20 * 365 * 86400
    with mock.patch("rtcstats_server.http.viewer.routes.datetime") as clock:
        clock.now.return_value = datetime.fromtimestamp(later)
        assert await status_of(collector, url) == 200
        expiring = await collector.http.post(
            f"{collector.base_url}/v1/sessions/{record['id']}/viewer-url"
        )
        fresh = (await expiring.json())["viewer_url"]
        assert await status_of(collector, fresh) == 403  # made now, expired "then"
    # the /v1.0 API's embedUrl is the same lasting link
    detail = await collector.get_json(f"/v1.0/sessions/{record['id']}")
    assert detail["embedUrl"] == url


async def test_expiring_links_on_demand(collector: RunningCollector, fixtures_dir: Path) -> None:
    record = await stored(collector, fixtures_dir)
    endpoint = f"{collector.base_url}/v1/sessions/{record['id']}/viewer-url"

    async def ask(body: Any) -> tuple[int, dict[str, Any]]:
        async with collector.http.post(endpoint, json=body) as response:
            return response.status, await response.json()

    status, short = await ask({"ttl_s": 120})
    assert status == 200
    assert int(query_of(short["viewer_url"])["exp"]) == pytest.approx(time.time() + 120, abs=5)
    assert await status_of(collector, short["viewer_url"]) == 200
    status, lasting = await ask({"expires": False})
    assert status == 200 and lasting == {"viewer_url": record["viewer_url"], "expires_at": None}
    for bad in ({"ttl_s": 59}, {"ttl_s": "3600"}, {"ttl_s": True}, {"expires": "no"},
                {"expires": False, "ttl_s": 600}, {"ttl": 600}, [1], "x" * 2000):  # fmt: skip
        status, body = await ask(bad)
        assert status == 400 and body["error"] == "bad_request", bad
    async with collector.http.post(endpoint, data=b"{not json") as response:
        assert response.status == 400

    async def trickle() -> AsyncIterator[bytes]:  # the body in pieces, as a slow client sends
        for piece in (b'{"ttl_', b's": 3', b"00}"):
            yield piece
            await asyncio.sleep(0.05)

    async with collector.http.post(endpoint, data=trickle()) as response:
        assert response.status == 200
        exp = int(query_of((await response.json())["viewer_url"])["exp"])
    assert exp == pytest.approx(time.time() + 300, abs=5)


async def test_record_links_expire_when_configured(tmp_path: Path, fixtures_dir: Path) -> None:
    settings = {"viewer": {"record_url_ttl_s": 3600}}
    async with run_collector(tmp_path, settings) as collector:
        record = await stored(collector, fixtures_dir)
        exp = int(query_of(record["viewer_url"])["exp"])
        assert exp == pytest.approx(time.time() + 3600, abs=30)
        assert datetime.fromisoformat(record["viewer_url_expires_at"]).timestamp() == exp
        assert await status_of(collector, record["viewer_url"]) == 200


async def test_a_new_public_base_url_keeps_stored_links_paths(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    """Links stored under one base still open once it changes: the path and query are
    all the server checks (here requested as the proxy in front relays them)."""
    old_base = "http://old-name.example.com:8080"
    async with run_collector(tmp_path, {"viewer": {"public_base_url": old_base}}) as collector:
        old = await stored(collector, fixtures_dir)
        port = collector.port
    assert old["viewer_url"].startswith(f"{old_base}/view/{old['id']}?sig=")
    new_base = "https://rtcstats.example.com"
    settings = {"viewer": {"public_base_url": new_base}}
    async with run_collector(tmp_path, settings, port=port) as collector:
        split = urlsplit(old["viewer_url"])
        assert await status_of(collector, f"{collector.base_url}{split.path}?{split.query}") == 200
        new = await stored(collector, fixtures_dir)
        assert new["viewer_url"].startswith(f"{new_base}/view/{new['id']}?sig=")
        # the old record was not rewritten, and its link is still the one that works
        assert (await collector.get_json(f"/v1/sessions/{old['id']}"))["viewer_url"] == (
            old["viewer_url"]
        )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, ["viewer.public_base_url defaults to http://127.0.0.1:8080", "authorized_domains"]),
        (
            {"RTCSTATS_VIEWER__PUBLIC_BASE_URL": "http://localhost:8080"},
            ["viewer.public_base_url is http://localhost:8080", "authorized_domains"],
        ),
        (
            {"RTCSTATS_VIEWER__AUTHORIZED_DOMAINS": '["https://dash.example.com"]'},
            ["viewer.public_base_url defaults to"],
        ),
        (
            {
                "RTCSTATS_SERVER__HOST": "127.0.0.1",  # a laptop: loopback is right
                "RTCSTATS_VIEWER__AUTHORIZED_DOMAINS": '["https://dash.example.com"]',
            },
            [],
        ),
        (
            {
                "RTCSTATS_VIEWER__PUBLIC_BASE_URL": "https://rtcstats.example.com",
                "RTCSTATS_VIEWER__AUTHORIZED_DOMAINS": '["https://dash.example.com"]',
            },
            [],
        ),
        ({"RTCSTATS_VIEWER__ENABLED": "false"}, []),
    ],
)
async def test_check_config_warns_about_links_that_fail_silently(
    tmp_path: Path, settings: dict[str, str], expected: list[str]
) -> None:
    ran = await run_cli("check-config", env=settings, cwd=tmp_path)
    assert ran.code == 0, ran.err
    assert "viewer:" in ran.out  # the configuration, on stdout as before
    assert len(ran.err_lines) == len(expected), ran.err
    for line, words in zip(ran.err_lines, expected, strict=True):
        assert line.startswith("rtcstats-server: warning: viewer.") and words in line


def framed_by(referer: str | None = None, **more: str) -> dict[str, str]:
    headers = {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "cross-site", **more}
    if referer is not None:
        headers["Referer"] = referer
    return headers


async def test_framing_by_a_stranger_is_logged_once_per_origin_and_counted(
    tmp_path: Path, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    domains = ["https://dash.example.com", "https://*.corp.example.net:8443"]
    async with run_collector(tmp_path, {"viewer": {"authorized_domains": domains}}) as collector:
        url = (await stored(collector, fixtures_dir))["viewer_url"]
        own = collector.base_url
        allowed = [
            framed_by("https://dash.example.com/calls?id=4"),
            framed_by("http://ignored", Origin="https://dash.example.com"),  # Origin first
            framed_by("https://a.b.corp.example.net:8443/x"),
            framed_by(f"{own}/ui/", **{"Sec-Fetch-Site": "same-origin"}),
            framed_by(f"{own}/elsewhere"),  # our own origin
            framed_by(None),  # no referrer: cannot be told
            framed_by("null"),
            {"Referer": "https://evil.example.org/"},  # a link followed, not a frame
        ]
        for headers in allowed:
            assert await status_of(collector, url, headers=headers) == 200
        assert await metric(collector, "rtcstats_viewer_frame_refused_total") == (
            "rtcstats_viewer_frame_refused_total 0.0"
        )
        caplog.set_level(logging.WARNING, logger=framing.__name__)
        refused = [
            framed_by("https://evil.example.org/page?a=1"),
            framed_by("https://evil.example.org/other"),  # the same origin again
            framed_by("https://dash.example.com:444/"),  # another port
            framed_by("http://dash.example.com/"),  # https only
            framed_by("https://corp.example.net:8443/"),  # *. is subdomains only
            framed_by(None, Origin="https://evil.example.org", **{"Sec-Fetch-Dest": "frame"}),
        ]
        for headers in refused:
            assert await status_of(collector, url, headers=headers) == 200
        # a forged link framed by a stranger: refused twice over, counted all the same
        forged = url[:-3] + "AAA"
        assert await status_of(collector, forged, headers=refused[0]) == 403
        counted = await metric(collector, "rtcstats_viewer_frame_refused_total")
        assert counted == f"rtcstats_viewer_frame_refused_total {len(refused) + 1}.0"
        logged = [r.getMessage() for r in caplog.records if r.name == framing.__name__]
        origins = [message.split(" ", 2)[1] for message in logged]
        assert origins == [
            "https://evil.example.org",
            "https://dash.example.com:444",
            "http://dash.example.com",
            "https://corp.example.net:8443",
        ]
        assert all("viewer.authorized_domains" in message for message in logged)


def test_remembered_origins_are_bounded() -> None:
    counted: list[int] = []
    metrics = mock.Mock()
    metrics.viewer_frame_refused.inc.side_effect = lambda: counted.append(1)
    watch = framing.FramingWatch([], "http://127.0.0.1:1", metrics)
    with mock.patch.object(framing, "log") as log:
        for n in range(framing.REMEMBERED + 10):
            watch.observe(framed_by(f"https://h{n}.example.org/"), "127.0.0.1:1")
        watch.observe(framed_by("https://h0.example.org/"), "127.0.0.1:1")  # dropped: again
        watch.observe(framed_by("https://x\u00e9.example.org/"), "127.0.0.1:1")  # not ASCII
        watch.observe(framed_by("https://a b.example.org/"), "127.0.0.1:1")  # not a host
    assert len(watch._seen) == framing.REMEMBERED
    assert log.warning.call_count == framing.REMEMBERED + 11
    assert len(counted) == framing.REMEMBERED + 11
