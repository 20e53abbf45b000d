#!/usr/bin/env python3
"""Analysis benchmark: the quality summary and the viewer's series, per MB and per message.

Builds two large dumps from real captures by repeating their getStats traffic (each
repeated delta is a valid delta, so the decompressors do real work on every line):

  * ``rtcstats#5.0`` as our collector stores it: zstd frames, relative times,
    compressed method codes and the rtcstats-js getStats scheme;
  * a jitsi ``3.1_STANDARD`` on-disk dump (plain JSON lines, legacy getstats scheme).

For each it times the reader alone, the full summary, the viewer's model, and both in
one pass of the stats interpreter (``interpreter.analyse``, as an analysis worker runs
them), and prints CPU seconds per 100k messages (issue 16's measure), MB/s of raw
(decompressed) dump, MB/s of stored bytes, and the peak RSS growth, which must stay flat
as the dump grows (everything streams).

    python bench/summary.py [--mb 40]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtcstats_server.analysis.interpreter import analyse  # noqa: E402
from rtcstats_server.analysis.summary import SessionSummarizer, summarize_file  # noqa: E402
from rtcstats_server.analysis.viewmodel import ViewModelBuilder, build_view_model  # noqa: E402
from rtcstats_server.config import QualityConfig  # noqa: E402
from rtcstats_server.dumps.codecs import compress_frame, file_chunks  # noqa: E402
from rtcstats_server.dumps.reader import open_dump  # noqa: E402
from tests.services.shared import FIXTURES as _FIXTURES  # noqa: E402  (a worktree too)

FIXTURES = _FIXTURES
FRAME_BYTES = 1 << 20


def rtcstats_js_lines(target: int) -> Iterator[str]:
    source = (FIXTURES / "captured/rtcstats-js-2.4.0-loopback-call.ws.jsonl").read_text()
    lines = source.splitlines()
    stats = [line for line in lines if line.startswith('["g"')]
    yield "RTCStatsDump"
    yield json.dumps({"fileFormat": 3, "clientProtocol": "rtcstats#5.0", "userAgent": "bench"})
    size = 0
    for line in lines[:-2]:  # without the two close calls
        size += len(line) + 1
        yield line
    while size < target:
        for line in stats:
            size += len(line) + 1
            yield line
    yield '["close",null,1000,10]'


def jitsi_lines(target: int) -> Iterator[str]:
    source = (FIXTURES / "real/jitsi-google-standard-stats-sfu.jsonl").read_text()
    lines = [line for line in source.splitlines() if line.strip()]
    stats = [json.loads(line) for line in lines if line.startswith('["getstats"')]
    span = stats[-1][3] - stats[0][3] + 1000
    size = 0
    for line in lines:
        size += len(line) + 1
        yield line
    round_ = 1
    while size < target:
        for entry in stats:
            entry = [entry[0], entry[1], entry[2], entry[3] + round_ * span]
            text = json.dumps(entry, separators=(",", ":"))
            size += len(text) + 1
            yield text
        round_ += 1


def write_zstd(path: Path, lines: Iterator[str]) -> int:
    raw = 0
    buffer: list[bytes] = []
    buffered = 0
    with path.open("wb") as out:
        for line in lines:
            data = line.encode() + b"\n"
            buffer.append(data)
            buffered += len(data)
            if buffered >= FRAME_BYTES:
                out.write(compress_frame(b"".join(buffer), 3))
                raw += buffered
                buffer, buffered = [], 0
        if buffer:
            out.write(compress_frame(b"".join(buffer), 3))
            raw += buffered
    return raw


def write_plain(path: Path, lines: Iterator[str]) -> int:
    raw = 0
    with path.open("w") as out:
        for line in lines:
            out.write(line + "\n")
            raw += len(line) + 1
    return raw


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def both_in_one_pass(path: Path, config: QualityConfig) -> dict[str, Any]:
    reader = open_dump(path)
    summarizer = SessionSummarizer(config, reader.info)
    builder = ViewModelBuilder(buckets=300)
    analyse(reader, [summarizer, builder])
    builder.result()
    return summarizer.result()


def timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """The result, wall seconds and CPU seconds of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure(name: str, path: Path, raw: int) -> None:
    stored = path.stat().st_size
    config = QualityConfig()
    rss_before = peak_rss_mib()
    events, read_s, read_cpu = timed(lambda: sum(1 for _ in open_dump(path)))
    summary, summary_s, summary_cpu = timed(lambda: summarize_file(path, config))
    _, view_s, view_cpu = timed(lambda: build_view_model(file_chunks(path), 300))
    both, both_s, both_cpu = timed(lambda: both_in_one_pass(path, config))
    rss_growth = peak_rss_mib() - rss_before
    mb = raw / 1e6
    print(
        f"{name}: {mb:.1f} MB raw, {stored / 1e6:.1f} MB stored, {events} events, "
        f"{summary['peer_connections'][0]['stats_samples']} getStats of PC_0"
    )
    per = 100_000 / events
    for label, wall, cpu in (
        ("reader", read_s, read_cpu),
        ("summary", summary_s, summary_cpu),
        ("viewer model", view_s, view_cpu),
        ("both, one pass", both_s, both_cpu),
    ):
        print(
            f"  {label:15s}: {cpu * per:5.2f} CPU-s/100k msgs  {mb / wall:6.1f} MB/s raw  "
            f"{stored / 1e6 / wall:6.2f} MB/s stored  ({cpu:.2f} CPU-s, {wall:.2f} s)"
        )
    print(f"  peak RSS growth while reading and analysing: {rss_growth:.1f} MiB")
    assert summary["summary_error"] is None, summary["summary_error"]
    assert both == summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=40, help="raw size of each dump (MB)")
    args = parser.parse_args()
    target = int(args.mb * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "rtcstats-js.rtcstats.zst"
        raw = write_zstd(ours, rtcstats_js_lines(target))
        measure("rtcstats#5.0 zstd dump", ours, raw)
        jitsi = Path(tmp) / "jitsi.jsonl"
        raw = write_plain(jitsi, jitsi_lines(target))
        measure("jitsi 3.1 plain dump", jitsi, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
