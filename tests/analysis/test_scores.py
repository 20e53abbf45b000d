"""Scores: the G.107 E-model for audio and our video score, against values worked by hand."""

from __future__ import annotations

import math

import pytest

from rtcstats_server.analysis.scores import (
    CODECS,
    DEFAULT_CODEC,
    audio_score,
    codec_for,
    delay_impairment,
    loss_impairment,
    mos_from_r,
    one_way_delay_ms,
    r_factor,
    video_score,
    worst,
)


def test_an_unimpaired_call_is_r_93_2_and_mos_4_41() -> None:
    """R = 93.2 (no delay above 100 ms, no loss, Ie = 0 for G.711).

    MOS = 1 + 0.035 * 93.2 + 93.2 * (93.2 - 60) * (100 - 93.2) * 7e-6
        = 1 + 3.262 + 93.2 * 33.2 * 6.8 * 7e-6
        = 1 + 3.262 + 21040.832 * 7e-6 = 1 + 3.262 + 0.147286 = 4.409286
    """
    r = r_factor(80.0, 0.0, CODECS["pcmu"])
    assert r == 93.2
    assert mos_from_r(r) == pytest.approx(4.409286, abs=1e-6)


def test_delay_impairment_is_zero_up_to_100_ms_then_follows_g107() -> None:
    """Ta = 200 ms: X = log2(200 / 100) = 1.

    Idd = 25 * ((1 + 1)^(1/6) - 3 * (1 + (1/3)^6)^(1/6) + 2)
        = 25 * (1.122462 - 3 * (1 + 1/729)^(1/6) + 2)
        = 25 * (1.122462 - 3 * 1.000228 + 2) = 25 * 0.121776 = 3.0444
    Ta = 300 ms: X = log2 3 = 1.584963, X^6 = 15.7833, (16.7833)^(1/6) = 1.600105,
    (X/3)^6 = 0.021648, (1.021648)^(1/6) = 1.003576;
    Idd = 25 * (1.600105 - 3.010728 + 2) = 25 * 0.589377 = 14.734 (± rounding of the
    sixth roots above, hence the looser tolerance).
    """
    assert delay_impairment(0.0) == 0.0
    assert delay_impairment(100.0) == 0.0
    assert delay_impairment(200.0) == pytest.approx(3.0444, abs=1e-4)
    assert delay_impairment(300.0) == pytest.approx(14.76, abs=0.05)
    assert delay_impairment(400.0) > delay_impairment(300.0)


def test_loss_impairment_uses_the_codecs_ie_and_bpl() -> None:
    """G.729: Ie = 11, Bpl = 19; 5 % random loss:
    Ie,eff = 11 + (95 - 11) * 5 / (5 + 19) = 11 + 84 * 5 / 24 = 11 + 17.5 = 28.5.
    G.711 (Ie 0, Bpl 25.1), 2 %: 95 * 2 / 27.1 = 190 / 27.1 = 7.011070.
    """
    assert loss_impairment(5.0, CODECS["g729"]) == pytest.approx(28.5, abs=1e-9)
    assert loss_impairment(2.0, CODECS["pcma"]) == pytest.approx(7.011070, abs=1e-6)
    assert loss_impairment(0.0, CODECS["g729"]) == 11.0


def test_r_and_mos_combine_delay_and_loss() -> None:
    """Ta = 200 ms, G.729 at 5 % loss: R = 93.2 - 3.044414 - 28.5 = 61.655586.

    MOS = 1 + 0.035 * 61.655586 + 61.655586 * 1.655586 * 38.344414 * 7e-6
        = 1 + 2.157945 + 3913.99 * 7e-6 = 1 + 2.157945 + 0.027398 = 3.185343
    """
    r = r_factor(200.0, 5.0, CODECS["g729"])
    assert r == pytest.approx(61.655586, abs=1e-5)
    assert mos_from_r(r) == pytest.approx(3.185343, abs=1e-5)


def test_mos_is_bounded_outside_0_to_100() -> None:
    assert mos_from_r(-12.0) == 1.0
    assert mos_from_r(0.0) == 1.0
    assert mos_from_r(120.0) == 4.5


