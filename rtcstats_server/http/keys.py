"""Typed keys for the shared resources an application carries (no globals)."""

from __future__ import annotations

from aiohttp import web

from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.analysis.worker import Analysis
from rtcstats_server.config import Config
from rtcstats_server.forwarders.worker import Forwarding
from rtcstats_server.http.viewer.service import Viewer
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metrics import Metrics
from rtcstats_server.sessions.live import SessionManager
from rtcstats_server.storage.base import DumpStore
from rtcstats_server.storage.spool import Spool
from rtcstats_server.uploads.service import Uploads

CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
DUMPS = web.AppKey("dumps", DumpStore)
RECORDS = web.AppKey("records", SessionStore)
MANAGER = web.AppKey("manager", SessionManager)
SPOOL = web.AppKey("spool", Spool)
#: Present only when a forwarder is configured.
FORWARDING = web.AppKey("forwarding", Forwarding)
#: Present only when ``quality.enabled`` (the analysis of stored sessions).
ANALYSIS = web.AppKey("analysis", Analysis)
#: Present only when the viewer is enabled.
VIEWER = web.AppKey("viewer", Viewer)
#: Present only when a geo database is configured (``geo.city_db``, ``geo.asn_db``).
GEO = web.AppKey("geo", GeoLocator)
#: Present only when ``upload.enabled`` (the rtcstats.com-compatible /v1.0 API).
UPLOADS = web.AppKey("uploads", Uploads)
