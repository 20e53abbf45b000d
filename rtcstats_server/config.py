"""One typed configuration tree, loaded once from YAML and the environment.

Every key has a default so the server runs with no file at all. Unknown keys are
errors: a misspelt key silently ignored is an outage found too late. Environment
variables ``RTCSTATS_<SECTION>__<KEY>`` (more ``__`` for deeper keys) override the
file, so secrets never have to be written into it. This is the only module that
reads the environment.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from rtcstats_server.config_errors import describe
from rtcstats_server.exceptions import ConfigError

ENV_PREFIX = "RTCSTATS_"

log = logging.getLogger(__name__)


class Section(BaseModel):
    """Base of every section: unknown keys are refused, values are checked once."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


class ServerConfig(Section):
    host: str = Field("0.0.0.0", description="Address the public port listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Public port: ingest, API, health.")
    data_dir: Path = Field(
        Path("./data"),
        description="Where live dumps, the embedded store and local dumps are kept.",
    )
    shutdown_grace_s: float = Field(
        10.0, gt=0, description="Time allowed to drain sessions on SIGTERM."
    )
    node_id: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]{0,64}$",
        description="Name of this collector process in session records; default: hostname.",
    )
    require_backends: bool = Field(
        False,
        description="Exit at start (status 1, one line naming it) when the metadata database "
        "or the dump bucket does not answer within metadata.timeout_s; false: start degraded "
        "and keep sessions in the local spools until they answer.",
    )
    workers: int = Field(
        0,
        ge=0,
        le=256,
        description="Worker processes sharing the port (SO_REUSEPORT) under one supervisor; "
        "0: one per CPU the host (and the container's cpu.max) allows; 1: a single process, "
        "no supervisor.",
    )
    uvloop: bool = Field(
        True,
        description="Serve on uvloop's event loop where it is installed (Linux, macOS: it "
        "is a dependency there): about 15 % less CPU per ingested message; false: the "
        "standard asyncio loop.",
    )
    cluster: bool = Field(
        False,
        description="This collector is one of several behind a load balancer, sharing the "
        "MongoDB store and the dump bucket: each connection of a session writes its own "
        "segment, any collector resumes and finishes any session (docs/scaling.md). Needs "
        "storage.backend s3, gcs or azure and metadata.backend mongodb.",
    )


class IngestConfig(Section):
    permessage_deflate: bool = Field(
        False, description="Offer websocket compression (costs CPU, saves bandwidth)."
    )
    max_message_bytes: int = Field(
        1 << 20, ge=1024, description="Larger frames are refused with close code 1009."
    )
    max_bad_messages: int = Field(
        100, ge=1, description="Invalid messages tolerated per connection before close 1007."
    )
    max_session_bytes: int = Field(
        256 << 20, ge=1024, description="A session past this size is closed (1009) and stored."
    )
    idle_timeout_s: float = Field(
        60.0, gt=0, description="A connection silent this long is finished."
    )
    resume_grace_s: float = Field(
        120.0, ge=0, description="How long a dropped 3.1 session waits for its client to resume."
    )
    ack_every_entries: int = Field(
        100, ge=1, description="3.1 clients: flush and acknowledge after this many entries."
    )
    max_path_bytes: int = Field(
        1024, ge=16, description="Longest request path (with query) accepted for an upgrade."
    )


class DumpsConfig(Section):
    flush_interval_s: float = Field(
        2.0, gt=0, description="A zstd frame is written at least this often per session."
    )
    flush_bytes: int = Field(
        1 << 20, ge=1024, description="... or as soon as this many raw bytes are buffered."
    )
    zstd_level: int = Field(
        1,
        ge=1,
        le=19,
        description="zstd compression level of the dump's frames: 1 makes live frames as "
        "small as 3 does, for less CPU.",
    )
    fsync: bool = Field(
        False,
        description="fsync each frame: survives power loss too, at a large cost in IOPS.",
    )


