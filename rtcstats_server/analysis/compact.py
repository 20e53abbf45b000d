"""The compact form of a quality summary, for lists of sessions.

A record's ``quality`` holds every peer connection with its state timelines and its
media statistics per track: kilobytes per session, of which a list (a dashboard's
table, a backend scanning for bad calls) reads a handful of numbers. The compact form
keeps those: the findings, the worst loss and round-trip time, and counts. Every key
it shares with the full summary has the same value there, so a client reading
``quality.max_loss_pct`` works with both; ``compact: true`` says which one it got.
"""

from __future__ import annotations

from typing import Any, Final

#: Keys of the full summary kept as they are.
KEPT: Final = (
    "version",
    "dump",
    "pc_count",
    "ice_restarts",
    "api_failure_count",
    "max_loss_pct",
    "max_rtt_ms",
    "summary_error",
)
#: Keys of a finding kept (``detail``, a sentence, stays in the full summary).
FINDING_KEYS: Final = ("name", "severity", "pc_id")


def compact_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The compact form of a full summary (quality/summary.py)."""
    compact: dict[str, Any] = {"compact": True}
    compact.update({key: summary[key] for key in KEPT if key in summary})
    pcs = [pc for pc in summary.get("peer_connections") or [] if isinstance(pc, dict)]
    compact["connected_pc_count"] = sum(1 for pc in pcs if pc.get("connected"))
    compact["failed_pc_count"] = sum(
        1 for pc in pcs if pc.get("ice_failed") or pc.get("connection_failed")
    )
    compact["dropped_pc_count"] = sum(1 for pc in pcs if pc.get("dropped"))
    compact["media_failure_count"] = len(summary.get("media_failures") or [])
    compact["findings"] = [
        {key: finding.get(key) for key in FINDING_KEYS}
        for finding in summary.get("findings") or []
        if isinstance(finding, dict)
    ]
    return compact
