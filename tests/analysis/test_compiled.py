"""The compiled build of the analysis pass computes exactly what the pure one does.

setup.py compiles ``rtcstats_server/compiled.py``'s modules with mypyc when
``RTCSTATS_COMPILE=1`` (the Docker image does). mypyc keeps Python's semantics except
where a value contradicts its declared type (it raises where Python goes on, and an
``int`` given where ``float`` is declared becomes a float) and a few of its own bugs,
so the proof is the outputs: the compiled build is made here, in a temporary
directory, and both builds read every real and captured fixture in child processes of
their own (each imports one build). The record fields (summary, findings, features,
with geolocation when MaxMind's test databases are installed), the viewer's model
(its series run on the same interpreter) and the fileFormat 3 conversion (the compiled
reader under the pure encoder) must be equal, value for value and type for type
(``1`` is not ``1.0`` in JSON).

About a minute for the build (gcc on 13 modules). Skipped, saying why, without a C
compiler or mypyc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rtcstats_server.compiled import COMPILED_MODULES
from tests.services.compiled import ROOT, build_compiled, compiler, copy_source
from tests.services.maxmind import ASN_DB, CITY_DB
from tests.services.shared import FIXTURES

try:
    import mypyc  # noqa: F401

    HAVE_MYPYC = True
except ImportError:  # pragma: no cover - mypy is a test dependency
    HAVE_MYPYC = False

#: What a child runs: one build's analysis of every fixture, as JSON on stdout.
ANALYSE = """
import hashlib, importlib, io, json, sys
from pathlib import Path
package, fixtures, city, asn = sys.argv[1:5]
sys.path.insert(0, package)
import rtcstats_server
from rtcstats_server.analysis.dump_analysis import analyse_reader
from rtcstats_server.analysis.geo import open_locator
from rtcstats_server.analysis.viewmodel import build_view_model
from rtcstats_server.compiled import COMPILED_MODULES, analysis_build
from rtcstats_server.config import GeoConfig, QualityConfig
from rtcstats_server.dumps.encode import write_rtcstats
from rtcstats_server.dumps.reader import open_dump

geo = GeoConfig(city_db=city, asn_db=asn) if Path(city).is_file() else GeoConfig()
locator = open_locator(geo)
base = Path(fixtures)
paths = sorted(p for p in (base / "real").iterdir() if p.name != "SOURCES.md")
paths += sorted((base / "captured").glob("*.ws.jsonl"))

def converted(path):
    out = io.BytesIO()
    write_rtcstats(path, out)
    return hashlib.sha256(out.getvalue()).hexdigest()


results = {
    p.name: {
        "fields": analyse_reader(open_dump(p), QualityConfig(), locator),
        "view": build_view_model(iter([p.read_bytes()]), 300),
        "rtcstats": converted(p),
    }
    for p in paths
}
print(json.dumps({
    "package": rtcstats_server.__file__,
    "build": analysis_build(),
    "loaded": {m: importlib.import_module(m).__file__ for m in COMPILED_MODULES},
    "geo": locator is not None,
    "results": results,
}, default=repr))
"""


#: What a child runs for the ingest path: every stream a test replays (the captured
#: clients, the jitsi disk dumps and the JVB pusher wrapped back into envelopes, the
#: rtcstats dump) through one build's frame reader (fed in small pieces, so frames
#: arrive split), dialect decoder, IP masking (the fast path and the parsing reference)
#: and dump writer (the file's bytes), as JSON on stdout. Time is the one input that
#: differs between the runs: a pusher's identity is stamped on arrival.
INGEST = """
import asyncio, hashlib, json, sys, tempfile, urllib.parse
from pathlib import Path
package, root, fixtures = sys.argv[1:4]
sys.path.insert(0, package)
import rtcstats_server
sys.path.append(root)  # the tests' stream builders; the package stays the build's
from rtcstats_server.dialects import open_decoder
from rtcstats_server.dialects.base import DumpLine, EndOfSession, Handshake, Identity, Reply
from rtcstats_server.dumps.privacy import mask_line, mask_parsed, mask_remote
from rtcstats_server.dumps.writer import DumpWriter
from rtcstats_server.exceptions import ProtocolViolation
from rtcstats_server.ingest.frames import FrameReader, close_frame, text_frame
from rtcstats_server.metadata.record import fits_int64
from tests.ingest.test_frames import client_frame
from tests.ingest.test_replay_fixtures import CAPTURED
from tests.services import streams

