"""A stored session gets its summary in the record; the API filters on it."""

from __future__ import annotations

from pathlib import Path

from tests.services import streams
from tests.services.collector import RunningCollector


async def replay(collector: RunningCollector, stream: streams.Stream) -> None:
    async with collector.http.ws_connect(
        collector.ws_url + stream.path, protocols=(stream.subprotocol,)
    ) as ws:
        if stream.subprotocol.startswith("3.1_"):
            await ws.receive_json(timeout=5)  # the sn handshake
        for message in stream.messages:
            await ws.send_str(message)
        await ws.close(code=stream.close_code)


async def test_summary_stored_and_filtered(collector: RunningCollector, fixtures_dir: Path) -> None:
    await replay(
        collector,
        streams.jitsi_disk_dump(fixtures_dir, "jitsi-chrome-standard-pc-failed.jsonl", "s-failed"),
    )
    await replay(collector, streams.captured(fixtures_dir, "rtcstats-js-2.4.0-loopback-call"))
    failed = await collector.wait_for_record(
        lambda r: r["state"] == "stored" and r["client_session_id"] == "s-failed"
    )
    loopback = await collector.wait_for_record(
        lambda r: r["state"] == "stored" and r["dialect"] == "rtcstats#5.0"
    )
    failed = await collector.wait_for_analysis(failed["id"])  # after the finish, on its own
    loopback = await collector.wait_for_analysis(loopback["id"])

    assert "connection_failed" in failed["findings"]
    assert failed["pc_count"] == 3 and failed["summary_error"] is None
    assert failed["max_loss_pct"] is not None and failed["max_loss_pct"] > 0
    assert loopback["findings"] == ["sdp_error"] and loopback["max_loss_pct"] == 0

    detail = await collector.get_json(f"/v1/sessions/{failed['id']}")
    assert detail["quality"]["peer_connections"][0]["pc_id"] == "PC_0"
    assert detail["quality"]["dump"]["layout"] == "rtcstats-dump"
    assert detail["quality"]["dump"]["client_protocol"] == "3.1_STANDARD"

    page = await collector.get_json("/v1/sessions?finding=connection_failed")
    assert [r["id"] for r in page["sessions"]] == [failed["id"]]
    page = await collector.get_json("/v1/sessions?finding=sdp_error")
    assert [r["id"] for r in page["sessions"]] == [loopback["id"]]
    page = await collector.get_json(f"/v1/sessions?min_loss_pct={failed['max_loss_pct']}")
    assert [r["id"] for r in page["sessions"]] == [failed["id"]]
    page = await collector.get_json("/v1/sessions?min_loss_pct=50")
    assert page["sessions"] == []

    bad = await collector.get_json("/v1/sessions?finding=nonsense", status=400)
    assert bad["error"] == "bad_filter"
    await collector.get_json("/v1/sessions?min_loss_pct=abc", status=400)
