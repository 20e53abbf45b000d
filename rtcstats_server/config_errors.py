"""Configuration errors in an operator's words: every one at once, each naming its key.

pydantic reports what is wrong in its own terms (``Extra inputs are not permitted``,
``instance of ServerConfig``, ``<class 'pathlib.Path'>``). An operator fixing a file
or a container's environment needs instead: the dotted key, what it should be, the
value it got (never a secret's), the environment variable that set it when one did,
and for a misspelt key the one that was meant. Each problem becomes one
``(key, text)`` pair; ``ConfigError`` carries all of them, so one run lists them all.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails

#: Where an operator finds every key with its default (it ships in the package).
EVERY_KEY: Final = "`rtcstats-server check-config --print-defaults` lists every key"

KeyPath = tuple[str, ...]
#: Key path (lower case, as in the tree) → the environment variable that set it.
Sources = Mapping[KeyPath, str]

_PREFIXES: Final = (
    ("Input should be", "should be"),
    ("Input is", "is"),
    ("String should", "should"),
)
_CLASS_REPR: Final = re.compile(r"<class '[\w.]+'>")


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The model classes inside an annotation: ``X``, ``list[X]``, ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def _model_at(model: type[BaseModel], path: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The section (or list item) model at ``path``; None when it leads to a value."""
    current = model
    for part in path:
        if isinstance(part, int):
            continue  # an item of a list of models: same model
        field = current.model_fields.get(part)
        inner = next(_models_in(field.annotation), None) if field is not None else None
        if inner is None:
            return None
        current = inner
    return current


def _annotation_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> Any:
    """The annotation of the value at ``loc`` (None when unknown)."""
    names = [part for part in loc if isinstance(part, str)]
    if not names:
        return None
    parent = _model_at(model, loc[: max(i for i, p in enumerate(loc) if isinstance(p, str))])
    field = parent.model_fields.get(names[-1]) if parent is not None else None
    return field.annotation if field is not None else None


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or "SecretStr" in str(annotation)


def _class_names(model: type[BaseModel]) -> set[str]:
    names = {model.__name__}
    for field in model.model_fields.values():
        for inner in _models_in(field.annotation):
            names |= _class_names(inner)
    return names


def env_name(prefix: str, path: KeyPath) -> str:
    """The environment variable of a key: ``RTCSTATS_SERVER__PORT`` for server.port."""
    return prefix + "__".join(part.upper() for part in path)


def _env_of(loc: KeyPath, sources: Sources) -> list[str]:
    """The variables that set ``loc``: the one naming it or a key above it (a list
    given whole), else every one under it (a section's check)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in sources:
            return [sources[loc[:end]]]
    return sorted(name for path, name in sources.items() if path[: len(loc)] == loc)


def _wording(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    message = error["msg"]
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _model_at(model, tuple(error["loc"]))
        keys = ", ".join(f"`{name}`" for name in section.model_fields) if section else ""
        return "should be a mapping of keys" + (f" ({keys})" if keys else "")
    if kind == "path_type":
        return "should be a path"
    if kind in ("value_error", "assertion_error"):
        return message.split(", ", 1)[1] if ", " in message else message
    for old, new in _PREFIXES:
        if message.startswith(old):
            message = new + message[len(old) :]
            break
    message = _CLASS_REPR.sub("the expected type", message)
    if any(re.search(rf"\b{name}\b", message) for name in _class_names(model)):
        return "has the wrong type"  # never show an internal class name
    return message


def _unknown(
    error: ErrorDetails, model: type[BaseModel], loc: KeyPath, env: list[str], prefix: str
) -> str:
    parent = _model_at(model, tuple(error["loc"])[:-1])
    known = list(parent.model_fields) if parent is not None else []
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6) if loc else []
    text = "unknown key" + (f" (from {', '.join(env)})" if env else "")
    if not close:
        return f"{text}; {EVERY_KEY}"
    meant = close[0]
    if env:
        return f"{text}; did you mean `{meant}` ({env_name(prefix, (*loc[:-1], meant))})?"
    return f"{text}; did you mean `{meant}`?"


def describe(
    exc: ValidationError, model: type[BaseModel], sources: Sources, env_prefix: str
) -> list[tuple[str, str]]:
    """One ``(dotted key, problem)`` per validation error, in the model's key order."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        raw_loc = tuple(error["loc"])
        loc = tuple(str(part) for part in raw_loc)
        key = ".".join(loc) or "(top level)"
        env = _env_of(loc, sources)
        if error["type"] == "extra_forbidden":
            problems.append((key, _unknown(error, model, loc, env, env_prefix)))
            continue
        notes: list[str] = []
        value = error.get("input")
        if (
            "input" in error
            and not isinstance(value, dict | list)
            and error["type"] != "missing"
            and not _is_secret(_annotation_at(model, raw_loc))
        ):
            notes.append(f"got {value!r}")
        if env:
            notes.append(f"from {', '.join(env)}")
        text = _wording(error, model)
        problems.append((key, text + (f" ({'; '.join(notes)})" if notes else "")))
    return problems
