"""Reading stored dumps for the viewer: off the event loop, bounded, and only once.

A stored dump never changes, so a session's whole view model is computed once and
kept as zstd-compressed JSON under ``<data_dir>/viewer-cache/``; later views read
that file instead of the dump. Zoomed windows and downloads read the dump again
(they are rarer, and caching every window would grow without bound).

The dump comes from the ``DumpStore`` as async chunks (any backend); a worker thread
decompresses and parses them, fed through a small bounded queue, so memory holds a
few chunks plus the view model whatever the dump's size. A few computations run at
once at most: a burst of viewers of big dumps must not starve ingest of threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
import zstandard

from rtcstats_server.analysis.viewmodel import (
    MODEL_VERSION,
    build_view_model,
    find_event,
    report_property,
    samples,
)
from rtcstats_server.dumps.reader import DumpReader, Event
from rtcstats_server.exceptions import DumpFormatError
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

T = TypeVar("T")

_QUEUE_CHUNKS: Final = 4
_DOWNLOAD_BLOCK: Final = 64 * 1024
_DOWNLOAD_QUEUE: Final = 8
#: The cache's size is checked at the first write and then every this many.
_PRUNE_EVERY_WRITES: Final = 20


def _drain(pipe: queue.Queue[bytes | None]) -> Iterator[bytes]:
    while (chunk := pipe.get()) is not None:
        yield chunk


async def _put(pipe: queue.Queue[bytes | None], item: bytes | None) -> None:
    try:
        pipe.put_nowait(item)
    except queue.Full:
        await asyncio.to_thread(pipe.put, item)


def _on_own_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """``work()`` on a thread of its own, not the loop's default executor: it blocks
    until chunks arrive, and the stores read those chunks through that executor, so
    consumers holding executor threads could starve their own producers."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (work(), None)
        except BaseException as exc:  # handed to the awaiting coroutine
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name="viewer-dump-reader", daemon=True).start()
    return future


async def run_over_dump(chunks: AsyncIterator[bytes], work: Callable[[Iterator[bytes]], T]) -> T:
    """``work(chunks)`` in a worker thread, fed from the async chunks as it reads.

    ``work`` may stop early (a window ended, an event was found): the rest of the
    dump is then not read.
    """
    pipe: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    done = threading.Event()

    def consume() -> T:
        source = _drain(pipe)
        try:
            return work(source)
        finally:
            done.set()
            for _ in source:  # unblock the feeder until it sends the end
                pass

    task = _on_own_thread(consume)
    try:
        async for chunk in chunks:
            if done.is_set():
                break
            await _put(pipe, chunk)
    except BaseException:
        await _put(pipe, None)
        with contextlib.suppress(Exception):
            await task
        raise
    await _put(pipe, None)
    return await task


def _write_cache(path: Path, model: dict[str, Any]) -> None:
    data = zstandard.ZstdCompressor(level=3).compress(orjson.dumps(model))
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(data)
    os.replace(temp, path)  # readers see the old file or the whole new one


def _read_cache(path: Path) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
        os.utime(path)  # recently viewed: the last to be pruned
    except FileNotFoundError:
        return None
    try:
        model: dict[str, Any] = orjson.loads(zstandard.ZstdDecompressor().decompress(data))
    except (zstandard.ZstdError, orjson.JSONDecodeError):
        log.warning("viewer cache file %s is damaged: recomputing", path)
        return None
    return model


def prune(directory: Path, max_bytes: int) -> int:
    """Delete the least recently viewed cache files beyond ``max_bytes``; how many.

    Also how the cache of deleted sessions (retention, the API) goes away in time.
    """
    files = []
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.name.endswith(".json.zst") or not entry.is_file():
                continue
            info = entry.stat()
            files.append((info.st_mtime, info.st_size, entry.path))
            total += info.st_size
    deleted = 0
    for _, size, path in sorted(files):
        if total <= max_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            deleted += 1
        total -= size
    return deleted