base = Path(fixtures)
played = [streams.captured(base, name) for name in CAPTURED]
played += [streams.jitsi_disk_dump(base, name) for name in streams.JITSI_DUMPS]
played += [streams.jvb_pusher(base), streams.rtcstats_dump(base)]


def result(each):
    if type(each) is DumpLine:
        text = each.text
        if text.startswith('["identity",null,{') and each.seq is None:
            text = json.dumps(json.loads(text)[:3])  # stamped with the time of arrival
        return ["line", text, each.seq]
    if type(each) is Identity:
        return ["identity", each.fields]
    if type(each) is Reply:
        return ["reply", each.text]
    assert type(each) is EndOfSession, each
    return ["end"]


async def play(stream, directory):
    reader = FrameReader(1 << 24)
    wire = b"".join(client_frame(1, text.encode()) for text in stream.messages)
    texts = []
    for start in range(0, len(wire), 1000):
        reader.feed(wire[start : start + 1000])
        while (message := reader.take()) is not None:
            texts.append(message[1])
    assert texts == stream.messages
    path, _, query = stream.path.partition("?")
    handshake = Handshake(path, dict(urllib.parse.parse_qsl(query)), stream.subprotocol,
                          "agent", "origin", "198.51.100.7")
    decoder = open_decoder(handshake)
    out = {"opening": [result(r) for r in decoder.opening(0)], "fed": [], "masked": [],
           "ack": [result(r) for r in filter(None, [decoder.ack(7)])]}
    writer = DumpWriter(directory / stream.name, 3, False)
    for text in texts:
        try:
            results = decoder.feed(text)
        except ProtocolViolation as violation:
            out["fed"].append(["refused", violation.reason])
            continue
        out["fed"].append([result(r) for r in results])
        for line in results:
            if type(line) is DumpLine and not line.text.startswith('["identity",null,{'):
                masked = mask_line(line.text)
                out["masked"].append([masked, mask_parsed(line.text)])
                writer.append(line.text if masked is None else masked)
        if writer.buffered_bytes > 20000:
            await writer.flush()
    await writer.flush()
    stored = (directory / stream.name).read_bytes()
    out["dump"] = [hashlib.sha256(stored).hexdigest(), writer.raw_bytes, writer.compressed_bytes]
    return out


async def main():
    with tempfile.TemporaryDirectory() as directory:
        return {s.name: await play(s, Path(directory)) for s in played}


