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
import hashlib, io, json, sys
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
    "loaded": {m: sys.modules[m].__file__ for m in COMPILED_MODULES},
    "geo": locator is not None,
    "results": results,
}, default=repr))
"""


def _analysed(package: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", ANALYSE, str(package), str(FIXTURES), str(CITY_DB), str(ASN_DB)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=package,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    analysed: dict[str, Any] = json.loads(done.stdout)
    return analysed


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
