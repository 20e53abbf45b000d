"""What must hold before the collector says it is listening, each failing in one line.

A collector that cannot run must exit at once with a status a process manager acts
on, and one line naming what is wrong: not a traceback, not a "listening" line for a
port it never got, not a process kept alive by a store's thread. So the start-up
steps that touch the machine run first, in order of cost:

1. the data directory is created and written to (a probe file);
2. every listening address is bound, but not yet listened on: a port in use fails
   here, before any store is opened or any session recovered (``serve`` does these
   two before it even imports the app, so such a failure takes a fraction of a
   second), and a client that connects during a long recovery is refused rather
   than left waiting;
3. (the app opens its stores and recovers sessions; see ``app.start_server``)
4. with ``server.require_backends``, the metadata store and the dump store answer;
5. the bound sockets start listening.

Each failure raises ``StartupError`` with the line to print.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rtcstats_server.config import Config
from rtcstats_server.exceptions import ConfigError, StartupError

#: Pending connections the kernel queues per listening socket (aiohttp's default).
BACKLOG = 128


def _cause(exc: OSError) -> str:
    """``address already in use``: the OS's words, without the errno prefix."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def ensure_writable(directory: Path, key: str = "server.data_dir") -> None:
    """Create ``directory`` and prove a file can be written, synced and removed there.

    Blocking: run it in a thread. A directory that exists but is read-only (a volume
    mounted ``ro``, a wrong owner) fails here rather than at the first session.
    """
    probe = directory / f".write-test-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise StartupError(
            f"data directory {directory} ({key}) is not writable: {_cause(exc)}"
        ) from None


def display_address(host: str, port: int) -> str:
    """``host:port`` as people write it (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int, key: str, reuse_port: bool = False) -> list[socket.socket]:
    """Sockets bound to every address ``host`` names, not yet listening.

    ``reuse_port``: SO_REUSEPORT, so the workers of one supervisor each bind the same
    port and the kernel spreads new connections over them.

    The same addresses ``loop.create_server(host, port)`` would take: all interfaces
    for an empty host, each address a name resolves to, IPv6 sockets v6-only so an
    IPv4 socket on the same port can coexist. Blocking (name resolution).
    """
    where = display_address(host or "*", port)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {where} ({key}): {_cause(exc)}") from None
    bound: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                at = display_address(str(address[0]), int(address[1]))
                raise StartupError(f"cannot listen on {at} ({key}): {_cause(exc)}") from None
            sock.setblocking(False)
    except BaseException:
        close_all(bound)
        raise
    if not bound:
        raise StartupError(f"cannot listen on {where} ({key}): no address to bind")
    return bound


def api_listen(config: Config) -> tuple[str, int | None]:
    """``api.listen`` split into host and port; (host, None) when it is not set."""
    if not config.api.listen:
        return "", None
    host, _, port = config.api.listen.rpartition(":")
    number = int(port)
    if not 0 < number <= 65535 or number == config.server.port:
        raise ConfigError("api.listen", "needs a port of its own, other than server.port")
    return host.strip("[]"), number


@dataclass
class Listeners:
    """The bound sockets of the public port and of ``api.listen`` (empty when unset)."""

    public: list[socket.socket]
    private: list[socket.socket] = field(default_factory=list)

    @property
    def sockets(self) -> list[socket.socket]:
        return [*self.public, *self.private]

    def listen(self) -> None:
        listen(self.public, "server.port")
        listen(self.private, "api.listen")

    def close(self) -> None:
        close_all(self.sockets)

    def describe(self) -> str:
        """``127.0.0.1:8080 (API and /metrics on 127.0.0.1:9090)``, as bound."""

        def where(sockets: list[socket.socket]) -> str:
            return ", ".join(display_address(*s.getsockname()[:2]) for s in sockets)

        private = f" (API and /metrics on {where(self.private)})" if self.private else ""
        return where(self.public) + private


def prepare(config: Config, reuse_port: bool = False) -> Listeners:
    """Steps 1 and 2: a writable data directory and every address bound. Blocking."""
    ensure_writable(config.server.data_dir)
    api_host, api_port = api_listen(config)
    listeners = Listeners(bind(config.server.host, config.server.port, "server.port", reuse_port))
    if api_port is not None:
        try:
            listeners.private = bind(api_host, api_port, "api.listen", reuse_port)
        except BaseException:
            listeners.close()
            raise
    return listeners


def listen(sockets: list[socket.socket], key: str) -> None:
    """Start listening. A second process that bound the same port with SO_REUSEADDR
    (nobody listening yet) loses here, with the same line as a failed bind."""
    for sock in sockets:
        try:
            sock.listen(BACKLOG)
        except OSError as exc:
            host, port = sock.getsockname()[:2]
            raise StartupError(
                f"cannot listen on {display_address(host, port)} ({key}): {_cause(exc)}"
            ) from None


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def unreachable_backends(problems: Mapping[str, str]) -> StartupError:
    """The line for ``server.require_backends`` when a store did not answer."""
    named = "; ".join(f"{name}: {problem}" for name, problem in sorted(problems.items()))
    return StartupError(
        f"a required backend does not answer (server.require_backends is true): {named}"
    )
