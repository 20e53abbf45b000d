"""The configuration reference, generated from the typed tree so it cannot drift.

Two renderings: the annotated YAML file operators copy (every key with its default
and a comment) and the Markdown table of docs/configuration.md (key, type, default,
environment variable). ``python -m rtcstats_server.cli.config_reference`` rewrites both;
a test fails when either is stale.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from rtcstats_server.config import DEPRECATED_SECTIONS, ENV_PREFIX, Config, Section
from rtcstats_server.config_errors import env_name

ROOT = Path(__file__).resolve().parents[2]
YAML_PATH = ROOT / "config" / "rtcstats-server.yaml"
MARKDOWN_PATH = ROOT / "docs" / "configuration.md"


@dataclass(frozen=True)
class Key:
    path: tuple[str, ...]
    type_name: str
    default: Any
    description: str
    secret: bool

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return env_name(ENV_PREFIX, self.path)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(arg).replace("'", "") for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return f"list of {_type_name(inner)}"
    if annotation is type(None):
        return "null"
    if annotation is SecretStr:
        return "secret string"
    if isinstance(annotation, type):
        return {
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "boolean",
            "Path": "path",
        }.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):  # a default is never a real secret
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def keys(model: type[BaseModel] = Config, prefix: tuple[str, ...] = ()) -> Iterator[Key]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from keys(annotation, (*prefix, name))
            continue
        default = field.default
        if default is PydanticUndefined and field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
        yield Key(
            path=(*prefix, name),
            type_name=_type_name(annotation),
            default=_plain(default),
            description=field.description or "",
            secret=annotation is SecretStr or "SecretStr" in str(annotation),
        )


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def render_yaml() -> str:
    lines = [
        "# rtcstats-collector configuration: every key, with its default.",
        "# Generated from rtcstats_server/config.py by",
        "#   python -m rtcstats_server.cli.config_reference",
        "# and printed by `rtcstats-server check-config --print-defaults`.",
        "# Environment variables RTCSTATS_<SECTION>__<KEY> override this file;",
        "# put secrets there, not here. Unknown keys are errors.",
    ]
    current: tuple[str, ...] = ()
    for key in keys():
        section = key.path[:-1]
        if section != current:
            common = 0
            while common < min(len(section), len(current)) and section[common] == current[common]:
                common += 1
            for depth in range(common, len(section)):
                if depth == 0:
                    lines.append("")
                lines.append("  " * depth + f"{section[depth]}:")
            current = section
        indent = "  " * len(section)
        note = key.description + (" Secret: set it from the environment." if key.secret else "")
        lines.append(f"{indent}# {note} ({key.type_name}; env {key.env})")
        lines.append(f"{indent}{key.path[-1]}: {_yaml_scalar(key.default)}")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from `rtcstats_server/config.py` by",
        "`python -m rtcstats_server.cli.config_reference`",
        "(a test fails when this file is stale). Every key can be set in the YAML file given to",
        "`--config` or by its environment variable, which wins. `rtcstats-server check-config",
        "FILE` prints the effective configuration with secrets masked, or every error it has;",
        "`rtcstats-server check-config --print-defaults` prints config/rtcstats-server.yaml.",
        "",
        "| key | type | default | environment variable | meaning |",
        "|---|---|---|---|---|",
    ]
    for key in keys():
        default = f"`{_yaml_scalar(key.default)}`"
        if key.secret:
            default += " (secret)"
        kind = key.type_name.replace("|", "\\|")
        out.append(f"| `{key.dotted}` | {kind} | {default} | `{key.env}` | {key.description} |")
    if DEPRECATED_SECTIONS:
        out += [
            "",
            "Renamed sections still read under their old name (file and environment), "
            "with a warning at start:",
            "",
        ]
        for old, new in DEPRECATED_SECTIONS.items():
            out.append(f"- `{old}` (`{ENV_PREFIX}{old.upper()}__*`): now `{new}`")
    return "\n".join(out) + "\n"


def main() -> int:
    YAML_PATH.parent.mkdir(parents=True, exist_ok=True)
    MARKDOWN_PATH.parent.mkdir(parents=True, exist_ok=True)
    YAML_PATH.write_text(render_yaml(), encoding="utf-8")
    MARKDOWN_PATH.write_text(render_markdown(), encoding="utf-8")
    sys.stdout.write(f"wrote {YAML_PATH} and {MARKDOWN_PATH}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