class StorageConfig(Section):
    """Where finished dumps go. Object backends upload from a local outbox, so a bucket
    outage delays uploads instead of losing sessions; credentials normally come from the
    platform's chain (AWS_*/instance role, GOOGLE_*, AZURE_*) and never need this file."""

    backend: Literal["local", "s3", "gcs", "azure"] = Field(
        "local", description="Where finished dumps are kept: a local directory or a bucket."
    )
    path: Path | None = Field(
        None, description="Directory of the local backend; default <data_dir>/dumps."
    )
    bucket: str = Field(
        "", max_length=255, description="Bucket (Azure: container) of an object backend."
    )
    prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._/-]{0,200}$",
        description="Key prefix: keys are <prefix>/<yyyy>/<mm>/<dd>/<session id>.rtcstats.zst.",
    )
    endpoint: str = Field(
        "",
        pattern=r"^(https?://\S+)?$",
        description="Object store URL for S3 compatibles or emulators; empty: the provider's.",
    )
    region: str = Field("", max_length=64, description="S3 region; empty: from the environment.")
    path_style: bool = Field(
        True, description="S3 path-style URLs (most compatibles need them); false: virtual-hosted."
    )
    access_key_id: SecretStr | None = Field(
        None, description="S3 key id; leave unset to use the environment / platform chain."
    )
    secret_access_key: SecretStr | None = Field(
        None, description="S3 secret; set it through RTCSTATS_STORAGE__SECRET_ACCESS_KEY."
    )
    account_name: str = Field(
        "",
        max_length=64,
        description="Azure storage account; empty: AZURE_STORAGE_ACCOUNT_NAME. For Azurite "
        "set storage.endpoint to its account URL, http://<host>:10000/<account>.",
    )
    account_key: SecretStr | None = Field(
        None,
        description="Azure shared key; leave unset for the environment / platform chain, or "
        "set it through RTCSTATS_STORAGE__ACCOUNT_KEY.",
    )
    multipart_threshold_bytes: int = Field(
        8 << 20, ge=0, description="Dumps larger than this are uploaded in parts."
    )
    multipart_part_bytes: int = Field(
        8 << 20, ge=5 << 20, description="Size of each part of a multipart upload (S3: >= 5 MiB)."
    )
    spool_max_bytes: int = Field(
        10 << 30,
        ge=1,
        description="Live + not yet uploaded dumps above this: new connections get HTTP 503.",
    )
    min_free_bytes: int = Field(
        64 << 20,
        ge=0,
        description="Free space the data dir's disk must keep: below it /readyz answers 503 "
        "and new connections get HTTP 503 (live sessions go on).",
    )
    upload_concurrency: int = Field(4, ge=1, le=64, description="Dumps uploaded at once.")
    retry_initial_s: float = Field(
        1.0, gt=0, description="First wait after a failed upload; doubles per failure."
    )
    retry_max_s: float = Field(
        300.0, gt=0, description="Longest wait between upload attempts (plus jitter)."
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="Longest single request to the object store."
    )

    @model_validator(mode="after")
    def _bucket_for_objects(self) -> StorageConfig:
        if self.backend != "local" and not self.bucket:
            raise ValueError(f"storage.bucket is required with backend {self.backend}")
        if ".." in self.prefix.split("/"):
            raise ValueError("storage.prefix must not contain '..' segments")
        return self


