"""Old Chrome's goog/``ssrc`` stats feed the summary, its findings and the charts alike.

A crafted ``3.1_LEGACY`` session (the jitsi client on a Chrome without standard
stats): one sent audio and one received video stream in legacy ``ssrc`` reports,
getStats every second for 20 s. At second i the counters are:

    ssrc_1_send (audio): packetsSent 50 i, packetsLost 5 i (the far end's), bytesSent
                         5 000 i, googRtt 450 ms, googJitterReceived 30 ms
    ssrc_2_recv (video): packetsReceived 100 i, packetsLost 8 i, bytesReceived 100 000 i

so, by hand: sent audio loses 100 of 1 000 = 10 %, at 5 000 B * 8 / 1 s = 40 kbit/s,
RTT 450 ms in all 20 samples; received video loses 160 of 2 000 + 160 = 7.41 %, at
800 kbit/s. With the default thresholds (5 % loss, 400 ms RTT) that is
``high_packet_loss`` twice and ``high_rtt``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from rtcstats_server.analysis.summary import summarize_file
from rtcstats_server.config import QualityConfig
from tests.analysis.test_one_interpreter import assert_summary_is_the_charted_series
from tests.ingest.test_replay_fixtures import replay
from tests.services import streams
from tests.services.collector import RunningCollector

T0 = 1_500_000_000_000
NAME = "legacy-chrome.jsonl"
CHROME_55 = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/55.0.2883.87 Safari/537.36"
)


def legacy_reports(i: int, t: int) -> dict[str, Any]:
    return {
        "ssrc_1_send": {"type": "ssrc", "timestamp": t, "mediaType": "audio", "ssrc": "1",
                        "googCodecName": "opus", "googTrackId": "mic",
                        "packetsSent": str(50 * i), "bytesSent": str(5000 * i),
                        "packetsLost": str(5 * i), "googRtt": "450",
                        "googJitterReceived": "30", "audioInputLevel": "3276"},
        "ssrc_2_recv": {"type": "ssrc", "timestamp": t, "mediaType": "video", "ssrc": "2",
                        "googCodecName": "VP8", "packetsReceived": str(100 * i),
                        "packetsLost": str(8 * i), "bytesReceived": str(100_000 * i),
                        "googFrameHeightReceived": "480", "googFrameRateReceived": "30",
                        "googJitterReceived": "20"},
        "Conn-audio-1-0": {"type": "googCandidatePair", "timestamp": t,
                           "googActiveConnection": "true", "googRtt": "3000",
                           "googLocalCandidateType": "local",
                           "googRemoteCandidateType": "relay", "googTransportType": "udp",
                           "bytesSent": str(5000 * i), "bytesReceived": str(100_000 * i)},
        "Channel-audio-1": {"type": "googComponent", "timestamp": t,
                            "selectedCandidatePairId": "Conn-audio-1-0"},
    }  # fmt: skip


def write_legacy_dump(directory: Path) -> Path:
    """A jitsi on-disk dump of the session (under ``real/``, as streams.py reads them)."""
    info = {"clientProtocol": "3.1_LEGACY", "userAgent": CHROME_55, "path": "/legacy"}
    lines: list[list[Any]] = [
        ["connectionInfo", None, info, T0],
        ["create", "PC_0", {"iceServers": []}, T0 + 10],
        ["oniceconnectionstatechange", "PC_0", "checking", T0 + 100],
        ["oniceconnectionstatechange", "PC_0", "connected", T0 + 300],
    ]
    for i in range(1, 21):
        t = T0 + 1000 * i
        lines.append(["getstats", "PC_0", legacy_reports(i, t), t])
    lines.append(["close", "PC_0", None, T0 + 21_000])
    path = directory / "real" / NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_legacy_stats_give_loss_rtt_and_findings(tmp_path: Path) -> None:
    path = write_legacy_dump(tmp_path)
    summary = summarize_file(path, QualityConfig())
    (pc,) = summary["peer_connections"]
    sent, received = pc["media"]["send_audio"], pc["media"]["recv_video"]
    assert (sent["packets"], sent["packets_lost"], sent["loss_pct"]) == (1000, 100, 10.0)
    assert sent["bitrate_kbps"] == 40.0
    assert sent["rtt_ms"]["samples"] == 20 and sent["rtt_ms"]["mean"] == 450
    assert sent["rtt_ms"]["p95"] == pytest.approx(450, rel=0.01)
    assert sent["jitter_ms"]["mean"] == 30
    assert (received["packets"], received["packets_lost"]) == (2000, 160)
    assert received["loss_pct"] == round(100 * 160 / 2160, 2)
    assert received["bitrate_kbps"] == 800.0
    # libjingle's googRtt of the pair is an estimate seeded at 3 s, not a measurement
    assert pc["transport_rtt_ms"] is None
    assert pc["selected_candidate_pair"] == {
        "local_type": "host",
        "remote_type": "relay",
        "protocol": "udp",
        "relay_protocol": None,
        "network_type": None,
    }
    losses = {
        f["detail"].split(":")[0] for f in summary["findings"] if f["name"] == "high_packet_loss"
    }
    assert losses == {"send_audio", "recv_video"}
    assert "high_rtt" in {f["name"] for f in summary["findings"]}
    assert summary["max_loss_pct"] == 10.0
    assert_summary_is_the_charted_series(path)


async def test_a_legacy_session_through_the_collector(
    collector: RunningCollector, tmp_path: Path
) -> None:
    """Streamed as its client would (``3.1_LEGACY`` envelopes): the record has the
    findings, and the viewer charts the same loss and RTT."""
    write_legacy_dump(tmp_path)
    await replay(collector, streams.jitsi_disk_dump(tmp_path, NAME, "s-legacy"))
    record = await collector.wait_for_record(lambda r: r["state"] == "stored" and "viewer_url" in r)
    record = await collector.wait_for_analysis(record["id"])  # later, in a worker process
    assert record["dialect"] == "3.1_LEGACY"
    assert {"high_packet_loss", "high_rtt"} <= set(record["findings"])
    assert record["max_loss_pct"] == 10.0
    base, query = record["viewer_url"].split("?", 1)
    async with collector.http.get(record["viewer_url"]) as response:
        page = await response.text()
    for metric in ("loss_pct", "rtt_ms", "bitrate_kbps", "packets_lost"):
        assert f'data-metric="{metric}"' in page
    async with collector.http.get(f"{base}/samples.jsonl?{query}") as response:
        lines = [orjson.loads(line) for line in (await response.read()).splitlines()]
    sent = [line for line in lines if line["series"] == "send audio 1"]
    assert {line["value"] for line in sent if line["metric"] == "loss_pct"} == {10.0}
    assert [line["value"] for line in sent if line["metric"] == "rtt_ms"] == [450.0] * 20
    received = [line for line in lines if line["series"] == "recv video 2"]
    # 8 lost of 108 each second (the first sample: 8 of 108 since the start)
    assert {round(line["value"], 4) for line in received if line["metric"] == "loss_pct"} == {
        round(100 * 8 / 108, 4)
    }
