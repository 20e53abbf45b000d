"""The version of this collector, as installed.

Read from the installed distribution's metadata (the one place pip records it), so
``--version``, ``/healthz`` and the start line name what is actually running, not a
constant someone forgot to bump.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Final

#: The distribution name in pyproject.toml (the import package is rtcstats_server).
DISTRIBUTION: Final = "rtcstats-collector"


@functools.cache
def installed_version() -> str:
    """The installed version; ``0+unknown`` when run from a tree that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"
