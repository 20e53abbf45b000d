"""Segments: a session resumed on another collector ends as one record and one dump
holding every seq once (two in-process collectors on FerretDB and SeaweedFS)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import jwt

from rtcstats_server.metadata.segments import ENDED
from tests.ops.cluster.cluster import Client31, cluster_settings
from tests.services.collector import run_collector, wait_until
from tests.services.ferretdb import FerretDB
from tests.services.seaweedfs import SeaweedFS


async def test_resume_on_another_collector_is_one_session(
    tmp_path: Path, ferretdb: FerretDB, collection: str, bucket: SeaweedFS, shared_prefix: str
) -> None:
    def settings(node: str) -> dict[str, object]:
        return cluster_settings(node, ferretdb.uri, collection, bucket, shared_prefix)

    async with (
        run_collector(tmp_path / "a", settings("node-a")) as a,
        run_collector(tmp_path / "b", settings("node-b")) as b,
    ):
        client = Client31(a.http, a.ws_url, "cross-1")
        assert await client.connect() == 0
        await client.send(50)
        await client.drop()
        client.base_ws = b.ws_url
        await client.connect()  # whatever sn it answers, the buffer fills the gap
        await client.send(50)
        await client.wait_acked(100)
        # Live: any collector serves the session as one dump; B adds its live segment.
        live = (await a.get_json("/v1/sessions"))["sessions"][0]
        assert live["state"] != "stored"
        on_b = (await b.dump_text(live["id"])).splitlines()
        assert [json.loads(line)[4] for line in on_b[2:]] == list(range(1, 101))
        on_a = (await a.dump_text(live["id"])).splitlines()
        assert [json.loads(line)[4] for line in on_a[2:]] == list(range(1, 51))
        await client.leave()
        record = await b.wait_for_record(lambda r: r["state"] == "stored", timeout=30)
        assert record["client_session_id"] == "cross-1"
        assert record["connections"] == 2
        assert record["last_seq"] == 100
        page = await a.get_json("/v1/sessions")
        assert [r["id"] for r in page["sessions"]] == [record["id"]]
        lines = (await a.dump_text(record["id"])).splitlines()
        seqs = [json.loads(line)[4] for line in lines[2:-1]]
        assert seqs == list(range(1, 101))
        assert json.loads(lines[-1])[:3] == ["close", None, 3001]


async def test_resume_elsewhere_by_another_token_holder_is_refused_before_the_upgrade(
    tmp_path: Path, ferretdb: FerretDB, collection: str, bucket: SeaweedFS, shared_prefix: str
) -> None:
    """As on one collector (tests/security/test_resume_hijack.py): a resume of a live
    session by another token holder, or by a client without a token, is answered 403
    ``resume_not_owner`` before the upgrade, whether the session's segments have all
    ended or one is live on the other collector; a fresh connection reusing the id
    gets a session of its own; the holder's own resumes join its session."""
    secret = "cluster-resume-test-secret-0123456789"
    auth = {"require_token": False, "jwt_secret": secret, "leeway_s": 0}

    def settings(node: str) -> dict[str, object]:
        tree = cluster_settings(
            node, ferretdb.uri, collection, bucket, shared_prefix, resume_grace_s=30.0
        )
        return {**tree, "auth": auth}

    def token(user: str) -> str:
        claims = {"exp": int(time.time() + 300), "sub": user, "rtcStats": {"user": user}}
        return jwt.encode(claims, secret, algorithm="HS256")

    def resume_path(query: str) -> str:
        return "/room?statsSessionId=held-1&isReconnect=true" + (f"&{query}" if query else "")

    mallory = f"rtcstats-token={token('mallory')}"
    async with (
        run_collector(tmp_path / "a", settings("node-a")) as a,
        run_collector(tmp_path / "b", settings("node-b")) as b,
    ):
        owner = Client31(a.http, a.ws_url, "held-1", query=f"rtcstats-token={token('alice')}")
        await owner.connect()
        await owner.send(20)
        await owner.wait_acked(20)
        await owner.drop()  # its segment ends on A; the session waits for its resume
        assert await b.upgrade_status(resume_path(mallory)) == 403
        assert await b.upgrade_status(resume_path("")) == 403  # anonymous: not the holder
        assert not b.manager.sessions

        stranger = Client31(b.http, b.ws_url, "held-1", query=mallory)
        await stranger.connect()  # a fresh connection: a session of its own
        await stranger.send(5)
        await stranger.wait_acked(5)
        await stranger.leave()

        owner.base_ws = b.ws_url
        await owner.connect()  # the real holder resumes its own session elsewhere
        await owner.send(10)
        await owner.wait_acked(30)
        # its segment is live on B now: A knows the session only from the store
        assert not a.manager.sessions
        assert await a.upgrade_status(resume_path(mallory)) == 403
        await owner.send(10)
        await owner.leave()

        def stored(record: dict[str, object]) -> bool:
            return record["state"] == "stored"

        await a.wait_for_record(lambda r: stored(r) and r["connections"] == 2, timeout=30)
        await a.wait_for_record(lambda r: stored(r) and r["connections"] == 1, timeout=30)
        records = (await a.get_json("/v1/sessions"))["sessions"]
        assert len(records) == 2
        for record in records:
            seqs = [
                json.loads(line)[4] for line in (await a.dump_text(record["id"])).splitlines()[2:-1]
            ]
            expected = list(range(1, 41)) if record["connections"] == 2 else list(range(1, 6))
            assert seqs == expected
        refused = 'rtcstats_connections_refused_total{reason="resume_not_owner"}'
        assert f"{refused} 2.0" in await b.metrics_text()
        assert f"{refused} 1.0" in await a.metrics_text()