def test_audio_score_from_track_stats() -> None:
    """Opus, RTT 120 ms, jitter buffer 60 ms: Ta = 120 / 2 + 60 + 20 + 6.5 = 146.5 ms.
    X = log2(1.465) = 0.550901; X^6 = 0.027954; (1.027954)^(1/6) = 1.004606;
    (X/3)^6 = 0.027954 / 729 = 3.83e-5, (1 + that)^(1/6) = 1.0000064;
    Idd = 25 * (1.004606 - 3.0000192 + 2) = 25 * 0.0045868 = 0.11467.
    No loss: R = 93.2 - 0.11467 = 93.08533;
    MOS = 1 + 0.035 * 93.08533 + 93.08533 * 33.08533 * 6.91467 * 7e-6
        = 1 + 3.257987 + 0.149068 = 4.407055.
    2 % loss adds G.711-like Ie,eff = 95 * 2 / (2 + 25.1) = 7.011070 (Opus uses its values).
    """
    score = audio_score(rtt_ms=120, jitter_buffer_ms=60, loss_fraction=0.0, mime_type="audio/opus")
    assert score.one_way_delay_ms == 146.5
    assert score.r_factor == pytest.approx(93.08533, abs=1e-4)
    assert score.mos == pytest.approx(4.407055, abs=1e-5)
    lossy = audio_score(rtt_ms=120, jitter_buffer_ms=60, loss_fraction=0.02, mime_type="audio/opus")
    assert lossy.r_factor == pytest.approx(score.r_factor - 190 / 27.1, abs=1e-9)


def test_codecs_by_mime_type() -> None:
    assert codec_for("audio/PCMU") is CODECS["pcmu"]
    assert codec_for("audio/G729") is CODECS["g729"]
    assert codec_for("audio/red") is DEFAULT_CODEC
    assert codec_for(None) is DEFAULT_CODEC
    assert one_way_delay_ms(-5, -1, CODECS["pcmu"]) == 20.0  # negative inputs count as 0


def test_video_score_worked_example() -> None:
    """640x360 at 15 fps, 2 s frozen of 40 s, encoder limited half the time.

    s_res = log2(230400 / 57600) / 4 = log2(4) / 4 = 0.5
    s_fps = log2(15 / 3.75) / 3 = log2(4) / 3 = 0.666667
    picture = 0.6 * 0.5 + 0.4 * 0.666667 = 0.3 + 0.266667 = 0.566667
    freezes: f = 2 / 40 = 0.05, 1 - 4 * 0.05 = 0.8; limitation: 1 - 0.3 * 0.5 = 0.85
    score = 1 + 4 * 0.566667 * 0.8 * 0.85 = 1 + 4 * 0.385333 = 2.541333
    """
    score = video_score(
        width=640, height=360, frames_per_second=15, frozen_s=2, duration_s=40, limited_fraction=0.5
    )
    assert score == pytest.approx(2.541333, abs=1e-6)


@pytest.mark.parametrize(
    ("width", "height", "fps", "frozen", "expected"),
    [
        (1280, 720, 30, 0, 5.0),  # both terms 1: 1 + 4 * 1
        (1920, 1080, 60, 0, 5.0),  # capped at 1
        (320, 180, 3.75, 0, 1.0),  # both terms 0
        (1280, 720, 30, 10, 1.0),  # a quarter of 40 s frozen: 1 - 4 * 0.25 = 0
        (0, 0, 0, 0, 1.0),  # nothing decoded
        # 960x540: log2(518400 / 57600) / 4 = log2(9) / 4 = 0.792481; 30 fps: 1
        # 1 + 4 * (0.6 * 0.792481 + 0.4) = 1 + 4 * 0.875489 = 4.501955
        (960, 540, 30, 0, 4.501955),
    ],
)
def test_video_score_bounds_and_steps(
    width: int, height: int, fps: float, frozen: float, expected: float
) -> None:
    score = video_score(
        width=width, height=height, frames_per_second=fps, frozen_s=frozen, duration_s=40
    )
    assert score == pytest.approx(expected, abs=1e-6)


def test_video_score_without_duration_ignores_freezes() -> None:
    assert video_score(
        width=1280, height=720, frames_per_second=30, frozen_s=5, duration_s=0
    ) == pytest.approx(5.0)


def test_the_session_gets_its_worst_track() -> None:
    assert worst([4.2, None, 3.1, 4.4]) == 3.1
    assert worst([None, math.nan]) is None
    assert worst([]) is None
