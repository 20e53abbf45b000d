"""The viewer's per-connection card, SDP sections and chart markers, on real dumps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtcstats_server.analysis.connection_card import (
    MAX_CHAIN,
    MAX_MUNGED,
    ConnectionCard,
    sdp_difference,
)
from rtcstats_server.analysis.sdp_sections import media_sections
from rtcstats_server.analysis.track_extras import EXTRA_METRICS
from rtcstats_server.analysis.viewmodel import build_view_model, marker_of, samples
from rtcstats_server.dumps.reader import DumpReader, Event


def model(fixtures_dir: Path, name: str) -> dict[str, Any]:
    return build_view_model([(fixtures_dir / "real" / name).read_bytes()], 300)


def card(built: dict[str, Any], pc: str) -> dict[str, Any]:
    return next(g["card"] for g in built["groups"] if g["pc_id"] == pc)


def test_card_of_a_failed_connection(fixtures_dir: Path) -> None:
    built = model(fixtures_dir, "jitsi-chrome-standard-pc-failed.jsonl")
    connected = card(built, "PC_0")
    states = {name: [s for _, s in chain] for name, chain in connected["chains"].items()}
    assert states["connection"] == ["connecting", "connected", "failed"]
    assert states["ice"] == ["checking", "connected"]
    assert states["dtls"][-1] == "connected" and "signaling" in states
    assert connected["time_to_connect_ms"] == 1339.0
    pair = connected["selected_pair"]
    assert (pair["local_type"], pair["remote_type"], pair["protocol"]) == ("prflx", "srflx", "udp")
    assert pair["network_type"] == "ethernet"
    assert pair["local_address"].startswith("x.x.x.x:")  # masked, port kept
    grid = connected["pairs"]
    assert grid[0]["id"] == pair["id"] and grid[0]["state"] == "succeeded"
    assert grid[0]["bytes_received"] > 1_000_000 and grid[0]["rtt_ms"] == 192.0
    assert len(grid) > 1 and all(not row["local"].count(".1") for row in grid)
    # a connection that never connected: every pair in progress, no selection
    never = card(built, "PC_1")
    assert never["time_to_connect_ms"] is None and never["selected_pair"] is None
    assert never["pairs"] and {row["state"] for row in never["pairs"]} == {"in-progress"}
    assert all(row["requests_sent"] and not row["responses_received"] for row in never["pairs"])
    checks = {
        series["label"]: series["points"][-1][3]
        for group in built["groups"]
        if group["pc_id"] == "PC_1"
        for series in group["series"]
        if series["metric"] == "ice_checks"
    }
    sent = {label: v for label, v in checks.items() if label.endswith(" requests")}
    answered = {label: v for label, v in checks.items() if label.endswith(" responses")}
    assert sent and min(sent.values()) >= 39 and set(answered.values()) == {0.0}
    assert all(" → " in label and "x.x.x.x" in label for label in checks)
    labels = [label for _, label, _ in built["markers"]]
    assert "getUserMediaOnFailure" in labels and "connection failed" in labels
    assert "iceconnection disconnected" in labels


def test_munging_is_detected(fixtures_dir: Path) -> None:
    """jitsi rewrites the answer (simulcast ssrcs) before setLocalDescription."""
    munged = card(model(fixtures_dir, "jitsi-google-standard-stats-sfu.jsonl"), "PC_0")["munged"]
    assert len(munged) == 1 and munged[0]["type"] == "answer"
    assert any(line.startswith("+ a=ssrc:") for line in munged[0]["difference"])
    # Chrome 48's client set what it created
    legacy = model(fixtures_dir, "jitsi-clienttest.legacy-import.json")
    assert card(legacy, "PC_0")["munged"] == [] and card(legacy, "PC_1")["munged"] == []


def test_sdp_difference_and_sections() -> None:
    offer = "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n"
    offer += "a=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    offer += "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=recvonly\r\n"
    offer += "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n"
    sections = media_sections(offer)
    assert [(s.mid, s.kind, s.direction, s.codecs) for s in sections] == [
        ("0", "audio", "sendrecv", ["opus/48000/2", "PCMU/8000"]),
        ("1", "video", "recvonly", ["VP8/90000", "rtx/90000"]),
    ]
    munged = offer.replace("a=recvonly", "a=inactive")
    assert sdp_difference(offer, munged) == ["- a=recvonly", "+ a=inactive"]
    assert media_sections("not a description") == []


def test_markers() -> None:
    def marker(method: str, value: Any) -> str | None:
        return marker_of(Event(1.0, method, "PC_0", value))

    assert marker("oniceconnectionstatechange", "disconnected") == "iceconnection disconnected"
    assert marker("onconnectionstatechange", "connected") is None
    assert marker("onsignalingstatechange", "closed") is None
    assert marker("createOffer", {"iceRestart": True}) == "ICE restart"
    assert marker("createOffer", {}) is None
    assert marker("setRemoteDescriptionOnFailure", "x") == "setRemoteDescriptionOnFailure"
    assert marker("navigator.mediaDevices.getUserMediaOnFailure", "x") == "getUserMediaOnFailure"
    assert marker("addIceCandidateOnFailure", "x") is None


def test_audio_levels_are_on_the_0_to_1_scale(fixtures_dir: Path) -> None:
    """The 2020 jitsi dump put 0..32767 integers in the standard audioLevel (the
    chart's axis read 0..500)."""
    built = model(fixtures_dir, "jitsi-google-standard-stats-sfu.jsonl")
    levels = [
        point[2]
        for group in built["groups"]
        for series in group["series"]
        if series["metric"] == "audio_level"
        for point in series["points"]
    ]
    assert levels and max(levels) <= 1.0 and max(levels) > 0.001


def test_further_series_are_charted_and_downloaded_alike(fixtures_dir: Path) -> None:
    """NACK/PLI/FIR, keyframes, QP, decode time, jitter buffer, frames dropped and the
    available outgoing bitrate: in the charts, and with the same values in the download."""
    path = fixtures_dir / "real" / "jitsi-google-standard-stats-sfu.jsonl"
    built = model(fixtures_dir, path.name)
    charted = {
        (series["entity"], series["metric"]): series
        for group in built["groups"]
        for series in group["series"]
    }
    metrics = {metric for _, metric in charted}
    assert metrics >= {
        "rtcp_feedback",
        "keyframes",
        "qp",
        "decode_ms",
        "jitter_buffer_ms",
        "frames_dropped",
        "available_outgoing_kbps",
    }
    downloaded: dict[tuple[str, str], list[float]] = {}
    for sample, _ in samples(DumpReader([path.read_bytes()])):
        downloaded.setdefault((sample.entity, sample.metric), []).append(sample.value)
    for key, series in charted.items():
        if key[1] in EXTRA_METRICS:
            assert series["samples"] == len(downloaded[key]), key
    nack = [k for k in charted if k[1] == "rtcp_feedback" and k[0].endswith(":NACK")]
    assert nack and all(v >= 0 for k in nack for v in downloaded[k])
    qp = [v for k, values in downloaded.items() if k[1] == "qp" for v in values]
    assert qp and 0 < min(qp) and max(qp) < 128  # a per-frame QP, not a running sum


def test_card_is_bounded_and_takes_any_client_data() -> None:
    """A client can send anything: odd types are skipped, every list is capped."""
    card = ConnectionCard()
    for n in range(500):
        card.event(Event(n + 1.0, "oniceconnectionstatechange", "PC_0", ["checking", n][n % 2]))
        card.event(Event(n + 1.0, "onconnectionstatechange", "PC_0", f"state{n}"))
        card.event(Event(n + 1.0, "createOfferOnSuccess", "PC_0", {"type": "offer", "sdp": "a"}))
        card.event(Event(n + 1.0, "setLocalDescription", "PC_0", {"type": "offer", "sdp": f"{n}"}))
        card.event(Event(n + 1.0, "setLocalDescription", "PC_0", {"type": 5, "sdp": None}))
    result = card.result()
    assert result["chains"]["ice"] == [[1.0, "checking"]]  # numbers are not states
    assert len(result["chains"]["connection"]) == MAX_CHAIN
    assert result["chains_omitted"]["connection"] == 500 - MAX_CHAIN
    assert len(result["munged"]) == MAX_MUNGED and result["time_to_connect_ms"] is None
