"""Keeps glibc malloc from holding on to the memory of large, short-lived buffers.

A frame near ``ingest.max_message_bytes`` passes through several buffers of its size
(aiohttp's frame assembly, the decoded ``str``, the parsed value, a dump frame, a zstd
context on a worker thread). glibc serves blocks of 128 KiB and more with ``mmap`` and
unmaps them on free, but the first time such a block is freed it raises that threshold
to the block's size (up to 32 MiB): from then on every large buffer comes from an
arena heap, one per thread up to eight per core, and each heap keeps the high-water
mark of the buffers that were live at once. Measured on the live fuzz run (200
sockets, frames up to 1 MiB, 2 cores): RSS 75 -> 121 -> 127 -> 136 MB over three
rounds; with the threshold pinned, 75 -> 83 -> 86 -> 86 MB.

The price is an ``mmap``/``munmap`` and fresh page faults per large buffer: that run
(about 1 GB of frames over 128 KiB per round) cost the server 4.1 s of CPU per round
instead of 1.1 s, about 3 ms per MB of such frames. Real clients send messages of a
few KiB, which never reach the threshold. (Two arenas plus a periodic ``malloc_trim``
kept CPU at 1.1 s but settled at 90 MB and needs a timer; the pin is one call.)

Setting the threshold also turns off glibc's matching dynamic trim threshold. Other C
libraries ignore the call (musl's mallopt does nothing): there this is a no-op.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

#: mallopt parameter number of M_MMAP_THRESHOLD in glibc's malloc.h.
_M_MMAP_THRESHOLD = -3

#: glibc's default threshold: blocks at least this large are mapped and unmapped.
MMAP_THRESHOLD = 128 * 1024


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix the mmap threshold (no dynamic raise); False where malloc has no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    pinned = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not pinned:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; large buffers keep glibc's defaults")
    return pinned