class MetadataConfig(Section):
    backend: Literal["embedded", "mongodb"] = Field(
        "embedded",
        description="Session records store: embedded is SQLite under data_dir; mongodb for "
        "production (records a backend can read directly).",
    )
    path: Path | None = Field(
        None, description="Embedded store file; default <data_dir>/sessions.sqlite3."
    )
    uri: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017/"),
        description="mongodb: connection URI; holds credentials, so set it from the "
        "environment (RTCSTATS_METADATA__URI). Masked in check-config and logs.",
    )
    database: str = Field("rtcstats", min_length=1, description="mongodb: database name.")
    collection: str = Field(
        "sessions", min_length=1, description="mongodb: collection of session records."
    )
    timeout_s: float = Field(
        5.0,
        gt=0,
        description="mongodb: server selection, connect and socket timeout; past it a write "
        "goes to the local spool and reads answer 503.",
    )
    retry_interval_s: float = Field(
        2.0, gt=0, description="mongodb: how often an unreachable database is tried again."
    )

    @model_validator(mode="after")
    def _mongodb_uri_scheme(self) -> MetadataConfig:
        # Only the scheme: the driver checks the rest, without echoing the secret.
        uri = self.uri.get_secret_value()
        if self.backend == "mongodb" and not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("metadata.uri must start with mongodb:// or mongodb+srv://")
        return self


class RetentionConfig(Section):
    days: int = Field(
        0,
        ge=0,
        description="Delete records and dumps of sessions started this many days "
        "ago or more; 0 keeps everything forever.",
    )
    sweep_interval_s: float = Field(
        3600.0, gt=0, description="How often the retention sweep runs (when days > 0)."
    )


class RtcstatsComConfig(Section):
    """Upload of finished dumps to an rtcstats.com-compatible API (DESIGN section 4).

    Without a token or an endpoint there is no forwarder at all. The token is a secret:
    set it through RTCSTATS_FORWARDERS__RTCSTATS_COM__TOKEN, never in this file.
    """

    endpoint: str = Field(
        "https://api.rtcstats.com/v1.0/upload",
        pattern=r"^(https?://\S+)?$",
        description="Full URL of the upload API; empty disables the forwarder.",
    )
    token: SecretStr = Field(
        SecretStr(""), description="Bearer token of the upload API; empty disables the forwarder."
    )
    sample_rate: float = Field(
        1.0, ge=0, le=1, description="Share of finished sessions uploaded (by session id hash)."
    )
    apps: list[str] = Field(
        default_factory=list, description="Only sessions of these apps; empty: every app."
    )
    conference_patterns: list[str] = Field(
        default_factory=list,
        description="Only conference ids matching one of these globs ('re:' prefix: a regex).",
    )
    timeout_s: float = Field(60.0, gt=0, description="Longest single request to the API.")
    max_attempts: int = Field(8, ge=1, description="Attempts before a job is marked failed.")
    backoff_base_s: float = Field(
        5.0, gt=0, description="Wait after the first retryable failure; doubles per attempt."
    )
    backoff_max_s: float = Field(900.0, gt=0, description="Longest wait between attempts.")
    lease_s: float = Field(
        120.0, gt=0, description="A job's lease; renewed while uploading, expires if we die."
    )
    poll_interval_s: float = Field(
        2.0, gt=0, description="How often idle workers look for due jobs of other processes."
    )
    concurrency: int = Field(2, ge=1, le=32, description="Uploads at once per process.")
    chunk_bytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="Size of each multipart chunk (API: 1 MiB)."
    )

    @model_validator(mode="after")
    def _patterns_compile(self) -> RtcstatsComConfig:
        for pattern in self.conference_patterns:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ValueError(f"conference_patterns: bad regex {pattern!r}: {exc}") from None
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint and self.token.get_secret_value())


class ForwardersConfig(Section):
    rtcstats_com: RtcstatsComConfig = Field(default_factory=RtcstatsComConfig)  # type: ignore[arg-type]


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="Log line format.")
    access: bool = Field(
        False,
        description="One line per API and viewer request (client, method, path without "
        "tokens or signatures, status, bytes, milliseconds, user agent), whatever the level; "
        "JSON like the rest when format is json.",
    )


