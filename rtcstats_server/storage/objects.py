"""Dumps in object storage (S3 and compatibles, GCS, Azure) through one library, obstore.

A finished dump is never uploaded on the session's path: ``put`` checksums it, moves
it into the outbox (a durable queue on local disk) and returns the fields the final
record carries (checksum, ``dump_upload_state: pending``). Once that record is written
(``recorded``), upload workers send the dump (in parts above a threshold), check the
stored size, record where it is, and only then delete the local copy. While the
bucket is unreachable sessions keep finishing into the outbox and the workers back
off exponentially with jitter; a restart picks the queue up from the directory.

Data moves one way: this module records each upload's outcome through the metadata
layer's ``record_step`` (its own fields only), and never calls into the session layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import AzureStore, GCSStore, ObjectStore, S3Store

from rtcstats_server.config import StorageConfig
from rtcstats_server.exceptions import (
    ConfigError,
    NotFound,
    StoreUnavailable,
    UploadNotVerified,
)
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import Step, utcnow
from rtcstats_server.metadata.steps import record_step
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import StoredDump
from rtcstats_server.storage.outbox import Outbox, OutboxEntry

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import AzureConfig, ClientConfig, RetryConfig, S3Config

log = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024
#: Bytes per ranged GET when reading an object back.
_RANGE_BYTES = 8 << 20
#: Parts of one multipart upload in flight at once (memory: this many parts per upload).
_PART_CONCURRENCY = 4
#: A key that never exists: HEAD on it answers 404 when the bucket is reachable.
_PING_NAME = ".rtcstats-collector-ping"
_SCHEMES = {"s3": "s3", "gcs": "gs", "azure": "az"}

#: Values of the record's ``dump_upload_state``.
PENDING, UPLOADED = "pending", "uploaded"
#: ``dump_location`` while the dump waits on local disk.
IN_OUTBOX = "outbox"


def _first_line(exc: BaseException) -> str:
    """obstore errors carry a multi-line debug dump; the first line says what happened."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def open_object_store(settings: StorageConfig) -> ObjectStore:
    """An obstore client for ``settings``; credentials the file does not give come from
    the environment and the platform chain, as each provider's own tools do.

    A client that cannot even be built (e.g. Azure without an account name) is a
    configuration error, reported at start with the key to fix.
    """
    try:
        return _client_for(settings)
    except ValueError:
        raise
    except Exception as exc:
        raise ConfigError(
            "storage.backend",
            f"cannot set up {settings.backend}: {_first_line(exc)} (check the provider's "
            "environment variables, e.g. AZURE_STORAGE_ACCOUNT_NAME, or storage.endpoint)",
        ) from None


def _client_for(settings: StorageConfig) -> ObjectStore:
    client: ClientConfig = {
        "timeout": timedelta(seconds=settings.request_timeout_s),
        "connect_timeout": timedelta(seconds=min(10.0, settings.request_timeout_s)),
    }
    if settings.endpoint.startswith("http://"):
        client["allow_http"] = True
    # A few quick retries for a dropped connection; longer outages are the outbox's job.
    retry: RetryConfig = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=min(30.0, settings.request_timeout_s)),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
        },
    }
    if settings.backend == "s3":
        config: S3Config = {"virtual_hosted_style_request": not settings.path_style}
        if settings.endpoint:
            config["endpoint"] = settings.endpoint
        if settings.region:
            config["region"] = settings.region
        if settings.access_key_id is not None:
            config["access_key_id"] = settings.access_key_id.get_secret_value()
        if settings.secret_access_key is not None:
            config["secret_access_key"] = settings.secret_access_key.get_secret_value()
        return S3Store(settings.bucket, config=config, client_options=client, retry_config=retry)
    if settings.backend == "gcs":
        if settings.endpoint:
            return GCSStore(
                settings.bucket,
                config={"base_url": settings.endpoint},
                client_options=client,
                retry_config=retry,
            )
        return GCSStore(settings.bucket, client_options=client, retry_config=retry)
    if settings.backend == "azure":
        azure: AzureConfig = {}
        if settings.endpoint:
            azure["endpoint"] = settings.endpoint
        if settings.account_name:
            azure["account_name"] = settings.account_name
        if settings.account_key is not None:
            azure["account_key"] = settings.account_key.get_secret_value()
        return AzureStore(settings.bucket, config=azure, client_options=client, retry_config=retry)
    raise ValueError(f"not an object storage backend: {settings.backend}")


