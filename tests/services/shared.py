"""Where ``shared/`` (the real fixture dumps) is: beside the checkout.

A clone has it at ``<checkout>/../shared``; a git worktree sits deeper
(``wt/<name>/``), so the nearest ancestor that holds ``shared/fixtures`` wins, and
the clone's place is the answer (and the error message) when none does.
"""

from __future__ import annotations

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]

SHARED = next(
    (d / "shared" for d in _CHECKOUT.parents if (d / "shared" / "fixtures").is_dir()),
    _CHECKOUT.parent / "shared",
)
FIXTURES = SHARED / "fixtures"