class QualityConfig(Section):
    """The quality summary computed when a session is stored, and its findings'
    thresholds: a finding is raised when a value reaches its threshold."""

    enabled: bool = Field(True, description="Compute a quality summary for each stored dump.")
    high_packet_loss_pct: float = Field(
        5.0, ge=0, le=100, description="Packets lost (% of one direction and kind) that is high."
    )
    min_packets_for_loss: int = Field(
        100, ge=0, description="Fewer packets than this in a direction: no loss finding."
    )
    high_rtt_ms: float = Field(400.0, gt=0, description="95th percentile RTT that is high.")
    high_jitter_ms: float = Field(50.0, gt=0, description="95th percentile jitter that is high.")
    slow_connect_s: float = Field(
        5.0, gt=0, description="Time from create to connected that is slow."
    )
    freeze_s: float = Field(
        2.0, gt=0, description="Total received video freeze time that is a finding."
    )
    high_concealment_pct: float = Field(
        10.0, ge=0, le=100, description="Concealed audio samples (% received) that is high."
    )
    max_listed: int = Field(
        50, ge=1, description="Longest list (state changes, failures) kept per summary item."
    )
    max_peer_connections: int = Field(
        50,
        ge=1,
        le=1000,
        description="Peer connections summarized one by one; further ones are only counted "
        "(pc_count, failures) and the summary says truncated: true.",
    )


class AnalysisConfig(Section):
    """Where stored sessions are analysed (summary, findings, features): worker
    processes that take jobs from the durable analysis queue, never the ingest loop."""

    workers: int | None = Field(
        None,
        ge=0,
        le=256,
        description="Analysis worker processes serve starts; unset: the CPUs this process "
        "may use (affinity and cgroup quota, as in a container) - 1, at least 1. "
        "0: this host only queues sessions, another host's 'rtcstats-server analyze "
        "--workers N' (same metadata store and bucket) analyses them.",
    )
    lease_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="A job's lease, renewed every third of it while it runs: a worker that "
        "dies mid-job delays it this long, then another worker takes it.",
    )
    poll_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often idle workers look for jobs that another host queued or "
        "that a dead worker left (this host's new sessions wake them at once).",
    )


