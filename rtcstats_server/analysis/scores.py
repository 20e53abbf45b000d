"""Quality scores: an estimated MOS per audio track, a video score per video track.

Pure functions of plain numbers, so a score is explained by its inputs alone and the
feature extractor decides where each input comes from (docs/features.md says which
stats it uses). Scores summarise what the numbers already say; they are for ranking
and alerting across many sessions, not a listening test.

Audio: the ITU-T G.107 E-model (narrowband), ``R = Ro - Is - Id - Ie,eff + A``.

* ``Ro - Is`` is taken at G.107's default values, which give the well-known 93.2 for
  an unimpaired connection (their small default ``Id`` at zero delay included).
* ``Id`` is the absolute-delay term ``Idd`` of G.107 at its default sensitivity
  (``mT`` = 100 ms, ``sT`` = 1): 0 up to 100 ms one way, then
  ``25 * ((1 + X**6) ** (1/6) - 3 * (1 + (X/3)**6) ** (1/6) + 2)`` with
  ``X = log2(Ta / 100)``. The echo terms (``Idte``, ``Idle``) are left out: browsers
  cancel echo.
* ``Ta``, the one-way mouth-to-ear delay, is estimated as half the round trip, plus
  the jitter buffer's delay, plus the codec's frame and look-ahead.
* ``Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)``, ``Ppl`` the packet loss
  in percent, ``BurstR`` = 1 (random loss: the stats do not say how bursty it was),
  ``Ie`` and ``Bpl`` the codec's values (``CODECS``).
* ``A`` (advantage) = 0.
* MOS from R by G.107 Annex B: 1 below 0, 4.5 above 100, else
  ``1 + 0.035 R + R (R - 60)(100 - R) 7e-6``.

Video (ours, there is no standard to follow): a 1-5 score like a MOS,

    video_score = 1 + 4 * (0.6 * s_res + 0.4 * s_fps) * (1 - min(1, 4 * f)) * (1 - 0.3 * q)

* ``s_res = clamp(log2(pixels / (320*180)) / 4, 0, 1)``: 180p or less is 0, 720p or
  more is 1, each doubling of the pixel count adds a quarter;
* ``s_fps = clamp(log2(fps / 3.75) / 3, 0, 1)``: 3.75 fps or less is 0, 30 fps or more
  is 1, each doubling adds a third;
* ``f``: the fraction of the track's time spent frozen; a quarter of the time frozen
  brings the score to 1;
* ``q``: the fraction of the time the sender's encoder was limited by bandwidth or
  CPU (outbound tracks; 0 where unknown), costing at most 30 % of the quality above 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: R of an unimpaired narrowband connection at G.107's default parameters.
R_DEFAULT: Final = 93.2
#: Delay below which G.107 (default sensitivity) sees no impairment, one way.
DELAY_THRESHOLD_MS: Final = 100.0


@dataclass(frozen=True, slots=True)
class Codec:
    """What the E-model needs of a codec."""

    #: Equipment impairment without loss (G.113 Appendix I).
    ie: float
    #: Packet-loss robustness: the higher, the less each lost percent costs.
    bpl: float
    #: Audio per packet and the encoder's look-ahead: delay it adds, one way.
    frame_ms: float
    lookahead_ms: float


#: By lower-case MIME subtype (``audio/opus`` → ``opus``). G.711, G.729: G.113
#: Appendix I (G.711 with packet loss concealment, as every browser has). G.722 on
#: the narrowband scale is at least G.711. Opus has no ITU values: at WebRTC's bit
#: rates it is transparent on the narrowband scale (Ie 0) and with in-band FEC and
#: concealment at least as robust as G.711 with concealment, so it gets G.711's values;
#: its 20 ms frames add 6.5 ms of look-ahead.
CODECS: Final[dict[str, Codec]] = {
    "opus": Codec(ie=0.0, bpl=25.1, frame_ms=20.0, lookahead_ms=6.5),
    "pcmu": Codec(ie=0.0, bpl=25.1, frame_ms=20.0, lookahead_ms=0.0),
    "pcma": Codec(ie=0.0, bpl=25.1, frame_ms=20.0, lookahead_ms=0.0),
    "g722": Codec(ie=0.0, bpl=25.1, frame_ms=20.0, lookahead_ms=0.0),
    "g729": Codec(ie=11.0, bpl=19.0, frame_ms=20.0, lookahead_ms=5.0),
}
#: For a codec we do not know (or none named): the values of the commonest one.
DEFAULT_CODEC: Final = CODECS["opus"]


def codec_for(mime_type: str | None) -> Codec:
    """The codec's E-model values from a MIME type (``audio/opus``), or the default."""
    if not mime_type:
        return DEFAULT_CODEC
    return CODECS.get(mime_type.rpartition("/")[2].lower(), DEFAULT_CODEC)


