"""Every error this package raises on purpose, in one hierarchy.

Each class says who can act on it: an operator (configuration), a client (the close
code or HTTP status it produces), or a backend (storage / metadata outages, which
the caller turns into retries or a degraded readiness).
"""

from __future__ import annotations

from collections.abc import Sequence


class RtcstatsError(Exception):
    """Base of everything raised on purpose; anything else is a bug."""


class ConfigError(RtcstatsError):
    """A configuration key has a value we cannot run with.

    ``key`` is the dotted path an operator would search for in the YAML file.
    ``problems`` holds every ``(key, problem)`` found in one pass (the first is
    ``key``/``problem``), so an operator fixes them all in one round.
    """

    def __init__(self, key: str, problem: str, *, more: Sequence[tuple[str, str]] = ()) -> None:
        self.problems = [(key, problem), *more]
        super().__init__("\n".join(f"{k}: {p}" for k, p in self.problems))
        self.key = key
        self.problem = problem

    @classmethod
    def of(cls, problems: Sequence[tuple[str, str]]) -> ConfigError:
        (key, problem), *more = problems
        return cls(key, problem, more=more)


class StartupError(RtcstatsError):
    """The collector cannot start; the message is the one line an operator reads.

    It names what failed (an address, a directory, a backend) and why, so a process
    manager's log says it without a traceback, and the process exits 1 at once.
    """


class HandshakeRefused(RtcstatsError):
    """A websocket upgrade we answer with an HTTP error instead of a socket.

    ``reason`` is the metric label; ``detail`` is the one-line body the client sees.
    """

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class ProtocolViolation(RtcstatsError):
    """A client message we cannot accept; ``close_code`` is what the socket gets.

    A violation with ``close_code`` None is dropped and counted, the socket stays.
    """

    def __init__(self, reason: str, detail: str, close_code: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.close_code = close_code


class DumpFormatError(RtcstatsError):
    """A stored or uploaded dump that does not follow any layout we read."""


class DumpTooLarge(DumpFormatError):
    """A dump past one of the reader's caps (``ReadLimits``): refused, not damage.

    ``cap`` names which (``line_too_long``, ``expanded_too_large``, ``too_many_events``);
    an upload answers 413 with it as ``errorCode``.
    """

    def __init__(self, cap: str, message: str) -> None:
        super().__init__(message)
        self.cap = cap
        self.message = message


class IllegalTransition(RtcstatsError):
    """A session was asked to move to a state its current one does not lead to: a bug
    in the caller (sessions/state.py lists the transitions), never a client's doing."""

    def __init__(self, session_id: str, current: str, wanted: str) -> None:
        super().__init__(f"session {session_id}: no transition from {current} to {wanted}")
        self.current = current
        self.wanted = wanted


class StoreUnavailable(RtcstatsError):
    """A backend (metadata store, object storage) cannot be reached right now."""


class NotFound(RtcstatsError):
    """The session or dump asked for does not exist."""


class UpstreamError(RtcstatsError):
    """An upload to a forwarding target did not succeed.

    ``retryable`` decides between a later attempt and a failed job: a 5xx, a 429, a
    timeout or a dropped connection may pass later; a 400/401/402/413/415 will not.
    ``status`` is None when no HTTP answer arrived; ``error`` and ``error_code`` are the
    upstream's own words, recorded so an operator sees why.
    """

    def __init__(
        self,
        error: str,
        *,
        retryable: bool,
        status: int | None = None,
        error_code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{where}: {error}" + (f" ({error_code})" if error_code else ""))
        self.error = error
        self.retryable = retryable
        self.status = status
        self.error_code = error_code
        self.retry_after_s = retry_after_s


class UploadNotVerified(StoreUnavailable):
    """The object store acknowledged an upload but holds a different size; retried."""


class UploadRefused(RtcstatsError):
    """An upload to ``/v1.0/upload`` we do not store; ``status`` and ``error_code`` are
    what the uploader gets, in the rtcstats.com error shape."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