class GeoConfig(Section):
    """Geolocation of addresses (the client's, its selected candidates', TURN relays')
    with MaxMind databases (GeoIP2 or GeoLite2, ``.mmdb``), looked up before IP masking.
    Off while a path is unset; a path that is not a readable file fails at start."""

    city_db: Path | None = Field(
        None,
        description="City (or Country) database: continent, country and city of an "
        "address. Unset: no location features.",
    )
    asn_db: Path | None = Field(
        None,
        description="ASN database: autonomous system number and organisation of an "
        "address. Unset: no ASN features.",
    )

    @field_validator("city_db", "asn_db", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # RTCSTATS_GEO__CITY_DB= turns it off

    @field_validator("city_db", "asn_db")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            raise ValueError("not a readable file (it should be a MaxMind .mmdb database)")
        return path


class AuthConfig(Section):
    """Who may stream: optional JWTs (``?rtcstats-token=``, the rtcstats-js convention)
    and an Origin allowlist, both checked before the websocket upgrade. A token's
    ``rtcStats.{user, session, conference}`` claims become the record's ids."""

    require_token: bool = Field(
        False,
        description="Refuse (401) upgrades without a valid ?rtcstats-token=<JWT>; needs "
        "jwt_secret, jwt_public_key_files or jwks_file. Off: a token is still checked if sent.",
    )
    jwt_secret: SecretStr = Field(
        SecretStr(""),
        description="HS256 shared secret (32 bytes or more); set it through "
        "RTCSTATS_AUTH__JWT_SECRET.",
    )
    jwt_public_key_files: list[Path] = Field(
        default_factory=list, description="PEM public keys accepted for RS256 and ES256 tokens."
    )
    jwks_file: Path | None = Field(
        None, description="A JWKS file (JSON) of RS256/ES256 public keys, matched by 'kid'."
    )
    audience: str = Field(
        "", max_length=256, description="Required 'aud' claim; empty: not checked."
    )
    issuer: str = Field("", max_length=256, description="Required 'iss' claim; empty: not checked.")
    leeway_s: float = Field(
        30.0, ge=0, le=3600, description="Clock skew allowed on 'exp' and 'nbf'."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to stream (others: 403): 'https://meet.example.com' "
        "(exact), 'meet.example.com' (host, any scheme/port), '*.example.com' (subdomains). "
        "Empty: any. Requests without Origin (backend pushers) pass: use tokens for those.",
    )

    @model_validator(mode="after")
    def _keys_for_tokens(self) -> AuthConfig:
        if self.require_token and not self.has_keys:
            raise ValueError(
                "auth.require_token needs jwt_secret, jwt_public_key_files or jwks_file"
            )
        if 0 < len(self.jwt_secret.get_secret_value().encode()) < 32:
            raise ValueError("auth.jwt_secret must be at least 32 bytes (RFC 7518 3.2)")
        for pattern in self.allowed_origins:
            if not re.fullmatch(r"(https?://)?(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?", pattern):
                raise ValueError(f"auth.allowed_origins: {pattern!r} is not an origin or host")
        return self

    @property
    def has_keys(self) -> bool:
        secret = bool(self.jwt_secret.get_secret_value())
        return secret or bool(self.jwt_public_key_files) or self.jwks_file is not None


class ApiToken(Section):
    """One bearer token of the API, stored as the SHA-256 of the token (make one with
    ``rtcstats-server hash-token``): a leaked config file gives no access."""

    name: str = Field("", max_length=64, description="Who holds it (shown in logs).")
    sha256: str = Field(
        ..., pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the token, not the token."
    )
    scope: Literal["read", "upload", "admin"] = Field(
        "read",
        description="read: sessions and dumps; upload: also POST /v1.0/upload; "
        "admin: also forward and delete.",
    )


class ApiConfig(Section):
    """Who may read. Without tokens the API answers loopback clients only."""

    listen: str = Field(
        "",
        pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$|^$",
        description="host:port for the API and /metrics on their own socket (e.g. "
        "127.0.0.1:9090); then the public port serves ingest, /healthz and /readyz only. "
        "Empty: everything on server.port.",
    )
    tokens: list[ApiToken] = Field(
        default_factory=list,
        description="Bearer tokens as {name, sha256, scope}. Empty: /v1 and /metrics answer "
        "loopback clients only (403 for others).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (CORS); '*' for any. "
        "Empty: no CORS headers.",
    )


class PrivacyConfig(Section):
    obfuscate_ip_addresses: bool = Field(
        True,
        description="Mask IP addresses in ICE candidates, SDP, candidate stats and the "
        "record's remote address before anything is stored (as rtcstats-server does); "
        "a masked event keeps its other bytes, except one holding an SDP description, "
        "which is re-encoded.",
    )


class LimitsConfig(Section):
    """Flood limits, enforced before the websocket upgrade (429/503 with a metric); the
    host's, shared out among workers by ``cli/workers.limits_share``."""

    max_connections: int = Field(
        20000,
        ge=0,
        description="Open ingest connections at once; beyond: 503. 0: no limit. This and "
        "the per-address limits are the host's: each of server.workers enforces 1/N of them.",
    )
    max_connections_per_ip: int = Field(
        256, ge=0, description="Open ingest connections per client address; beyond: 429. 0: none."
    )
    connections_per_ip_per_s: float = Field(
        20.0,
        ge=0,
        description="New connections per client address per second; beyond: 429. 0: no limit.",
    )
    connection_burst_per_ip: int = Field(
        100, ge=1, description="New connections a client address may open at once (bucket size)."
    )
    ipv6_prefix_length: int = Field(
        64,
        ge=1,
        le=128,
        description="IPv6 clients are limited per network of this prefix, not per address: "
        "one host holds a whole /64 and can use any address in it.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose X-Forwarded-For names the client "
        "(e.g. 10.0.0.0/8); from anyone else the header is ignored.",
    )
    handshake_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection must send its whole HTTP request (e.g. the upgrade) within "
        "this time, and an idle keep-alive connection is closed after it (slowloris).",
    )

    @model_validator(mode="after")
    def _proxies_parse(self) -> LimitsConfig:
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"limits.trusted_proxies: {cidr!r} is not a CIDR") from None
        return self


