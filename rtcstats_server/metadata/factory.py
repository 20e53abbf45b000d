"""The session store and job queues a configuration asks for (``metadata.*``).

Shared by the server and the commands that run without it (``forward``), so none of
them reaches up into the HTTP app for it. MongoDB always comes wrapped in the local
write spool: the collector keeps ingesting while the database is away. The job
queues (forwarding, analysis) live where the records live.
"""

from __future__ import annotations

from rtcstats_server.config import Config
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.embedded import EmbeddedSessionStore
from rtcstats_server.metadata.jobs import JobQueue
from rtcstats_server.metadata.mongodb import MongoSessionStore
from rtcstats_server.metadata.spool import SpoolingSessionStore


def make_session_store(config: Config, *, spool: bool = True) -> SessionStore:
    """``spool=False``: MongoDB without the write spool, for a process beside the
    collector (an analysis worker) that must not share its spool directory: a write
    that fails raises StoreUnavailable, and that process's job is retried."""
    meta = config.metadata
    if meta.backend == "mongodb":
        mongo = MongoSessionStore(
            meta.uri.get_secret_value(), meta.database, meta.collection, meta.timeout_s
        )
        if not spool:
            return mongo
        return SpoolingSessionStore(mongo, config.metadata_spool_dir, meta.retry_interval_s)
    return EmbeddedSessionStore(config.embedded_path)


def make_job_queue(config: Config) -> JobQueue:
    """A connection to the shared job table or collection; each user opens its own."""
    if config.metadata.backend == "mongodb":
        from rtcstats_server.metadata.jobs_mongodb import MongoJobQueue

        return MongoJobQueue.from_config(config.metadata)
    from rtcstats_server.metadata.jobs_sqlite import SqliteJobQueue

    return SqliteJobQueue(config.embedded_path)
