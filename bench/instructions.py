#!/usr/bin/env python3
"""Instructions per 100k messages of the ingest path without sockets, by callgrind.

On a shared machine CPU seconds move with the load of everyone else; instruction
counts do not. This runs each capture through what the ingest process does to a
message after aiohttp hands it over (the dialect decoder, IP masking, the dump writer
with its zstd frames: one per 100 entries for 3.1, as acks make it, by size for
rtcstats-js) under ``valgrind --tool=callgrind``, twice with different message
counts, and prints the difference per 100k messages, so start-up cancels out.
Parts (cumulative): ``decode`` (the decoder alone), ``mask`` (and ``mask_line``),
``path`` (and the writer); the differences are printed too. Needs valgrind
(``apt-get install valgrind``); each run takes 10 to 60 s.

    python bench/instructions.py                    # both captures, every part
    python bench/instructions.py --parts decode mask --load 3.1_STANDARD

Not the whole server's cost: aiohttp's frame parsing and the event loop are left out
(bench/ingest measures those, in CPU seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURED = REPO / "../shared/fixtures/captured"
LOADS = {
    "rtcstats#5.0": "rtcstats-js-2.4.0-loopback-call.ws.jsonl",
    "3.1_STANDARD": "jitsi-rtcstats-9.7.1-loopback-call.ws.jsonl",
}
#: Where the dump is written: tmpfs when there is one (a file system's cost is not ours).
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None
#: Plays of the capture in the two runs whose difference is counted.
FEW, MANY = 1, 11


def messages(load: str, plays: int) -> list[str]:
    """The capture played ``plays`` times (3.1: one session, rising seqs)."""
    import orjson

    lines = [line for line in (CAPTURED / LOADS[load]).read_text().splitlines() if line]
    if load != "3.1_STANDARD":
        return lines * plays
    out: list[str] = []
    seq = 0
    for play in range(plays):
        for line in lines:
            envelope = orjson.loads(line)
            if envelope.get("type") != "stats-entry":
                if play == 0:
                    out.append(line)
                continue
            entry = orjson.loads(envelope["data"])
            seq += 1
            entry[4] = seq
            envelope["data"] = orjson.dumps(entry).decode()
            out.append(orjson.dumps(envelope).decode())
    return out


async def run_path(load: str, plays: int, part: str) -> int:
    """Feed the messages; returns how many there were."""
    sys.path.insert(0, str(REPO))
    from rtcstats_server.dialects import open_decoder
    from rtcstats_server.dialects.base import DumpLine, Handshake
    from rtcstats_server.dumps.privacy import mask_line
    from rtcstats_server.dumps.writer import DumpWriter

    # Built for MANY plays in both runs: only the feeding differs between them.
    stream = messages(load, MANY)
    count = len(stream) * plays // MANY
    stream = stream[:count]
    query = {"statsSessionId": "1517194c-3c5d-4c55-a475-f49f84f23c92"}
    handshake = Handshake("/", query, load, "", "", "")
    decoder = open_decoder(handshake)
    every = 100 if load == "3.1_STANDARD" else 1 << 30
    with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
        writer = DumpWriter(Path(d) / "dump.zst", 3, False)
        entries = 0
        for message in stream:
            for result in decoder.feed(message):
                if type(result) is not DumpLine:
                    continue
                if part == "decode":
                    continue
                masked = mask_line(result.text)
                if part == "mask":
                    continue
                writer.append(result.text if masked is None else masked)
                entries += 1
                if entries % every == 0 or writer.buffered_bytes >= 1 << 20:
                    await writer.flush()
        await writer.flush()
    return count


def instructions(load: str, plays: int, part: str) -> tuple[int, int]:
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        load,
        str(plays),
        part,
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    count = re.search(r"messages (\d+)", done.stdout)
    assert collected and count, done.stderr[-2000:]
    return int(collected.group(1)), int(count.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", nargs="*", default=list(LOADS), choices=list(LOADS))
    parser.add_argument(
        "--parts", nargs="*", choices=["decode", "mask", "path"], default=["decode", "mask", "path"]
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        load, plays, part = args.child
        print("messages", asyncio.run(run_path(load, int(plays), part)))
        return
    for load in args.load:
        found: dict[str, float] = {}
        for part in args.parts:
            few, few_msgs = instructions(load, FEW, part)
            many, many_msgs = instructions(load, MANY, part)
            found[part] = (many - few) / (many_msgs - few_msgs) * 100_000 / 1e9
        shown = dict(found)
        if "decode" in found and "mask" in found:
            shown["masking"] = found["mask"] - found["decode"]
        if "mask" in found and "path" in found:
            shown["writer"] = found["path"] - found["mask"]
        cells = "  ".join(f"{name} {value:.2f}" for name, value in shown.items())
        print(f"{load:14} G instructions per 100k messages: {cells}")


if __name__ == "__main__":
    main()
