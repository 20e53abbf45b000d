"""The viewer as an application resource: its signer, its data, and its record hook.

Made at startup (the key may have to be read from or written to the data dir) and
hung off the app; ``on_stored`` is the session manager's hook that gives every
finished session its ``viewer_url``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from rtcstats_server.config import Config
from rtcstats_server.exceptions import RtcstatsError
from rtcstats_server.http.viewer.cache import ViewData
from rtcstats_server.http.viewer.signing import SignedUrl, Signer, make_signer
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import DumpStore

log = logging.getLogger(__name__)

CACHE_DIR = "viewer-cache"


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

    def url_for(self, session_id: str) -> SignedUrl:
        return self.signer.url(session_id, time.time())

    async def on_stored(self, session_id: str) -> None:
        """The session manager's hook: the record gets a signed URL of its viewer."""
        signed = self.url_for(session_id)
        expires = datetime.fromtimestamp(signed.expires_at, UTC).isoformat()
        try:
            if await self.records.get(session_id) is None:
                return
            await self.records.upsert(
                session_id, {"viewer_url": signed.url, "viewer_url_expires_at": expires}
            )
        except (RtcstatsError, OSError) as exc:
            # A missing link is recoverable (POST .../viewer-url); a failed finish is not.
            log.error("session %s: could not record its viewer URL: %r", session_id, exc)


async def make_viewer(
    config: Config, records: SessionStore, dumps: DumpStore, metrics: Metrics
) -> Viewer | None:
    if not config.viewer.enabled:
        return None
    signer = await asyncio.to_thread(make_signer, config)
    return Viewer(config, signer, records, dumps, metrics)
