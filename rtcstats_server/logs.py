"""Logging set-up from the config: text for people, JSON lines for collectors."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from rtcstats_server.config import LoggingConfig

#: ``extra={LOG_FIELDS: {...}}`` on a log call: in JSON mode these become top-level
#: keys of the line, so a log pipeline can filter on ``session_id`` or ``end_reason``
#: without parsing the message. Text mode shows only the message (which has them).
LOG_FIELDS = "fields"
#: The access log's logger (access_log.py): on at INFO whatever ``logging.level`` says
#: when ``logging.access`` is true, silent otherwise.
ACCESS_LOGGER = "rtcstats_server.access"
_BASE_KEYS = ("time", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        #: ``serve --workers N``: the worker whose line it is (a ``worker`` key).
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        fields = getattr(record, LOG_FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _BASE_KEYS:
                    entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(config: LoggingConfig, worker: int | None = None) -> None:
    """``worker``: this process is worker ``worker`` of ``serve --workers N``; its
    lines say so (``[w1]`` in text, ``"worker": 1`` in JSON), as they share a stream."""
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        tag = f"[w{worker}] " if worker is not None else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if config.access else logging.WARNING)
