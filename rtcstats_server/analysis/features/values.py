"""How a client's values become feature values: bounded, and absent rather than null."""

from __future__ import annotations

from typing import Any, Final

#: Longest client string kept in a feature (error texts, decoder names, codec lines).
MAX_TEXT: Final = 512


def text(value: object) -> str | None:
    """A client string as a feature: cut, or None for anything else."""
    return value[:MAX_TEXT] if type(value) is str else None


def error_text(value: object) -> str | None:
    """A failure as the client reported it: its text, or the name and message of an
    error object (the jitsi client sends those)."""
    if type(value) is str:
        return text(value)
    if type(value) is dict:
        parts = [part for part in (value.get("name"), value.get("message")) if type(part) is str]
        return text(": ".join(parts)) if parts else None
    return None


def present(row: dict[str, Any]) -> dict[str, Any]:
    """The features that have a value: one that is unknown or does not apply is
    absent, never null (docs/features.md)."""
    return {name: value for name, value in row.items() if value is not None}
