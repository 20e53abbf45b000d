"""Client features: the page and device, media capture, the collector websocket.

Read from the events outside any peer connection (``pc_id`` null), the collector's
close line included, with the peer's definitions. The names the clients give the
media capture calls differ (rtcstats-js and the jitsi client: ``navigator.mediaDevices.
getUserMedia``; the 2015 client and the 2016 import format: ``getUserMedia`` and the
prefixed ``navigator.webkitGetUserMedia``...), and so do the shapes of what they return
(rtcstats-js: ``[[kind, id, label, stream], ...]``; jitsi: ``{id, tracks: [{id, kind,
label}]}``): each is read, so that every dialect gets these features.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import orjson

from rtcstats_server.analysis.features.values import error_text, present, text
from rtcstats_server.analysis.jsvalues import truthy
from rtcstats_server.dumps.events import Event

#: getUserMedia tracks remembered (``audio_ended``, ``video_short_duration``).
MAX_MEDIA_TRACKS: Final = 256
#: A track that ended within this long of being obtained had a short duration.
_SHORT_MS: Final = 1000
_GUM: Final = "getUserMedia"
_GDM: Final = "getDisplayMedia"
#: The page-level fields of the first ``create`` event that are features.
CREATE_FIELDS: Final = {
    "userAgentData": "user_agent_data",
    "hardwareConcurrency": "hardware_concurrency",
    "deviceMemory": "device_memory",
    "cpuPerformance": "cpu_performance",
    "screen": "screen",
    "window": "window",
    "reloadCount": "reload_count",
}


def _api_names() -> dict[str, tuple[str, str]]:
    """Method → (API, phase: call, success, failure) for every spelling of the two
    capture APIs and of enumerateDevices."""
    names: dict[str, tuple[str, str]] = {}
    spellings = {
        _GUM: (
            "navigator.mediaDevices.getUserMedia",
            "getUserMedia",
            "navigator.getUserMedia",
            "navigator.webkitGetUserMedia",
            "navigator.mozGetUserMedia",
        ),
        _GDM: ("navigator.mediaDevices.getDisplayMedia", "getDisplayMedia"),
    }
    for api, methods in spellings.items():
        for method in methods:
            names[method] = (api, "call")
            names[method + "OnSuccess"] = (api, "success")
            names[method + "OnFailure"] = (api, "failure")
    for method in ("navigator.mediaDevices.enumerateDevices", "enumerateDevices"):
        names[method] = ("enumerateDevices", "call")
    return names


_APIS: Final = _api_names()


def requested(value: object, kind: str) -> bool:
    """Whether a capture call asked for ``kind`` (``audio``, ``video``). A
    webrtc-internals export lists a call's constraints as text, ``""`` for ``true``:
    there, a kind named at all was asked for."""
    if type(value) is not dict:
        return False
    if "request_type" in value:
        return kind in value
    return truthy(value.get(kind))


def media_tracks(value: object) -> Iterator[tuple[str, str, str]]:
    """(kind, id, label) of each track a getUserMedia success returned."""
    if type(value) is dict and "request_type" in value:  # a webrtc-internals export
        for media in ("audio", "video"):
            info = value.get(f"{media}_track_info")
            parsed = _json_object(info) if type(info) is str else None
            track_id = parsed.get("id") if parsed is not None else None
            if parsed is not None and type(track_id) is str:
                label = parsed.get("label")
                yield media, track_id, label if type(label) is str else ""
    elif type(value) is list:
        for track in value:
            if type(track) is list and len(track) > 1:
                kind, track_id = track[0], track[1]
                label = track[2] if len(track) > 2 else ""
                if type(kind) is str and type(track_id) is str:
                    yield kind, track_id, label if type(label) is str else ""
    elif type(value) is dict and type(value.get("tracks")) is list:
        for entry in value["tracks"]:
            if type(entry) is dict:
                kind, track_id, label = entry.get("kind"), entry.get("id"), entry.get("label")
                if type(kind) is str and type(track_id) is str:
                    yield kind, track_id, label if type(label) is str else ""


def usb_id(label: str) -> str | None:
    """The ``vendor:product`` id that ends the label of a USB device
    (``Logitech BRIO (046d:085e)``)."""
    if not label.endswith(")"):
        return None
    found = label[-10:-1]
    return found if len(found) > 4 and found[4] == ":" else None


class ClientFeatures:
    """The client row's streaming state."""

    def __init__(self) -> None:
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.create: dict[str, Any] | None = None
        self.values: dict[str, Any] = {}
        self.counts = {
            "get_user_media_error_count": 0,
            "get_user_media_success_count": 0,
            "get_display_media_error_count": 0,
            "get_display_media_success_count": 0,
            "enumerate_devices_count": 0,
        }
        self.media: dict[str, tuple[str, float]] = {}  # track id → (kind, obtained at)

    def event(self, event: Event) -> None:
        t = event.timestamp
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        method = event.method
        api = _APIS.get(method)
        if api is not None:
            self._api(api, event)
        elif method == "create":
            if self.create is None:
                self.create = event.value if type(event.value) is dict else {}
        elif method == "MediaStreamTrack.onended":
            self._ended(event)
        elif method == "websocket" and "web_socket_connection_time" not in self.values:
            value = event.value
            self.values["web_socket_connection_time"] = (
                value.get("connectionTime") if type(value) is dict else None
            )

    def _api(self, api: tuple[str, str], event: Event) -> None:
        name, phase = api
        values, value = self.values, event.value
        if name == "enumerateDevices":
            self.counts["enumerate_devices_count"] += 1
            return
        prefix = "get_user_media" if name == _GUM else "get_display_media"
        if phase == "call":
            values[f"called_{prefix}"] = True
            audio = requested(value, "audio")
            if name == _GUM:
                video = requested(value, "video")
            else:  # video is getDisplayMedia's default: only false turns it off
                video = not (type(value) is dict and value.get("video") is False)
            if audio:
                values[f"called_{prefix}_audio"] = True
            if video:
                values[f"called_{prefix}_video"] = True
            if audio and video and name == _GUM:
                values["called_get_user_media_combined"] = True
        elif phase == "failure":
            self.counts[f"{prefix}_error_count"] += 1
            if name == _GUM and "get_user_media_error" not in values:
                values["get_user_media_error"] = error_text(value)
        else:
            self.counts[f"{prefix}_success_count"] += 1
            if name == _GUM:
                self._obtained(value, event.timestamp)

    def _obtained(self, value: object, t: float) -> None:
        for kind, track_id, label in media_tracks(value):
            name = f"{kind}_device_usb_id"
            if kind in ("audio", "video") and name not in self.values:
                found = usb_id(label)
                if found is not None:
                    self.values[name] = found
            if track_id in self.media or len(self.media) < MAX_MEDIA_TRACKS:
                self.media[track_id] = (kind, t)

    def _ended(self, event: Event) -> None:
        found = self.media.get(event.value) if type(event.value) is str else None
        if found is None or found[0] not in ("audio", "video"):
            return
        kind, obtained = found
        self.values[f"{kind}_ended"] = True
        if event.timestamp - obtained < _SHORT_MS:
            self.values[f"{kind}_short_duration"] = True

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        create = self.create or {}
        for peer, name in CREATE_FIELDS.items():
            if peer in create:
                out[name] = create[peer]
        if self.first_t is not None and self.last_t is not None:
            out["start_time"] = self.first_t
            out["duration"] = self.last_t - self.first_t
        data = create.get("userAgentData")
        if type(data) is dict and data.get("platform") is not None:
            out["operating_system"] = text(data.get("platform"))
        for prefix in ("get_user_media", "get_display_media"):
            for suffix in ("", "_audio", "_video"):
                out[f"called_{prefix}{suffix}"] = self.values.get(f"called_{prefix}{suffix}", False)
        out["called_get_user_media_combined"] = self.values.get(
            "called_get_user_media_combined", False
        )
        out.update(self.counts)
        out.update(self.values)
        return present(out)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None
