#!/usr/bin/env python3
"""The whole analysis of a stored dump, per dialect: CPU per message, MB/s, peak RSS.

"The worker pass" is what an analysis worker computes for a session, in ONE pass of the
stats interpreter: ``dump_analysis.analyse_reader``, the quality summary with its
findings and the features, exactly as the worker runs it. The viewer's series are not
in it: the viewer computes them when a session is first viewed and caches them
(``http/viewer/cache.py``); "first view" is that pass (``build_view_model``), and "all
in one pass" the three together (what this bench measured before the split). Each
dialect's dump is built by repeating real
getStats traffic (every repeated delta is a valid delta, so the decoders do real work
on every line) up to ``--mb`` of raw JSON:

  * ``rtcstats#5.0``: the rtcstats-js loopback capture as our collector stores it
    (zstd frames, relative times, method codes, the rtcstats-js getStats scheme);
  * ``3.1_STANDARD``: a jitsi SFU dump (12 tracks per getStats), zstd as we store it;
  * ``2.0``: the same traffic under the 2015 client's scheme (absent reports unchanged);
  * ``legacy goog``: old Chrome's ``ssrc``/``googCandidatePair`` reports (the 2016
    import fixture's), as a ``3.1_LEGACY`` dump.

Each dump is analysed in a child process of its own, so that its peak RSS is its own:
printed is the growth of the peak over the child's RSS before the pass, which must stay
flat as the dump grows (``--mb 200``: everything streams). Per dialect: the reader
alone, the worker pass, the first view, all in one pass; CPU-s per 100k messages
(issue 16's measure), MB/s of raw (decompressed) dump and of stored bytes.

``--build compiled`` measures a compiled build of this checkout instead (setup.py with
``RTCSTATS_COMPILE=1``, built in a temporary directory first, about a minute);
``--build both`` runs each part pure then compiled, alternating, so that both see the
same load. The ``build`` column is what the child process found installed.

    python bench/analysis.py [--mb 40] [--dialect rtcstats#5.0 ...] [--repeat 3]
                             [--build pure|compiled|both]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
# A child measuring a compiled build imports that build's package (bench/summary.py
# puts this checkout first on the path again: the package must be imported before).
import builds  # noqa: E402  (bench/builds.py)

builds.use(os.environ.get("RTCSTATS_BENCH_PACKAGE", ""))

from summary import rtcstats_js_lines, write_zstd  # noqa: E402  (bench/summary.py)

from rtcstats_server.analysis.dump_analysis import analyse_reader  # noqa: E402
from rtcstats_server.analysis.features.extract import FeatureExtractor  # noqa: E402
from rtcstats_server.analysis.interpreter import analyse  # noqa: E402
from rtcstats_server.analysis.summary import SessionSummarizer  # noqa: E402
from rtcstats_server.analysis.viewmodel import ViewModelBuilder, build_view_model  # noqa: E402
from rtcstats_server.compiled import analysis_build  # noqa: E402
from rtcstats_server.config import QualityConfig  # noqa: E402
from rtcstats_server.dumps.reader import open_dump  # noqa: E402
from tests.services.shared import FIXTURES as _FIXTURES  # noqa: E402  (a worktree too)

FIXTURES = _FIXTURES


def _repeated(entries: list[list[Any]], stats: list[list[Any]], target: int) -> Iterator[str]:
    """The entries, then their getStats again and again, shifted in time."""
    span = stats[-1][3] - stats[0][3] + 1000
    size = 0
    for entry in entries:
        text = json.dumps(entry, separators=(",", ":"))
        size += len(text) + 1
        yield text
    round_ = 1
    while size < target:
        for entry in stats:
            text = json.dumps(
                [entry[0], entry[1], entry[2], entry[3] + round_ * span], separators=(",", ":")
            )
            size += len(text) + 1
            yield text
        round_ += 1


def jitsi_lines(target: int, protocol: str = "3.1_STANDARD") -> Iterator[str]:
    source = (FIXTURES / "real/jitsi-google-standard-stats-sfu.jsonl").read_text()
    entries = [json.loads(line) for line in source.splitlines()[1:] if line.strip()]
    entries = [e for e in entries if isinstance(e, list) and len(e) >= 4]
    yield "RTCStatsDump"
    yield json.dumps({"fileFormat": 2, "clientProtocol": protocol, "userAgent": "bench"})
    stats = [e for e in entries if e[0] == "getstats"]
    yield from _repeated([e[:4] for e in entries], [e[:4] for e in stats], target)


def legacy_lines(target: int) -> Iterator[str]:
    """Old Chrome's goog stats, whole reports per result (the 2016 import fixture)."""
    reader = open_dump(FIXTURES / "real/jitsi-clienttest.legacy-import.json")
    entries: list[list[Any]] = []
    for event in reader:
        value = event.value
        if event.is_stats:
            value = {"timestamp": event.timestamp, **value}
        entries.append([event.method, event.pc_id, value, event.timestamp])
    yield "RTCStatsDump"
    yield json.dumps({"fileFormat": 2, "clientProtocol": "3.1_LEGACY", "userAgent": "bench"})
    stats = [e for e in entries if e[0] == "getStats"]
    yield from _repeated(entries, stats, target)