class ViewData:
    """View models, events and samples of stored dumps."""

    def __init__(
        self,
        directory: Path,
        dumps: DumpStore,
        metrics: Metrics,
        buckets: int,
        max_bytes: int = 1 << 30,
        concurrency: int = 2,
    ) -> None:
        self.directory = directory
        self.dumps = dumps
        self.metrics = metrics
        self.buckets = buckets
        self.max_bytes = max_bytes
        self._writes = 0
        self._limit = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def cache_path(self, session_id: str) -> Path:
        return self.directory / f"{session_id}.v{MODEL_VERSION}.b{self.buckets}.json.zst"

    async def model(self, session_id: str, dump_key: str) -> dict[str, Any]:
        """The whole session's view model, computed at most once per process."""
        started = time.perf_counter()
        path = self.cache_path(session_id)
        cached = await asyncio.to_thread(_read_cache, path)
        if cached is not None:
            self.metrics.viewer_seconds.labels("cached").observe(time.perf_counter() - started)
            return cached
        running = self._running.get(session_id)
        if running is None:
            running = asyncio.ensure_future(self._compute(path, dump_key))
            self._running[session_id] = running
            running.add_done_callback(lambda _: self._running.pop(session_id, None))
        # Shielded: a viewer closing its tab must not waste the work others wait on.
        model = await asyncio.shield(running)
        self.metrics.viewer_seconds.labels("computed").observe(time.perf_counter() - started)
        return model

    async def _compute(self, path: Path, dump_key: str) -> dict[str, Any]:
        async with self._limit:
            buckets = self.buckets
            model = await run_over_dump(
                self.dumps.read(dump_key), lambda chunks: build_view_model(chunks, buckets)
            )
            if not model.get("error"):
                await asyncio.to_thread(_write_cache, path, model)
                self._writes += 1
                if self._writes % _PRUNE_EVERY_WRITES == 1:
                    await asyncio.to_thread(prune, self.directory, self.max_bytes)
            return model

    async def window(self, dump_key: str, start: float, end: float) -> dict[str, Any]:
        """A zoomed window at full resolution (up to 2 * buckets points per series)."""
        started = time.perf_counter()
        buckets = self.buckets
        async with self._limit:
            model = await run_over_dump(
                self.dumps.read(dump_key),
                lambda chunks: build_view_model(chunks, buckets, start, end),
            )
        self.metrics.viewer_seconds.labels("window").observe(time.perf_counter() - started)
        return model

    async def event(self, dump_key: str, index: int) -> Event | None:
        async with self._limit:
            return await run_over_dump(
                self.dumps.read(dump_key), lambda chunks: find_event(chunks, index)
            )

    async def forget(self, session_id: str) -> None:
        await asyncio.to_thread(self.cache_path(session_id).unlink, missing_ok=True)

    async def stream_samples(
        self,
        dump_key: str,
        start: float | None,
        end: float | None,
        write: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """Every sample as JSON lines, produced in a thread and written as it comes."""

        def lines(events: Iterator[Event]) -> Iterator[bytes]:
            for sample, label in samples(events, start, end):
                yield orjson.dumps(
                    {
                        "t": sample.t,
                        "pc_id": sample.pc_id,
                        "series": label,
                        "metric": sample.metric,
                        "value": sample.value,
                        "interval_ms": sample.interval_ms,
                    }
                )

        await self._stream(dump_key, lines, write)

    async def stream_property(
        self,
        dump_key: str,
        pc_id: str | None,
        report_id: str,
        name: str,
        write: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """One raw getStats property of one report over time, as JSON lines ``{t, value}``."""

        def lines(events: Iterator[Event]) -> Iterator[bytes]:
            for t, value in report_property(events, pc_id, report_id, name):
                yield orjson.dumps({"t": t, "value": value})

        await self._stream(dump_key, lines, write)

    async def _stream(
        self,
        dump_key: str,
        make_lines: Callable[[Iterator[Event]], Iterator[bytes]],
        write: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """``make_lines`` over the dump's events in a thread, written in blocks as they
        come (the client's pace holds the thread back: bounded memory)."""
        loop = asyncio.get_running_loop()
        blocks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_DOWNLOAD_QUEUE)
        stop = threading.Event()

        def hand_over(item: bytes | None) -> bool:
            future = asyncio.run_coroutine_threadsafe(blocks.put(item), loop)
            while True:
                try:
                    future.result(timeout=0.5)
                    return True
                except TimeoutError:
                    if stop.is_set():
                        future.cancel()
                        return False

        def produce(chunks: Iterator[bytes]) -> None:
            block: list[bytes] = []
            size = 0
            try:
                events = iter(DumpReader(chunks))
            except DumpFormatError as exc:
                hand_over(orjson.dumps({"error": str(exc)}) + b"\n")
                hand_over(None)
                return
            for line in make_lines(events):
                block.append(line)
                size += len(line) + 1
                if size >= _DOWNLOAD_BLOCK:
                    if not hand_over(b"\n".join(block) + b"\n"):
                        return
                    block, size = [], 0
            if block and not hand_over(b"\n".join(block) + b"\n"):
                return
            hand_over(None)

        async with self._limit:
            work = asyncio.ensure_future(run_over_dump(self.dumps.read(dump_key), produce))
            try:
                while (item := await self._next_block(blocks, work)) is not None:
                    await write(item)
            finally:
                stop.set()
                while not blocks.empty():
                    blocks.get_nowait()
                await work

    @staticmethod
    async def _next_block(
        blocks: asyncio.Queue[bytes | None], work: asyncio.Future[None]
    ) -> bytes | None:
        """The next block, or None at the end, also when the producer died early."""
        if not blocks.empty():
            return blocks.get_nowait()
        getter: asyncio.Future[bytes | None] = asyncio.ensure_future(blocks.get())
        waited: set[asyncio.Future[Any]] = {getter, work}
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        return blocks.get_nowait() if not blocks.empty() else None
