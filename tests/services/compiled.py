"""A compiled build of this checkout in a directory of its own (the checkout stays pure).

Copies the package, setup.py and pyproject.toml to ``dest`` and has setup.py compile
the listed modules in place (``RTCSTATS_COMPILE=1 setup.py build_ext --inplace``):
``dest`` then imports as a compiled ``rtcstats_server`` when first on ``sys.path``.
tests/analysis/test_compiled.py and the benchmarks' ``--build`` (bench/builds.py) use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compiler() -> str | None:
    """The C compiler setuptools would call, if it is installed."""
    configured = (sysconfig.get_config_var("CC") or "cc").split()
    return shutil.which(os.environ.get("CC", configured[0] if configured else "cc"))


def copy_source(dest: Path) -> Path:
    """What a build reads (the package, setup.py, pyproject.toml) copied to ``dest``, so
    that setuptools' ``build/`` and ``*.egg-info`` are written there, not here."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        ROOT / "rtcstats_server",
        dest / "rtcstats_server",
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
        dirs_exist_ok=True,
    )
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def build_compiled(dest: Path, modules: Sequence[str] | None = None) -> Path:
    """``dest`` holding this checkout's package with its compiled modules built in
    place; ``modules``: only these of ``COMPILED_MODULES`` (to measure each one's
    share). Raises with the build's output when it fails."""
    copy_source(dest)
    if modules is not None:
        listing = dest / "rtcstats_server" / "compiled.py"
        text = listing.read_text()
        start = text.index("COMPILED_MODULES: Final = (")
        end = text.index("\n)\n", start) + 3
        listing.write_text(
            text[:start] + f"COMPILED_MODULES: Final = {tuple(modules)!r}\n" + text[end:]
        )
    done = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=dest,
        env={**os.environ, "RTCSTATS_COMPILE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the compiled build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return dest