print(json.dumps({
    "package": rtcstats_server.__file__,
    "results": asyncio.run(main()),
    "remote": [mask_remote(a) for a in ("203.0.113.9", "2001:db8:1:2::5", "fe80::1%eth0", "x")],
    "frames": [text_frame("é" * n).hex() for n in (0, 125, 126, 70000)]
    + [close_frame(1000, b"bye").hex()],
    "int64": [fits_int64(v) for v in (0, -(2**63), 2**63 - 1, 2**63, -(2**63) - 1)],
}))
"""


def _analysed(package: Path) -> dict[str, Any]:
    return _child(ANALYSE, package, str(FIXTURES), str(CITY_DB), str(ASN_DB))


def _child(script: str, package: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, str(package), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=package,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@pytest.fixture(scope="module")
def compiled_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if compiler() is None:
        pytest.skip("no C compiler (cc/gcc) here: the compiled build cannot be made")
    if not HAVE_MYPYC:
        pytest.skip("mypyc (part of mypy) is not installed: the compiled build cannot be made")
    return build_compiled(tmp_path_factory.mktemp("compiled"))


def test_compiled_analysis_equals_pure(compiled_build: Path) -> None:
    pure = _analysed(ROOT)
    compiled = _analysed(compiled_build)
    # each child ran the build it was given, and says so
    assert pure["package"].startswith(str(ROOT)) and pure["build"] == "pure"
    assert compiled["package"].startswith(str(compiled_build))
    assert compiled["build"] == "compiled"
    for module, path in compiled["loaded"].items():
        assert path.endswith(".so"), f"{module} was imported from {path}"
    for module, path in pure["loaded"].items():
        assert path.endswith(".py"), f"{module} was imported from {path}"
    # every fixture analysed, with substance (a broken pass would give empty fields)
    assert set(pure["results"]) >= {
        "rtcstats-js-2.4.0-loopback-call.ws.jsonl",
        "jitsi-google-standard-stats-sfu.jsonl",
        "jitsi-clienttest.legacy-import.json",
        "rtcstats-gumonly.webrtc-internals.json.gz",
    }
    with_connections = [
        name
        for name, read in pure["results"].items()
        if read["fields"]["features"]["connections"]
        and any(group["series"] for group in read["view"]["groups"])
    ]
    assert len(with_connections) >= 9, with_connections
    assert pure["geo"] == compiled["geo"]
    for name, read in pure["results"].items():
        for part in ("fields", "view", "rtcstats"):
            # compared as JSON text: an int where the pure build has a float differs
            assert json.dumps(compiled["results"][name][part], sort_keys=True) == json.dumps(
                read[part], sort_keys=True
            ), (name, part)


def test_compiled_ingest_equals_pure(compiled_build: Path) -> None:
    """The ingest path's compiled modules (frames, decoders, masking, writer) read,
    decode, mask and store every replayed stream as the pure ones do."""
    pure = _child(INGEST, ROOT, str(ROOT), str(FIXTURES))
    compiled = _child(INGEST, compiled_build, str(ROOT), str(FIXTURES))
    assert pure["package"].startswith(str(ROOT))
    assert compiled["package"].startswith(str(compiled_build))
    # with substance: every stream decoded, addresses found and masked, dumps written
    assert len(pure["results"]) >= 11, sorted(pure["results"])
    masked = [m for read in pure["results"].values() for m in read["masked"] if m[0]]
    assert len(masked) >= 20, len(masked)
    assert all("x.x.x.x" in m[0] or "x:x:x:x:x:x:x:x" in m[0] for m in masked)
    assert any(read["opening"] for read in pure["results"].values())  # a 3.1 sn
    for name, read in pure["results"].items():
        assert read["dump"][1] > 0, name
        for part in ("opening", "fed", "masked", "ack", "dump"):
            assert compiled["results"][name][part] == read[part], (name, part)
    for part in ("remote", "frames", "int64"):
        assert compiled[part] == pure[part], part


def test_the_compiled_build_says_so(compiled_build: Path) -> None:
    """``--version`` names the build an operator runs (the start lines and
    ``rtcstats_build_info`` use the same ``analysis_build()``)."""
    done = subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "--version"],
        cwd=compiled_build,
        env={**os.environ, "PYTHONPATH": str(compiled_build)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(" (analysis: compiled)\n"), done.stdout


def test_compiled_modules_are_the_package_modules() -> None:
    """Each listed module exists (a rename would silently leave it pure)."""
    for module in COMPILED_MODULES:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_the_default_wheel_is_pure(tmp_path: Path) -> None:
    """Without RTCSTATS_COMPILE the wheel (and so an editable install) holds no
    extension module: nothing compiled can shadow the code a developer edits. (Built as
    tests/ops/test_image.py builds it: pip's isolated build environment, which would
    not even have mypy.)"""
    source = copy_source(tmp_path / "source")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(tmp_path / "wheels")],
        cwd=source, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "RTCSTATS_COMPILE"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("rtcstats_collector-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "rtcstats_server/analysis/interpreter.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd", ".c"))]
