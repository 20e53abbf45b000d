"""How many workers ``serve`` runs, and what each of them is given.

A worker is a whole collector. What must be its own is its own, under
``<data_dir>/workers/<i>``: live dumps (crash recovery of worker i is done by the
next worker i), the outbox, the spools, caches, uploads in progress. What must be
shared is named explicitly from the supervisor's ``data_dir``: the embedded session
store (SQLite in WAL mode, every worker writes with busy retry), the local dump
directory, the node id's stem and the viewer's signing key (a link signed by one
worker opens on any other).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from pydantic import SecretStr

from rtcstats_server.config import Config, LimitsConfig
from rtcstats_server.http.viewer.signing import load_key
from rtcstats_server.sessions.live import default_node_id
from rtcstats_server.sessions.segments import SEGMENT_SUFFIX

log = logging.getLogger("rtcstats_server")

#: Where a cgroup v2 (or v1) CPU limit is read; a parameter so tests can fake one.
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the container may use (``cpu.max`` quota / period), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def default_workers(root: Path = CGROUP_ROOT) -> int:
    """One per CPU this process may run on, no more than the cgroup's quota allows
    (rounded up: a 1.5-CPU limit gets 2 workers, each gets throttled a little)."""
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def worker_count(config: Config, root: Path = CGROUP_ROOT) -> int:
    """``server.workers``, 0 meaning the default above."""
    return config.server.workers or default_workers(root)


def worker_dir(data_dir: Path, index: int) -> Path:
    return data_dir / "workers" / str(index)


def node_id(config: Config, index: int) -> str:
    """Worker 0 keeps the collector's node id, the others get ``-w<i>`` after it.

    Crash recovery finishes the unfinished records of its own node id from its own
    ``live/``: worker 0 and a single process share an id so that a collector going
    from one process to N (or back) recovers what the other left (``adopt_orphans``).
    """
    base = config.server.node_id or default_node_id(config.server.data_dir)
    return base if index == 0 else f"{base}-w{index}"


def limits_share(limits: LimitsConfig, count: int) -> LimitsConfig:
    """What one of ``count`` workers enforces of the host's connection limits.

    Each worker counts only the sockets it accepted, so with whole limits the host
    would take ``count`` times what ``limits.*`` says. The kernel spreads a client's
    connections over the workers by a hash of their ports, evenly over many of them,
    so a share each (rounded up; 0, no limit, stays 0) holds the host near the
    configured figure: a worker that drew more than its share refuses a little early
    (with two workers, one address meets its first refusal after 244 of 256 sockets
    on average).
    """
    if count <= 1:
        return limits

    def share(value: int) -> int:
        return math.ceil(value / count)

    return limits.model_copy(
        update={
            "max_connections": share(limits.max_connections),
            "max_connections_per_ip": share(limits.max_connections_per_ip),
            "connections_per_ip_per_s": limits.connections_per_ip_per_s / count,
            "connection_burst_per_ip": max(1, share(limits.connection_burst_per_ip)),
        }
    )


def worker_config(config: Config, index: int, count: int) -> Config:
    """The configuration worker ``index`` of ``count`` runs with (blocking: reads/makes
    files)."""
    server = config.server.model_copy(
        update={
            "data_dir": worker_dir(config.server.data_dir, index),
            "workers": 1,
            "node_id": node_id(config, index),
        }
    )
    storage = config.storage
    if storage.backend == "local":
        storage = storage.model_copy(update={"path": config.dumps_dir})
    metadata = config.metadata.model_copy(update={"path": config.embedded_path})
    viewer = config.viewer
    if not viewer.secret.get_secret_value():
        viewer = viewer.model_copy(update={"secret": SecretStr(load_key(config).decode())})
    return config.model_copy(
        update={
            "server": server,
            "storage": storage,
            "metadata": metadata,
            "viewer": viewer,
            "limits": limits_share(config.limits, count),
        }
    )


def adopt_orphans(data_dir: Path, count: int) -> int:
    """Hand what a previous run with another worker count left to this run's workers.

    Run before any worker starts. Worker 0 and a single process have the same node id,
    so between them live dumps (``live/``) move with their records' node: one process
    to N moves them to worker 0, N to one back. Dumps waiting for upload (``outbox/``)
    belong to no node: those of workers that no longer exist go to worker 0 (or the
    single process) too. Live dumps of a worker that no longer exists stay where they
    are, recovered when that worker runs again (a warning says so); a drained stop
    (SIGTERM) leaves none. Cluster segments (``server.cluster``) are the exception:
    they belong to no node either (any collector ends a segment file it finds, see
    sessions/segments.py), and one left live in the shared store would keep its
    session from ever finishing, on every collector; so those of a worker that no
    longer exists go to the heir too. Returns the files moved.
    """
    heir = worker_dir(data_dir, 0) if count > 1 else data_dir
    moves: list[tuple[Path, tuple[str, ...]]] = [
        (data_dir if count > 1 else worker_dir(data_dir, 0), ("live", "outbox"))
    ]
    segments: list[Path] = []
    workers = data_dir / "workers"
    if workers.is_dir():
        for child in sorted(workers.iterdir()):
            if child.name.isdigit() and int(child.name) >= max(count, 1) and child.name != "0":
                moves.append((child, ("outbox",)))
                live = _files(child / "live")
                segments += [entry for entry in live if entry.name.endswith(SEGMENT_SUFFIX)]
                left = [entry for entry in live if not entry.name.endswith(SEGMENT_SUFFIX)]
                if left:
                    log.warning(
                        "%d unfinished sessions in %s wait for worker %s (server.workers)",
                        len(left),
                        child / "live",
                        child.name,
                    )
    moved = _move(segments, heir / "live")
    for source, names in moves:
        for name in names:
            moved += _move(_files(source / name), heir / name)
    if moved:
        log.info("moved %d unfinished session files to %s", moved, heir)
    return moved


def _move(entries: list[Path], there: Path) -> int:
    """Move ``entries`` into ``there`` (never over a file of the same name)."""
    moved = 0
    for entry in entries:
        there.mkdir(parents=True, exist_ok=True)
        target = there / entry.name
        if target.exists():
            log.warning("cannot move %s to %s: a file of that name is there", entry, there)
            continue
        entry.rename(target)
        moved += 1
    return moved


def _files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []
