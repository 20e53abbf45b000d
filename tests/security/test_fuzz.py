"""Property fuzzing of everything that parses what strangers send: every dialect
decoder, the IP masker and the dump reader. Whatever the input, the only exceptions
allowed out are ours (``RtcstatsError``); anything else is a crash to fix.

10,000 generated inputs per run (4 x 1,250 + 2,000 + 3,000). Derandomized, so CI runs the same cases every
time; run with ``--hypothesis-seed=N`` to explore others.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtcstats_server.dialects import open_decoder
from rtcstats_server.dialects.base import DumpLine, Handshake
from rtcstats_server.dumps.codes import METHODS
from rtcstats_server.dumps.privacy import mask_line
from rtcstats_server.dumps.reader import read_events
from rtcstats_server.exceptions import RtcstatsError
from tests.services.shared import FIXTURES

#: One per decoder class and mode (#4.0 and 3.1_LEGACY share #5.0's and 3.1_STANDARD's).
SUBPROTOCOLS = ["rtcstats#5.0", "2.0", "3.1_STANDARD", "2_JVB"]


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _real_lines() -> list[str]:
    lines: list[str] = []
    for path in sorted((FIXTURES / "captured").glob("*.ws.jsonl")) + sorted(
        (FIXTURES / "real").glob("jitsi-*.jsonl")
    ):
        lines.extend(line for line in path.read_text().splitlines()[:40] if 0 < len(line) < 20000)
    return lines


REAL = _real_lines()

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "0", "PC_0", "1.2.3.4", "fe80::1", "candidate:1 1 udp 1 10.0.0.1 9"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
methods = st.sampled_from(
    [*METHODS.values(), *[k for k in METHODS if isinstance(k, int)], "g", "identity", "getstats"]
)
arrays = st.builds(
    lambda m, pc, v, rest: [m, pc, v, *rest],
    methods | values,
    st.none() | st.text(max_size=6),
    values,
    st.lists(values | st.integers(), max_size=3),
)
envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["identity", "stats-entry", "keepalive", "close", "sn", "x"])
        | values,
    },
    optional={
        "statsSessionId": st.sampled_from(["abc", "../x", ""]) | values,
        "data": arrays.map(json.dumps) | arrays | values,
        "body": values,
    },
)


def _mutate(line: str, data: st.DataObject) -> str:
    cut = data.draw(st.integers(0, len(line)))
    noise = data.draw(st.text(max_size=8))
    return line[:cut] + noise + line[cut + data.draw(st.integers(0, 16)) :]


@st.composite
def messages(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.text(max_size=200))
    if kind == 1:
        return json.dumps(draw(arrays))
    if kind == 2:
        return json.dumps(draw(envelopes))
    line = draw(st.sampled_from(REAL))
    if kind == 3:
        return line
    return _mutate(line, draw(st.data()))


def handshake(subprotocol: str) -> Handshake:
    return Handshake(
        path="/room?statsSessionId=fuzz-1",
        query={"statsSessionId": "fuzz-1", "isReconnect": "false"},
        subprotocol=subprotocol,
        user_agent="fuzz",
        origin="",
        remote="127.0.0.1",
    )


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@fuzz(1250)
@given(feed=st.lists(messages(), min_size=1, max_size=6))
def test_decoders_raise_only_our_errors(subprotocol: str, feed: list[str]) -> None:
    decoder = open_decoder(handshake(subprotocol))
    decoder.opening(0)
    for text in feed:
        try:
            results = decoder.feed(text)
        except RtcstatsError:
            continue
        for result in results:
            if isinstance(result, DumpLine):
                mask_line(result.text)  # the masker sees every stored line
    decoder.ack(3)


@fuzz(2000)
@given(line=messages())
def test_masker_never_raises_and_is_idempotent(line: str) -> None:
    once = mask_line(line)
    if once is not None:
        assert mask_line(once) in (None, once)


HEADERS = [
    ["RTCStatsDump", '{"fileFormat":3,"clientProtocol":"rtcstats#5.0","startTime":1}'],
    ["RTCStatsDump", '{"clientProtocol":"3.1_STANDARD"}'],
    ["RTCStatsDump", '{"clientProtocol":"2.0"}'],
    ['["connectionInfo",null,{"clientProtocol":"3.1_STANDARD"},1]'],
    [],
]


@st.composite
def dumps(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(HEADERS))
    body = draw(st.lists(messages(), max_size=8))
    raw = "\n".join([*header, *body]).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    packing = draw(st.sampled_from(["none", "zstd", "gzip", "junk"]))
    if packing == "zstd":
        raw = zstandard.ZstdCompressor().compress(raw)
        raw = raw[: draw(st.integers(max(0, len(raw) - 8), len(raw)))]
    elif packing == "gzip":
        raw = gzip.compress(raw)
    elif packing == "junk":
        raw = draw(st.binary(max_size=300))
    return raw


@fuzz(3000)
@given(dump=dumps(), chunk=st.integers(1, 4096), strict=st.booleans())
def test_dump_reader_raises_only_our_errors(dump: bytes, chunk: int, strict: bool) -> None:
    chunks = [dump[i : i + chunk] for i in range(0, len(dump), chunk)]
    events: list[Any] = []
    try:
        for event in read_events(chunks, strict=strict):
            events.append(event)
            event.stats if event.is_stats else None  # noqa: B018 - expanding must not raise
    except RtcstatsError:
        pass