class ViewerConfig(Section):
    """The embeddable session viewer under /view/: signed URLs instead of logins, so a
    dashboard can put any session in an iframe; only the listed origins may frame it."""

    enabled: bool = Field(True, description="Serve the viewer and give records a viewer_url.")
    secret: SecretStr = Field(
        SecretStr(""),
        description="HMAC key signing viewer URLs; empty: generated once and kept in "
        "<data_dir>/viewer-secret. Set it (RTCSTATS_VIEWER__SECRET) to share URLs between "
        "collectors.",
    )
    url_ttl_s: int = Field(
        7 * 86400,
        ge=60,
        description="Lifetime of an expiring viewer link, as POST /v1/sessions/{id}/viewer-url "
        "makes them (s).",
    )
    record_url_ttl_s: int = Field(
        0,
        ge=0,
        description="Lifetime of the viewer_url written in records and of the embedUrl the "
        "/v1.0 API answers (s; at least 60); 0: they never expire (a backend stores them). "
        "Changing viewer.secret revokes every link.",
    )
    authorized_domains: list[str] = Field(
        default_factory=list,
        description="Origins allowed to frame the viewer (https://dash.example.com); the "
        "viewer's own origin always may.",
    )
    public_base_url: str = Field(
        "",
        pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$",
        description="Base of viewer URLs as browsers reach this server; empty: "
        "http://<server.host or 127.0.0.1>:<server.port>.",
    )
    chart_buckets: int = Field(
        300,
        ge=20,
        le=5000,
        description="Chart resolution: each series keeps at most twice this many points "
        "(min/max/mean each); a zoomed window with fewer samples shows every one.",
    )
    cache_max_bytes: int = Field(
        1 << 30,
        ge=0,
        description="Disk for cached view models under <data_dir>/viewer-cache; the least "
        "recently viewed are deleted beyond it (they are recomputed from the dump if viewed).",
    )

    @model_validator(mode="after")
    def _origins(self) -> ViewerConfig:
        if 0 < self.record_url_ttl_s < 60:
            raise ValueError("viewer.record_url_ttl_s must be 0 (never expire) or at least 60")
        for origin in self.authorized_domains:
            host = r"(\*\.)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])"
            if not re.fullmatch(rf"https?://{host}(:[0-9]{{1,5}})?", origin):
                raise ValueError(
                    f"authorized_domains: {origin!r} is not an origin like https://dash.example.com"
                )
        return self


