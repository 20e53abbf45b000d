"""One typed configuration tree, loaded once from YAML and the environment.

Every key has a default so the server runs with no file at all. Unknown keys are
errors: a misspelt key silently ignored is an outage found too late. Environment
variables ``RTCSTATS_<SECTION>__<KEY>`` (more ``__`` for deeper keys) override the
file, so secrets never have to be written into it. This is the only module that
reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from rtcstats_server.exceptions import ConfigError

ENV_PREFIX = "RTCSTATS_"


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
    zstd_level: int = Field(3, ge=1, le=19, description="zstd compression level.")
    fsync: bool = Field(
        False,
        description="fsync each frame: survives power loss too, at a large cost in IOPS.",
    )


class StorageConfig(Section):
    backend: Literal["local"] = Field("local", description="Where finished dumps are kept.")
    path: Path | None = Field(
        None, description="Directory of the local backend; default <data_dir>/dumps."
    )


class MetadataConfig(Section):
    backend: Literal["embedded"] = Field(
        "embedded", description="Session records store; embedded is SQLite under data_dir."
    )
    path: Path | None = Field(
        None, description="Embedded store file; default <data_dir>/sessions.sqlite3."
    )


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="Log line format.")


class Config(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)  # type: ignore[arg-type]
    ingest: IngestConfig = Field(default_factory=IngestConfig)  # type: ignore[arg-type]
    dumps: DumpsConfig = Field(default_factory=DumpsConfig)  # type: ignore[arg-type]
    storage: StorageConfig = Field(default_factory=StorageConfig)  # type: ignore[arg-type]
    metadata: MetadataConfig = Field(default_factory=MetadataConfig)  # type: ignore[arg-type]
    logging: LoggingConfig = Field(default_factory=LoggingConfig)  # type: ignore[arg-type]

    @property
    def dumps_dir(self) -> Path:
        return self.storage.path or self.server.data_dir / "dumps"

    @property
    def live_dir(self) -> Path:
        return self.server.data_dir / "live"

    @property
    def embedded_path(self) -> Path:
        return self.metadata.path or self.server.data_dir / "sessions.sqlite3"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``RTCSTATS_A__B=v``; variables without ``__`` are not config."""
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path), f"set both as a value and a section ({name})")
            node = child
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def build_config(
    data: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Validate file data, then environment, then command-line overrides, in that order."""
    tree = _merge({}, data or {})
    tree = _merge(tree, _env_overrides(os.environ if environ is None else environ))
    tree = _merge(tree, overrides or {})
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = first["msg"]
        if first["type"] == "extra_forbidden":
            problem = "unknown key (see config/rtcstats-server.yaml for the valid ones)"
        elif "input" in first and not isinstance(first["input"], dict | list):
            problem = f"{problem} (got {first['input']!r})"
        raise ConfigError(key, problem) from None


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
