"""The viewer as an application resource: its signer, its data, and its finish hook.

Made at startup (the key may have to be read from or written to the data dir) and
hung off the app; as a hook of the finish (``sessions/finish.py``) it contributes
every stored session's ``viewer_url`` to the record the finish writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rtcstats_server.config import Config
from rtcstats_server.http.viewer.cache import ViewData
from rtcstats_server.http.viewer.framing import FramingWatch
from rtcstats_server.http.viewer.signing import SignedUrl, Signer, make_signer, public_base_url
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import DumpStore

CACHE_DIR = "viewer-cache"


def iso_time(epoch_s: int | None) -> str | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC).isoformat()


class Viewer:
    def __init__(
        self,
        config: Config,
        signer: Signer,
        records: SessionStore,
        dumps: DumpStore,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.signer = signer
        self.records = records
        self.metrics = metrics
        self.framing = FramingWatch(
            config.viewer.authorized_domains, public_base_url(config), metrics
        )
        self.data = ViewData(
            config.server.data_dir / CACHE_DIR,
            dumps,
            metrics,
            config.viewer.chart_buckets,
            config.viewer.cache_max_bytes,
        )

    @property
    def frame_ancestors(self) -> str:
        return " ".join(["'self'", *self.config.viewer.authorized_domains])

    def url_for(self, session_id: str, ttl_s: int | None = None) -> SignedUrl:
        """An expiring link (``viewer.url_ttl_s`` unless ``ttl_s`` says otherwise)."""
        return self.signer.url(session_id, time.time(), ttl_s)

    def stored_link(self, session_id: str) -> SignedUrl:
        """The link a backend keeps (a record's ``viewer_url``, an ``embedUrl``): lasting
        unless ``viewer.record_url_ttl_s`` says otherwise."""
        ttl_s = self.config.viewer.record_url_ttl_s
        return self.signer.lasting(session_id) if ttl_s == 0 else self.url_for(session_id, ttl_s)

    async def contribute(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """The record of a stored session gets a signed URL of its viewer; its expiry is
        written even when null, so a record rewritten after a change of
        ``record_url_ttl_s`` keeps no stale one."""
        signed = self.stored_link(str(record["id"]))
        return {"viewer_url": signed.url, "viewer_url_expires_at": iso_time(signed.expires_at)}

    async def stored(self, record: Mapping[str, Any]) -> None:
        return None  # nothing follows: the page reads the dump when someone opens it


async def make_viewer(
    config: Config, records: SessionStore, dumps: DumpStore, metrics: Metrics
) -> Viewer | None:
    if not config.viewer.enabled:
        return None
    signer = await asyncio.to_thread(make_signer, config)
    return Viewer(config, signer, records, dumps, metrics)
