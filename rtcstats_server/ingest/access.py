"""Who may stream: the Origin allowlist and client tokens (``auth`` in the config).

Both are decided before the websocket upgrade, so a refused client costs one HTTP
answer (403 for the origin, 401 for the token) and never a session. Tokens follow the
rtcstats-js convention: ``?rtcstats-token=<JWT>`` whose ``rtcStats`` claim names the
user, session and conference; those ids are what the record keeps, whatever the
client's identity message says later. They also say who holds a session: a resume
must present a token with the same ids (``ClientToken.holder``), so one valid token
cannot take over another holder's session.

An Origin check stops other web sites' pages from streaming into ours; a script can
send any Origin it likes, so requests without one (backend pushers) pass and tokens
are the control for those.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from yarl import URL

from rtcstats_server.config import AuthConfig
from rtcstats_server.dialects.base import IDENTITY_VALUE_MAX, ClientToken
from rtcstats_server.exceptions import ConfigError, HandshakeRefused

TOKEN_PARAM = "rtcstats-token"

#: ``rtcStats`` claim → record field.
CLAIM_FIELDS = {"user": "user_id", "session": "meeting_id", "conference": "conference_id"}

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

#: Registered claims that also name the holder (RFC 7519 4.1): two tokens of one
#: issuer with different subjects belong to different clients, whatever else they say.
_HOLDER_CLAIMS = ("iss", "sub")


class OriginRule:
    """One ``auth.allowed_origins`` entry: exact origin, host, or ``*.`` subdomains."""

    def __init__(self, pattern: str) -> None:
        scheme, _, rest = pattern.lower().rpartition("://")
        self.scheme = scheme or None
        host, _, port = rest.partition(":")
        self.port = int(port) if port else None
        self.wildcard = host.startswith("*.")
        self.host = host[1:] if self.wildcard else host  # ".example.com" for a wildcard
        if self.scheme is not None and self.port is None:
            self.port = _DEFAULT_PORTS.get(self.scheme)

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        if self.scheme is not None and scheme != self.scheme:
            return False
        if self.port is not None and port != self.port:
            return False
        return host.endswith(self.host) if self.wildcard else host == self.host


class ClientAccess:
    """Checks an upgrade's Origin and token; keys are read once, at start."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.origins = [OriginRule(pattern) for pattern in config.allowed_origins]
        self.secret = config.jwt_secret.get_secret_value()
        self.public_keys: list[tuple[str | None, str, Any]] = []  # (kid, alg, key)
        for path in config.jwt_public_key_files:
            self.public_keys.append((None, *_pem_key(path)))
        if config.jwks_file is not None:
            self.public_keys.extend(_jwks_keys(config.jwks_file))

    @property
    def checks_tokens(self) -> bool:
        return bool(self.secret or self.public_keys)

    def check_origin(self, origin: str) -> None:
        if not self.origins or not origin:
            return
        try:
            url = URL(origin) if "://" in origin else None
        except ValueError:  # also UnicodeError: a host IDNA cannot encode, bytes not UTF-8
            url = None
        if url is None or not url.host or url.scheme not in _DEFAULT_PORTS:
            raise HandshakeRefused(403, "origin_not_allowed", "Origin is not allowed to stream")
        scheme, host = url.scheme.lower(), url.host.lower()
        port = url.explicit_port or _DEFAULT_PORTS[scheme]
        if not any(rule.matches(scheme, host, port) for rule in self.origins):
            raise HandshakeRefused(403, "origin_not_allowed", "Origin is not allowed to stream")

    def authenticate(self, token: str | None) -> ClientToken | None:
        """The verified token; None when there is none and none is needed."""
        if not token:
            if self.config.require_token:
                raise HandshakeRefused(401, "token_missing", f"?{TOKEN_PARAM}=<JWT> is required")
            return None
        if not self.checks_tokens:
            return None  # nothing to check it against: the token means nothing here
        claims = self._verify(token)
        fields: dict[str, Any] = {"authenticated": True}
        ids = claims.get("rtcStats")
        if isinstance(ids, dict):
            for claim, field in CLAIM_FIELDS.items():
                value = ids.get(claim)
                if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                    fields[field] = str(value)[:IDENTITY_VALUE_MAX]
        holder = [
            (name, str(claims[name])[:IDENTITY_VALUE_MAX])
            for name in _HOLDER_CLAIMS
            if claims.get(name) is not None
        ]
        holder += [(name, str(value)) for name, value in fields.items()]
        return ClientToken(fields, tuple(sorted(holder)))

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("token is not a JWT") from None
        alg = str(header.get("alg", ""))
        kid = header.get("kid")
        if alg == "HS256" and self.secret:
            keys: list[Any] = [self.secret]
        else:
            keys = [
                key
                for key_id, key_alg, key in self.public_keys
                if key_alg == alg and (kid is None or key_id is None or key_id == kid)
            ]
        if not keys:
            raise _invalid("token is signed with an algorithm or key we do not accept")
        config = self.config
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=config.audience or None,
                    issuer=config.issuer or None,
                    leeway=config.leeway_s,
                    options={"require": ["exp"], "verify_aud": bool(config.audience)},
                )
                return claims
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise HandshakeRefused(401, "token_expired", "token has expired") from None
            except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
                raise HandshakeRefused(
                    401, "token_audience", "token is for another audience or issuer"
                ) from None
            except jwt.InvalidTokenError as exc:
                raise _invalid(f"token refused: {type(exc).__name__}") from None
        raise _invalid("token signature does not verify")


def _invalid(detail: str) -> HandshakeRefused:
    return HandshakeRefused(401, "token_invalid", detail)


def _algorithm_for(key: object, where: str) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise ConfigError(where, "only RSA and P-256 EC public keys are accepted (RS256, ES256)")


def _pem_key(path: Path) -> tuple[str, Any]:
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError("auth.jwt_public_key_files", f"{path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError("auth.jwt_public_key_files", f"{path}: not a PEM public key") from None
    return _algorithm_for(key, "auth.jwt_public_key_files"), key


def _jwks_keys(path: Path) -> list[tuple[str | None, str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key_set = jwt.PyJWKSet.from_dict(data)
    except OSError as exc:
        raise ConfigError("auth.jwks_file", f"{path}: {exc.strerror}") from None
    except (ValueError, jwt.PyJWTError) as exc:
        raise ConfigError("auth.jwks_file", f"{path}: not a usable JWKS ({exc})") from None
    keys: list[tuple[str | None, str, Any]] = []
    for jwk in key_set.keys:
        keys.append((jwk.key_id, _algorithm_for(jwk.key, "auth.jwks_file"), jwk.key))
    return keys
