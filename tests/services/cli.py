"""``rtcstats-server`` commands run as an operator runs them: a process of their own.

The code under test is this tree's, whatever the working directory: the tree is put
first on ``PYTHONPATH`` (a test that runs a command from a temporary directory would
otherwise get whatever ``rtcstats_server`` the interpreter has installed).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without ``RTCSTATS_*`` (the test says which it wants), plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RTCSTATS_")}
    path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    # One process, as before ``server.workers``; tests/ops/test_workers.py asks for more.
    return {**base, "PYTHONPATH": path, "RTCSTATS_SERVER__WORKERS": "1", **(env or {})}


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    #: Wall time from start to exit.
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
) -> Ran:
    """``python -m rtcstats_server ARGS``; fails the test if it has not exited in ``timeout``."""
    began = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rtcstats_server", *args,
        env=cli_env(env), cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"rtcstats-server {' '.join(args)} still running after {timeout} s:\n{err.decode()}"
        ) from None
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode(), time.monotonic() - began)
