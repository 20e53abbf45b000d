"""The quality summary on real dumps, with values worked out by hand from raw reports."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.analysis.sketch import QuantileSketch
from rtcstats_server.analysis.summary import summarize_chunks, summarize_file
from rtcstats_server.analysis.useragent import parse_user_agent
from rtcstats_server.cli.main import main
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.codecs import compress_frame

CONFIG = QualityConfig()


def summary_of(fixtures: Path, name: str) -> dict[str, Any]:
    return summarize_file(fixtures / name, CONFIG)


def pc(summary: dict[str, Any], pc_id: str) -> dict[str, Any]:
    return next(p for p in summary["peer_connections"] if p["pc_id"] == pc_id)


def names(summary: dict[str, Any], pc_id: str | None = None) -> set[str]:
    return {f["name"] for f in summary["findings"] if pc_id is None or f["pc_id"] == pc_id}


def test_hand_computed_firefox_values(fixtures_dir: Path) -> None:
    """jitsi-firefox97-standard-stats-sfu.jsonl, PC_0, from its raw getstats lines.

    Received video is report ab7c1fe8. Its first sample (line 48, timestamp 0 = the
    top-level 1641861041232) has bytesReceived 1726370; its last (line 64, top-level
    1641861101235) has bytesReceived 12668636, packetsReceived 11779, packetsLost 28.
    (An older receive stream 4ab24dc5 stays at 0 bytes and 0 packets.)
      loss    = 28 / (11779 + 28) * 100            = 0.2371...  -> 0.24 %
      bitrate = (12668636 - 1726370) * 8 / 60003 ms = 87538128 / 60003 = 1458.88 kbit/s

    Sent video: three simulcast outbound streams, first bytesSent at line 48, last at
    line 64 (same 60003 ms apart):
      1a04f3a3: 1311853 - 176114   = 1135739
      cbb62cef: 4333252 - 557663   = 3775589
      d10607b3: 13045211 - 1728839 = 11316372    sum 16227700 bytes
      bitrate = 16227700 * 8 / 60003 = 2163.55 kbit/s
    Their remote-inbound reports carry a new RTCP report (new timestamp) in each of the
    7 getstats from line 48 on; roundTripTime in ms, the value kept when not resent:
      L48 38 38 39 | L49 41 39 41 | L50 39 35 40 | L51 37 35 36 | L52 38 38 40
      L54 38 33 37 | L64 35 44 42                     21 samples, sum 803
      mean = 803 / 21 = 38.238 ms; p95 (nearest rank 20 of 21, sorted) = 42 ms; max 44.
    packetsSent 2091 + 4832 + 12093 = 19016 and the remote end reports 0 lost: 0 %.
    """
    summary = summary_of(fixtures_dir, "real/jitsi-firefox97-standard-stats-sfu.jsonl")
    media = pc(summary, "PC_0")["media"]
    recv = media["recv_video"]
    assert (recv["packets"], recv["packets_lost"]) == (11779, 28)
    assert recv["loss_pct"] == pytest.approx(28 / 11807 * 100, abs=0.005)
    assert recv["bitrate_kbps"] == pytest.approx(87538128 / 60003, abs=0.05)
    send = media["send_video"]
    assert send["bitrate_kbps"] == pytest.approx(16227700 * 8 / 60003, abs=0.05)
    assert (send["packets"], send["packets_lost"], send["loss_pct"]) == (19016, 0, 0.0)
    assert send["rtt_ms"]["samples"] == 21
    assert send["rtt_ms"]["mean"] == pytest.approx(803 / 21, abs=0.01)
    assert send["rtt_ms"]["max"] == pytest.approx(44)
    assert send["rtt_ms"]["p95"] == pytest.approx(42, rel=0.01)
    assert summary["client"]["browser"] == "Firefox" and summary["client"]["os"] == "macOS"
    assert summary["summary_error"] is None


def test_pc_failed_dump_shows_the_failure(fixtures_dir: Path) -> None:
    summary = summary_of(fixtures_dir, "real/jitsi-chrome-standard-pc-failed.jsonl")
    assert summary["pc_count"] == 3
    failed = pc(summary, "PC_0")
    assert failed["connected"] and failed["connection_failed"]
    assert failed["connection_failed_at"] == 1647265227269
    assert failed["dropped_at"] == 1647265227269
    # create at 1647265211719, connection state connected at 1647265213058
    assert failed["connect_time_ms"] == 1647265213058 - 1647265211719
    assert {"connection_failed", "connection_dropped"} <= names(summary, "PC_0")
    assert "connection_failed" in names(summary, "PC_1")
    assert summary["media_failures"][0]["error"] == "NotReadableError"
    assert "gum_failed" in names(summary)
    severities = {f["name"]: f["severity"] for f in summary["findings"]}
    assert severities["connection_failed"] == "error"


def test_pc_reconnect_dump_shows_the_reconnects(fixtures_dir: Path) -> None:
    summary = summary_of(fixtures_dir, "real/jitsi-chrome-standard-pc-reconnect.jsonl")
    main_pc = pc(summary, "PC_0")
    # connected → disconnected → connected → disconnected → connected → failed
    assert (main_pc["drops"], main_pc["reconnects"]) == (3, 2)
    assert main_pc["dropped_at"] == 1647265416870
    states = [s["state"] for s in main_pc["states"]["connection"]]
    assert states[-5:] == ["disconnected", "connected", "disconnected", "connected", "failed"]
    assert "connection_dropped" in names(summary, "PC_0")


@pytest.mark.parametrize(
    ("name", "browser"),
    [
        ("real/jitsi-firefox97-standard-stats-sfu.jsonl", "Firefox"),
        ("real/jitsi-safari-standard-stats.jsonl", "Safari"),
        ("real/jitsi-google-standard-stats-sfu.jsonl", "Chrome"),
    ],
)
def test_browser_dumps_summarize_cleanly(fixtures_dir: Path, name: str, browser: str) -> None:
    summary = summary_of(fixtures_dir, name)
    assert summary["summary_error"] is None and summary["dump"]["damaged_lines"] == 0
    assert summary["client"]["browser"] == browser
    only = summary["peer_connections"][0]
    assert only["connected"] and only["selected_candidate_pair"] is not None
    assert any(m["bitrate_kbps"] for m in only["media"].values())


def test_real_client_loopback_call(fixtures_dir: Path) -> None:
    """The rtcstats-js capture of the core issue's loopback call."""
    summary = summary_of(fixtures_dir, "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl")
    assert summary["pc_count"] == 2
    for pc_id in ("PC_0", "PC_1"):
        result = pc(summary, pc_id)
        assert result["connected"] and result["connect_time_ms"] < 5000
        losses = [m["loss_pct"] for m in result["media"].values() if m["loss_pct"] is not None]
        assert losses and all(loss == 0 for loss in losses)
        assert result["selected_candidate_pair"]["local_type"] == "host"
    assert summary["max_loss_pct"] == 0
    failure = summary["api_failures"][0]
    assert (failure["pc_id"], failure["method"]) == ("PC_0", "setRemoteDescription")
    assert "sdp_error" in names(summary, "PC_0")


