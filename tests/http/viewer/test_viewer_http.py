"""The viewer over HTTP on a running collector: links in records, refusals, headers,
the cache, zoom, the download and the event details."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from rtcstats_server.http.access import hash_token
from rtcstats_server.http.keys import VIEWER
from rtcstats_server.http.viewer.service import CACHE_DIR
from tests.ingest.test_replay_fixtures import load, replay
from tests.services import streams
from tests.services.collector import RunningCollector, run_collector
from tests.services.stored_dumps import store_dump_file

JITSI = "jitsi-rtcstats-9.7.1-loopback-call"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def frame_ancestors(headers: Any) -> str:
    policy = headers["Content-Security-Policy"]
    match = re.search(r"frame-ancestors ([^;]*)", policy)
    assert match, policy
    return match.group(1).strip()


async def metric(collector: RunningCollector, name: str) -> str:
    text = await (await collector.http.get(collector.base_url + "/metrics")).text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def replayed(collector: RunningCollector, fixtures: Path, name: str) -> dict[str, Any]:
    await replay(collector, streams.captured(fixtures, name))
    return await collector.wait_for_record(lambda r: r["state"] == "stored" and "viewer_url" in r)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("captured", JITSI),
        ("captured", "rtcstats-js-2.4.0-loopback-call"),
        ("captured", "rtcstats-5.2.0-loopback-call"),
        ("jvb", "jitsi-jvb-sample.jsonl"),
        ("rtcstats", "rtcstats-gumonly"),
    ],
)
async def test_every_dialect_gets_a_working_viewer_url(
    collector: RunningCollector, fixtures_dir: Path, kind: str, name: str
) -> None:
    await replay(collector, load(fixtures_dir, kind, name))
    record = await collector.wait_for_record(lambda r: r["state"] == "stored" and "viewer_url" in r)
    url = record["viewer_url"]
    assert url.startswith(f"{collector.base_url}/view/{record['id']}?sig=")
    assert "exp" not in query_of(url) and record["viewer_url_expires_at"] is None
    async with collector.http.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert frame_ancestors(response.headers) == "'self'"
        assert "X-Frame-Options" not in response.headers
        page = await response.text()
    assert f"Session {record['id']}" in page
    assert f"client protocol {record['dialect']}" in page
    assert "class=err" not in page
    if kind != "captured":
        assert page.count('<tr class="ev') >= 2 and "<svg" not in page  # no getStats in these
        return
    assert page.count('<tr class="ev') > 10
    assert "setRemoteDescriptionOnFailure" in page  # each captured call fails one on purpose
    if name == "rtcstats-5.2.0-loopback-call":
        assert "<svg" not in page  # this client's getStats is gone from Chromium: no samples
    else:
        for metric_name in ("bitrate_kbps", "rtt_ms", "jitter_ms", "fps", "frame_height"):
            assert f'data-metric="{metric_name}"' in page


async def test_refused_links_get_a_403_page_and_are_counted(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    first = await replayed(collector, fixtures_dir, JITSI)
    second_id = await store_dump_file(
        collector, fixtures_dir / "real" / "jitsi-firefox97-standard-stats-sfu.jsonl"
    )
    signer = collector.app[VIEWER].signer
    good = signer.url(first["id"], time.time()).url  # an expiring link
    params = query_of(good)
    base = f"{collector.base_url}/view/{first['id']}"
    expired = signer.url(first["id"], time.time() - signer.ttl_s - 5).url
    foreign = signer.url(second_id, time.time()).url.replace(second_id, first["id"])
    forged_sig = params["sig"][:-2] + ("AA" if not params["sig"].endswith("AA") else "BB")
    cases = {
        "expired": expired,
        "bad_signature": [
            f"{base}?exp={params['exp']}&sig={forged_sig}",
            f"{base}?exp={int(params['exp']) + 1}&sig={params['sig']}",
            foreign,
        ],
        "missing": f"{base}?exp={params['exp']}",
    }
    # the record's lasting link, altered: another session's, or an expiring one's
    # signature without its expiry
    lasting = query_of(first["viewer_url"])["sig"]
    # the last character changed (a 43-character signature ends in one of 16 letters, so
    # a fixed replacement would be the same letter one time in 16)
    altered = lasting[:-1] + ("E" if lasting.endswith("A") else "A")
    cases["bad_signature"] += [f"{base}?sig={params['sig']}", f"{base}?sig={altered}"]

    for urls in cases.values():
        for url in [urls] if isinstance(urls, str) else urls:
            async with collector.http.get(url) as response:
                assert response.status == 403, url
                assert response.content_type == "text/html"
                assert frame_ancestors(response.headers) == "'self'"
                text = await response.text()
                assert "Access denied" in text and first["id"] not in text
            for sub in ("/samples.jsonl", "/events/0"):  # every viewer route checks
                signed_part = url.split("?", 1)
                async with collector.http.get(f"{signed_part[0]}{sub}?{signed_part[1]}") as sub_r:
                    assert sub_r.status == 403
    counted = await metric(collector, "rtcstats_viewer_denied_total")
    assert 'rtcstats_viewer_denied_total{reason="expired"} 3.0' in counted
    assert 'rtcstats_viewer_denied_total{reason="bad_signature"} 15.0' in counted
    assert 'rtcstats_viewer_denied_total{reason="missing"} 3.0' in counted
    async with collector.http.get(good) as response:
        assert response.status == 200


async def test_fresh_link_from_the_api(collector: RunningCollector, fixtures_dir: Path) -> None:
    session_id = await store_dump_file(
        collector, fixtures_dir / "real" / "jitsi-chrome-standard-pc-failed.jsonl"
    )
    url = f"{collector.base_url}/v1/sessions/{session_id}/viewer-url"
    async with collector.http.post(url) as response:
        assert response.status == 200
        body = await response.json()
    assert set(body) == {"viewer_url", "expires_at"}
    assert body["viewer_url"].startswith(f"{collector.base_url}/view/{session_id}?exp=")
    exp = int(query_of(body["viewer_url"])["exp"])
    assert exp == pytest.approx(time.time() + 7 * 86400, abs=60)  # viewer.url_ttl_s
    assert datetime.fromisoformat(body["expires_at"]).timestamp() == exp
    async with collector.http.get(body["viewer_url"]) as response:
        assert response.status == 200
        page = await response.text()
    assert "ice_failed" in page or "connection_failed" in page  # the findings, in the header
    assert 'class="sev sev-error"' in page
    async with collector.http.post(url.replace(session_id, "f" * 32)) as response:
        assert response.status == 404


async def test_authorized_domains_are_exactly_the_frame_ancestors(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    domains = ["https://dash.example.com", "http://127.0.0.1:9999"]
    async with run_collector(tmp_path, {"viewer": {"authorized_domains": domains}}) as collector:
        session_id = await store_dump_file(
            collector, fixtures_dir / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl"
        )
        record = await collector.get_json(f"/v1/sessions/{session_id}")
        async with collector.http.get(record["viewer_url"]) as response:
            assert response.status == 200
            assert frame_ancestors(response.headers).split() == ["'self'", *domains]
            policy = response.headers["Content-Security-Policy"]
            page = await response.text()
        # only our own nonce'd script and style run, nothing is fetched from elsewhere
        nonce = re.search(r"'nonce-([^']+)'", policy)
        assert nonce and f'<script nonce="{nonce.group(1)}">' in page
        assert "default-src 'none'" in policy
        assert not re.search(r"(src|href)=\"(https?:)?//", page)


async def test_the_view_is_computed_once_then_read_from_the_cache(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    path = fixtures_dir / "real" / "jitsi-google-standard-stats-sfu.jsonl"
    session_id = await store_dump_file(collector, path)
    record = await collector.get_json(f"/v1/sessions/{session_id}")
    cache = collector.config.server.data_dir / CACHE_DIR
    assert not list(cache.glob(f"{session_id}.*"))
    async with collector.http.get(record["viewer_url"]) as response:
        cold = await response.text()
    assert len(list(cache.glob(f"{session_id}.*.json.zst"))) == 1
    # the dump is gone: only the cache can still give the charts
    (collector.config.dumps_dir / record["dump_key"]).unlink()
    async with collector.http.get(record["viewer_url"]) as response:
        warm = await response.text()
    strip = re.compile(r'nonce="[^"]*"')
    assert strip.sub("", warm) == strip.sub("", cold)
    timings = await metric(collector, "rtcstats_viewer_model_seconds_count")
    assert 'source="computed"} 1.0' in timings and 'source="cached"} 1.0' in timings


async def test_zoom_download_and_event_details(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    path = fixtures_dir / "real" / "jitsi-safari-standard-stats.jsonl"
    session_id = await store_dump_file(collector, path)
    url = (await collector.get_json(f"/v1/sessions/{session_id}"))["viewer_url"]
    base, query = url.split("?", 1)

    async with collector.http.get(f"{base}/samples.jsonl?{query}") as response:
        assert response.status == 200
        assert "attachment" in response.headers["Content-Disposition"]
        lines = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert {line["metric"] for line in lines} >= {"bitrate_kbps", "rtt_ms", "jitter_ms", "fps"}
    times = sorted(line["t"] for line in lines)
    start, end = int(times[len(times) // 3]), int(times[len(times) // 3] + 20_000)

    async with collector.http.get(f"{base}?{query}&from={start}&to={end}") as response:
        assert response.status == 200
        zoomed = await response.text()
    assert "Zoomed to" in zoomed and 'data-metric="bitrate_kbps"' in zoomed
    assert f'data-x0="{float(start)}" data-x1="{float(end)}"' in zoomed
    async with collector.http.get(f"{base}/samples.jsonl?{query}&from={start}&to={end}") as r:
        window = [orjson.loads(line) for line in (await r.read()).splitlines()]
    inside = [line for line in lines if start <= line["t"] <= end]
    assert window == inside and window  # the window's download: every sample, exactly
    async with collector.http.get(f"{base}?{query}&from={end}&to={start}") as response:
        assert response.status == 400

    async with collector.http.get(f"{base}?{query}") as response:
        page = await response.text()
    # details of SDP events are inline; any event can also be fetched by its number
    assert "<summary>SDP</summary><table class=msec>" in page and "<pre class=sdp>v=0" in page
    assert '<tr class="ev api" data-kind="api" data-s="setremotedescription' in page
    async with collector.http.get(f"{base}/events/0?{query}") as response:
        assert response.status == 200
        first = await response.json()
    assert first["index"] == 0 and first["method"]
    async with collector.http.get(f"{base}/events/999999?{query}") as response:
        assert response.status == 404


async def test_disabled_viewer(tmp_path: Path, fixtures_dir: Path) -> None:
    async with run_collector(tmp_path, {"viewer": {"enabled": False}}) as collector:
        session_id = await store_dump_file(
            collector, fixtures_dir / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl"
        )
        record = await collector.get_json(f"/v1/sessions/{session_id}")
        assert "viewer_url" not in record
        url = f"{collector.base_url}/v1/sessions/{session_id}/viewer-url"
        async with collector.http.post(url) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "viewer_disabled"
        async with collector.http.get(f"{collector.base_url}/view/{session_id}") as response:
            assert response.status == 404
        assert not (tmp_path / "viewer-secret").exists()


async def test_links_survive_a_restart(tmp_path: Path, fixtures_dir: Path) -> None:
    async with run_collector(tmp_path) as collector:
        session_id = await store_dump_file(
            collector, fixtures_dir / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl"
        )
        url = (await collector.get_json(f"/v1/sessions/{session_id}"))["viewer_url"]
        port = collector.port
    async with run_collector(tmp_path, port=port) as collector:
        async with collector.http.get(url) as response:
            assert response.status == 200


async def test_a_read_token_gets_a_link_and_the_link_needs_no_token(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    token = "viewer-test-read-token"
    settings = {"api": {"tokens": [{"name": "dash", "sha256": hash_token(token), "scope": "read"}]}}
    async with run_collector(tmp_path, settings) as collector:
        session_id = await store_dump_file(
            collector, fixtures_dir / "real" / "rtcstats-gumonly.rtcstatsdump.jsonl"
        )
        url = f"{collector.base_url}/v1/sessions/{session_id}/viewer-url"
        async with collector.http.post(url) as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {token}"}
        async with collector.http.post(url, headers=headers) as response:
            assert response.status == 200
            link = (await response.json())["viewer_url"]
        async with collector.http.get(link) as response:  # the signature is the permission
            assert response.status == 200


async def test_a_raw_property_is_streamed_on_demand(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    path = fixtures_dir / "real" / "jitsi-chrome-standard-pc-failed.jsonl"
    session_id = await store_dump_file(collector, path)
    url = (await collector.get_json(f"/v1/sessions/{session_id}"))["viewer_url"]
    base, query = url.split("?", 1)
    pair = "RTCIceCandidatePair_EmztWeo9_dVk2L1DR"
    wanted = f"{base}/property.jsonl?{query}&pc=PC_0&report={pair}&property=bytesReceived"
    async with collector.http.get(wanted) as response:
        assert response.status == 200 and response.content_type == "application/x-ndjson"
        lines = [orjson.loads(line) for line in (await response.read()).splitlines()]
    values = [line["value"] for line in lines]
    assert len(values) == 7 and values == sorted(values) and values[-1] > 5_000_000
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
    async with collector.http.get(f"{base}/property.jsonl?{query}&pc=PC_0") as response:
        assert response.status == 400  # report and property are required
    page = await (await collector.http.get(url)).text()
    assert f'<option value="{pair}">' in page and "class=card" in page
    # PC_1 and PC_2 only ever checked pairs: their checks are charted, not "no getStats
    # samples in this range" (issue 19)
    assert page.count('data-metric="ice_checks"') == 2
    assert "No getStats samples" not in page
    async with collector.http.get(f"{base}/property.jsonl?pc=PC_0") as response:
        assert response.status == 403  # signed like the page
