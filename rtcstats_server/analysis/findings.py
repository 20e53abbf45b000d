"""Findings: the short list of what went wrong in a session, each with a severity.

Rules read the summary only, so a stored summary can be re-judged with other
thresholds. Names are stable: records are queried by them (``finding=ice_failed``).
"""

from __future__ import annotations

from typing import Any

from rtcstats_server.config import QualityConfig

ERROR = "error"
WARNING = "warning"
INFO = "info"

#: Every finding name and its severity; the API documents and validates filters with it.
SEVERITIES: dict[str, str] = {
    "ice_failed": ERROR,
    "connection_failed": ERROR,
    "gum_denied": ERROR,
    "gum_failed": ERROR,
    "display_media_failed": WARNING,
    "sdp_error": ERROR,
    "ice_candidate_error": WARNING,
    "connection_dropped": WARNING,
    "slow_connect": WARNING,
    "high_packet_loss": WARNING,
    "high_rtt": WARNING,
    "high_jitter": WARNING,
    "video_freezes": WARNING,
    "high_audio_concealment": WARNING,
    "dump_damaged": INFO,
}

_DENIED = frozenset(
    {"NotAllowedError", "PermissionDeniedError", "PermissionDismissedError", "SecurityError"}
)


def findings_for(summary: dict[str, Any], config: QualityConfig) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def add(name: str, detail: str, pc_id: str | None = None) -> None:
        found.append({"name": name, "severity": SEVERITIES[name], "pc_id": pc_id, "detail": detail})

    for failure in summary["media_failures"]:
        if failure["method"].endswith("DisplayMedia"):
            add("display_media_failed", failure["error"])
        elif failure["error"] in _DENIED:
            add("gum_denied", failure["error"])
        else:
            add("gum_failed", failure["error"])
    for failure in summary["api_failures"]:
        name = "ice_candidate_error" if failure["method"] == "addIceCandidate" else "sdp_error"
        add(name, f"{failure['method']}: {failure['message'][:200]}", failure["pc_id"])
    # Connections past quality.max_peer_connections are only counted; their failures
    # still make findings (listed first: a long list is cut at its end).
    untracked = summary.get("untracked_peer_connections") or {}
    for name in ("ice_failed", "connection_failed"):
        if untracked.get(name):
            add(name, f"{untracked[name]} further connections (not summarized) reached failed")
    for pc in summary["peer_connections"]:
        _pc_findings(pc, config, add)
    if summary.get("summary_error"):
        add("dump_damaged", str(summary["summary_error"])[:200])
    return found


def _pc_findings(pc: dict[str, Any], config: QualityConfig, add: Any) -> None:
    pc_id = pc["pc_id"]
    if pc["ice_failed"]:
        add("ice_failed", "ICE connection state reached failed", pc_id)
    if pc["connection_failed"]:
        add("connection_failed", "connection state reached failed", pc_id)
    if pc["dropped"]:
        detail = f"{pc['drops']} drop(s), {pc['reconnects']} reconnect(s)"
        add("connection_dropped", detail, pc_id)
    connect_ms = pc["connect_time_ms"]
    if connect_ms is not None and connect_ms >= config.slow_connect_s * 1000:
        add("slow_connect", f"connected after {connect_ms / 1000:.1f} s", pc_id)
    for name, media in pc["media"].items():
        sent = media["packets"] + media["packets_lost"]
        loss = media["loss_pct"]
        if (
            loss is not None
            and loss >= config.high_packet_loss_pct
            and sent >= config.min_packets_for_loss
        ):
            add("high_packet_loss", f"{name}: {loss}% of packets lost", pc_id)
        rtt = media["rtt_ms"]
        if rtt is not None and rtt["p95"] >= config.high_rtt_ms:
            add("high_rtt", f"{name}: RTT p95 {rtt['p95']} ms", pc_id)
        jitter = media["jitter_ms"]
        if jitter is not None and jitter["p95"] >= config.high_jitter_ms:
            add("high_jitter", f"{name}: jitter p95 {jitter['p95']} ms", pc_id)
        freezes = media.get("freeze_duration_s")
        if freezes is not None and freezes >= config.freeze_s:
            add("video_freezes", f"{name}: {media['freeze_count']} freezes, {freezes} s", pc_id)
        concealed = media.get("concealment_pct")
        if concealed is not None and concealed >= config.high_concealment_pct:
            add("high_audio_concealment", f"{name}: {concealed}% concealed", pc_id)
    transport = pc["transport_rtt_ms"]
    if transport is not None and transport["p95"] >= config.high_rtt_ms:
        add("high_rtt", f"transport: RTT p95 {transport['p95']} ms", pc_id)