def test_truncated_dump_gives_partial_summary(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "real/jitsi-firefox97-standard-stats-sfu.jsonl").read_bytes()
    lines = text.splitlines(keepends=True)
    frames = [compress_frame(b"".join(lines[i : i + 8]), 3) for i in range(0, len(lines), 8)]
    data = b"".join(frames)[:-40]
    summary = summarize_chunks([data], CONFIG)
    assert "truncated" in summary["summary_error"]
    assert "dump_damaged" in names(summary)
    assert summary["pc_count"] == 1 and summary["peer_connections"][0]["stats_samples"] >= 5


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage", gzip.compress(b"[1,2")[:-3]])
def test_garbage_gives_summary_error_not_a_crash(data: bytes) -> None:
    summary = summarize_chunks([data], CONFIG)
    assert summary["summary_error"]
    assert summary["peer_connections"] == []


def test_thresholds_come_from_config(fixtures_dir: Path) -> None:
    strict = QualityConfig(high_packet_loss_pct=0.1, high_rtt_ms=40, min_packets_for_loss=10)
    path = fixtures_dir / "real/jitsi-firefox97-standard-stats-sfu.jsonl"
    assert {"high_packet_loss", "high_rtt"} <= names(summarize_file(path, strict))
    assert not {"high_packet_loss", "high_rtt"} & names(summarize_file(path, CONFIG))


def test_sketch_quantiles_within_one_percent() -> None:
    sketch = QuantileSketch()
    values = [(i * 7919) % 1000 + 1 for i in range(1000)]  # 1..1000 shuffled
    for value in values:
        sketch.add(float(value))
    assert sketch.quantile(0.95) == pytest.approx(950, rel=0.01)
    assert sketch.quantile(0.5) == pytest.approx(500, rel=0.01)
    assert sketch.mean == pytest.approx(500.5)
    sketch.add(math.nan)
    assert sketch.count == 1000


def test_user_agents() -> None:
    chrome = parse_user_agent(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/99.0.4844.51 Safari/537.36"
    )
    assert (chrome.browser, chrome.browser_version, chrome.os, chrome.os_version) == (
        "Chrome",
        "99.0.4844.51",
        "Windows",
        "10",
    )
    edge = parse_user_agent(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0.1"
    )
    assert (edge.browser, edge.os) == ("Edge", "macOS")
    assert parse_user_agent(None).browser is None


def test_cli_summarize(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = fixtures_dir / "real/jitsi-chrome-standard-pc-failed.jsonl"
    assert main(["summarize", str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pc_count"] == 3 and "connection_failed" in names(printed)
    assert main(["summarize", str(fixtures_dir / "no-such-dump")]) == 1
