"""A collector in its own process, started as an operator starts it (the CLI), so
tests can send it real signals and read what it logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp

from tests.services.collector import free_port, wait_until


class CollectorProcess:
    """``rtcstats-server serve`` on a free loopback port; stderr goes to ``log_path``.

    ``command`` replaces ``python -m rtcstats_server serve ...`` (the image test runs
    the Dockerfile's own command); ``wrapper`` goes in front of it (e.g. ``prlimit
    --as=...`` so that a memory regression fails a test, not the machine: prlimit execs
    the command, so ``proc.pid`` is the collector's); ``env`` is the whole environment
    when ``clean``.
    """

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        clean: bool = False,
        cwd: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = data_dir.parent / f"collector-{self.port}.log"
        base = (
            {}
            if clean
            else {
                **{k: v for k, v in os.environ.items() if not k.startswith("RTCSTATS_")},
                # one process, as before server.workers (test_workers.py asks for more)
                "RTCSTATS_SERVER__WORKERS": "1",
            }
        )
        self.env = {**base, **(env or {})}
        self.command = [*wrapper, *(command or (
            sys.executable, "-m", "rtcstats_server", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data_dir),
        ))]  # fmt: skip
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env={**self.env, "RTCSTATS_SERVER__PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )

    async def healthy(self, http: aiohttp.ClientSession) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
        try:
            async with http.get(self.base_url + "/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def wait_healthy(self, http: aiohttp.ClientSession, timeout: float = 20.0) -> None:
        await wait_until(lambda: self.healthy(http), timeout, what="collector /healthz")

    async def terminate(self, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds until the process was gone.

        Waits without blocking the loop: clients in this test answer the server's
        close frames meanwhile, as real clients would.
        """
        assert self.proc is not None
        proc = self.proc
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: proc.poll() is not None, timeout, what="collector exit")
        return proc.returncode, time.monotonic() - began

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def memory(self) -> tuple[int, int]:
        """The collector's resident set now and its peak (VmRSS, VmHWM), in bytes."""
        assert self.proc is not None
        sizes: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                sizes[name] = int(value.split()[0]) * 1024
        return sizes["VmRSS"], sizes["VmHWM"]

    def reset_peak(self) -> None:
        """Start VmHWM again from the current RSS (Linux clear_refs), so the next peak
        read is the peak of what happens from now on."""
        assert self.proc is not None
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
