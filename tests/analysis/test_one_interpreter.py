"""The summary and the viewer are views of one interpreter (issue 15, item 3).

On every real fixture the summary's loss, RTT and bitrate are recomputed from the
viewer's series, point by point, and must come out equal:

- RTT and jitter: the summary's mean, p95, max and sample count are those of exactly
  the points charted for that direction and kind (a sample the summary counts and the
  chart does not, or one charted twice, changes the count);
- loss: the summary's packets and lost packets are the sums of the charted
  per-sample counts, and its loss the ratio of those sums (fractionLost against
  packet counters, or a different track set, gives other sums);
- bitrate: per series the time-weighted mean of the charted bitrates (each point
  weighted by the interval the download says it covers), summed per direction and
  kind;
- transport RTT likewise from the transport series.

The view model is built with buckets wide enough to keep every sample, which the test
checks, so each chart point is one sample; its values are also checked against the
download's, which lists every sample.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.analysis.sketch import QuantileSketch
from rtcstats_server.analysis.summary import summarize_file
from rtcstats_server.analysis.viewmodel import build_view_model, samples
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.reader import file_chunks, read_events
from tests.services.shared import FIXTURES

FIXTURE_FILES = sorted(
    [p for p in (FIXTURES / "real").iterdir() if p.suffix != ".md"]
    + list((FIXTURES / "captured").glob("*.ws.jsonl")),
    key=lambda p: p.name,
)
#: Buckets per series wide enough to keep every sample of every fixture.
FULL_RESOLUTION = 100_000


def sketch_of(values: list[float]) -> dict[str, Any] | None:
    """The summary's view of a series, from the charted values."""
    if not values:
        return None
    sketch = QuantileSketch()
    for value in values:
        sketch.add(value)
    p95 = sketch.quantile(0.95)
    assert p95 is not None and sketch.mean is not None
    return {"mean": sketch.mean, "p95": p95, "max": sketch.maximum, "samples": sketch.count}


def assert_same_series(summary: dict[str, Any] | None, charted: dict[str, Any] | None) -> None:
    if summary is None or charted is None:
        assert summary == charted
        return
    assert summary["samples"] == charted["samples"]
    for key in ("mean", "p95", "max"):
        assert summary[key] == pytest.approx(charted[key], abs=0.006), key


def group_of(entity: str) -> str | None:
    """``send:video:1234`` → ``send_video``; transport entities have no group."""
    direction, _, rest = entity.partition(":")
    kind = rest.partition(":")[0]
    return f"{direction}_{kind}" if direction in ("send", "recv") and kind else None


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_summary_numbers_are_the_charted_series(path: Path) -> None:
    assert_summary_is_the_charted_series(path)


def assert_summary_is_the_charted_series(path: Path) -> None:
    """The whole check, for any dump file (used for crafted dumps too)."""
    summary = summarize_file(path, QualityConfig())
    model = build_view_model(file_chunks(path), FULL_RESOLUTION)
    assert model["error"] is None
    download = list(samples(read_events(file_chunks(path))))

    # the download (every sample) and the chart points are the same values
    listed: dict[tuple[Any, str, str], list[tuple[float, float]]] = defaultdict(list)
    intervals: dict[tuple[Any, str, str], list[float | None]] = defaultdict(list)
    for sample, _ in download:
        key = (sample.pc_id, sample.entity, sample.metric)
        listed[key].append((sample.t, sample.value))
        intervals[key].append(sample.interval_ms)
    charted: dict[tuple[Any, str, str], list[float]] = {}
    for group in model["groups"]:
        for series in group["series"]:
            assert series["samples"] == len(series["points"]), "not every sample charted"
            key = (group["pc_id"], series["entity"], series["metric"])
            charted[key] = [point[3] for point in series["points"]]
            assert [(p[0], p[3]) for p in series["points"]] == [
                (round(t, 1), value) for t, value in listed[key]
            ]
    assert set(charted) == set(listed)

    for pc in summary["peer_connections"]:
        pc_id = pc["pc_id"]

        def values(group: str, metric: str, pc_id: str = pc_id) -> list[float]:
            return [
                value
                for (pc, entity, name), points in charted.items()
                if pc == pc_id and name == metric and group_of(entity) == group
                for value in points
            ]

        groups = {
            group_of(entity) for (pc, entity, _) in charted if pc == pc_id and group_of(entity)
        }
        assert set(pc["media"]) == groups
        for group, media in pc["media"].items():
            assert_same_series(media["rtt_ms"], sketch_of(values(group, "rtt_ms")))
            assert_same_series(media["jitter_ms"], sketch_of(values(group, "jitter_ms")))
            packets, lost = sum(values(group, "packets")), sum(values(group, "packets_lost"))
            assert (media["packets"], media["packets_lost"]) == (int(packets), int(lost))
            whole = packets + lost if group.startswith("recv") else packets
            expected_loss = round(100 * lost / whole, 2) if whole > 0 else None
            assert media["loss_pct"] == expected_loss
            rates = []
            for (of_pc, entity, metric), points in listed.items():
                if of_pc != pc_id or metric != "bitrate_kbps" or group_of(entity) != group:
                    continue
                spans = intervals[of_pc, entity, metric]
                assert all(span for span in spans), "a bitrate without its interval"
                total = sum(span for span in spans if span)
                rates.append(
                    sum(v * s for (_, v), s in zip(points, spans, strict=True) if s) / total
                )
            if rates:
                assert media["bitrate_kbps"] == pytest.approx(sum(rates), abs=0.051)
            else:
                assert media["bitrate_kbps"] is None
        transport = charted.get((pc_id, "transport", "rtt_ms"), [])
        assert_same_series(pc["transport_rtt_ms"], sketch_of(transport))


def test_the_check_sees_real_numbers() -> None:
    """The comparison above is not vacuous: the fixtures chart loss, RTT and bitrate."""
    seen: set[str] = set()
    for path in FIXTURE_FILES:
        summary = summarize_file(path, QualityConfig())
        for pc in summary["peer_connections"]:
            for media in pc["media"].values():
                if media["packets_lost"]:
                    seen.add("loss")
                if media["rtt_ms"]:
                    seen.add("rtt")
                if media["bitrate_kbps"]:
                    seen.add("bitrate")
            if pc["transport_rtt_ms"]:
                seen.add("transport rtt")
    assert seen == {"loss", "rtt", "bitrate", "transport rtt"}
