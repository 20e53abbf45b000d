"""The one way a step that follows a stored session writes to its record.

The record of a finished session is written once, whole, by the finish
(``sessions/finish.py``). What happens later and on its own time (the dump reaching
the bucket, a forward upstream, the analysis) records its outcome here: a ``$set``
of the fields that step owns (``record.STEP_FIELDS``) on the record as it is, never a
read followed by a write of the whole, so steps that finish together cannot undo
each other and none can touch what the finish wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rtcstats_server.exceptions import StoreUnavailable
from rtcstats_server.metadata.base import SessionStore
from rtcstats_server.metadata.record import STEP_FIELDS, Step, essential_fields, utcnow

log = logging.getLogger(__name__)


async def record_step(
    records: SessionStore, session_id: str, step: Step, fields: Mapping[str, Any]
) -> bool:
    """Set ``step``'s ``fields`` on the session's record; False when there is none.

    A field the step does not own is a bug and raises ValueError. A write the store
    refuses (a value it cannot hold, a summary too large) is made again with bounded
    values and without the quality summary (``summary_error`` says why); an outage
    (StoreUnavailable) is the caller's to retry.
    """
    stray = fields.keys() - STEP_FIELDS[step]
    if stray:
        raise ValueError(f"the {step.value} step does not own {sorted(stray)}")
    changes = {**fields, "updated_at": utcnow()}
    try:
        return await records.update(session_id, changes)
    except StoreUnavailable:
        raise
    except Exception as exc:  # the driver's or SQLite's refusal of a value
        log.error("session %s: %s fields refused: %r", session_id, step.value, exc)
        why = f"the store refused it: {exc!r}"
        return await records.update(session_id, essential_fields(changes, why))
