"""The dump store and live-dump spool a configuration asks for.

One place that turns ``storage.*`` into objects, shared by the server and the
commands that run without it (``forward``, ``check-config --connect``), so none of
them reaches up into the HTTP app for it.
"""

from __future__ import annotations

from rtcstats_server.config import Config
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metrics import Metrics
from rtcstats_server.storage.base import DumpStore
from rtcstats_server.storage.local import LocalDumpStore
from rtcstats_server.storage.objects import ObjectDumpStore, open_object_store
from rtcstats_server.storage.spool import Spool


def make_dump_store(
    config: Config, records: SessionStore | None = None, metrics: Metrics | None = None
) -> DumpStore:
    """``records``/``metrics``: object stores upload (and record uploads) only with them."""
    if config.storage.backend == "local":
        return LocalDumpStore(config.dumps_dir)
    return ObjectDumpStore(
        open_object_store(config.storage),
        config.storage,
        config.outbox_dir,
        records,
        metrics,
        upload=records is not None,
    )


def make_spool(config: Config, dumps: DumpStore, metrics: Metrics) -> Spool:
    outbox = dumps.outbox if isinstance(dumps, ObjectDumpStore) else None
    # Every directory a session's end writes to: a full one of them leaves records
    # unwritable, so each disk's free space counts.
    disks = [config.server.data_dir]
    if outbox is not None:
        disks.append(config.outbox_dir)
    else:
        disks.append(config.dumps_dir)
    if config.metadata.backend == "embedded":
        disks.append(config.embedded_path.parent)
    else:
        disks.append(config.metadata_spool_dir)
    spool = Spool(
        config.live_dir,
        config.storage.spool_max_bytes,
        outbox,
        disks=disks,
        min_free_bytes=config.storage.min_free_bytes,
    )
    metrics.spool_bytes.set_function(lambda: spool.used_bytes)
    metrics.disk_free_bytes.set_function(lambda: float(spool.free_bytes or 0))
    return spool
