#!/usr/bin/env python3
"""Instructions per 100k messages of the ingest path without sockets, by callgrind.

On a shared machine CPU seconds move with the load of everyone else; instruction
counts do not. This runs each capture through what the ingest process does to a
message after aiohttp hands it over (the dialect decoder, IP masking, the dump writer
with its zstd frames: one per 100 entries for 3.1, as acks make it, by size for
rtcstats-js) under ``valgrind --tool=callgrind``, twice with different message
counts, and prints the difference per 100k messages, so start-up cancels out.
Parts (cumulative): ``decode`` (the decoder alone), ``mask`` (and ``mask_line``),
``path`` (and the writer); the differences are printed too. ``framed`` is ``path``
with each message first read from a masked client frame by ``ingest/frames.py``'s
``FrameReader``, as the websocket does (``frames``: what that adds); it is not among
the default parts, so the default figures stay comparable with earlier ones. Needs
valgrind (``apt-get install valgrind``); each run takes 10 to 60 s.

``--build compiled`` measures a compiled build of this checkout (setup.py with
``RTCSTATS_COMPILE=1``, built in a temporary directory first, about a minute; see
bench/builds.py), ``--build both`` the pure and the compiled one, part by part.

    python bench/instructions.py                    # both captures, every part
    python bench/instructions.py --parts decode mask --load 3.1_STANDARD
    python bench/instructions.py --build both --parts path framed

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
from collections.abc import Iterable, Iterator
from pathlib import Path

import builds

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
#: Every part, in the order each adds a step.
PARTS = ("decode", "mask", "path", "framed")


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


def client_frame(text: str) -> bytes:
    """``text`` as a client sends it: one final text frame, masked (RFC 6455 5.3) with
    a zero key (unmasking costs the C ``apply_mask`` the same whatever the key)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        head = bytes((0x81, 0x80 | length))
    elif length < 1 << 16:
        head = bytes((0x81, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + length.to_bytes(8, "big")
    return head + bytes(4) + payload


def read_frames(frames: list[bytes]) -> Iterator[str]:
    """The messages of ``frames`` as the ingest's ``FrameReader`` reads them, one socket
    read per frame (a busy socket reads several at once: this is the dearer case)."""
    from rtcstats_server.ingest.frames import FrameReader

    reader = FrameReader(1 << 24)
    for data in frames:
        reader.feed(data)
        while (message := reader.take()) is not None:
            yield str(message[1])


async def run_path(load: str, plays: int, part: str) -> int:
    """Feed the messages; returns how many there were."""
    sys.path.insert(0, str(REPO))
    from rtcstats_server.dialects import open_decoder
    from rtcstats_server.dialects.base import DumpLine, Handshake
    from rtcstats_server.dumps.privacy import mask_line
    from rtcstats_server.dumps.writer import DumpWriter

    # Built for MANY plays in both runs: only the feeding differs between them.
    stream = messages(load, MANY)
    frames = list(map(client_frame, stream)) if part == "framed" else []
    count = len(stream) * plays // MANY
    texts: Iterable[str] = read_frames(frames[:count]) if frames else stream[:count]
    query = {"statsSessionId": "1517194c-3c5d-4c55-a475-f49f84f23c92"}
    handshake = Handshake("/", query, load, "", "", "")
    decoder = open_decoder(handshake)
    every = 100 if load == "3.1_STANDARD" else 1 << 30
    with tempfile.TemporaryDirectory(dir=SCRATCH) as d:
        writer = DumpWriter(Path(d) / "dump.zst", 3, False)
        entries = 0
        for message in texts:
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


def instructions(load: str, plays: int, part: str, package: str) -> tuple[int, int]:
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
        package,
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
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS[:3]))
    parser.add_argument("--build", choices=builds.CHOICES, default="pure")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        load, plays, part, package = args.child
        builds.use(package)  # before run_path puts this checkout first on the path
        print("messages", asyncio.run(run_path(load, int(plays), part)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        packages = builds.packages(args.build, Path(tmp))
        for load in args.load:
            for build, package in packages.items():
                found: dict[str, float] = {}
                for part in args.parts:
                    few, few_msgs = instructions(load, FEW, part, package)
                    many, many_msgs = instructions(load, MANY, part, package)
                    found[part] = (many - few) / (many_msgs - few_msgs) * 100_000 / 1e9
                shown = dict(found)
                if "decode" in found and "mask" in found:
                    shown["masking"] = found["mask"] - found["decode"]
                if "mask" in found and "path" in found:
                    shown["writer"] = found["path"] - found["mask"]
                if "path" in found and "framed" in found:
                    shown["frames"] = found["framed"] - found["path"]
                cells = "  ".join(f"{name} {value:.2f}" for name, value in shown.items())
                print(f"{load:14} {build:8} G instructions per 100k messages: {cells}")


if __name__ == "__main__":
    main()
