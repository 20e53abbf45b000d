"""The reference peer: the Node rtcstats-server of github rtcstats/rtcstats, as deployed.

``DIR`` is a checkout of that repository after ``npm install --omit=dev`` (an npm
workspace: run it at the top). Nothing of it lives in our tree. The server is started
as its own ``npm start`` does (``packages/rtcstats-server/app.js``, config from
``DIR/config``), with ``NODE_ENV=production`` (a cluster of workers) and
``NODE_CONFIG`` setting only what a benchmark must: the port, two workers, and work
and upload directories on the same file system as our collectors' data. Everything
else stays at its defaults: IP obfuscation on, and no S3, Postgres, rtcstats.com
token or maxmind database configured, so it reaches no network and keeps its
post-processed dumps in the upload directory, as a production server does between
writing and uploading them.

What it does per connection (read from its source, ``rtcstats-server.js`` and
``rtcstats-websocket.js``): every websocket text message is appended to a work file
as one line, whatever the subprotocol; at close, the file is read back, every line
JSON-parsed, IP addresses obfuscated and the line re-serialized into the upload
directory. That post-processing is part of its cost, so it is measured until the
whole tree is quiet again, as ours is.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import proctree

#: Binds the peer's port to 127.0.0.1 (its config has no listen address).
LOOPBACK_SHIM = Path(__file__).resolve().parent / "loopback.cjs"
#: Lines of a peer dump that are not messages: ``RTCStatsDump``, the metadata line,
#: and the ``["close", ...]`` line written when the socket closes.
FRAMING_LINES = 3


def app_js(checkout: Path) -> Path:
    """The peer's entry point, or a clear error naming what is missing."""
    app = checkout / "packages" / "rtcstats-server" / "app.js"
    if not app.is_file():
        raise SystemExit(f"--peer {checkout}: no packages/rtcstats-server/app.js in it")
    if not (checkout / "node_modules" / "ws").is_dir():
        raise SystemExit(f"--peer {checkout}: run `npm install --omit=dev` there first")
    return app


def node_version() -> str:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@dataclass
class PeerCount:
    """What the peer stored, counted from its finished dumps."""

    dumps: int  # post-processed dump files in the upload directory
    messages: int  # their lines, less the framing lines of each
    unfinished: int  # files still in the work directory (not post-processed)


@dataclass
class PeerServer:
    checkout: Path
    workers: int = 2
    cpus: frozenset[int] = frozenset({0})
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    work_dir: Path | None = None
    upload_dir: Path | None = None
    log: Path | None = None

    def start(self, workdir: Path, port: int) -> None:
        app = app_js(self.checkout)
        self.port = port
        self.work_dir = workdir / f"peer-{port}-work"
        self.upload_dir = workdir / f"peer-{port}-upload"
        node_config = {
            "server": {
                "httpPort": port,
                "numberOfProcesses": self.workers,
                "workDirectory": str(self.work_dir),
                "uploadDirectory": str(self.upload_dir),
            }
        }
        env = dict(
            os.environ,
            NODE_ENV="production",
            NODE_CONFIG_DIR=str(self.checkout / "config"),
            NODE_CONFIG=json.dumps(node_config),
        )
        self.log = workdir / f"peer-{port}.log"
        with self.log.open("wb") as log:
            # Not under taskset: Node would size its cluster to the one CPU it is given
            # (os.availableParallelism) and fork a single worker. Pinned once forked.
            self.proc = subprocess.Popen(
                ["node", "--require", str(LOOPBACK_SHIM), str(app)],
                cwd=app.parent,
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._wait_ready()
        if (os.cpu_count() or 1) >= 2:
            proctree.pin(self.proc.pid, set(self.cpus))

    def _wait_ready(self, limit: float = 30.0) -> None:
        """Listening, with the primary and all its workers forked."""
        assert self.proc is not None and self.log is not None
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
                raise SystemExit(f"peer exited with {self.proc.returncode}:\n{tail}")
            if len(proctree.descendants(self.proc.pid)) > self.workers:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise SystemExit(f"peer: nothing listens on port {self.port} after {limit} s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def finished(self, sessions: int) -> bool:
        """Every connection's dump post-processed: the work directory is empty again
        (each file leaves it once its obfuscated copy is complete)."""
        assert self.upload_dir is not None and self.work_dir is not None
        work = sum(1 for _ in self.work_dir.iterdir())
        return work == 0 and sum(1 for _ in self.upload_dir.iterdir()) >= sessions

    def count(self) -> PeerCount:
        """Messages in the finished dumps: each line of a dump is one message, apart
        from the three framing lines (the peer writes one line per message it got)."""
        assert self.upload_dir is not None and self.work_dir is not None
        dumps = messages = 0
        for path in self.upload_dir.iterdir():
            with path.open("rb") as dump:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: dump.read(1 << 20), b""))
            dumps += 1
            messages += lines - FRAMING_LINES
        unfinished = sum(1 for _ in self.work_dir.iterdir())
        return PeerCount(dumps, messages, unfinished)

    def stop(self) -> None:
        """SIGTERM to the session we started (primary and workers), then the files go:
        a round writes hundreds of MB of plain dumps to the tmpfs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for directory in (self.work_dir, self.upload_dir):
            if directory is not None and directory.is_dir():
                for path in directory.iterdir():
                    path.unlink()
                directory.rmdir()
