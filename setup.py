"""Opt-in compiled build of the analysis pass (mypyc); everything else is in pyproject.toml.

Only with ``RTCSTATS_COMPILE=1`` in the build's environment does this add extension
modules: mypyc compiles the modules listed in ``rtcstats_server/compiled.py`` to C
(it needs mypy, the package's dependencies for their types, and a C compiler; the
Docker image's builder stage has them). Without it the package is pure Python,
exactly as before, so an editable install never holds a ``.so`` that would shadow
the code being edited. ``pip`` builds in an isolated environment without mypy, so a
compiled wheel is built with ``--no-build-isolation`` (see the Dockerfile).
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def _ext_modules() -> list[object]:
    if os.environ.get("RTCSTATS_COMPILE") != "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        raise SystemExit(
            "RTCSTATS_COMPILE=1 needs mypy (mypyc) in the build environment: pip install "
            "mypy types-PyYAML and the package's dependencies, then build with "
            "pip wheel --no-build-isolation (see the Dockerfile)"
        ) from exc

    # Read the list without importing the package (its dependencies may be absent).
    listed = runpy.run_path(str(HERE / "rtcstats_server" / "compiled.py"))["COMPILED_MODULES"]
    paths = [name.replace(".", "/") + ".py" for name in listed]
    # One shared library for the group, named after it rather than after a hash.
    return list(mypycify(paths, opt_level="3", group_name="rtcstats_server_analysis"))


setup(ext_modules=_ext_modules())