class UploadsConfig(Section):
    """``POST /v1.0/upload``: dumps uploaded the rtcstats.com way become sessions here.

    Chunks of unfinished uploads are kept on disk under ``<data_dir>/uploads`` (not in
    memory), bounded in total and dropped when not assembled within ``chunk_ttl_s``.
    What an upload may expand into is capped too (a few KB of gzip can decompress to
    gigabytes): each cap refused answers 413 with an ``errorCode`` naming it.
    """

    enabled: bool = Field(True, description="Serve the rtcstats.com-compatible /v1.0 API.")
    max_bytes: int = Field(
        256 << 20,
        ge=1024,
        description="Largest upload (raw body, or all chunks of one file) as sent; "
        "beyond: 413 too_large.",
    )
    max_expanded_bytes: int = Field(
        256 << 20,
        ge=1024,
        description="Largest upload once decompressed, and largest dump it becomes (a "
        "webrtc-internals export's series expanded into events); beyond: 413 "
        "expanded_too_large.",
    )
    max_line_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="Longest line of an uploaded dump, and longest single value or event "
        "of a JSON export; refused (413 line_too_long) without holding it whole.",
    )
    max_events: int = Field(
        1_000_000,
        ge=1,
        description="Most events one upload may hold (lines of a dump; update-log entries "
        "and rebuilt getStats results of an export); beyond: 413 too_many_events.",
    )
    max_chunk_bytes: int = Field(
        8 << 20, ge=1024, description="Largest single multipart chunk (rtcstats.com: 1 MiB)."
    )
    max_fields: int = Field(
        16,
        ge=6,
        description="Most parts of one multipart request (the protocol sends 5); beyond: 413 "
        "too_many_fields.",
    )
    max_fields_bytes: int = Field(
        16 << 10,
        ge=1024,
        description="All non-file parts of one multipart request together (names and values); "
        "beyond: 413 fields_too_large.",
    )
    chunk_ttl_s: float = Field(
        3600.0, gt=0, description="Chunks of a file not assembled within this time are deleted."
    )
    max_pending_bytes: int = Field(
        1 << 30,
        ge=1024,
        description="Chunks waiting for assembly and uploads in progress, together: each "
        "chunk and each file count 4 KiB besides their bytes, each upload being received, "
        "converted or waiting for its turn 1 MiB besides its bytes; beyond: 503 busy.",
    )
    concurrency: int = Field(
        2, ge=1, le=32, description="Uploads converted and stored at once; others wait."
    )


#: Sections renamed: the old name still works, with a warning naming the new one.
DEPRECATED_SECTIONS = {"upload": "uploads"}


