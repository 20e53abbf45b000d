"""``stats_entry_seq`` reads a 3.1 stats-entry's seq with simdjson: it must accept and
refuse exactly what orjson (which reads the dump back) accepts and refuses, and give
the seq ``entry_seq`` gives on orjson's parse."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import orjson
import pytest

from rtcstats_server.dumps.envelopes import entry_seq, stats_entry_seq
from rtcstats_server.exceptions import ProtocolViolation


def reference(text: str) -> int | str | None:
    try:
        return entry_seq(orjson.loads(text))
    except orjson.JSONDecodeError:
        return "invalid"


def checked(text: str) -> int | str | None:
    try:
        return stats_entry_seq(text)
    except ProtocolViolation as violation:
        assert violation.reason == "invalid_json"
        return "invalid"


def real_entries(fixtures_dir: Path) -> list[str]:
    """Every line of the jitsi dumps and of the 3.1 capture's stats-entries."""
    texts: list[str] = []
    for path in sorted((fixtures_dir / "real").glob("jitsi-*.jsonl")):
        texts += [line for line in path.read_text().splitlines() if line.strip()]
    capture = fixtures_dir / "captured" / "jitsi-rtcstats-9.7.1-loopback-call.ws.jsonl"
    for line in capture.read_text().splitlines():
        envelope = orjson.loads(line)
        if envelope.get("type") == "stats-entry":
            texts.append(envelope["data"])
    return texts


def test_every_real_line_gives_orjsons_seq(fixtures_dir: Path) -> None:
    texts = real_entries(fixtures_dir)
    assert len(texts) > 1000
    seqs = [checked(text) for text in texts]
    assert seqs == [reference(text) for text in texts]
    assert sum(type(seq) is int for seq in seqs) > 100  # the capture's lines carry seqs


EDGES = [
    '["getstats","PC_0",{},1,7]',
    '["getstats","PC_0",{},1,7.0]',  # a float is no seq
    '["getstats","PC_0",{},1,true]',  # nor a bool
    '["getstats","PC_0",{},1,"7"]',
    '["getstats","PC_0",{},1]',  # too short
    '{"seq":7}',
    '"text"',
    "7",
    "null",
    "",
    " ",
    '["a",null,{},1,18446744073709551615]',  # uint64: both read an int
    '["a",null,{},1,18446744073709551616]',  # beyond: orjson reads a float, simdjson refuses
    '["a",null,{},1,-9223372036854775809]',
    '["a",null,{"big":123456789012345678901234567890},1,5]',  # a big value elsewhere
    '["a",null,{},1,5] trailing',
    '["a",null,{},1,5],',
    '["a",null,{},1,5]\n',
    '\ufeff["a",null,{},1,5]',  # a byte-order mark
    '["a",null,{},1,5,]',
    '["a",null,{"k":1,},1,5]',
    '["a",null,{},1,05]',
    '["a",null,{},1,5e0]',
    '["a",null,{},1,NaN]',
    '["a",null,{},1,Infinity]',
    '["a",null,{"k":"tab\there"},1,5]',  # a raw control character in a string
    '["a",null,{"k":"\\u0000"},1,5]',
    '["a",null,{"k":"\\ud83d\\ude00"},1,5]',
    '["a",null,{"k":"\\ud83d"},1,5]',  # a lone surrogate escape
    '["a",null,{"k":"\\x"},1,5]',
    '["a",null,{},1,1e400]',
    '["a",null,{"k":' + "1" * 400 + "},1,5]",
]


@pytest.mark.parametrize("text", EDGES)
def test_edges_are_decided_as_orjson_decides(text: str) -> None:
    assert checked(text) == reference(text)


@pytest.mark.parametrize("depth", [500, 511, 512, 513, 1000, 1023, 1024, 1025, 1100])
def test_nesting_depth_is_decided_as_orjson_decides(depth: int) -> None:
    for text in (
        '["a",null,' + "[" * depth + "]" * depth + ",1,5]",
        '["a",null,' + '{"k":' * depth + "1" + "}" * depth + ",1,5]",
    ):
        assert checked(text) == reference(text)


def test_mutated_lines_are_decided_as_orjson_decides(fixtures_dir: Path) -> None:
    texts = real_entries(fixtures_dir)[:400]
    rng = random.Random(20261202)
    alphabet = '[]{}",:.-+eE0123456789\\ntu \t\x00\x7f\u00e9'
    for _ in range(20_000):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(text) + 1)
            edit = rng.random()
            if edit < 0.4:
                text = text[:where] + rng.choice(alphabet) + text[where:]
            elif edit < 0.8:
                text = text[:where] + text[where + 1 :]
            else:
                text = text[:where]
        assert checked(text) == reference(text), text


def test_threads_each_get_their_own_answers() -> None:
    # simdjson's parser is not shareable: each thread parses with its own.
    failures: list[str] = []

    def work(offset: int) -> None:
        for seq in range(offset, offset + 3000):
            text = f'["getstats","PC_{offset}",{{"n":[{seq},{seq}]}},1,{seq}]'
            if stats_entry_seq(text) != seq:
                failures.append(text)

    threads = [threading.Thread(target=work, args=(n * 10_000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
