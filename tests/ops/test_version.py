"""The installed version, where an operator looks for it: ``--version``, ``/healthz``
and the start line. The expected value is read from the installed distribution's
metadata here, the way pip records it, not written into the test. With it, the
analysis build (``compiled`` or ``pure``, rtcstats_server/compiled.py): this checkout
is pure (tests/analysis/test_compiled.py checks a compiled build says so)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import aiohttp

from rtcstats_server.compiled import analysis_build
from tests.services.cli import run_cli
from tests.services.process import CollectorProcess

INSTALLED = metadata.version("rtcstats-collector")


async def test_version_flag_on_the_main_command(tmp_path: Path) -> None:
    ran = await run_cli("--version", cwd=tmp_path)
    assert ran.code == 0, ran.err
    assert analysis_build() == "pure"
    assert ran.out == f"rtcstats-server {INSTALLED} (analysis: pure)\n"


async def test_healthz_and_the_start_line_name_the_version(tmp_path: Path) -> None:
    server = CollectorProcess(tmp_path / "data")
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            async with http.get(server.base_url + "/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "version": INSTALLED}
            async with http.get(server.base_url + "/metrics") as response:
                exposition = await response.text()
            info = [line for line in exposition.splitlines() if line.startswith("rtcstats_build_")]
            assert info == [f'rtcstats_build_info{{analysis="pure",version="{INSTALLED}"}} 1.0']
        code, _ = await server.terminate()
        assert code == 0
    finally:
        server.kill()
    starts = [line for line in server.log().splitlines() if " listening on " in line]
    assert len(starts) == 1 and f"rtcstats-collector {INSTALLED} listening on " in starts[0]
    assert starts[0].endswith(", analysis: pure"), starts[0]
