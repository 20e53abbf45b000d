"""A real MongoDB wire-protocol server for tests: FerretDB 1.24.2 on SQLite, one process.

``scripts/install.d/30-ferretdb.sh`` builds the binary once into the CI cache. A
server can be stopped and started again on the same data and port, which is how the
outage tests take the database away from a running collector and bring it back.
The helpers are synchronous (subprocess and a blocking ping); async tests call them
through ``asyncio.to_thread`` so the collector's event loop keeps running meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import TracebackType

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.services.collector import free_port

DEFAULT_BINARY = Path.home() / ".cache" / "rtcstats-ci" / "bin" / "ferretdb"
INSTALL_SCRIPT = "scripts/install.d/30-ferretdb.sh"


def ferretdb_binary() -> Path:
    """The built server, or an error that says how to build it."""
    binary = Path(os.environ.get("RTCSTATS_FERRETDB_BIN", DEFAULT_BINARY))
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(
            f"FerretDB is not built at {binary}: run `bash {INSTALL_SCRIPT}` "
            "(scripts/test.sh does); the MongoDB metadata tests need it"
        )
    return binary


class FerretDB:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.binary = ferretdb_binary()
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "ferretdb.log"

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start on the same data and port as before, and wait until it answers ping."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "--handler=sqlite",
                    f"--sqlite-url=file:{self.data_dir}/",
                    f"--listen-addr=127.0.0.1:{self.port}",
                    "--debug-addr=-",  # no second listener to clash between servers
                    f"--state-dir={self.data_dir}",
                    "--telemetry=disable",
                    "--log-level=WARN",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"FerretDB exited with {self.process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"FerretDB did not answer ping on {self.uri} in {timeout}s")
            time.sleep(0.05)

    def _answers_ping(self) -> bool:
        client: MongoClient[dict[str, object]] = MongoClient(
            self.uri, serverSelectionTimeoutMS=250, connectTimeoutMS=250
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> FerretDB:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
