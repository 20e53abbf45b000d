"""A real HAProxy in front of collectors: round robin, no stickiness.

Debian's ``haproxy`` (``scripts/install.d/60-haproxy.sh`` installs it), run in the
foreground (``-db``) as this user on a free loopback port with a config written
here. Websocket connections are tunnels after the upgrade: ``timeout tunnel`` keeps
a quiet stats socket open. Health checks on ``/readyz`` take a dead collector out of
the rotation (and a restarted one back) within a second, as a deployment would.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.services.collector import free_port

INSTALL_SCRIPT = "scripts/install.d/60-haproxy.sh"


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        raise FileNotFoundError(f"haproxy is not installed: run `bash {INSTALL_SCRIPT}`")
    return found


def haproxy_config(port: int, backends: Sequence[int], check: bool = True) -> str:
    servers = "\n".join(
        f"  server c{n} 127.0.0.1:{backend}" + (" check inter 500ms fall 3 rise 2" if check else "")
        for n, backend in enumerate(backends, 1)
    )
    return f"""global
  maxconn 4096

defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  timeout check 3s
  option redispatch
  retries 2

frontend collectors_in
  bind 127.0.0.1:{port}
  default_backend collectors

backend collectors
  balance roundrobin
  option httpchk GET /readyz
{servers}
"""


class HAProxy:
    def __init__(self, directory: Path, backends: Sequence[int], check: bool = True) -> None:
        self.binary = haproxy_binary()
        self.directory = directory
        self.port = free_port()
        self.backends = list(backends)
        self.check = check
        self.config_path = directory / "haproxy.cfg"
        self.log_path = directory / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            haproxy_config(self.port, self.backends, self.check), encoding="utf-8"
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"haproxy exited with {self.process.returncode}:\n{tail}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("haproxy did not listen")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
