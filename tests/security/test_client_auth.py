"""Client tokens and the Origin allowlist against a live collector: refusals come
before the upgrade (401/403, counted), and a token's ids are what the record keeps."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.services.collector import RunningCollector, run_collector

SECRET = "hs256-test-secret-0123456789abcdef"
AUDIENCE = "rtcstats-collector"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other_ec = ec.generate_private_key(ec.SECP256R1())
    pem = base / "rsa.pem"
    pem.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwks = base / "keys.jwks"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"}]}))
    return {"rsa": rsa_key, "ec": ec_key, "other_ec": other_ec, "pem": pem, "jwks": jwks}


def token(key: Any, alg: str, *, exp_in: float = 300, aud: str = AUDIENCE, **headers: str) -> str:
    claims = {
        "exp": int(time.time() + exp_in),
        "aud": aud,
        "rtcStats": {"user": "alice", "session": "meeting-42", "conference": "room@conf"},
    }
    return jwt.encode(claims, key, algorithm=alg, headers=headers or None)


@pytest.fixture
async def guarded(tmp_path: Path, keys: dict[str, Any]) -> AsyncIterator[RunningCollector]:
    settings = {
        "auth": {
            "require_token": True,
            "jwt_secret": SECRET,
            "jwt_public_key_files": [str(keys["pem"])],
            "jwks_file": str(keys["jwks"]),
            "audience": AUDIENCE,
            "leeway_s": 0,
            "allowed_origins": ["https://meet.example.com", "*.example.org"],
        }
    }
    async with run_collector(tmp_path / "data", settings) as running:
        yield running


async def upgrade_status(collector: RunningCollector, query: str, origin: str | None = None) -> int:
    headers = {"Origin": origin} if origin else {}
    try:
        async with collector.http.ws_connect(
            collector.ws_url + "/room" + query, protocols=("2.0",), headers=headers
        ) as ws:
            await ws.close()
            return 101
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status


async def test_tokens_and_origins(guarded: RunningCollector, keys: dict[str, Any]) -> None:
    good = {
        "HS256": token(SECRET, "HS256"),
        "RS256 (PEM)": token(keys["rsa"], "RS256"),
        "ES256 (JWKS)": token(keys["ec"], "ES256", kid="ec-1"),
    }
    for name, value in good.items():
        assert await upgrade_status(guarded, f"?rtcstats-token={value}") == 101, name

    refused = {
        "missing": ("", "token_missing"),
        "expired": (f"?rtcstats-token={token(SECRET, 'HS256', exp_in=-60)}", "token_expired"),
        "wrong key": (
            f"?rtcstats-token={token(keys['other_ec'], 'ES256', kid='ec-1')}",
            "token_invalid",
        ),
        "wrong HS secret": (
            f"?rtcstats-token={token('not-the-secret-but-as-long-as-one!!', 'HS256')}",
            "token_invalid",
        ),
        "wrong audience": (
            f"?rtcstats-token={token(SECRET, 'HS256', aud='someone-else')}",
            "token_audience",
        ),
        "not a JWT": ("?rtcstats-token=abc.def", "token_invalid"),
        "alg none": (
            "?rtcstats-token=" + jwt.encode({"exp": time.time() + 60}, None, algorithm="none"),
            "token_invalid",
        ),
    }
    for name, (query, _reason) in refused.items():
        assert await upgrade_status(guarded, query) == 401, name

    ok = "?rtcstats-token=" + good["HS256"]
    for origin in ("https://meet.example.com", "https://a.example.org", "http://b.c.example.org"):
        assert await upgrade_status(guarded, ok, origin) == 101, origin
    for origin in (
        "https://evil.com",
        "https://meet.example.com.evil.com",
        "http://meet.example.com",  # exact entries pin the scheme
        "https://example.org",  # a wildcard is for subdomains only
        "https://notexample.org",
        "null",
    ):
        assert await upgrade_status(guarded, ok, origin) == 403, origin

    async with guarded.http.get(guarded.base_url + "/metrics") as response:
        text = await response.text()
    for reason, count in (
        ("token_missing", 1),
        ("token_expired", 1),
        ("token_invalid", 4),
        ("token_audience", 1),
        ("origin_not_allowed", 6),
    ):
        assert f'rtcstats_connections_refused_total{{reason="{reason}"}} {count}.0' in text


async def test_token_ids_win_over_the_identity_message(
    guarded: RunningCollector,
) -> None:
    value = token(SECRET, "HS256")
    async with guarded.http.ws_connect(
        guarded.ws_url + f"/room?x=1&rtcstats-token={value}", protocols=("2.0",)
    ) as ws:
        await ws.send_str('["identity",null,{"userId":"mallory","confName":"other"},1]')
        await ws.send_str('["create","PC_0",{},2]')
        await ws.close()
    record = await guarded.wait_for_record(lambda r: r["state"] == "stored")
    assert record["user_id"] == "alice"
    assert record["conference_id"] == "room@conf"
    assert record["meeting_id"] == "meeting-42"
    assert record["authenticated"] is True
    # The token is a credential: it is cut from the url we keep.
    assert record["url"] == "/room?x=1"
    dump = await guarded.dump_text(record["id"])
    assert value not in dump and "rtcstats-token" not in dump
