#!/usr/bin/env python3
"""Where the collector's time goes: py-spy's collapsed stacks summed into the parts
issue 17 asks about (masking, decoding and JSON parsing, the session and handler per
message, dump frames, records, the websocket protocol, the event loop, the summary).

Each sample is charged to the innermost frame of the stack that belongs to one of
our parts, walking from the sampled line outwards: a regex inside the masker counts
as masking, orjson inside the decoder as JSON parsing, and aiohttp code that our
handler awaits as the websocket protocol. C code (orjson, zstd, the sqlite module)
has no frame of its own: py-spy charges it to the Python line that called it, which
is why JSON parsing is identified by that line's function.

Samples of threads that wait (a pool worker blocked on its queue, the SQLite thread's
thread on its queue) are dropped first: py-spy's non-blocking mode sometimes takes
them for running.

    bench/ingest --peer DIR --rounds 0 --profile stacks.txt \\
        --profile-phase "rtcstats#5.0 ours defaults"
    python bench/profile_shares.py stacks.txt --cpu-per-100k 3.6
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: Parts recognised by the sampled frame alone, tried first: the costs of the event
#: loop and of aiohttp that are worth a line of their own, wherever they are called from
#: (a wake-up written by the summary thread is the price of handing work across threads).
SAMPLED: list[tuple[str, re.Pattern[str]]] = [
    (
        "loop: socket reads (recv)",
        re.compile(r"^_SelectorSocketTransport\._read_ready__data_received "),
    ),
    ("loop: epoll", re.compile(r"^EpollSelector\.select ")),
    (
        "loop: wake-ups from threads (self-pipe)",
        re.compile(r"^BaseSelectorEventLoop\._(write_to|read_from)_self "),
    ),
    ("loop: socket writes (send)", re.compile(r"^_SelectorSocketTransport\.write ")),
    ("aiohttp: websocket frame parsing (C reader)", re.compile(r"^RequestHandler\.data_received ")),
]

#: Parts recognised by any frame of the stack, tried next.
ANYWHERE: list[tuple[str, re.Pattern[str]]] = [
    ("loop: flow control (pause/resume reading)", re.compile(r"\b(pause|resume)_reading ")),
]

#: (part, pattern on a frame "function (file:line)"), tried from the sampled frame out.
PARTS: list[tuple[str, re.Pattern[str]]] = [
    # The dump reader: during ingest only the summary reads dumps back (py-spy shows
    # some of its generator's samples without the summary's frames above them).
    (
        "quality summary (its thread: read back + summarize)",
        re.compile(r"rtcstats_server/(quality/|dumps/(reader|getstats)\.py)"),
    ),
    ("IP masking", re.compile(r"rtcstats_server/ingest/privacy\.py")),
    ("JSON parsing (orjson.loads in the decoder)", re.compile(r"^parse_json \(")),
    (
        "dialect decoder (shape checks, line choice)",
        re.compile(r"rtcstats_server/ingest/dialects/"),
    ),
    (
        "dump frames (zstd compress + write)",
        re.compile(r"rtcstats_server/dumps/(writer|frames)\.py"),
    ),
    (
        "session records (SQLite, record)",
        re.compile(r"sqlite3|rtcstats_server/metadata/"),
    ),
    ("session per message and finish", re.compile(r"rtcstats_server/sessions\.py")),
    ("handler loop per message", re.compile(r"rtcstats_server/ingest/handler\.py")),
    ("logging", re.compile(r"logging/")),
    ("aiohttp: other (requests, ws queue, writer)", re.compile(r"aiohttp/")),
    ("loop: other (scheduling, callbacks, tasks)", re.compile(r"asyncio/|selectors\.py")),
]
OTHER = "other"

#: Sampled lines where a thread blocks on a queue or lock: waiting, not working.
WAITING = re.compile(
    r"^(_worker \(concurrent/futures/thread\.py:\d+\)"
    r"|SqliteThread\._serve \(rtcstats_server/metadata/sqlite\.py:\d+\)"
    r"|Condition\.wait \(threading\.py:\d+\)"
    r"|Queue\.get \(queue\.py:\d+\))$"
)


def part_of(frames: list[str]) -> str:
    for part, pattern in SAMPLED:
        if pattern.search(frames[-1]):
            return part
    for part, pattern in ANYWHERE:
        if any(pattern.search(frame) for frame in frames):
            return part
    for frame in reversed(frames):
        for part, pattern in PARTS:
            if pattern.search(frame):
                return part
    return OTHER


def shares(stacks: Path) -> tuple[Counter[str], Counter[str], int]:
    """Samples per part (all threads, and threads other than the event loop's), and
    how many waiting samples were dropped."""
    everywhere: Counter[str] = Counter()
    off_loop: Counter[str] = Counter()
    waiting = 0
    for line in stacks.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        if WAITING.match(frames[-1]):
            waiting += count
            continue
        part = part_of(frames)
        everywhere[part] += count
        if frames[0].startswith("Thread._bootstrap "):
            off_loop[part] += count
    return everywhere, off_loop, waiting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, help="py-spy record --format raw output")
    parser.add_argument(
        "--cpu-per-100k",
        type=float,
        default=None,
        help="the profiled run's CPU s per 100k messages: each part's share of it is printed",
    )
    args = parser.parse_args()
    everywhere, off_loop, waiting = shares(args.stacks)
    total = sum(everywhere.values())
    header = f"{'part':<55}{'share':>7}{'other thr':>10}"
    if args.cpu_per_100k:
        header += f"{'CPU s/100k':>11}"
    print(header)
    for part, count in everywhere.most_common():
        row = f"{part:<55}{count / total:>7.1%}{off_loop[part] / total:>10.1%}"
        if args.cpu_per_100k:
            row += f"{count / total * args.cpu_per_100k:>11.2f}"
        print(row)
    print(
        f"{total} samples ({sum(off_loop.values()) / total:.0%} outside the event-loop thread);"
        f" {waiting} samples of waiting threads left out"
    )


if __name__ == "__main__":
    main()
