"""One pass over a dump feeds every consumer of the interpreter (``analyse``): the
summary and the view model come out as from their own passes, and a third consumer
(the shape issue 16's features take: per track first/last of a raw getStats field,
per connection the first transport fields and the selected pair's candidate types)
gets what it needs from the same reads, without reading the dump again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rtcstats_server.analysis.interpreter import analyse
from rtcstats_server.analysis.samples import StatsRead
from rtcstats_server.analysis.summary import SessionSummarizer, summarize_file
from rtcstats_server.analysis.viewmodel import ViewModelBuilder, build_view_model
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.events import Event
from rtcstats_server.dumps.reader import DumpReader, file_chunks, open_dump

SFU = "real/jitsi-google-standard-stats-sfu.jsonl"


class FirstLast:
    """Per track the first and last ``framesDecoded``; per connection the first
    transport's ``dtlsCipher`` and the selected pair's candidate types."""

    max_connections = 10

    def __init__(self) -> None:
        self.frames: dict[tuple[str | None, str], list[Any]] = {}
        self.connections: dict[str | None, dict[str, Any]] = {}

    def consume(self, event: Event, read: StatsRead | None) -> None:
        if read is None:
            return
        for sample in read.tracks:
            value = sample.report.get("framesDecoded")
            if value is not None:
                key = (read.pc_id, sample.track.stats_id)
                self.frames.setdefault(key, [value, value])[1] = value
        transport = read.transport
        if transport is not None and transport.pair is not None:
            seen = self.connections.setdefault(read.pc_id, {})
            if transport.transport is not None:
                seen.setdefault("cipher", transport.transport.get("dtlsCipher"))
            seen["pair"] = (transport.pair.local_type, transport.pair.remote_type)


def counted(events: DumpReader, seen: list[int]) -> Iterator[Event]:
    for event in events:
        seen[0] += 1
        yield event


def test_one_pass_feeds_summary_viewer_and_more(fixtures_dir: Path) -> None:
    path = fixtures_dir / SFU
    reader = open_dump(path)
    summarizer = SessionSummarizer(QualityConfig(), reader.info)
    builder = ViewModelBuilder(buckets=300)
    features = FirstLast()
    seen = [0]
    analyse(counted(reader, seen), [summarizer, builder, features])
    assert seen[0] == reader.events  # every event once

    assert summarizer.result() == summarize_file(path, QualityConfig())
    alone = build_view_model(file_chunks(path), buckets=300)
    together = builder.result()
    assert together == {k: v for k, v in alone.items() if k not in ("error", "errors", "info")}

    # the third consumer, checked against the raw reports read on their own
    expected: dict[tuple[str | None, str], list[Any]] = {}
    cipher: dict[str | None, Any] = {}
    for event in DumpReader(file_chunks(path)):
        for report_id, report in event.stats.items():
            value = report.get("framesDecoded")
            if report.get("type") == "inbound-rtp" and value is not None:
                expected.setdefault((event.pc_id, report_id), [value, value])[1] = value
            if report.get("type") == "transport" and report.get("selectedCandidatePairId"):
                cipher.setdefault(event.pc_id, report.get("dtlsCipher"))
    assert features.frames == expected and len(expected) > 3
    assert {pc: c["cipher"] for pc, c in features.connections.items()} == cipher
    assert features.connections["PC_0"]["pair"] == (
        summarizer.result()["peer_connections"][0]["selected_candidate_pair"]["local_type"],
        summarizer.result()["peer_connections"][0]["selected_candidate_pair"]["remote_type"],
    )
