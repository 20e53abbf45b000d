"""Files a collector makes once and keeps (its node id, the viewer key).

Outside the layers: the session layer and the HTTP layer each keep such a file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def create_once(path: Path, text: str, mode: int = 0o644) -> None:
    """Make ``path`` hold ``text`` unless it exists; callers read it back after.

    Written whole and synced under a name of its own, then linked into place: a
    reader finds the file absent or complete, never half-written, and of processes
    racing to make it (the workers of one collector start together) the first one's
    file stays; the others' links fail and their own files are dropped.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
