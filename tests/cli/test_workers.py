"""How many workers ``serve`` runs by default, what each is given, and what a change
of the worker count hands over; a start that a worker cannot make fails as one."""

from __future__ import annotations

import multiprocessing
import os
import socket
from pathlib import Path

from rtcstats_server.cli.workers import (
    adopt_orphans,
    cgroup_cpu_limit,
    default_workers,
    limits_share,
    worker_config,
    worker_count,
)
from rtcstats_server.config import build_config
from rtcstats_server.sessions.live import default_node_id
from rtcstats_server.sessions.segments import SEGMENT_SUFFIX
from tests.services.cli import run_cli


def cgroup(tmp_path: Path, cpu_max: str) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def test_the_default_is_one_worker_per_cpu_within_the_container_limit(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert default_workers(tmp_path / "no-cgroup") == cpus
    assert default_workers(cgroup(tmp_path, "max 100000")) == cpus
    one = tmp_path / "one"
    one.mkdir()
    assert default_workers(cgroup(one, "100000 100000")) == 1
    half = tmp_path / "half"
    half.mkdir()
    assert default_workers(cgroup(half, "50000 100000")) == 1  # never none
    many = tmp_path / "many"
    many.mkdir()
    assert default_workers(cgroup(many, "6400000 100000")) == cpus  # no more than CPUs


def test_a_fractional_limit_rounds_up_and_cgroup_v1_is_read(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(cgroup(tmp_path, "150000 100000")) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1) is None


def test_server_workers_zero_means_the_default(tmp_path: Path) -> None:
    root = cgroup(tmp_path, "100000 100000")
    assert worker_count(build_config({}, environ={}), root) == 1
    assert worker_count(build_config({"server": {"workers": 3}}, environ={}), root) == 3
    env = {"RTCSTATS_SERVER__WORKERS": "2"}
    assert worker_count(build_config({}, environ=env), root) == 2


def test_a_worker_keeps_its_own_files_and_shares_the_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = build_config({"server": {"data_dir": str(data), "node_id": "host-a"}}, environ={})
    first, second = worker_config(config, 0, 2), worker_config(config, 1, 2)
    assert first.live_dir == data / "workers" / "0" / "live"
    assert second.outbox_dir == data / "workers" / "1" / "outbox"
    assert first.embedded_path == second.embedded_path == data / "sessions.sqlite3"
    assert first.dumps_dir == second.dumps_dir == data / "dumps"
    # worker 0 is the collector a single process was (its crash leftovers are its own)
    assert (first.server.node_id, second.server.node_id) == ("host-a", "host-a-w1")
    key = first.viewer.secret.get_secret_value()
    assert key and key == second.viewer.secret.get_secret_value()
    assert key == (data / "viewer-secret").read_text().strip()


def test_each_worker_enforces_its_share_of_the_connection_limits(tmp_path: Path) -> None:
    """Each worker counts only its own sockets: shares keep the host near the limits
    configured (0, no limit, stays 0; a single process keeps them whole)."""
    limits = {
        "max_connections": 20001,
        "max_connections_per_ip": 0,
        "connections_per_ip_per_s": 30.0,
        "connection_burst_per_ip": 1,
    }
    settings = {"server": {"data_dir": str(tmp_path / "data")}, "limits": limits}
    config = build_config(settings, environ={})
    shares = [worker_config(config, index, 3).limits for index in range(3)]
    assert {share.max_connections for share in shares} == {6667}
    assert {share.max_connections_per_ip for share in shares} == {0}
    assert {share.connections_per_ip_per_s for share in shares} == {10.0}
    assert {share.connection_burst_per_ip for share in shares} == {1}
    assert limits_share(config.limits, 1) == config.limits
    assert limits_share(config.limits, 2).max_connections_per_ip == 0
    config = build_config({"limits": {"max_connections_per_ip": 256}}, environ={})
    assert limits_share(config.limits, 2).max_connections_per_ip == 128


def _node_id_of(data_dir: str) -> str:
    return default_node_id(Path(data_dir))


def test_workers_starting_together_agree_on_one_node_id(tmp_path: Path) -> None:
    # Workers started at once all find no node-id file and make one: they used to
    # share a temporary name, and one of them failed to start (CI, 2026-12-02).
    data = tmp_path / "data"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        ids = pool.map(_node_id_of, [str(data)] * 24)
    assert len(set(ids)) == 1
    assert ids[0] == (data / "node-id").read_text().strip()
    assert sorted(p.name for p in data.iterdir()) == ["node-id"]  # no temporary left


def test_changing_the_worker_count_hands_unfinished_files_over(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "live").mkdir(parents=True)
    (data / "live" / "a.rtcstats.zst").write_bytes(b"a")
    (data / "outbox").mkdir()
    (data / "outbox" / "b.rtcstats.zst").write_bytes(b"b")
    assert adopt_orphans(data, 2) == 2
    assert (data / "workers" / "0" / "live" / "a.rtcstats.zst").read_bytes() == b"a"
    assert (data / "workers" / "0" / "outbox" / "b.rtcstats.zst").read_bytes() == b"b"

    # from 3 workers to one: worker 0's files come back; worker 2's upload too, but
    # its live dump waits for a worker 2 (its records name that worker's node id)
    (data / "workers" / "2" / "live").mkdir(parents=True)
    (data / "workers" / "2" / "live" / "c.rtcstats.zst").write_bytes(b"c")
    (data / "workers" / "2" / "outbox").mkdir()
    (data / "workers" / "2" / "outbox" / "d.rtcstats.zst").write_bytes(b"d")
    assert adopt_orphans(data, 1) == 3
    assert sorted(p.name for p in (data / "live").iterdir()) == ["a.rtcstats.zst"]
    assert sorted(p.name for p in (data / "outbox").iterdir()) == [
        "b.rtcstats.zst",
        "d.rtcstats.zst",
    ]
    assert (data / "workers" / "2" / "live" / "c.rtcstats.zst").exists()
    assert adopt_orphans(data, 1) == 0


def test_cluster_segments_of_a_worker_that_no_longer_exists_go_to_worker_0(
    tmp_path: Path,
) -> None:
    # server.cluster: a segment file is ended by whichever collector finds it (no node
    # id in it); left live where no worker runs, its session would never finish.
    data = tmp_path / "data"
    live = data / "workers" / "3" / "live"
    live.mkdir(parents=True)
    (live / f"s1.g1{SEGMENT_SUFFIX}").write_bytes(b"seg")
    (live / "s2.rtcstats.zst").write_bytes(b"dump")
    assert adopt_orphans(data, 2) == 1
    assert (data / "workers" / "0" / "live" / f"s1.g1{SEGMENT_SUFFIX}").read_bytes() == b"seg"
    assert sorted(p.name for p in live.iterdir()) == ["s2.rtcstats.zst"]
    # and from N workers to one process: to the collector's own live directory
    (data / "workers" / "2" / "live").mkdir(parents=True)
    (data / "workers" / "2" / "live" / f"s3.g3{SEGMENT_SUFFIX}").write_bytes(b"seg3")
    assert adopt_orphans(data, 1) == 2
    assert sorted(p.name for p in (data / "live").iterdir()) == [
        f"s1.g1{SEGMENT_SUFFIX}",
        f"s3.g3{SEGMENT_SUFFIX}",
    ]


async def test_a_port_in_use_fails_the_supervised_start_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ran = await run_cli(
            "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--workers", "2",
        )  # fmt: skip
    assert ran.code == 1, ran.err
    reasons = [line for line in ran.err_lines if "not started" in line]
    assert reasons and all(f"127.0.0.1:{port}" in line for line in reasons), ran.err
    assert all("address already in use" in line for line in reasons)
