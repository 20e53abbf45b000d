"""``rtcstats-server serve`` that cannot start exits 1 at once with one line saying why.

Each case runs the real command. Before, a busy port logged "listening", printed a
traceback and then hung forever (the embedded store's thread kept the process alive),
so a process manager never restarted it; ``run_cli`` fails a test whose process is
still running after its deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.services.cli import Ran, run_cli
from tests.services.collector import free_port
from tests.services.process import CollectorProcess

#: Far more than a failed start needs (well under a second of CPU); the bug was "never".
DEADLINE_S = 30.0


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def the_one_line(ran: Ran) -> str:
    """Exit 1, no traceback, nothing claims to listen, exactly one ERROR line."""
    assert ran.code == 1, ran.err
    assert "Traceback" not in ran.err and "listening" not in ran.err, ran.err
    errors = [line for line in ran.err_lines if " ERROR " in line]
    assert len(errors) == 1, ran.err
    return errors[0]


async def test_a_busy_port_fails_before_anything_is_opened(tmp_path: Path, busy_port: int) -> None:
    data = tmp_path / "data"
    ran = await run_cli(
        "serve", "--host", "127.0.0.1", "--port", str(busy_port), "--data-dir", str(data),
        timeout=DEADLINE_S,
    )  # fmt: skip
    line = the_one_line(ran)
    assert line.endswith(f"not started: cannot listen on 127.0.0.1:{busy_port} (server.port): "
                         "address already in use"), line  # fmt: skip
    assert ran.err_lines == [line]  # the only thing printed
    # bound before any store was opened or any session recovered
    assert list(data.iterdir()) == []


async def test_a_busy_api_port_names_api_listen(tmp_path: Path, busy_port: int) -> None:
    ran = await run_cli(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()),
        "--data-dir", str(tmp_path / "data"),
        env={"RTCSTATS_API__LISTEN": f"127.0.0.1:{busy_port}"}, timeout=DEADLINE_S,
    )  # fmt: skip
    line = the_one_line(ran)
    assert f"cannot listen on 127.0.0.1:{busy_port} (api.listen): address already in use" in line


async def test_an_unwritable_data_dir_is_named(tmp_path: Path) -> None:
    # Tests run as root, which writes through any mode bits: a data dir whose parent
    # is a file is one that nobody can create.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    ran = await run_cli(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()),
        "--data-dir", str(blocker / "data"), timeout=DEADLINE_S,
    )  # fmt: skip
    line = the_one_line(ran)
    assert f"data directory {blocker / 'data'} (server.data_dir) is not writable" in line
    assert line.endswith("not a directory"), line


async def test_a_store_failing_after_another_opened_does_not_hang(tmp_path: Path) -> None:
    """The session store opens (its thread starts), then the dump directory cannot be
    made: the store must be closed again, or its thread keeps the process alive."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    ran = await run_cli(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()),
        "--data-dir", str(tmp_path / "data"),
        env={"RTCSTATS_STORAGE__PATH": str(blocker / "dumps")}, timeout=DEADLINE_S,
    )  # fmt: skip
    line = the_one_line(ran)
    assert line.endswith(f"not started: {blocker / 'dumps'}: not a directory"), line
    assert (tmp_path / "data" / "sessions.sqlite3").exists()  # it was opened, then closed


async def test_required_backend_that_does_not_answer(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {
        "RTCSTATS_SERVER__REQUIRE_BACKENDS": "true",
        "RTCSTATS_METADATA__BACKEND": "mongodb",
        "RTCSTATS_METADATA__URI": f"mongodb://ops:hunter2@127.0.0.1:{port}/",
        "RTCSTATS_METADATA__TIMEOUT_S": "1",
    }
    ran = await run_cli(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()),
        "--data-dir", str(tmp_path / "data"), env=env, timeout=DEADLINE_S,
    )  # fmt: skip
    line = the_one_line(ran)
    assert "a required backend does not answer (server.require_backends is true)" in line
    assert f"metadata: mongodb: 127.0.0.1:{port}" in line
    assert "hunter2" not in ran.err


async def test_listening_is_logged_once_bound_with_the_version(tmp_path: Path) -> None:
    """Without the flag the same unreachable database is not fatal: the collector starts
    degraded (records spooled), and says it listens only on the address it holds."""
    from rtcstats_server.version import installed_version

    server = CollectorProcess(
        tmp_path / "data",
        env={
            "RTCSTATS_METADATA__BACKEND": "mongodb",
            "RTCSTATS_METADATA__URI": f"mongodb://127.0.0.1:{free_port()}/",
            "RTCSTATS_METADATA__TIMEOUT_S": "1",
        },
    )
    server.start()
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
        code, _ = await server.terminate()
        assert code == 0
    finally:
        server.kill()
    listening = [line for line in server.log().splitlines() if "listening on" in line]
    assert len(listening) == 1, server.log()
    assert (
        f"rtcstats-collector {installed_version()} listening on 127.0.0.1:{server.port},"
        in (listening[0])
    )