class Config(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)  # type: ignore[arg-type]
    ingest: IngestConfig = Field(default_factory=IngestConfig)  # type: ignore[arg-type]
    dumps: DumpsConfig = Field(default_factory=DumpsConfig)  # type: ignore[arg-type]
    storage: StorageConfig = Field(default_factory=StorageConfig)  # type: ignore[arg-type]
    metadata: MetadataConfig = Field(default_factory=MetadataConfig)  # type: ignore[arg-type]
    retention: RetentionConfig = Field(default_factory=RetentionConfig)  # type: ignore[arg-type]
    logging: LoggingConfig = Field(default_factory=LoggingConfig)  # type: ignore[arg-type]
    forwarders: ForwardersConfig = Field(default_factory=ForwardersConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)  # type: ignore[arg-type]
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)  # type: ignore[arg-type]
    geo: GeoConfig = Field(default_factory=GeoConfig)  # type: ignore[arg-type]
    viewer: ViewerConfig = Field(default_factory=ViewerConfig)  # type: ignore[arg-type]
    auth: AuthConfig = Field(default_factory=AuthConfig)  # type: ignore[arg-type]
    api: ApiConfig = Field(default_factory=ApiConfig)  # type: ignore[arg-type]
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)  # type: ignore[arg-type]
    limits: LimitsConfig = Field(default_factory=LimitsConfig)  # type: ignore[arg-type]
    uploads: UploadsConfig = Field(default_factory=UploadsConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _shared_backends(self) -> Config:
        """Collectors of a cluster must share their dumps and records: a local directory
        or the embedded SQLite file is one host's, so a session resumed elsewhere (or
        finished by another collector) could not be found."""
        if not self.server.cluster:
            return self
        if self.storage.backend == "local":
            raise ValueError(
                "storage.backend: local keeps dumps on one host; server.cluster: true needs "
                "a shared bucket (s3, gcs or azure)"
            )
        if self.metadata.backend == "embedded":
            raise ValueError(
                "metadata.backend: embedded keeps records on one host; server.cluster: true "
                "needs the shared store (mongodb)"
            )
        return self

    @property
    def dumps_dir(self) -> Path:
        return self.storage.path or self.server.data_dir / "dumps"

    @property
    def live_dir(self) -> Path:
        return self.server.data_dir / "live"

    @property
    def outbox_dir(self) -> Path:
        """Finished dumps waiting for upload to an object backend (a durable queue)."""
        return self.server.data_dir / "outbox"

    @property
    def embedded_path(self) -> Path:
        return self.metadata.path or self.server.data_dir / "sessions.sqlite3"

    @property
    def uploads_dir(self) -> Path:
        """Chunks of uploads waiting for assembly, and uploads being converted."""
        return self.server.data_dir / "uploads"

    @property
    def metadata_spool_dir(self) -> Path:
        """Record writes waiting for an unreachable metadata database."""
        return self.server.data_dir / "metadata-spool"


@dataclass
class _FromEnvironment:
    """The ``RTCSTATS_*`` variables as a tree, which variable set each key, and the
    variables that could not be used (reported with the other errors)."""

    tree: dict[str, Any] = field(default_factory=dict)
    sources: dict[tuple[str, ...], str] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _env_overrides(environ: Mapping[str, str]) -> _FromEnvironment:
    """Nested dict from ``RTCSTATS_A__B=v``; variables without ``__`` are not config."""
    found = _FromEnvironment()
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        key = ".".join(path)
        try:
            parsed = _env_value(value)
        except yaml.YAMLError as exc:
            problem = " ".join(str(exc).split())  # one line
            found.problems.append(
                (key, f"not a valid YAML list or mapping (from {name}): {problem}")
            )
            continue
        if _place(found.tree, path, parsed):
            found.sources[path] = name
        else:
            found.problems.append((key, f"set both as a value and a section ({name})"))
    return found


def _place(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> bool:
    """Put ``value`` at ``path``; False when a value and a section would collide."""
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return False
        node = child
    if isinstance(node.get(path[-1]), dict):
        return False
    node[path[-1]] = value
    return True


def _env_value(value: str) -> Any:
    """Lists and mappings come as YAML flow text (``[a, b]``); the rest stays text
    for the typed model to convert, so a numeric-looking token stays a string."""
    if value.lstrip()[:1] in ("[", "{"):
        return yaml.safe_load(value)
    return value


def _overridden(path: tuple[str, ...], overrides: Mapping[str, Any]) -> bool:
    """Whether a command-line override replaced the value at ``path``."""
    node: Any = overrides
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _renamed_sections(tree: dict[str, Any]) -> dict[str, Any]:
    """Old section names (file or environment) moved to their new name, with a warning;
    where both are given, the new name's keys win."""
    for old, new in DEPRECATED_SECTIONS.items():
        if old not in tree:
            continue
        value = tree.pop(old)
        log.warning("configuration: section %r is deprecated, rename it to %r", old, new)
        if new not in tree:
            tree[new] = value
        elif isinstance(value, Mapping) and isinstance(tree[new], Mapping):
            tree[new] = _merge(dict(value), tree[new])
        else:
            raise ConfigError(old, f"renamed to {new}: set {new} only")
    return tree


def build_config(
    data: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Validate file data, then environment, then command-line overrides, in that order.

    Raises one ``ConfigError`` holding every problem found (see config_errors.py).
    """
    env = _env_overrides(os.environ if environ is None else environ)
    tree = _merge({}, data or {})
    tree = _merge(tree, env.tree)
    tree = _merge(tree, overrides or {})
    tree = _renamed_sections(tree)
    problems = list(env.problems)
    sources = {
        (DEPRECATED_SECTIONS.get(path[0], path[0]), *path[1:]): name
        for path, name in env.sources.items()
        if not _overridden(path, overrides or {})
    }
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        problems += describe(exc, Config, sources, ENV_PREFIX)
    if problems:
        raise ConfigError.of(problems)
    return config


def load_config(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    data: Any = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read the config file: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(str(path), "the top level must be a mapping of sections")
    return build_config(data, environ, overrides)


def masked_dump(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret replaced."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "********" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {name: walk(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    result: dict[str, Any] = walk(config)
    return result
