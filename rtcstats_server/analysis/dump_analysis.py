"""Everything a session record learns from its dump, in one pass over it.

One reader, one stats interpreter, several consumers (``interpreter.analyse``): the
quality summary with its findings, and the features. The record gets the summary's
fields (``record_fields``) and ``features``. Blocking (decompression, JSON): run it in a
worker thread or process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rtcstats_server.analysis.features.extract import FeatureExtractor
from rtcstats_server.analysis.geo import GeoLocator
from rtcstats_server.analysis.interpreter import analyse
from rtcstats_server.analysis.summary import SessionSummarizer, record_fields
from rtcstats_server.config import QualityConfig
from rtcstats_server.dumps.reader import DumpReader
from rtcstats_server.exceptions import DumpFormatError


def analyse_reader(
    reader: DumpReader, config: QualityConfig, locator: GeoLocator | None = None
) -> dict[str, Any]:
    """Record fields of a dump being read: the summary's and ``features``."""
    summarizer = SessionSummarizer(config, reader.info)
    extractor = FeatureExtractor(reader.info, locator, config.max_peer_connections)
    error: str | None = None
    try:
        analyse(reader, [summarizer, extractor])
    except DumpFormatError as exc:  # only a strict reader raises; be safe anyway
        error = str(exc)
    fields = record_fields(summarizer.result(error))
    fields["features"] = extractor.result()
    return fields


def analyse_chunks(
    chunks: Iterable[bytes], config: QualityConfig, locator: GeoLocator | None = None
) -> dict[str, Any]:
    """Record fields of a dump given as byte chunks (blocking: call from a thread).
    A dump that cannot be opened gets a summary saying why, and no features."""
    try:
        reader = DumpReader(chunks)
    except DumpFormatError as exc:
        return record_fields(SessionSummarizer(config).result(str(exc)))
    return analyse_reader(reader, config, locator)
