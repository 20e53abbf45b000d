"""``serve`` runs on uvloop by default where it is installed, on asyncio when
``server.uvloop`` is off, and says which in its log; a session is stored either way
(the rest of the suite's collector processes run on the default, uvloop)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from rtcstats_server.cli.event_loop import loop_factory
from rtcstats_server.config import build_config
from tests.services.collector import wait_until
from tests.services.process import CollectorProcess


def test_the_loop_follows_the_config() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory, name = loop_factory(build_config({}))
    assert factory is uvloop.new_event_loop and name.startswith("uvloop ")
    factory, name = loop_factory(build_config({"server": {"uvloop": False}}))
    assert factory is None and name == "asyncio (server.uvloop is off)"


@pytest.mark.parametrize(("setting", "said"), [("true", "uvloop "), ("false", "asyncio ")])
async def test_a_session_is_stored_on_either_loop(tmp_path: Path, setting: str, said: str) -> None:
    pytest.importorskip("uvloop")
    server = CollectorProcess(tmp_path / "data", env={"RTCSTATS_SERVER__UVLOOP": setting})
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            url = server.ws_url + "/loop?statsSessionId=loop-test&isReconnect=false"
            async with http.ws_connect(url, protocols=("3.1_STANDARD",)) as ws:
                assert (await ws.receive_json(timeout=10))["body"]["value"] == 0
                for seq in range(1, 6):
                    data = json.dumps(["getstats", "PC_0", {"n": seq}, 1_700_000_000_000, seq])
                    entry = {"statsSessionId": "loop-test", "type": "stats-entry", "data": data}
                    await ws.send_str(json.dumps(entry))
                await ws.close(code=3001)

            async def stored() -> bool:
                async with http.get(server.base_url + "/v1/sessions") as response:
                    sessions = (await response.json())["sessions"]
                return bool(sessions) and sessions[0]["state"] == "stored"

            await wait_until(stored, 30, what="session stored")
            async with http.get(server.base_url + "/v1/sessions") as response:
                (record,) = (await response.json())["sessions"]
            assert record["last_seq"] == 5
        assert f"event loop: {said}" in server.log()
    finally:
        code, _ = await server.terminate()
        server.kill()
    assert code == 0
