"""The values of the other dialects in rtcstats-js's shapes, as the rtcstats tools read
them by position (dumps/jsforms.py), written out by hand."""

from __future__ import annotations

from rtcstats_server.dumps.jsforms import JsForms, track_array

JITSI_GUM = {
    "id": "stream-1",
    "tracks": [
        {"id": "a-1", "kind": "audio", "label": "Headset (046d:0a44)", "enabled": True},
        {"id": "v-1", "kind": "video", "label": "FaceTime HD Camera", "muted": False},
    ],
}


def test_a_capture_result_becomes_track_arrays_and_its_labels_are_remembered() -> None:
    forms = JsForms()
    method, value = forms.event("navigator.mediaDevices.getUserMediaOnSuccess", None, JITSI_GUM)
    assert method == "navigator.mediaDevices.getUserMediaOnSuccess"
    assert value == [
        ["audio", "a-1", "Headset (046d:0a44)", "stream-1"],
        ["video", "v-1", "FaceTime HD Camera", "stream-1"],
    ]
    # addTrack names the track by id only: its label is the capture result's.
    assert forms.event("addTrack", "PC_0", "audio:a-1 -") == (
        "addTrack",
        ["audio", "a-1", "Headset (046d:0a44)"],
    )
    assert forms.event("ontrack", "PC_0", "video:r-9 stream:mixedmslabel") == (
        "ontrack",
        ["video", "r-9", "", "mixedmslabel"],
    )


def test_older_spellings_of_the_capture_calls_take_the_media_devices_name() -> None:
    forms = JsForms()
    asked = {"audio": True, "video": False}
    assert forms.event("getUserMedia", None, asked) == (
        "navigator.mediaDevices.getUserMedia",
        asked,
    )
    assert forms.event("navigator.webkitGetUserMediaOnFailure", None, "NotAllowedError") == (
        "navigator.mediaDevices.getUserMediaOnFailure",
        "NotAllowedError",
    )
    assert forms.event("getUserMediaOnSuccess", None, JITSI_GUM)[1][0][0] == "audio"
    # Inside a peer connection nothing is renamed: only page-level calls are captures.
    assert forms.event("getUserMedia", "PC_0", asked) == ("getUserMedia", asked)


def test_webrtc_internals_requests_read_as_the_peers_export_reader_reads_them() -> None:
    forms = JsForms()
    call = {"request_type": "getUserMedia", "audio": "", "video": "width: {max: 1280}"}
    assert forms.event("navigator.mediaDevices.getUserMedia", None, call)[1] == {
        "audio": True,
        "video": "width: {max: 1280}",
    }
    success = {
        "request_type": "getUserMedia",
        "stream_id": "s-1",
        "audio_track_info": "null",
        "video_track_info": '{"id": "v-2", "label": "cam"}',
    }
    assert forms.event("navigator.mediaDevices.getUserMediaOnSuccess", None, success)[1] == [
        ["video", "v-2", "cam", "s-1"]
    ]
    failure = {"request_type": "getUserMedia", "error": "NotFoundError"}
    assert forms.event("navigator.mediaDevices.getUserMediaOnFailure", None, failure)[1] == (
        "NotFoundError"
    )


def test_what_rtcstats_js_has_no_form_for_is_kept() -> None:
    forms = JsForms()
    stream = "s-1 audio:a-1,video:v-1"
    assert forms.event("addStream", "PC_0", stream) == ("addStream", stream)
    already = ["audio", "a-1", "mic", "s-1"]
    assert forms.event("addTrack", "PC_0", already) == ("addTrack", already)
    assert track_array("no track here", {}) is None
    assert track_array("audio: stream:x", {}) is None


def test_a_page_level_create_is_added_once_before_the_first_page_level_event() -> None:
    forms = JsForms()
    assert not forms.needs_create("create", "PC_0")  # a connection's create is not it
    assert forms.needs_create("navigator.mediaDevices.getUserMedia", None)
    assert not forms.needs_create("identity", None)
    written = JsForms()
    assert not written.needs_create("create", None)  # the dump has its own