def one_way_delay_ms(rtt_ms: float, jitter_buffer_ms: float, codec: Codec) -> float:
    """Mouth-to-ear delay estimate ``Ta``: half the round trip, the jitter buffer,
    the codec's frame and look-ahead."""
    return max(0.0, rtt_ms) / 2 + max(0.0, jitter_buffer_ms) + codec.frame_ms + codec.lookahead_ms


def delay_impairment(one_way_ms: float) -> float:
    """G.107's ``Idd`` for an absolute one-way delay (default sensitivity)."""
    if not one_way_ms > DELAY_THRESHOLD_MS:
        return 0.0
    x = math.log2(one_way_ms / DELAY_THRESHOLD_MS)
    return 25.0 * (math.pow(1 + x**6, 1 / 6) - 3 * math.pow(1 + (x / 3) ** 6, 1 / 6) + 2)


def loss_impairment(loss_pct: float, codec: Codec, burst_ratio: float = 1.0) -> float:
    """G.107's ``Ie,eff``: the codec's impairment grown by packet loss (percent)."""
    ppl = min(100.0, max(0.0, loss_pct))
    return codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst_ratio + codec.bpl)


def r_factor(one_way_ms: float, loss_pct: float, codec: Codec) -> float:
    """G.107 transmission rating ``R`` for a delay, a loss and a codec."""
    return R_DEFAULT - delay_impairment(one_way_ms) - loss_impairment(loss_pct, codec)


def mos_from_r(r: float) -> float:
    """G.107 Annex B: the estimated mean opinion score (1 to 4.5) for ``R``."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


@dataclass(frozen=True, slots=True)
class AudioScore:
    one_way_delay_ms: float
    r_factor: float
    mos: float


def audio_score(
    *, rtt_ms: float, jitter_buffer_ms: float, loss_fraction: float, mime_type: str | None
) -> AudioScore:
    """The E-model's R and MOS for one audio track from its measured averages.

    ``loss_fraction`` is packets lost over packets expected (0 to 1).
    """
    codec = codec_for(mime_type)
    delay = one_way_delay_ms(rtt_ms, jitter_buffer_ms, codec)
    r = r_factor(delay, loss_fraction * 100, codec)
    return AudioScore(delay, r, mos_from_r(r))


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


#: Pixels at which the resolution term is 0 (320x180) and 1 (1280x720: 16 times more).
_LOW_PIXELS: Final = 320 * 180
_RES_DOUBLINGS: Final = 4.0
#: Frame rate at which the frame-rate term is 0, and doublings to reach 1 (30 fps).
_LOW_FPS: Final = 3.75
_FPS_DOUBLINGS: Final = 3.0
_RES_WEIGHT: Final = 0.6
_FPS_WEIGHT: Final = 0.4
#: Frozen fraction that takes the score to its floor: 1 / 4.
_FREEZE_SLOPE: Final = 4.0
#: Share of the quality above 1 that a fully limited encoder loses.
_LIMIT_COST: Final = 0.3


def resolution_term(width: float, height: float) -> float:
    pixels = width * height
    if not pixels > 0:
        return 0.0
    return _unit(math.log2(pixels / _LOW_PIXELS) / _RES_DOUBLINGS)


def frame_rate_term(frames_per_second: float) -> float:
    if not frames_per_second > 0:
        return 0.0
    return _unit(math.log2(frames_per_second / _LOW_FPS) / _FPS_DOUBLINGS)


def video_score(
    *,
    width: float,
    height: float,
    frames_per_second: float,
    frozen_s: float,
    duration_s: float,
    limited_fraction: float = 0.0,
) -> float:
    """Our 1-5 video score (formula in the module docstring).

    ``frozen_s`` over ``duration_s`` is the frozen fraction (none when the duration is
    not positive); ``limited_fraction`` is the time the encoder was limited by
    bandwidth or CPU over its whole time.
    """
    frozen = _unit(frozen_s / duration_s) if duration_s > 0 else 0.0
    picture = _RES_WEIGHT * resolution_term(width, height)
    picture += _FPS_WEIGHT * frame_rate_term(frames_per_second)
    fluid = 1 - min(1.0, _FREEZE_SLOPE * frozen)
    unlimited = 1 - _LIMIT_COST * _unit(limited_fraction)
    return 1 + 4 * picture * fluid * unlimited


def worst(scores: Iterable[float | None]) -> float | None:
    """The session's score: its worst track's, ignoring tracks without one."""
    known = [s for s in scores if s is not None and not math.isnan(s)]
    return min(known) if known else None
