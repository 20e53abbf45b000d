"""Events of the other dialects in the forms rtcstats-js gives them.

The rtcstats tools read some values by position, as rtcstats-js writes them: a track
is ``[kind, id, label, ...stream ids]`` (dump-importer's ``parseTrackWithStreams``
takes ``value[0]`` as the kind), a getUserMedia result is a list of such tracks, the
capture calls are named ``navigator.mediaDevices.*`` and the page-level trace starts
with a ``create`` event whose fields rtcstats-features spreads into its client row
(and whose absence makes it throw). The jitsi and 2015 clients, the 2016 import
format and webrtc-internals exports say the same things in other shapes (a track as
``"audio:<id> stream:<id>"``: those tools would read kind ``a``, id ``u``), so the
fileFormat 3 encoder (encode.py) hands each event through ``JsForms`` first.

What is reshaped, and nothing else:

- the capture calls ``getUserMedia``/``getDisplayMedia``/``enumerateDevices`` under an
  older spelling (``getUserMedia``, ``navigator.webkitGetUserMedia``, ...) take the
  ``navigator.mediaDevices.`` name, with their ``OnSuccess``/``OnFailure``;
- a capture success ``{id: stream, tracks: [{id, kind, label, ...}]}`` (jitsi, 2015)
  becomes ``[[kind, id, label, stream], ...]``; a webrtc-internals request entry
  becomes what the peer's ``internalsToRtcstats`` makes of it (its tracks, its
  constraints with ``""`` read as ``true``, its error);
- ``addTrack`` and ``ontrack`` strings ``"<kind>:<id> stream:<id>"`` (or ``-``: no
  stream) become ``[kind, id, label, ...streams]``, the label the one the track had
  in a capture result of the same dump (``""`` when none named it);
- a page-level ``create`` event with an empty object is added before the first
  page-level event when that is not a ``create`` (``JsForms.needs_create``).

The rest (``addStream``'s ``"<stream> audio:<id>,video:<id>"``, jitsi's own events) is
kept as it is: rtcstats-js has no form for it. What a reshaped value drops (a
track's ``enabled``/``muted``/``readyState``) none of those tools reads.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

#: The spelling rtcstats-js gives the capture APIs.
MEDIA_DEVICES: Final = "navigator.mediaDevices."
#: The page-level event rtcstats-js starts a session with.
CREATE: Final = "create"
_APIS: Final = ("getUserMedia", "getDisplayMedia", "enumerateDevices")
_OLD_PREFIXES: Final = ("", "navigator.", "navigator.webkit", "navigator.moz")
_PHASES: Final = ("", "OnSuccess", "OnFailure")
_TRACK_METHODS: Final = frozenset({"addTrack", "ontrack"})
#: Labels remembered per dump (a page obtains a few tracks; a runaway one is capped).
MAX_LABELS: Final = 4096


def _renames() -> dict[str, str]:
    names: dict[str, str] = {}
    for api in _APIS:
        for prefix in _OLD_PREFIXES:
            old = prefix + (api[0].upper() + api[1:] if prefix.endswith(("webkit", "moz")) else api)
            for phase in _PHASES:
                names[old + phase] = MEDIA_DEVICES + api + phase
    return names


#: Older spellings of the capture calls → rtcstats-js's.
RENAMES: Final = _renames()


def track_array(value: object, labels: dict[str, str]) -> list[Any] | None:
    """``"<kind>:<id> stream:<id>"`` as ``[kind, id, label, ...streams]``; None when
    ``value`` is not such a string."""
    if type(value) is not str:
        return None
    head, _, rest = value.partition(" ")
    kind, colon, track_id = head.partition(":")
    if not (colon and kind and track_id):
        return None
    streams = [part[7:] for part in rest.split(" ") if part.startswith("stream:") and part[7:]]
    return [kind, track_id, labels.get(track_id, ""), *streams]


def _json(text: object) -> Any:
    if type(text) is not str:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


class JsForms:
    """One dump's events, reshaped (see the module docstring). Remembers the labels
    of the tracks its capture results named."""

    __slots__ = ("labels", "page_seen")

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.page_seen = False

    def needs_create(self, method: str, pc_id: str | None) -> bool:
        """Whether a page-level ``create`` is to be written before this event."""
        if pc_id is not None or self.page_seen:
            return False
        self.page_seen = True
        return method != CREATE

    def event(self, method: str, pc_id: str | None, value: Any) -> tuple[str, Any]:
        """The method and value rtcstats-js would have written."""
        if pc_id is None:
            method = RENAMES.get(method, method)
            if method.startswith(MEDIA_DEVICES):
                return method, self._capture(method, value)
            return method, value
        if method in _TRACK_METHODS:
            track = track_array(value, self.labels)
            if track is not None:
                return method, track
        return method, value

    def _capture(self, method: str, value: Any) -> Any:
        if type(value) is not dict:
            return value
        if "request_type" in value:
            return self._internals(method, value)
        if not method.endswith("OnSuccess") or type(value.get("tracks")) is not list:
            return value
        stream = value.get("id")
        tracks: list[Any] = []
        for entry in value["tracks"]:
            if type(entry) is not dict:
                continue
            kind, track_id, label = entry.get("kind"), entry.get("id"), entry.get("label")
            label = label if type(label) is str else ""
            if type(track_id) is str:
                self._remember(track_id, label)
            tracks.append([kind, track_id, label, *([stream] if stream is not None else [])])
        return tracks

    def _remember(self, track_id: str, label: str) -> None:
        if len(self.labels) < MAX_LABELS or track_id in self.labels:
            self.labels[track_id] = label

    def _internals(self, method: str, entry: dict[str, Any]) -> Any:
        """A webrtc-internals getUserMedia entry as the peer's export reader reads it."""
        if method.endswith("OnFailure"):
            return entry.get("error")
        if method.endswith("OnSuccess"):
            tracks: list[Any] = []
            for kind in ("audio", "video"):
                info = _json(entry.get(f"{kind}_track_info"))
                if type(info) is dict:
                    label = info.get("label")
                    tracks.append([kind, info.get("id"), label, entry.get("stream_id")])
                    if type(info.get("id")) is str and type(label) is str:
                        self._remember(info["id"], label)
            return tracks
        asked: dict[str, Any] = {}
        for kind in ("audio", "video"):
            if kind in entry:
                asked[kind] = True if entry[kind] == "" else entry[kind]
        return asked