async def test_two_finish_tasks_of_one_collector_store_its_session_once(
    tmp_path: Path, ferretdb: FerretDB, collection: str, bucket: SeaweedFS, shared_prefix: str
) -> None:
    """A collector takes up a claim it confirmed itself (an earlier try that stopped),
    so its final end's finish and its finish job's, asking at the same moment, were
    both let through: two merges into one file, a dump stored with the session twice
    (a close line in its middle). One of them must finish it, once."""
    grace = 60.0
    tree = cluster_settings(
        "node-a", ferretdb.uri, collection, bucket, shared_prefix, resume_grace_s=grace
    )
    async with run_collector(tmp_path / "a", tree) as a:
        cluster = a.manager.cluster
        assert cluster is not None
        client = Client31(a.http, a.ws_url, "finished-once")
        await client.connect()
        await client.send(30)
        await client.wait_acked(30)
        (session_id,) = [s.id for s in a.manager.sessions.values()]
        await client.drop()  # not final: nothing finishes it before the grace

        async def ended() -> bool:
            segments = await cluster.directory.of_session(session_id)
            return bool(segments) and all(s["state"] == ENDED for s in segments)

        await wait_until(ended, 15, what="the segment's end recorded")
        later = time.time() + 2 * grace
        assert await cluster.directory.claim(session_id, cluster.node_id, later, grace)
        cluster._clock = lambda: time.time() + 2 * grace  # the grace has passed
        # Two finishes at once (the job's, leased now that the grace has passed, may
        # come too): each passes the in-process check before its claim answers.
        await asyncio.gather(cluster._finish_now(session_id), cluster._finish_now(session_id))
        record = await a.wait_for_record(lambda r: r["state"] == "stored", timeout=30)
        lines = (await a.dump_text(record["id"])).splitlines()
        assert [json.loads(line)[4] for line in lines[2:-1]] == list(range(1, 31))
        assert json.loads(lines[-1])[0] == "close"
        await wait_until(lambda: not cluster._active, 15, what="the finish over")
        finished = [
            line
            for line in (await a.metrics_text()).splitlines()
            if line.startswith("rtcstats_sessions_finished_total{")
        ]
        assert [line.rsplit(" ", 1)[1] for line in finished] == ["1.0"], finished


async def test_a_session_left_without_an_event_does_not_take_the_clients_resume(
    tmp_path: Path, ferretdb: FerretDB, collection: str, bucket: SeaweedFS, shared_prefix: str
) -> None:
    """A client gives up its first socket (to A) before sending an event, while A still
    holds it (half-open); it streams on B, drops, and comes back to A. A's session of
    no event must not take that resume (a second session of the client's later seqs):
    the resume joins the session on B, and A's empty one is dropped."""

    def settings(node: str) -> dict[str, object]:
        return cluster_settings(node, ferretdb.uri, collection, bucket, shared_prefix)

    async with (
        run_collector(tmp_path / "a", settings("node-a")) as a,
        run_collector(tmp_path / "b", settings("node-b")) as b,
    ):
        url = f"{a.ws_url}/room?statsSessionId=early-1&isReconnect=false"
        abandoned = await a.http.ws_connect(url, protocols=("3.1_STANDARD",))
        assert (await abandoned.receive_json(timeout=10))["body"]["value"] == 0
        client = Client31(b.http, b.ws_url, "early-1")
        client.connections = 1  # its next connection is a resume
        assert await client.connect() == 0
        await client.send(20)
        await client.wait_acked(20)
        await client.drop()
        client.base_ws = a.ws_url
        await client.connect()  # sn 20, or 0 while B's segment end is not recorded yet
        await client.send(20)
        await client.wait_acked(40)
        await client.leave()
        record = await a.wait_for_record(lambda r: r["state"] == "stored", timeout=30)
        assert record["connections"] == 2
        lines = (await a.dump_text(record["id"])).splitlines()
        assert [json.loads(line)[4] for line in lines[2:-1]] == list(range(1, 41))
        # a split's other half would be listed too (its first event made its record)
        records = (await a.get_json("/v1/sessions"))["sessions"]
        assert [r["id"] for r in records] == [record["id"]]
        assert (await abandoned.receive(timeout=10)).type.name in {"CLOSE", "CLOSED", "CLOSING"}
        assert not a.manager.sessions
