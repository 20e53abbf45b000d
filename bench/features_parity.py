#!/usr/bin/env python3
"""Feature parity with the peer: its extractor's values against ours, feature by feature.

The oracle is ``packages/rtcstats-features`` of github rtcstats/rtcstats, run by
``bench/peer_features.mjs`` from a checkout given with ``--peer`` (default
/work/peer). The peer reads rtcstats dumps of fileFormat 3 and webrtc-internals
exports only, so each input is first given the form it reads:

* an rtcstats-js dump (``RTCStatsDump`` header, ``rtcstats#…``) or a
  webrtc-internals export: as is;
* a captured rtcstats-js websocket stream (``*.ws.jsonl``): wrapped in the header the
  peer's server writes (metadata from the ``*.meta.json`` beside it) and its close line;
* anything else our reader reads (jitsi 3.1 dumps and envelopes, 2.0 streams, the 2016
  import format): converted to fileFormat 3 by ``rtcstats_server.dumps.encode``, the
  conversion the forwarder uses.

Then, per feature (in our names, from ``rtcstats_server.analysis.feature_list``):

* without our extractor (it is not written yet, or ``--ours none``): the peer's value;
* with it (``--ours FILE.json``, or ``auto``: ``rtcstats-server features`` of the very file
  the peer read): ``equal``, ``differs`` with both values, or ``missing`` on one side.

``--record`` writes the peer's values for every fixture to tests/data/peer-features/
(one JSON file per fixture, and a README naming the peer commit), which the tests use
without node or the peer.

    python bench/features_parity.py                       # every fixture
    python bench/features_parity.py jitsi-safari-standard-stats some/other.dump
    python bench/features_parity.py --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtcstats_server.analysis.feature_list import (  # noqa: E402
    Level,
    peer_names,
    snake_case,
)
from rtcstats_server.dumps.encode import to_rtcstats  # noqa: E402
from rtcstats_server.dumps.layout import MAGIC, metadata_line  # noqa: E402
from rtcstats_server.dumps.reader import open_dump  # noqa: E402
from tests.services.shared import FIXTURES as _FIXTURES  # noqa: E402  (a worktree too)

FIXTURES = _FIXTURES
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_features.mjs"
RECORD_DIR = ROOT / "tests" / "data" / "peer-features"
DEFAULT_PEER = Path("/work/peer")
DEFAULT_MIRROR = Path("/work/.mirror/rtcstats+rtcstats/repo")
#: The peer's code that decides its values: the extractor and the dump reader.
PEER_CODE = ("packages/rtcstats-features", "packages/rtcstats-shared")
#: Relative tolerance for floats: the same arithmetic in another order.
REL_TOL = 1e-9


# -- inputs -----------------------------------------------------------------------------


def fixture_paths() -> list[Path]:
    """Every dump-like fixture: the real ones and the captured client streams."""
    real = sorted(p for p in (FIXTURES / "real").iterdir() if p.name != "SOURCES.md")
    captured = sorted((FIXTURES / "captured").glob("*.ws.jsonl"))
    return real + captured


def fixture_name(path: Path) -> str:
    """``jitsi-safari-standard-stats.jsonl`` → ``jitsi-safari-standard-stats``."""
    name = path.name
    for suffix in (".ws.jsonl", ".jsonl", ".json.gz", ".json", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def resolve(argument: str) -> Path:
    path = Path(argument)
    if path.exists():
        return path
    for candidate in fixture_paths():
        if fixture_name(candidate) == argument:
            return candidate
    raise SystemExit(f"{argument}: neither a file nor a fixture name")


def _wrapped_capture(source: Path, target: Path) -> None:
    """A captured rtcstats-js stream as the peer's server would have stored it."""
    meta_path = source.with_name(source.name.removesuffix(".ws.jsonl") + ".meta.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    headers = meta.get("headers", {})
    lines = [line for line in source.read_text().splitlines() if line.strip()]
    first = json.loads(lines[0]) if lines else [None]
    header = {
        "url": meta.get("path"),
        "origin": headers.get("origin"),
        "userAgent": headers.get("user-agent"),
        "startTime": first[-1] if isinstance(first[-1], int | float) else None,
        "clientProtocol": meta.get("subprotocol"),
        "fileFormat": 3,
    }
    close = json.dumps(["close", None, meta.get("close_code", 1000), 0])
    target.write_text("\n".join([MAGIC, metadata_line(header), *lines, close]) + "\n")


def peer_input(source: Path, workdir: Path) -> tuple[Path, str]:
    """The file the peer reads for ``source``, and how it was made."""
    reader = open_dump(source)
    info = reader.info
    reader.close()
    if info.layout == "webrtc-internals":
        return source, "as is (webrtc-internals export)"
    if info.scheme == "rtcstats-js" and info.layout == "rtcstats-dump":
        return source, "as is (rtcstats dump)"
    target = workdir / f"{fixture_name(source)}.rtcstats"
    if info.scheme == "rtcstats-js" and info.layout == "client-stream":
        _wrapped_capture(source, target)
        return target, "captured rtcstats-js stream, wrapped in the peer's dump header"
    converting = open_dump(source)
    try:
        with target.open("wb") as out:
            conversion = to_rtcstats(converting, out)
    finally:
        converting.close()
    origin = conversion.source_protocol or info.layout
    return target, f"converted to fileFormat 3 by dumps/encode.py (from {origin})"


# -- the peer ---------------------------------------------------------------------------


def _non_finite(value: dict[str, Any]) -> Any:
    if set(value) == {"nonFinite"}:
        return float(value["nonFinite"])
    return value


def run_peer(peer: Path, dump: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(PEER_SCRIPT), str(peer), str(dump)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"peer failed on {dump.name}: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout, object_hook=_non_finite)
    return result


def peer_commit(peer: Path, mirror: Path) -> tuple[str, str] | None:
    """(commit, date) of the mirror's HEAD when the checkout's extractor and reader are
    that commit's, byte for byte; None when they are not (or there is no mirror)."""
    git = ["git", f"--git-dir={mirror}"]
    try:
        listing = subprocess.run(
            [*git, "ls-tree", "-r", "HEAD", "--", *PEER_CODE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        paths = [line.split("\t", 1)[1] for line in listing]
        blobs = [line.split()[2] for line in listing]
        hashed = subprocess.run(
            [*git, "hash-object", "--stdin-paths"],
            input="\n".join(str(peer / p) for p in paths),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        head = subprocess.run(
            [*git, "log", "-1", "--format=%H %cs"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    if not paths or hashed != blobs:
        return None
    return head[0], head[1]


# -- the peer's output in our names ------------------------------------------------------


def _renamed(level: Level, features: dict[str, Any], unknown: set[str]) -> dict[str, Any]:
    names = peer_names(level)
    out: dict[str, Any] = {}
    for key, value in features.items():
        feature = names.get(key)
        if feature is None:
            unknown.add(f"{level}.{key}")
            out[snake_case(key)] = value
        else:
            out[feature.name] = value
    return out


def normalised(peer: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The peer's output in the record's layout and our names; the peer keys that are
    not in our list (a client's ``create`` event spreads whatever it holds)."""
    unknown: set[str] = set()
    client = peer.get("client")
    connections = []
    for connection in peer.get("connections", []):
        raw = {k: v for k, v in connection.items() if k not in ("id", "tracks")}
        tracks = []
        for track in connection.get("tracks", []):
            values = {k: v for k, v in track.items() if k != "statsId"}
            tracks.append({"stats_id": track.get("statsId"), **_renamed("track", values, unknown)})
        connections.append(
            {"id": connection["id"], **_renamed("connection", raw, unknown), "tracks": tracks}
        )
    features = {
        "client": None if client is None else _renamed("client", client, unknown),
        "connections": connections,
    }
    return features, sorted(unknown)


# -- comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    entity: str
    feature: str
    verdict: str  # equal | differs | missing in ours | missing in the peer | peer
    peer: Any = None
    ours: Any = None


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    return bool(a == b)


def _entities(features: dict[str, Any]) -> Iterator[tuple[str, Level, dict[str, Any]]]:
    yield "client", "client", features.get("client") or {}
    for connection in features.get("connections", []):
        pc = connection["id"]
        yield f"connection {pc}", "connection", connection
        for track in connection.get("tracks", []):
            yield f"track {pc}/{track.get('stats_id')}", "track", track


def _peer_feature_names(level: Level) -> set[str]:
    return {f.name for f in peer_names(level).values()}


def compare(peer: dict[str, Any], ours: dict[str, Any] | None) -> list[Row]:
    """One row per peer feature of every entity either side has."""
    rows: list[Row] = []
    mine = {entity: values for entity, _, values in _entities(ours)} if ours else {}
    for entity, level, values in _entities(peer):
        wanted = _peer_feature_names(level)
        theirs = {k: v for k, v in values.items() if k in wanted}
        if ours is None:
            rows += [Row(entity, k, "peer", peer=v) for k, v in sorted(theirs.items())]
            continue
        other = mine.get(entity)
        if other is None:
            rows.append(Row(entity, "*", "missing in ours"))
            continue
        for name in sorted(wanted & (theirs.keys() | other.keys())):
            if name not in other:
                rows.append(Row(entity, name, "missing in ours", peer=theirs[name]))
            elif name not in theirs:
                rows.append(Row(entity, name, "missing in the peer", ours=other[name]))
            elif same(theirs[name], other[name]):
                rows.append(Row(entity, name, "equal", theirs[name], other[name]))
            else:
                rows.append(Row(entity, name, "differs", theirs[name], other[name]))
    peer_entities = {entity for entity, _, _ in _entities(peer)}
    for entity in mine.keys() - peer_entities:
        rows.append(Row(entity, "*", "missing in the peer"))
    return rows


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def print_rows(rows: Iterable[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.verdict] = counts.get(row.verdict, 0) + 1
        if row.verdict == "peer":
            line = _shown(row.peer)
        elif row.verdict == "differs":
            line = f"peer={_shown(row.peer)} ours={_shown(row.ours)}"
        elif row.verdict == "equal":
            line = _shown(row.peer)
        else:
            line = _shown(row.peer if row.ours is None else row.ours)
        print(f"  {row.entity:<28} {row.feature:<46} {row.verdict:<20} {line}")
    return counts


# -- ours -------------------------------------------------------------------------------


def _features_cli_exists() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "features", "--help"],
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    return done.returncode == 0


def our_features(source: Path, how: str) -> dict[str, Any] | None:
    """Our extractor's output for ``source`` in the record's layout, or None."""
    if how == "none":
        return None
    if how != "auto":
        data: dict[str, Any] = json.loads(Path(how).read_text())
        return data.get("features", data)
    if not _features_cli_exists():
        return None
    done = subprocess.run(
        [sys.executable, "-m", "rtcstats_server", "features", str(source)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result.get("features", result)


# -- recording --------------------------------------------------------------------------


def recorded(name: str, how: str, peer: dict[str, Any]) -> dict[str, Any]:
    features, unknown = normalised(peer)
    notes = list(peer.get("notes", []))
    untied = sum(1 for c in features["connections"] for t in c["tracks"] if t["stats_id"] is None)
    if untied:
        # The peer ties a track to its stats by the id of an addTrack / ontrack track
        # ([kind, id, label, stream]): a report whose trackIdentifier (or media source's)
        # is another id leaves it untied.
        notes.append(f"{untied} track(s) not tied to any stats report (no stats id)")
    return {
        "fixture": name,
        "peer_input": how,
        "peer_errors": peer.get("errors", []),
        "peer_notes": notes,
        "peer_keys_not_in_our_list": unknown,
        "features": features,
    }


_README_INTRO = """\
What `packages/rtcstats-features` of github rtcstats/rtcstats computes for each fixture of
`../shared/fixtures/` (the real dumps and the captured client streams), so that tests compare
our extractor with it without node or the peer at test time. Generated data: do not edit,
regenerate with `python bench/features_parity.py --record` (`bench/peer_features.mjs` runs
the peer; the bench's docstring says how each fixture is given to it).

Each `<fixture>.json` holds `features` in the record's layout (`{client, connections: [{id,
..., tracks: [{stats_id, ...}]}]}`) under our names (the peer's in snake_case, see
rtcstats_server/analysis/feature_list.py). A feature the peer left undefined is absent; a
non-finite number is written `NaN` or `Infinity` (Python's json reads them). `peer_input`
says what the peer read, `peer_errors` what its extractors threw, `peer_notes` how we got
around it or what it could not do, `peer_keys_not_in_our_list` what else it emitted (the
client extractor spreads every field of the page's `create` event into its output).

Converted dumps (jitsi 3.1 and its backend pushers, the 2015 client, the 2016 import format)
are what `GET /v1/sessions/{id}/dump?format=rtcstats` and `rtcstats-server convert --to
rtcstats` give: their values in rtcstats-js's shapes (rtcstats_server/dumps/jsforms.py:
tracks as `[kind, id, label, stream]`, getUserMedia results as lists of them, a page-level
`create`), so the peer reads every level of them. Where it still ties a track to no stats
report, the client's own ids do not meet (jitsi's plan-b `mixedlabelaudio0` tracks, Safari
2020 reports without `trackIdentifier`, outbound tracks sent with `addStream`): the
`peer_notes` count them.
"""


def readme(commit: tuple[str, str], node: str, entries: list[dict[str, Any]]) -> str:
    lines = [
        "# The peer's features for our fixtures (generated data)",
        "",
        _README_INTRO,
        f"* peer commit {commit[0]} ({commit[1]}); its extractor and dump reader "
        "(packages/rtcstats-features, packages/rtcstats-shared) checked byte for byte",
        f"* node {node}; generated {dt.date.today().isoformat()}",
        "",
        "| fixture | what the peer read | connections | tracks | peer errors and notes |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        connections = entry["features"]["connections"]
        tracks = sum(len(c["tracks"]) for c in connections)
        errors = "; ".join(entry["peer_errors"] + entry["peer_notes"]) or "-"
        lines.append(
            f"| {entry['fixture']} | {entry['peer_input']} | {len(connections)} | {tracks} "
            f"| {errors} |"
        )
    return "\n".join(lines) + "\n"


def node_version() -> str:
    return subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


# -- main -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("inputs", nargs="*", help="dump files or fixture names; default: all")
    parser.add_argument("--peer", type=Path, default=DEFAULT_PEER, help="rtcstats checkout")
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="its bare git")
    parser.add_argument("--ours", default="auto", help="auto | none | a JSON file of ours")
    parser.add_argument("--record", action="store_true", help=f"write {RECORD_DIR}")
    parser.add_argument("--keep", type=Path, help="keep the peer's input files here")
    args = parser.parse_args()

    sources = [resolve(a) for a in args.inputs] if args.inputs else fixture_paths()
    commit = peer_commit(args.peer, args.mirror)
    if args.record and commit is None:
        raise SystemExit(f"{args.peer} is not the mirror's HEAD: record from a known commit")
    print(f"peer: {args.peer} at {commit[0] if commit else 'an unknown commit'}")

    entries = []
    totals: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        for source in sources:
            name = fixture_name(source)
            target, how = peer_input(source, workdir)
            peer = run_peer(args.peer, target)
            entry = recorded(name, how, peer)
            entries.append(entry)
            elapsed = peer.get("elapsedMs", {})
            print(
                f"\n{name}: {how}; peer read {elapsed.get('read', 0):.0f} ms, "
                f"extracted {elapsed.get('extract', 0):.0f} ms"
            )
            for error in entry["peer_errors"]:
                print(f"  peer error: {error}")
            for note in entry["peer_notes"]:
                print(f"  note: {note}")
            ours = None if args.record else our_features(target, args.ours)
            counts = print_rows(compare(entry["features"], ours))
            for verdict, count in counts.items():
                totals[verdict] = totals.get(verdict, 0) + count
    print("\n" + ", ".join(f"{count} {verdict}" for verdict, count in sorted(totals.items())))

    if args.record and commit is not None:
        RECORD_DIR.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            path = RECORD_DIR / f"{entry['fixture']}.json"
            path.write_text(json.dumps(entry, indent=1, ensure_ascii=False) + "\n")
        (RECORD_DIR / "README.md").write_text(readme(commit, node_version(), entries))
        print(f"recorded {len(entries)} fixtures in {RECORD_DIR}")


if __name__ == "__main__":
    main()
