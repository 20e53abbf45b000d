"""Which build is running: compiled (mypyc) or pure Python (the analysis pass and
the ingest path's per-message code; the metric and ``--version`` say ``analysis``, as
they did before the ingest modules joined the list).

The package is pure Python unless its wheel was built with ``RTCSTATS_COMPILE=1``
(setup.py; the Docker image does): then the modules listed here are also compiled by
mypyc into C extension modules, which the import system prefers to the ``.py`` files
beside them. The list lives here, in one place: setup.py reads it (without importing
the package) and the collector reports what it finds installed (the start lines,
``rtcstats_build_info`` on /metrics, ``rtcstats-server --version``), so an operator
can tell which build is answering, and a benchmark which build it measured.
"""

from __future__ import annotations

import functools
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Final

#: The modules mypyc compiles: the analysis worker's pass over a dump (reader, decoder,
#: interpreter, summary, features), where a session's CPU goes, and the ingest
#: process's per-message path (frames, dialect decoders, IP masking, sessions, the dump
#: writer). Shares of the analysis modules are of the pure pass on the rtcstats-js
#: capture (py-spy, bench/analysis.py --dialect rtcstats#5.0); of the ingest modules,
#: self time of the pure ingest server's event-loop thread on the jitsi 3.1 load
#: (py-spy, bench/ingest --peer), where orjson (17 %) and zstd (12.5 %) are C already.
#: bench/README.md has what compiling each group saved.
COMPILED_MODULES: Final = (
    # the rtcstats-js delta decoder, run for every getStats message: 25 %
    "rtcstats_server.dumps.getstats",
    # the reader's line loop and event dispatch: 15 %
    "rtcstats_server.dumps.reader",
    # the per-connection decoder state, weighed after every getStats: 3 %
    "rtcstats_server.dumps.connections",
    # decompression and line splitting, method codes, the events: what stays
    # interpreted once the above are compiled (5 % of the compiled pass), and
    # native classes for the event and the samples make their fields struct reads
    "rtcstats_server.dumps.codecs",
    "rtcstats_server.dumps.codes",
    "rtcstats_server.dumps.events",
    "rtcstats_server.analysis.samples",
    # the stats interpreter and its per-track samples: 25 %
    "rtcstats_server.analysis.interpreter",
    "rtcstats_server.analysis.tracks",
    # number(), measurement() and the like, called for every value read
    "rtcstats_server.analysis.reports",
    # the quality summary's consumer and its per-track totals and sketches: 10 %
    "rtcstats_server.analysis.summary",
    "rtcstats_server.analysis.media",
    "rtcstats_server.analysis.sketch",
    # the features' consumer: 13 %; truthy() runs for every value it tests
    "rtcstats_server.analysis.features.extract",
    "rtcstats_server.analysis.features.connection",
    "rtcstats_server.analysis.features.track",
    "rtcstats_server.analysis.jsvalues",
    # ingest: the websocket frame parser (FrameReader.take 7.6 %, .feed 2.3 %) and the
    # transport's protocol (WebSocket._deliver 2 %)
    "rtcstats_server.ingest.frames",
    "rtcstats_server.ingest.websocket",
    # the dialect decoders (JitsiDecoder.feed 3.7 %, _seq 2.8 %), the envelopes they
    # open (1.3 %) and fits_int64 (1.1 %); legacy because its decoder subclasses
    # rtcstats_js's (an interpreted class cannot inherit from a compiled one)
    "rtcstats_server.dialects.base",
    "rtcstats_server.dialects.jitsi",
    "rtcstats_server.dialects.rtcstats_js",
    "rtcstats_server.dialects.legacy",
    "rtcstats_server.dumps.envelopes",
    "rtcstats_server.metadata.record",
    # IP masking: 11.5 % (mask_line 4.9, _mask_hinted 2.4, _mask_sdp 1.9, mask_parsed
    # 1.5, _mask_cluster 0.8); 24 % on the rtcstats-js load
    "rtcstats_server.dumps.privacy",
    # the handler's per-message work (Stream.on_text 6.4 %, IngestHandler.masked 2.6 %)
    # and the session's (SessionManager.append 3.6 %); state and connection hold the
    # base classes of LiveSession and Stream (a native class needs native bases)
    "rtcstats_server.ingest.handler",
    "rtcstats_server.sessions.live",
    "rtcstats_server.sessions.state",
    "rtcstats_server.sessions.connection",
    # the dump writer (DumpWriter._append_frame 2 %, zstd itself is C)
    "rtcstats_server.dumps.writer",
)

_PACKAGE: Final = Path(__file__).resolve().parent


def is_compiled(module: str) -> bool:
    """Whether importing ``module`` (one of this package's) loads an extension module:
    the import system looks for extension files before the ``.py`` in a directory."""
    parts = module.split(".")[1:]
    directory = _PACKAGE.joinpath(*parts[:-1])
    return any((directory / (parts[-1] + suffix)).is_file() for suffix in EXTENSION_SUFFIXES)


@functools.cache
def analysis_build() -> str:
    """``compiled``, ``pure``, or ``partly compiled (n of m modules)`` (a hand-made
    build: the list above changed since, or a file was removed)."""
    found = sum(map(is_compiled, COMPILED_MODULES))
    if found == len(COMPILED_MODULES):
        return "compiled"
    if found == 0:
        return "pure"
    return f"partly compiled ({found} of {len(COMPILED_MODULES)} modules)"
