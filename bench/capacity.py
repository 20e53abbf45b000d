#!/usr/bin/env python3
"""Capacity model: what N concurrent clients cost a cluster of collectors (docs/scaling.md).

From measured per-message figures (``bench/ingest``: CPU seconds per 100k messages,
raw bytes per message, the zstd ratio; idle memory per connection) and the store
operations each session and each connection makes (counted from the code paths,
listed in ``STORE_WRITES`` and ``BUCKET_PUTS``), it prints for each client count:
collector cores, memory, MongoDB writes/s, bucket PUTs/s, GB of dumps a day, and which
shared part reaches its ceiling first.

    python bench/capacity.py                                  # the latest measured figures
    python bench/capacity.py --cpu-per-100k 2.9 --clients 10000 100000 1000000
    python bench/capacity.py --session-minutes 60 --reconnects 0.5

Load: rtcstats-js defaults, one getStats report a second per peer connection
(``--messages-per-client``), sessions lasting ``--session-minutes`` on average.
Nothing here is measured on the spot: it multiplies; re-run bench/ingest on the
target hardware and pass its figures.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

#: Latest ``bench/ingest`` figures (bench/README.md, 2 vCPU VM, 2026-12-02, pure build):
#: the ``paced collector defaults`` phase, one message per wake-up as real clients
#: send, with the analysis worker processes in the tree: 3.41 CPU s/100k (4.02 on
#: 2026-11-24, before ingest's own framing, uvloop, zstd level 1 and the 3.1 seq read
#: by simdjson; the compiled build costs less); 21.9 MB/s at 19077 msg/s is 1148 raw
#: bytes a message. Idle memory: 11.2 KiB per connection (``--only idle --idle 2000``).
#: The zstd ratio is not the phase's (8.5x, with 200 messages a frame at 100 msg/s):
#: at one message a second a session's frame (``dumps.flush_interval_s`` 2 s) holds 2
#: to 4 lines, which compress 2.6x to 3.0x on the captures (4.1x for 4-line jitsi
#: frames); the dump is stored as those frames.
MEASURED_CPU_PER_100K = 3.41
MEASURED_BYTES_PER_MESSAGE = 1148.0
MEASURED_ZSTD_RATIO = 3.0
MEASURED_KIB_PER_CONNECTION = 11.2

#: MongoDB writes a session makes (server.cluster: true), by where they come from.
STORE_WRITES: dict[str, float] = {
    "record created (sessions/live.py _create_record)": 1,
    "first segment registered (metadata/segments.py register)": 1,
    "identity fields (first identity message)": 1,
    "segment ended": 1,
    "claim inserted, confirmed (finish election)": 2,
    "final record (sessions/finish.py)": 1,
    "segment documents forgotten (delete_many)": 1,
    "dump upload outcome (storage/objects.py record_step, 2 steps)": 2,
    "analysis job: enqueue, lease claim, lease, complete, record step": 5,
    "finish job (non-final end only): enqueue, lease, complete": 0,
}
#: Writes each reconnect adds: its segment inserted and ended, a finish job checked.
WRITES_PER_RECONNECT = 2 + 3
#: Bucket PUTs a session makes: its merged dump, and each segment's file.
BUCKET_PUTS_PER_SESSION = 1 + 1
#: Each reconnect's segment file.
PUTS_PER_RECONNECT = 1

#: Ceilings of the shared parts (assumptions, override them): a MongoDB replica set's
#: primary taking small single-document writes; S3's documented PUT rate per prefix
#: (dumps are keyed by day: one prefix a day unless storage.prefix shards it).
MONGODB_WRITES_PER_S = 20_000
BUCKET_PUTS_PER_S = 3_500
#: A collector core is planned at this share of its measured throughput.
CORE_UTILISATION = 0.6


@dataclass(frozen=True)
class Load:
    clients: int
    messages_per_client: float
    session_minutes: float
    reconnects: float


@dataclass(frozen=True)
class Figures:
    cpu_per_100k: float
    bytes_per_message: float
    zstd_ratio: float
    kib_per_connection: float


def model(load: Load, figures: Figures) -> dict[str, float]:
    messages = load.clients * load.messages_per_client
    cores = messages * figures.cpu_per_100k / 100_000 / CORE_UTILISATION
    sessions_per_s = load.clients / (load.session_minutes * 60)
    writes_per_session = sum(STORE_WRITES.values()) + load.reconnects * WRITES_PER_RECONNECT
    puts_per_session = BUCKET_PUTS_PER_SESSION + load.reconnects * PUTS_PER_RECONNECT
    stored_bytes_per_s = messages * figures.bytes_per_message / figures.zstd_ratio
    return {
        "msg/s": messages,
        "cores": cores,
        "hosts of 8 cores": math.ceil(cores / 8),
        "memory GiB": load.clients * figures.kib_per_connection / 2**20,
        "sessions/s": sessions_per_s,
        "mongodb writes/s": sessions_per_s * writes_per_session,
        "bucket PUTs/s": sessions_per_s * puts_per_session,
        "ingress MB/s": messages * figures.bytes_per_message / 1e6,
        "dumps GB/day": stored_bytes_per_s * 86_400 / 1e9,
    }


def first_to_saturate(row: dict[str, float]) -> str:
    """The shared part closest to its ceiling (collectors scale out: not shared)."""
    shares = {
        "mongodb": row["mongodb writes/s"] / MONGODB_WRITES_PER_S,
        "bucket": row["bucket PUTs/s"] / BUCKET_PUTS_PER_S,
    }
    name = max(shares, key=lambda key: shares[key])
    return f"{name} at {shares[name]:.1%} of its ceiling"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--messages-per-client", type=float, default=1.0)
    parser.add_argument("--session-minutes", type=float, default=30.0)
    parser.add_argument("--reconnects", type=float, default=0.2, help="per session, average")
    parser.add_argument("--cpu-per-100k", type=float, default=MEASURED_CPU_PER_100K)
    parser.add_argument("--bytes-per-message", type=float, default=MEASURED_BYTES_PER_MESSAGE)
    parser.add_argument("--zstd-ratio", type=float, default=MEASURED_ZSTD_RATIO)
    parser.add_argument("--kib-per-connection", type=float, default=MEASURED_KIB_PER_CONNECTION)
    args = parser.parse_args()
    figures = Figures(
        args.cpu_per_100k, args.bytes_per_message, args.zstd_ratio, args.kib_per_connection
    )
    print(
        f"# {args.messages_per_client:g} msg/s per client, sessions of "
        f"{args.session_minutes:g} min, {args.reconnects:g} reconnects each; "
        f"{figures.cpu_per_100k:g} CPU s/100k msgs, {figures.bytes_per_message:g} B/msg, "
        f"zstd {figures.zstd_ratio:g}x, {figures.kib_per_connection:g} KiB/conn; cores "
        f"planned at {CORE_UTILISATION:.0%}"
    )
    rows = [
        model(
            Load(clients, args.messages_per_client, args.session_minutes, args.reconnects),
            figures,
        )
        for clients in args.clients
    ]
    names = list(rows[0])
    print(f"{'clients':>24}" + "".join(f"{clients:>14,}" for clients in args.clients))
    for name in names:
        print(f"{name:>24}" + "".join(f"{row[name]:>14,.1f}" for row in rows))
    for clients, row in zip(args.clients, rows, strict=True):
        print(f"{clients:>10,} clients: of the shared parts, {first_to_saturate(row)}")


if __name__ == "__main__":
    main()
