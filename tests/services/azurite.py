"""A real Azure Blob Storage server for tests: Azurite, Microsoft's emulator, from npm.

``scripts/install.d/40-azurite.sh`` installs it into ``tests/services/azurite-server/``.
Only the blob service runs, on loopback and a port picked here, with the well-known
development account every Azure SDK knows. Azurite starts without containers and the
collector never creates one (operators do, with their own permissions), so ``start``
creates the test container with one Shared Key signed request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import obstore
from obstore.store import AzureStore

from tests.services.collector import free_port

#: Azurite's built-in account and key, published in Microsoft's Azurite documentation.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
CONTAINER = "rtcstats-dumps"
#: Storage REST API version of the container request (any Azurite 3.x accepts it).
_API_VERSION = "2021-08-06"

INSTALL_DIR = Path(__file__).parent / "azurite-server"


def azurite_binary() -> Path:
    binary = INSTALL_DIR / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise RuntimeError(f"{binary} missing: run scripts/install.d/40-azurite.sh")
    return binary


def shared_key_authorization(method: str, path: str, query: dict[str, str], date: str) -> str:
    """The ``Authorization`` header of a body-less request, signed with the account key.

    Azure's Shared Key scheme: an HMAC-SHA256 over the verb, eleven standard header
    slots (all empty here), the ``x-ms-`` headers and the canonical resource.
    """
    headers = f"x-ms-date:{date}\nx-ms-version:{_API_VERSION}"
    resource = f"/{ACCOUNT}{path}" + "".join(
        f"\n{name}:{value}" for name, value in sorted(query.items())
    )
    text = "\n".join([method, *[""] * 11, headers, resource])
    digest = hmac.new(base64.b64decode(ACCOUNT_KEY), text.encode(), hashlib.sha256).digest()
    return f"SharedKey {ACCOUNT}:{base64.b64encode(digest).decode()}"


@dataclass
class Azurite:
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    #: Seconds the last ``start`` took until the container could be written and read.
    start_seconds: float = 0.0

    @property
    def endpoint(self) -> str:
        """Path-style account URL, as in Azurite's development connection string."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def storage_settings(self, prefix: str, **more: Any) -> dict[str, Any]:
        """The ``storage`` config section of a collector that keeps dumps here."""
        return {
            "backend": "azure",
            "bucket": CONTAINER,
            "prefix": prefix,
            "endpoint": self.endpoint,
            "account_name": ACCOUNT,
            "account_key": ACCOUNT_KEY,
            **more,
        }

    def client(self) -> AzureStore:
        """A plain obstore client on the container, for assertions behind the collector."""
        return AzureStore(
            CONTAINER,
            endpoint=self.endpoint,
            account_name=ACCOUNT,
            account_key=ACCOUNT_KEY,
            client_options={"allow_http": True},
        )

    def _request(self, method: str, path: str, query: dict[str, str]) -> bytes:
        """A body-less REST call on the account, signed as the SDKs sign it."""
        date = formatdate(usegmt=True)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(query)}",
            method=method,
            headers={
                "x-ms-date": date,
                "x-ms-version": _API_VERSION,
                "Authorization": shared_key_authorization(method, path, query, date),
                "Content-Length": "0",
            },
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            body: bytes = response.read()
        return body

    def _create_container(self) -> None:
        """Create the container; one that already exists (a restart) is fine."""
        try:
            self._request("PUT", f"/{ACCOUNT}/{CONTAINER}", {"restype": "container"})
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # ContainerAlreadyExists
                raise

    def committed_blocks(self, key: str) -> list[int]:
        """Sizes of the blocks a blob was committed from (one block: a single PUT)."""
        body = self._request(
            "GET",
            f"/{ACCOUNT}/{CONTAINER}/{urllib.parse.quote(key)}",
            {"comp": "blocklist", "blocklisttype": "committed"},
        )
        root = ElementTree.fromstring(body)
        return [int(size.text or 0) for size in root.iterfind("CommittedBlocks/Block/Size")]

    def start(self, timeout: float = 60.0) -> float:
        """Start (or restart on the same directory); return when blobs read and write."""
        if self.process is not None:
            raise RuntimeError("Azurite is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        began = time.monotonic()
        log = (self.directory.parent / "azurite.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(azurite_binary()),
                "--blobHost", "127.0.0.1",
                "--blobPort", str(self.port),
                "--location", str(self.directory),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        client = self.client()
        deadline = began + timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"azurite-blob exited with {code}; see {log.name}")
            try:
                self._create_container()
                obstore.put(client, ".ready", b"ok", use_multipart=False)
                if bytes(obstore.get(client, ".ready").bytes()) == b"ok":
                    break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"Azurite not serving blobs after {timeout} s") from None
            time.sleep(0.1)  # polling a starting server, not waiting for a test condition
        self.start_seconds = time.monotonic() - began
        return self.start_seconds

    def stop(self) -> None:
        """Kill it: on SIGTERM or SIGINT Azurite waits until every idle keep-alive
        connection closes (over 90 s with the clients tests still hold), and no test
        reads its data after the session."""
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
