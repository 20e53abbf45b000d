"""The one sniff and decompression of dump bytes, and the layout's close lines."""

from __future__ import annotations

import gzip

import orjson
import pytest
import zstandard

from rtcstats_server.dumps.codecs import (
    CHUNK,
    Decompressor,
    compress_frame,
    decompressed,
    dump_lines,
    iter_frames,
    sniff,
    whole_frames_length,
)
from rtcstats_server.dumps.events import ReadLimits
from rtcstats_server.dumps.layout import close_line, is_session_close
from rtcstats_server.exceptions import DumpFormatError, DumpTooLarge

#: 64 MiB of newlines: a few KB compressed.
BOMB = b"\n" * (64 << 20)


def cut(data: bytes, size: int = 1000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("pack", "name"),
    [(lambda d: compress_frame(d, 3), "zstd"), (gzip.compress, "gzip"), (lambda d: d, "none")],
)
def test_sniffed_and_decompressed_in_bounded_pieces(pack: object, name: str) -> None:
    assert callable(pack)
    packed = b"".join([pack(BOMB), pack(b"tail\n")])  # frames (members) concatenate
    compression, chunks = sniff(cut(packed, 4096))
    assert compression == name
    sizes = [len(piece) for piece in decompressed(chunks, compression)]
    assert max(sizes) <= max(CHUNK, 4096) and sum(sizes) == len(BOMB) + 5


@pytest.mark.parametrize("name", ["zstd", "gzip"])
def test_a_torn_tail_is_refused_after_what_came_before(name: str) -> None:
    text = b"".join(b"line %d\n" % i for i in range(50_000))  # more than one zstd block
    whole = compress_frame(text, 3) if name == "zstd" else gzip.compress(text)
    decompressor = Decompressor(name)  # type: ignore[arg-type]
    decompressor.feed(whole)
    decompressor.finish()
    torn = Decompressor(name)  # type: ignore[arg-type]
    assert torn.feed(whole[:-8]).startswith(b"line 0\n")
    with pytest.raises(DumpFormatError, match="truncated"):
        torn.finish()


def test_lines_and_bytes_are_capped() -> None:
    body = zstandard.compress(b"x" * 5000 + b"\n")
    with pytest.raises(DumpTooLarge) as long_line:
        list(dump_lines([body], ReadLimits(max_line_bytes=4096)))
    assert long_line.value.cap == "line_too_long"
    with pytest.raises(DumpTooLarge) as expanded:
        list(dump_lines([compress_frame(BOMB, 3)], ReadLimits(max_expanded_bytes=1 << 20)))
    assert expanded.value.cap == "expanded_too_large"


def test_frames_of_a_file_cut_inside_its_last() -> None:
    frames = [compress_frame(f"frame {i}\n".encode(), 3) for i in range(3)]
    data = b"".join(frames)
    torn = data[:-3]
    assert [content for content, _ in iter_frames([torn])] == [b"frame 0\n", b"frame 1\n"]
    assert whole_frames_length(torn) == len(frames[0]) + len(frames[1])


def test_close_lines_follow_each_time_convention() -> None:
    def entry(text: str) -> list[object]:
        parsed = orjson.loads(text)
        assert is_session_close(parsed)
        return list(parsed)

    absolute = entry(close_line(1000, 1_700_000_000_123.4, relative=False, last_ms=None))
    assert absolute == ["close", None, 1000, 1_700_000_000_123]
    relative = entry(close_line(1001, 1_700_000_004_000, relative=True, last_ms=1_700_000_000_000))
    assert relative == ["close", None, 1001, 4000]
    assert entry(close_line(1006, None, relative=False, last_ms=None))[3] == 0
    assert entry(close_line(1006, 5.0, relative=True, last_ms=None))[3] == 0  # no event yet
    assert not is_session_close(["close", "PC_0", None, 1])  # a peer connection's
