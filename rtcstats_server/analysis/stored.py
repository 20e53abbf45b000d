"""The analysis of a stored dump, for the session record, without blocking the loop.

The dump is read back through the ``DumpStore`` (so it works for every backend) and
its chunks are handed to a worker thread through a small bounded queue: the thread
decompresses, parses and analyses (summary and features, one pass: dump_analysis.py)
while the loop only moves chunks, and at most a few chunks are held in memory at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from rtcstats_server.analysis.dump_analysis import analyse_chunks
from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.config import QualityConfig
from rtcstats_server.exceptions import NotFound, RtcstatsError, StoreUnavailable
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

_QUEUE_CHUNKS = 4


def _drain(chunks: queue.Queue[bytes | None]) -> Iterator[bytes]:
    while (chunk := chunks.get()) is not None:
        yield chunk


def _analyse_queue(
    chunks: queue.Queue[bytes | None], config: QualityConfig, locator: GeoLocator | None
) -> dict[str, Any]:
    source = _drain(chunks)
    try:
        return analyse_chunks(source, config, locator)
    finally:
        for _ in source:  # let the producer finish even if the reader stopped early
            pass


def _start_analysis(
    pipe: queue.Queue[bytes | None], config: QualityConfig, locator: GeoLocator | None
) -> asyncio.Future[dict[str, Any]]:
    """Runs the consumer on a thread of its own, not the loop's default executor.

    The consumer blocks until its producer hands it chunks, and producers read the
    dump through that executor: with many sessions finishing at once (a drain at
    SIGTERM finishes all of them), consumers filling every executor thread would
    starve the producers they wait for, and the process would hang.
    """
    loop = asyncio.get_running_loop()
    work: asyncio.Future[dict[str, Any]] = loop.create_future()

    def settle(result: dict[str, Any] | None, error: BaseException | None) -> None:
        if work.done():
            return
        if error is not None:
            work.set_exception(error)
        else:
            work.set_result(result or {})

    def run() -> None:
        outcome: tuple[dict[str, Any] | None, BaseException | None]
        try:
            outcome = (_analyse_queue(pipe, config, locator), None)
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="dump-analysis", daemon=True).start()
    return work


async def analyse_stream(
    chunks: AsyncIterator[bytes], config: QualityConfig, locator: GeoLocator | None = None
) -> dict[str, Any]:
    """The record fields (summary and features) of a dump arriving as async chunks."""
    pipe: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    work = _start_analysis(pipe, config, locator)
    try:
        async for chunk in chunks:
            try:
                pipe.put_nowait(chunk)
            except queue.Full:
                await asyncio.to_thread(pipe.put, chunk)
    finally:
        try:
            pipe.put_nowait(None)
        except queue.Full:
            await asyncio.to_thread(pipe.put, None)
    return await work


async def quality_fields(
    dumps: DumpStore,
    key: str,
    config: QualityConfig,
    locator: GeoLocator | None = None,
    *,
    retry_missing: bool = False,
) -> dict[str, Any]:
    """Record fields (``quality``, ``findings``, ``max_loss_pct``, ..., ``features``)
    for a stored dump; empty when disabled. A dump that cannot be read gives a
    summary_error; a store that does not answer raises StoreUnavailable (the job is
    tried again later), and so does a missing dump with ``retry_missing`` (one still
    on its way to the bucket, read from another host). ``locator``: looks up
    addresses the dump kept (masking off)."""
    if not config.enabled:
        return {}
    try:
        return await analyse_stream(dumps.read(key), config, locator)
    except StoreUnavailable:
        raise
    except NotFound as exc:
        if retry_missing:
            raise StoreUnavailable(f"dump {key} not in the store yet: {exc}") from exc
        log.warning("analysis of %s failed: %r", key, exc)
        return {"summary_error": f"dump could not be read: {exc}"}
    except (RtcstatsError, OSError) as exc:
        log.warning("analysis of %s failed: %r", key, exc)
        return {"summary_error": f"dump could not be read: {exc}"}
