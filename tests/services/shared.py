"""Where the shared fixtures are: ``shared/`` beside the checkout, or beside a parent
of it (a git worktree under ``wt/`` of the main checkout's parent)."""

from __future__ import annotations

from pathlib import Path


def _find_shared() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "fixtures").is_dir():
            return parent / "shared"
    return here.parents[3] / "shared"  # named in the error of the fixtures_dir fixture


SHARED = _find_shared()
FIXTURES = SHARED / "fixtures"
