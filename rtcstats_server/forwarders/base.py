"""What a forwarder is: something that takes one finished dump somewhere else.

The worker (``worker.py``) owns everything around an upload — leases, retries,
the session record — so a forwarder only turns a prepared file into an answer or an
``UpstreamError`` that says whether trying again can help. A webhook forwarder would
sit beside ``rtcstats_com.py`` with the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

#: What a forwarder wants to receive: the dump text as stored, or converted so that
#: an rtcstats.com reader (``fileFormat: 3``) parses it whatever the client dialect.
PayloadFormat = Literal["stored", "file_format_3"]

#: Awaited by a forwarder just before the step that makes an upload final upstream
#: (rtcstats.com: the assemble call); it raises to abandon the upload. The worker
#: confirms there that it still holds the job's lease, so a process whose lease ran
#: out mid-upload (stalled under load) does not upload a session another process has
#: taken over.
BeforeCommit = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Upload:
    """A dump made ready for one upstream: an uncompressed file on local disk."""

    session_id: str
    path: Path
    size: int
    file_name: str


@dataclass(frozen=True)
class UploadResult:
    """What the upstream answered, and the fields it adds to the session record."""

    upstream_id: str
    record_fields: dict[str, Any] = field(default_factory=dict)


class Forwarder(Protocol):
    #: Names the forwarder's jobs in the queue and its series in /metrics.
    name: str
    payload_format: PayloadFormat

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def upload(
        self, upload: Upload, before_commit: BeforeCommit | None = None
    ) -> UploadResult:
        """Send one dump; raise ``UpstreamError`` (retryable or not) when it did not land.

        ``before_commit`` is awaited once, right before the upload becomes final, and
        what it raises is raised unchanged (nothing final was sent)."""