DIALECTS: dict[str, Callable[[int], Iterator[str]]] = {
    "rtcstats#5.0": rtcstats_js_lines,
    "3.1_STANDARD": jitsi_lines,
    "2.0": lambda target: jitsi_lines(target, "2.0"),
    "legacy goog": legacy_lines,
}


# -- in the child: one dump ---------------------------------------------------------------


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / (1 << 20)


def worker_pass(path: Path) -> int:
    """What the analysis worker runs for a stored session; events."""
    reader = open_dump(path)
    fields = analyse_reader(reader, QualityConfig())
    assert fields["summary_error"] is None, fields["summary_error"]
    assert fields["features"]["connections"], "no connection features"
    return reader.events


def first_view(path: Path) -> int:
    """The viewer's series, as computed (then cached) when a session is first viewed;
    0 events: the model does not count them (the parent takes the reader's count)."""
    with path.open("rb") as handle:
        model = build_view_model(iter(lambda: handle.read(1 << 20), b""), 300)
    assert not model.get("error"), model.get("error")
    return 0


def whole_analysis(path: Path) -> int:
    """Summary with findings, features and the viewer's series, in one pass; events."""
    reader = open_dump(path)
    summarizer = SessionSummarizer(QualityConfig(), reader.info)
    features = FeatureExtractor(reader.info)
    viewer = ViewModelBuilder(buckets=300)
    counted = _Counted(reader)
    analyse(counted, [summarizer, features, viewer])
    summary = summarizer.result()
    assert summary["summary_error"] is None, summary["summary_error"]
    assert features.result()["connections"], "no connection features"
    viewer.result()
    return counted.events


class _Counted:
    def __init__(self, events: Any) -> None:
        self.source = events
        self.events = 0

    def __iter__(self) -> Iterator[Any]:
        for event in self.source:
            self.events += 1
            yield event


def child(path: Path, what: str) -> None:
    before = _current_rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    if what == "reader":
        events = sum(1 for _ in open_dump(path))
    elif what == "worker":
        events = worker_pass(path)
    elif what == "view":
        events = first_view(path)
    else:
        events = whole_analysis(path)
    print(
        json.dumps(
            {
                "events": events,
                "wall": time.perf_counter() - wall,
                "cpu": time.process_time() - cpu,
                "rss_growth": _rss_mib() - before,
                "build": analysis_build(),
            }
        )
    )


# -- the parent -------------------------------------------------------------------------------


def run_child(path: Path, what: str, package: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path), what],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RTCSTATS_BENCH_PACKAGE": package},
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def best_of(path: Path, what: str, repeat: int, packages: list[str]) -> list[dict[str, Any]]:
    """The best run of each build, the builds taking turns."""
    runs: list[list[dict[str, Any]]] = [[] for _ in packages]
    for _ in range(repeat):
        for index, package in enumerate(packages):
            runs[index].append(run_child(path, what, package))
    return [min(each, key=lambda run: run["cpu"]) for each in runs]


PARTS = (
    ("reader", "reader alone"),
    ("worker", "worker pass"),
    ("view", "first view"),
    ("all", "all in one pass"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=40, help="raw size of each dump (MB)")
    parser.add_argument("--dialect", action="append", choices=sorted(DIALECTS))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument("--build", choices=builds.CHOICES, default="pure")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return 0
    target = int(args.mb * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        packages = list(builds.packages(args.build, Path(tmp)).values())
        print(f"{'dialect':14s} {'part':16s} {'build':9s} {'CPU-s/100k':>10s} {'MB/s raw':>9s} "
              f"{'MB/s stored':>11s} {'peak RSS +MiB':>13s}  (events, raw MB)")  # fmt: skip
        for name in args.dialect or DIALECTS:
            path = Path(tmp) / f"{name.replace('#', '').replace(' ', '-')}.rtcstats.zst"
            raw = write_zstd(path, DIALECTS[name](target))
            stored = path.stat().st_size
            events = 0
            for what, label in PARTS:
                for run in best_of(path, what, args.repeat, packages):
                    events = run["events"] or events  # the first view counts none of its own
                    per = 100_000 / events
                    print(
                        f"{name:14s} {label:16s} {run['build']:9s} {run['cpu'] * per:10.2f} "
                        f"{raw / 1e6 / run['wall']:9.1f} {stored / 1e6 / run['wall']:11.2f} "
                        f"{run['rss_growth']:13.1f}  ({events}, {raw / 1e6:.0f})"
                    )
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
