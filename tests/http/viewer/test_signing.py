"""Signed viewer links: what opens a session, what does not, and where the key lives."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from rtcstats_server.config import build_config
from rtcstats_server.exceptions import ConfigError
from rtcstats_server.http.viewer.signing import (
    SECRET_FILE,
    Denied,
    Signer,
    load_key,
    make_signer,
    public_base_url,
)

A = "a" * 32
B = "b" * 32
NOW = 1_800_000_000.0


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    return split.path, query["exp"], query["sig"]


def test_a_link_opens_its_session_until_it_expires() -> None:
    signer = Signer(b"k" * 32, "https://collector.example.com/", ttl_s=3600)
    signed = signer.url(A, NOW)
    path, exp, sig = parts(signed.url)
    assert signed.url.startswith("https://collector.example.com/view/")
    assert path == f"/view/{A}" and int(exp) == signed.expires_at == NOW + 3600
    assert "=" not in sig and "+" not in sig and "/" not in sig  # URL-safe, unpadded
    assert signer.check(A, exp, sig, NOW) is None
    assert signer.check(A, exp, sig, NOW + 3600) is None
    assert signer.check(A, exp, sig, NOW + 3601) is Denied.EXPIRED


def test_forged_altered_and_foreign_links_are_refused() -> None:
    signer = Signer(b"k" * 32, "http://x", ttl_s=3600)
    _, exp, sig = parts(signer.url(A, NOW).url)
    other = Signer(b"q" * 32, "http://x", ttl_s=3600)
    _, other_exp, other_sig = parts(other.url(A, NOW).url)
    assert signer.check(B, exp, sig, NOW) is Denied.BAD_SIGNATURE  # another session's
    assert signer.check(A, str(int(exp) + 86400), sig, NOW) is Denied.BAD_SIGNATURE  # extended
    assert signer.check(A, other_exp, other_sig, NOW) is Denied.BAD_SIGNATURE  # another key
    assert signer.check(A, exp, sig[:-1] + ("A" if sig[-1] != "A" else "B"), NOW) is (
        Denied.BAD_SIGNATURE
    )
    assert signer.check(A, None, sig, NOW) is Denied.BAD_SIGNATURE  # not a lasting one
    assert signer.check(A, "", sig, NOW) is Denied.MISSING
    assert signer.check(A, None, None, NOW) is Denied.MISSING
    assert signer.check(A, exp, "", NOW) is Denied.MISSING
    assert signer.check(A, "-5", sig, NOW) is Denied.MALFORMED
    assert signer.check(A, exp, "x" * 200, NOW) is Denied.MALFORMED


def test_the_generated_key_is_private_and_kept(tmp_path: Path) -> None:
    config = build_config({"server": {"data_dir": str(tmp_path)}}, environ={})
    key = load_key(config)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(config) == key  # the next start signs with the same key
    assert len(key) >= 32
    first = make_signer(config).url(A, NOW)
    _, exp, sig = parts(first.url)
    assert make_signer(config).check(A, exp, sig, NOW) is None


def test_a_configured_secret_wins_and_nothing_is_written(tmp_path: Path) -> None:
    config = build_config(
        {"server": {"data_dir": str(tmp_path)}, "viewer": {"secret": "s3cr3t-s3cr3t-s3cr3t"}},
        environ={},
    )
    assert load_key(config) == b"s3cr3t-s3cr3t-s3cr3t"
    assert not (tmp_path / SECRET_FILE).exists()


def test_a_damaged_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("short\n")
    config = build_config({"server": {"data_dir": str(tmp_path)}}, environ={})
    with pytest.raises(ConfigError, match=SECRET_FILE):
        load_key(config)


@pytest.mark.parametrize(
    ("server", "viewer", "expected"),
    [
        ({"host": "0.0.0.0", "port": 8080}, {}, "http://127.0.0.1:8080"),
        ({"host": "10.1.2.3", "port": 9000}, {}, "http://10.1.2.3:9000"),
        ({"host": "::1", "port": 9000}, {}, "http://[::1]:9000"),
        (
            {},
            {"public_base_url": "https://rtc.example.com/stats/"},
            "https://rtc.example.com/stats",
        ),
    ],
)
def test_public_base_url(
    server: dict[str, object], viewer: dict[str, object], expected: str
) -> None:
    config = build_config({"server": server, "viewer": viewer}, environ={})
    assert public_base_url(config) == expected


@pytest.mark.parametrize("origin", ["dash.example.com", "https://x.com/path", "javascript:x", "*"])
def test_authorized_domains_must_be_origins(origin: str) -> None:
    with pytest.raises(ConfigError, match="authorized_domains"):
        build_config({"viewer": {"authorized_domains": [origin]}}, environ={})


def test_a_lasting_link_never_expires_and_is_no_expiring_one() -> None:
    signer = Signer(b"k" * 32, "https://collector.example.com", ttl_s=3600)
    signed = signer.lasting(A)
    split = urlsplit(signed.url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    assert signed.expires_at is None and set(query) == {"sig"} and split.path == f"/view/{A}"
    sig = query["sig"]
    assert signer.check(A, None, sig, NOW) is None
    assert signer.check(A, None, sig, NOW + 100 * 365 * 86400) is None
    assert signer.check(B, None, sig, NOW) is Denied.BAD_SIGNATURE
    # the lasting signature given an expiry, any expiry, is no expiring link's
    for exp in ("0", str(int(NOW) + 60), "9" * 12):
        assert signer.check(A, exp, sig, NOW) is Denied.BAD_SIGNATURE
    assert Signer(b"q" * 32, "https://x", 3600).check(A, None, sig, NOW) is (
        Denied.BAD_SIGNATURE  # another key (viewer.secret changed): every link revoked
    )


def test_the_base_url_is_not_signed() -> None:
    old = Signer(b"k" * 32, "http://127.0.0.1:8080", ttl_s=3600)
    new = Signer(b"k" * 32, "https://rtcstats.example.com/collector/", ttl_s=3600)
    for made in (old.lasting(A).url, old.url(A, NOW).url):
        split = urlsplit(made)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        assert new.check(A, query.get("exp"), query["sig"], NOW) is None
    assert new.lasting(A).url == (
        "https://rtcstats.example.com/collector"
        + urlsplit(old.lasting(A).url)._replace(scheme="", netloc="").geturl()
    )