class ObjectDumpStore:
    """A DumpStore on a bucket, fed through a local outbox by upload workers.

    ``records`` and ``metrics`` are optional so a tool can read or delete dumps
    without running uploads; ``upload=False`` leaves the outbox alone.
    """

    def __init__(
        self,
        store: ObjectStore,
        settings: StorageConfig,
        outbox_dir: Path,
        records: SessionStore | None = None,
        metrics: Metrics | None = None,
        upload: bool = True,
        close_grace_s: float = 5.0,
    ) -> None:
        self.name: str = settings.backend
        self.store = store
        self.settings = settings
        self.outbox = Outbox(outbox_dir)
        self.records = records
        self.metrics = metrics
        self.upload = upload
        self.close_grace_s = close_grace_s
        self.location = f"{_SCHEMES.get(settings.backend, settings.backend)}://{settings.bucket}"
        prefix = settings.prefix.strip("/")
        self._ping_key = f"{prefix}/{_PING_NAME}" if prefix else _PING_NAME
        self._queue: asyncio.Queue[OutboxEntry] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Future[bool]] = set()
        self._attempts: dict[str, int] = {}
        self._in_flight: set[str] = set()
        #: Put by this process, waiting for their record before they are uploaded.
        self._held: set[str] = set()
        self._deleted: set[str] = set()
        self._sent: set[str] = set()
        self._failures = 0
        self._failed_at = 0.0
        self._resume_at = 0.0
        self.last_error: str | None = None

    # -- life ---------------------------------------------------------------------------

    async def open(self) -> None:
        waiting = await self.outbox.scan()
        if waiting:
            log.info(
                "outbox: %d dumps (%d bytes) from a previous run queued for upload",
                len(waiting),
                self.outbox.bytes,
            )
        for entry in waiting:
            self._queue.put_nowait(entry)
        if self.metrics is not None:
            self.metrics.upload_backlog_files.set_function(lambda: self.outbox.files)
            self.metrics.upload_backlog_bytes.set_function(lambda: self.outbox.bytes)
        if self.upload:
            self._workers = [
                asyncio.create_task(self._work(), name=f"dump-upload-{n}")
                for n in range(self.settings.upload_concurrency)
            ]

    async def close(self) -> None:
        """Stop taking work; let attempts already sending finish briefly, so a stopped
        collector does not leave uploads running in the library's background threads."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._running:
            _, late = await asyncio.wait(self._running, timeout=self.close_grace_s)
            for attempt in late:
                attempt.cancel()

    def backlog(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        return {
            "files": self.outbox.files,
            "bytes": self.outbox.bytes,
            "retry_in_s": round(max(0.0, self._resume_at - loop.time()), 3),
            "last_error": self.last_error,
        }

    # -- the DumpStore protocol -------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await obstore.head_async(self.store, self._ping_key)
        except (FileNotFoundError, NotFoundError):
            return
        except Exception as exc:
            raise StoreUnavailable(f"{self.location}: {_first_line(exc)}") from None

    async def put(self, key: str, source: Path) -> StoredDump:
        entry = await self.outbox.add(key, source)
        self._held.add(key)
        extra = {
            "dump_sha256": entry.sha256,
            "dump_location": IN_OUTBOX,
            "dump_upload_state": PENDING,
            "dump_upload_attempts": 0,
        }
        return StoredDump(key=key, size=entry.size, extra=extra)

    async def recorded(self, key: str) -> None:
        """Upload now: after the record's ``pending`` mark, so ``uploaded`` always wins.
        A dump held when the process stops is queued by the next start's scan."""
        if key not in self._held:
            return  # queued already (by this call before, or by the scan at open)
        self._held.discard(key)
        entry = self.outbox.entries.get(key)
        if entry is not None:
            self._queue.put_nowait(entry)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self.outbox.open_data, key)
        if handle is not None:
            try:
                while chunk := await asyncio.to_thread(handle.read, _READ_CHUNK):
                    yield chunk
            finally:
                await asyncio.to_thread(handle.close)
            return
        async for chunk in self._read_object(key):
            yield chunk

    async def _read_object(self, key: str) -> AsyncIterator[bytes]:
        """The object in ranged GETs of bounded size, each streamed in small chunks.

        obstore bounds a whole request by the client timeout, and a reader as slow as
        its HTTP client would outlive it on a large dump; short ranges never do. The
        ETag pins every range to the version the first HEAD saw.
        """
        try:
            meta = await obstore.head_async(self.store, key)
        except (FileNotFoundError, NotFoundError):
            raise NotFound(f"no dump stored at {key}") from None
        except Exception as exc:
            raise StoreUnavailable(f"{self.location}: {_first_line(exc)}") from None
        size = meta["size"]
        offset = 0
        try:
            while offset < size:
                end = min(size, offset + _RANGE_BYTES)
                options: GetOptions = {"range": (offset, end)}
                if meta["e_tag"]:
                    options["if_match"] = meta["e_tag"]
                result = await obstore.get_async(self.store, key, options=options)
                async for chunk in result.stream(min_chunk_size=_READ_CHUNK):
                    yield chunk
                offset = end
        except Exception as exc:
            raise StoreUnavailable(f"{self.location}: {_first_line(exc)}") from None

    async def delete(self, key: str) -> None:
        self._held.discard(key)
        entry = self.outbox.entries.get(key)
        if entry is not None:
            if key in self._in_flight:
                self._deleted.add(key)  # the worker removes it (and the object) when done
            else:
                await self.outbox.remove(entry)
        try:
            await obstore.delete_async(self.store, key)
        except (FileNotFoundError, NotFoundError):
            return
        except Exception as exc:
            raise StoreUnavailable(f"{self.location}: {_first_line(exc)}") from None

    # -- uploads ------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            entry = await self._queue.get()
            await self._wait_for_backoff()
            if self.outbox.entries.get(entry.key) is not entry:
                continue  # deleted, or queued again under the same key
            # Shielded: cancelling a worker at close must not cut a request mid-way.
            attempt = asyncio.ensure_future(self._attempt(entry))
            self._running.add(attempt)
            attempt.add_done_callback(self._running.discard)
            uploaded = await asyncio.shield(attempt)
            try:
                if entry.key in self._deleted:
                    self._deleted.discard(entry.key)
                    await self.outbox.remove(entry)
                    continue
            except OSError as exc:  # a worker must outlive any one entry
                log.error("outbox: cannot remove %s: %r", entry.data, exc)
            if not uploaded:
                self._queue.put_nowait(entry)

    async def _wait_for_backoff(self) -> None:
        loop = asyncio.get_running_loop()
        # The deadline moves when another worker fails meanwhile: re-check after each wait.
        while (delay := self._resume_at - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        """Exponential in consecutive failures, capped, with half of it random, so a
        fleet of collectors does not come back to a recovered bucket in lockstep."""
        settings = self.settings
        ceiling = min(settings.retry_max_s, settings.retry_initial_s * 2.0 ** min(failures - 1, 32))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _attempt(self, entry: OutboxEntry) -> bool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        key = entry.key
        attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
        self._in_flight.add(key)
        try:
            if key not in self._sent:
                await self._send(entry)
                self._sent.add(key)
            if key in self._deleted:
                await obstore.delete_async(self.store, key)
            else:
                await self._update_record(
                    entry,
                    {
                        "dump_key": key,
                        "dump_bytes": entry.size,
                        "dump_sha256": entry.sha256,
                        "dump_location": f"{self.location}/{key}",
                        "dump_upload_state": UPLOADED,
                        "dump_upload_attempts": attempts,
                        "dump_upload_error": None,
                        "dump_uploaded_at": utcnow(),
                    },
                )
            await self.outbox.remove(entry)
        except Exception as exc:
            outcome = "not_verified" if isinstance(exc, UploadNotVerified) else "error"
            if key in self._sent:
                outcome = "record_failed"
            await self._failed(entry, attempts, started, outcome, exc)
            return False
        finally:
            self._in_flight.discard(key)
        self._attempts.pop(key, None)
        self._sent.discard(key)
        self._failures = 0
        self.last_error = None
        self._count("uploaded")
        log.info("dump %s uploaded to %s (%d bytes)", key, self.location, entry.size)
        return True

    async def _send(self, entry: OutboxEntry) -> None:
        await obstore.put_async(
            self.store,
            entry.key,
            entry.data,
            use_multipart=entry.size > self.settings.multipart_threshold_bytes,
            chunk_size=self.settings.multipart_part_bytes,
            max_concurrency=_PART_CONCURRENCY,
        )
        meta = await obstore.head_async(self.store, entry.key)
        if meta["size"] != entry.size:
            raise UploadNotVerified(
                f"{self.location}/{entry.key} holds {meta['size']} bytes, sent {entry.size}"
            )

    async def _failed(
        self, entry: OutboxEntry, attempts: int, started: float, outcome: str, exc: Exception
    ) -> None:
        loop = asyncio.get_running_loop()
        error = _first_line(exc)
        self.last_error = error
        self._count(outcome)
        if started >= self._failed_at:  # attempts that failed together count once
            self._failures += 1
        self._failed_at = loop.time()
        delay = self._backoff(self._failures)
        self._resume_at = max(self._resume_at, loop.time() + delay)
        log.warning(
            "upload of %s failed (attempt %d, %s): %s; retrying in %.1f s",
            entry.key,
            attempts,
            outcome,
            error,
            delay,
        )
        with contextlib.suppress(Exception):  # best effort: the record store may be down too
            await self._update_record(
                entry, {"dump_upload_attempts": attempts, "dump_upload_error": error}
            )

    async def _update_record(self, entry: OutboxEntry, fields: dict[str, Any]) -> None:
        """Nothing happens for a record that is gone (retention deleted it meanwhile)
        or never was (a key no session owns)."""
        if self.records is None or entry.session_id is None:
            return
        await record_step(self.records, entry.session_id, Step.DUMP_UPLOAD, fields)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.uploads.labels(outcome).inc()
