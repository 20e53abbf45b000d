"""Which finished sessions a forwarder takes: client dialects, sampled, filtered.

Sampling hashes the session id instead of drawing a random number, so asking twice
about one session (a restart, a second process, an operator) gives one answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from rtcstats_server.config import RtcstatsComConfig

#: Dialects of browser clients. Backend pushers (``3.1_JVB`` ...) send no peer
#: connections that an rtcstats.com viewer could show.
CLIENT_DIALECTS = frozenset({"rtcstats#5.0", "rtcstats#4.0", "3.1_STANDARD", "3.1_LEGACY", "2.0"})


def sampled(session_id: str, rate: float) -> bool:
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    digest = hashlib.sha256(session_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class Selection:
    def __init__(self, config: RtcstatsComConfig) -> None:
        self.rate = config.sample_rate
        self.apps = frozenset(config.apps)
        self.globs = [p for p in config.conference_patterns if not p.startswith("re:")]
        self.regexes = [
            re.compile(p[3:]) for p in config.conference_patterns if p.startswith("re:")
        ]

    def _conference_matches(self, conference: object) -> bool:
        if not self.globs and not self.regexes:
            return True
        if not isinstance(conference, str):
            return False
        return any(fnmatchcase(conference, g) for g in self.globs) or any(
            r.search(conference) for r in self.regexes
        )

    def rejects(self, record: Mapping[str, Any]) -> str | None:
        """Why this session is not forwarded, or None when it is."""
        if record.get("dialect") not in CLIENT_DIALECTS:
            return f"dialect {record.get('dialect')!r} is not a browser client"
        if not record.get("dump_key"):
            return "no stored dump"
        if self.apps and record.get("app") not in self.apps:
            return "app not in forwarders.rtcstats_com.apps"
        if not self._conference_matches(record.get("conference_id")):
            return "conference id matches no forwarders.rtcstats_com.conference_patterns"
        if not sampled(str(record["id"]), self.rate):
            return "not in the sample"
        return None
