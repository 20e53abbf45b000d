"""``2.0``: npm ``rtcstats`` 5.x, the 2015 client still deployed.

Same arrays as rtcstats-js with full method names and absolute timestamps; no
handshake, no acknowledgements, no resume.
"""

from __future__ import annotations

from rtcstats_server.dialects.rtcstats_js import ArrayDecoder


class LegacyDecoder(ArrayDecoder):
    relative_time = False
