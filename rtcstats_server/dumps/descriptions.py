"""Expand the SDP that rtcstats-js sends as a difference to an earlier description.

rtcstats-js replaces each SDP section (``v=`` session part, each ``m=`` media part)
that equals the same section of a base description by the bare ``v=`` or ``m=``.
The base is whatever the page's ``localDescription``/``remoteDescription`` was when
the call was made (or the last created offer/answer before any local description),
so expanding needs a little per-peer-connection state that follows the calls and
their results (matched by the request id the client sends beside each call).
"""

from __future__ import annotations

from typing import Any, Final

#: Calls awaiting their result kept per peer connection: a client answers each call
#: before long, so more than this are calls whose result never came (or a flood).
MAX_PENDING: Final = 32


def _sections(sdp: str) -> list[str]:
    parts = sdp.split("\nm=")
    return [(part if index == 0 else "m=" + part).strip() for index, part in enumerate(parts)]


def expand(base: dict[str, Any] | None, description: Any) -> Any:
    """The full description, given the one it was compressed against."""
    if not isinstance(description, dict) or not isinstance(base, dict):
        return description
    sdp, base_sdp = description.get("sdp"), base.get("sdp")
    if (
        base.get("type") != description.get("type")
        or not isinstance(sdp, str)
        or not isinstance(base_sdp, str)
        or not sdp
        or not base_sdp
    ):
        return description
    base_sections = _sections(base_sdp)
    out: list[str] = []
    replaced = False
    for index, section in enumerate(_sections(sdp)):
        marker = "v=" if index == 0 else "m="
        if section == marker and index < len(base_sections):
            out.append(base_sections[index])
            replaced = True
        else:
            out.append(section)
    if not replaced:
        return description  # nothing was compressed: keep the client's text exactly
    return {**description, "sdp": "\r\n".join(out).strip() + "\r\n"}


def _trim(held: dict[str, Any]) -> None:
    """Forget the oldest entry past ``MAX_PENDING`` (keys come from the client)."""
    if len(held) > MAX_PENDING:
        del held[next(iter(held))]


class DescriptionState:
    """What one peer connection's local and remote descriptions are, as far as known."""

    __slots__ = ("_chars", "created", "local", "pending", "remote")

    def __init__(self) -> None:
        self.local: dict[str, Any] | None = None
        self.remote: dict[str, Any] | None = None
        self.created: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, tuple[str, Any]] = {}
        #: ``held_chars`` since the last ``apply``: the connection's weight is taken
        #: after each of its events, getStats ones (most) included, which change none.
        self._chars: int | None = None

    def held_chars(self) -> int:
        """The SDP text this state holds (what its memory grows with)."""
        if self._chars is None:
            held = [self.local, self.remote, *self.created.values()]
            held += [full for _, full in self.pending.values()]
            sdps = (d.get("sdp") for d in held if isinstance(d, dict))
            self._chars = sum(len(sdp) for sdp in sdps if isinstance(sdp, str))
        return self._chars

    def _expect(self, key: str, side: str, full: Any) -> None:
        self.pending[key] = (side, full)
        _trim(self.pending)

    def apply(self, method: str, value: Any, request: object) -> Any:
        """The expanded value of one event; updates the state it implies."""
        self._chars = None
        key = request if isinstance(request, str) else ""
        if method in ("createOfferOnSuccess", "createAnswerOnSuccess"):
            full = expand(self.local, value)
            if self.local is None and isinstance(full, dict):
                self.created[str(full.get("type"))] = full
                _trim(self.created)
            return full
        if method == "setLocalDescription":
            if isinstance(value, dict):
                base = self.local or self.created.get(str(value.get("type")))
                self.created.clear()
                full = expand(base, value)
                self._expect(key, "local", full)
                return full
            self._expect(key, "local-implicit", None)
            return value
        if method == "setRemoteDescription":
            full = expand(self.remote, value)
            self._expect(key, "remote", full)
            return full
        if method in ("setLocalDescriptionOnSuccess", "setRemoteDescriptionOnSuccess"):
            side, full = self.pending.pop(key, ("", None))
            if side == "local-implicit" or (isinstance(value, dict) and "sdp" in value):
                full = expand(self.local, value)
                value = full
                side = "local"
            if isinstance(full, dict):
                if side == "local":
                    self.local = full
                elif side == "remote":
                    self.remote = full
            return value
        if method in ("setLocalDescriptionOnFailure", "setRemoteDescriptionOnFailure"):
            self.pending.pop(key, None)
        return value
