"""The viewer's further per-track series, read from the raw reports a track sample
carries: what a support engineer checks once bitrate and loss look wrong.

Counters become per-sample counts (NACK, PLI, FIR, keyframes), sums become per-frame
means over the sample's interval (QP, encode and decode time, jitter buffer delay);
a counter that went back (a re-created stream) gives nothing for that sample. Bands
are the text properties whose changes explain a chart: the quality limitation
reason, the codec, the encoder and decoder implementation.

Pure functions over two reports; only the viewer's charts use them (the summary's
values come from the interpreter alone).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from rtcstats_server.analysis.reports import Report, number

#: metric → (chart title, unit), in chart order after the interpreter's metrics.
EXTRA_METRICS: Final[dict[str, tuple[str, str]]] = {
    "rtcp_feedback": ("NACK / PLI / FIR", "per sample"),
    "keyframes": ("Keyframes", "per sample"),
    "qp": ("QP per frame", "qp"),
    "encode_ms": ("Encode time per frame", "ms"),
    "decode_ms": ("Decode time per frame", "ms"),
    "frames_dropped": ("Frames dropped", "per sample"),
    "jitter_buffer_ms": ("Jitter buffer delay", "ms"),
    "available_outgoing_kbps": ("Available outgoing bitrate", "kbps"),
}
#: Counters charted per sample: field → (series suffix, metric).
_COUNTS: Final = (
    ("nackCount", "NACK", "rtcp_feedback"),
    ("pliCount", "PLI", "rtcp_feedback"),
    ("firCount", "FIR", "rtcp_feedback"),
    ("keyFramesEncoded", "", "keyframes"),
    ("keyFramesDecoded", "", "keyframes"),
)
#: Per-frame means: (sum field, count field, scale, metric).
_MEANS: Final = (
    ("qpSum", "framesEncoded", 1.0, "qp"),
    ("qpSum", "framesDecoded", 1.0, "qp"),
    ("totalEncodeTime", "framesEncoded", 1000.0, "encode_ms"),
    ("totalDecodeTime", "framesDecoded", 1000.0, "decode_ms"),
    ("jitterBufferDelay", "jitterBufferEmittedCount", 1000.0, "jitter_buffer_ms"),
)
#: Text properties shown as bands: field → band name.
BAND_FIELDS: Final = (
    ("qualityLimitationReason", "quality limitation"),
    ("encoderImplementation", "encoder"),
    ("decoderImplementation", "decoder"),
)


#: Fields read per (kind, direction): only those the track's report can have.
_FIELDS: Final[dict[tuple[str, str], tuple[str, ...]]] = {
    ("video", "send"): (
        "nackCount",
        "pliCount",
        "firCount",
        "keyFramesEncoded",
        "qpSum",
        "framesEncoded",
        "totalEncodeTime",
    ),
    ("video", "recv"): (
        "nackCount",
        "pliCount",
        "firCount",
        "keyFramesDecoded",
        "qpSum",
        "framesDecoded",
        "totalDecodeTime",
        "jitterBufferDelay",
        "jitterBufferEmittedCount",
    ),
    ("audio", "send"): ("nackCount",),
    ("audio", "recv"): ("nackCount", "jitterBufferDelay", "jitterBufferEmittedCount"),
}


def read_fields(report: Report, kind: str, direction: str) -> dict[str, float | None]:
    """The numbers ``track_extras`` compares, read once per report."""
    return {name: number(report.get(name)) for name in _FIELDS.get((kind, direction), ())}


def track_extras(
    now: dict[str, float | None], before: dict[str, float | None] | None
) -> Iterator[tuple[str, str, float]]:
    """(series suffix, metric, value) of one track's fields (``read_fields``) against
    those of its previous report; a counter that went back gives nothing."""
    if before is None:
        return
    deltas: dict[str, float] = {}
    for name, value in now.items():
        old = before.get(name)
        if value is not None and old is not None and value >= old:
            deltas[name] = value - old
    if not deltas:
        return
    for name, suffix, metric in _COUNTS:
        if name in deltas:
            yield suffix, metric, deltas[name]
    for total, count, scale, metric in _MEANS:
        frames = deltas.get(count)
        if frames and total in deltas:
            yield "", metric, deltas[total] / frames * scale


def bands(report: Report) -> Iterator[tuple[str, str]]:
    """(band name, text) of a report's band properties present in it."""
    for name, band in BAND_FIELDS:
        value = report.get(name)
        if isinstance(value, str) and value:
            yield band, value
