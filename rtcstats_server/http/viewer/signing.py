"""Signed viewer URLs: the link itself is the permission to see one session.

A dashboard puts the URL in an iframe for its own (already logged-in) staff, so the
viewer cannot ask for a login. The signature is an HMAC-SHA256 over the session id
and, for an expiring link, its expiry: a URL opens exactly one session, until exactly
its ``exp`` when it has one. The link a record carries has none by default, because a
backend stores it the way it stores rtcstats.com's embed URL, and a link that dies
after a week shows a broken frame on every old call; expiring links are made on
demand. Only the path and query are signed, never the base URL, so a link keeps
working wherever this server is reached from (a new ``viewer.public_base_url``, a
proxy). The key never leaves the server; changing it revokes every link at once.
Without a configured key one is generated once and kept in the data dir (mode 0600),
so URLs survive restarts of this collector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

from rtcstats_server.config import Config
from rtcstats_server.exceptions import ConfigError
from rtcstats_server.files import create_once
from rtcstats_server.query_values import ascii_int

SECRET_FILE: Final = "viewer-secret"
_LOCAL_HOSTS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})
#: What a lasting link's signature covers in place of an expiry: not digits, so no
#: expiring link's signature can pass for a lasting one, nor the other way round.
_LASTING: Final = "-"


class Denied(StrEnum):
    """Why a viewer request was refused (the label of ``rtcstats_viewer_denied_total``)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    EXPIRED = "expired"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True)
class SignedUrl:
    url: str
    #: Epoch seconds after which the link is refused; None: it never expires.
    expires_at: int | None


class Signer:
    def __init__(self, key: bytes, base_url: str, ttl_s: int) -> None:
        self._key = key
        self.base_url = base_url.rstrip("/")
        #: Lifetime of an expiring link (``viewer.url_ttl_s``).
        self.ttl_s = ttl_s

    def signature(self, session_id: str, exp: int | None) -> str:
        # The separator cannot occur in either part: ids are hex, exp is digits or "-".
        message = f"{session_id}\n{_LASTING if exp is None else exp}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def query(self, session_id: str, exp: int | None) -> str:
        """The signed part of a link: ``exp=…&sig=…``, or ``sig=…`` for a lasting one."""
        sig = self.signature(session_id, exp)
        return urlencode({"sig": sig} if exp is None else {"exp": exp, "sig": sig})

    def url(self, session_id: str, now: float, ttl_s: int | None = None) -> SignedUrl:
        """An expiring link: it opens the session for ``ttl_s`` (default
        ``viewer.url_ttl_s``) from ``now``."""
        exp = int(now) + (self.ttl_s if ttl_s is None else ttl_s)
        query = self.query(session_id, exp)
        return SignedUrl(f"{self.base_url}{view_path(session_id)}?{query}", exp)

    def lasting(self, session_id: str) -> SignedUrl:
        """A link without expiry (until the key changes)."""
        query = self.query(session_id, None)
        return SignedUrl(f"{self.base_url}{view_path(session_id)}?{query}", None)

    def check(self, session_id: str, exp: str | None, sig: str | None, now: float) -> Denied | None:
        """None when the request may see ``session_id``, else the reason it may not.

        ``exp`` absent: the link must carry a lasting signature.
        """
        if not sig or exp == "":
            return Denied.MISSING
        expires = None if exp is None else ascii_int(exp, 12)
        # compare_digest takes ASCII strings only; ours are base64url.
        if (exp is not None and expires is None) or len(sig) > 64 or not sig.isascii():
            return Denied.MALFORMED
        # Checked before expiry, so a forged URL is counted as forged even when old.
        if not hmac.compare_digest(self.signature(session_id, expires), sig):
            return Denied.BAD_SIGNATURE
        if expires is not None and expires < now:
            return Denied.EXPIRED
        return None

    def request_query(self, exp: str | None, sig: str) -> str:
        """The signed part of a checked request, for the links its page holds."""
        return urlencode({"sig": sig} if exp is None else {"exp": exp, "sig": sig})


def view_path(session_id: str) -> str:
    """Where a session's page is, below the base URL: the same under every base."""
    return f"/view/{session_id}"


def public_base_url(config: Config) -> str:
    configured = config.viewer.public_base_url
    if configured:
        return configured.rstrip("/")
    host = config.server.host
    host = "127.0.0.1" if host in _LOCAL_HOSTS else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}"


def load_key(config: Config) -> bytes:
    """The configured secret, or the one kept in the data dir (made on first use).

    Blocking file I/O: call it from a worker thread.
    """
    configured = config.viewer.secret.get_secret_value()
    if configured:
        return configured.encode()
    path = config.server.data_dir / SECRET_FILE
    if path.exists():
        return _read_key(path)
    create_once(path, secrets.token_urlsafe(32) + "\n", 0o600)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 16:
        raise ConfigError(str(path), "viewer key file too short; delete it to make a new one")
    return key.encode()


def make_signer(config: Config) -> Signer:
    return Signer(load_key(config), public_base_url(config), config.viewer.url_ttl_s)
