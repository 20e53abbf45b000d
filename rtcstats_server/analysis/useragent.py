"""Browser and OS from a user agent string: the few families WebRTC runs in.

A full parser (ua-parser and its regex database) would be one more dependency to keep
current for a single line of a summary; the families that matter for WebRTC support
questions are few and their tokens stable, so a short ordered table does the job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: (family, pattern with the version in group 1); the first match wins, so more
#: specific tokens (Edge, Opera, Electron, ...) come before the Chrome they contain.
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern))
    for family, pattern in (
        ("Electron", r"Electron/([\d.]+)"),
        ("Edge", r"Edg(?:e|A|iOS)?/([\d.]+)"),
        ("Opera", r"(?:OPR|Opera)/([\d.]+)"),
        ("Samsung Internet", r"SamsungBrowser/([\d.]+)"),
        ("Firefox", r"(?:Firefox|FxiOS)/([\d.]+)"),
        ("Chrome Headless", r"HeadlessChrome/([\d.]+)"),
        ("Chrome", r"(?:Chrome|CriOS)/([\d.]+)"),
        ("Safari", r"Version/([\d.]+).*Safari/"),
        ("Safari", r"AppleWebKit/([\d.]+)"),
    )
)
#: The browser names a record's ``browser`` can hold (what the sessions page offers).
BROWSER_FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(family for family, _ in _BROWSERS))

_OSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern))
    for family, pattern in (
        ("Windows", r"Windows NT ([\d.]+)"),
        ("iOS", r"(?:iPhone|iPad|iPod).*? OS ([\d_]+)"),
        ("macOS", r"Mac OS X ([\d_.]+)"),
        ("Android", r"Android ([\d.]+)"),
        ("Chrome OS", r"CrOS \S+ ([\d.]+)"),
        ("Linux", r"Linux()"),
    )
)

_WINDOWS_NAMES = {"10.0": "10", "6.3": "8.1", "6.2": "8", "6.1": "7"}


@dataclass(frozen=True)
class Platform:
    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "browser": self.browser,
            "browser_version": self.browser_version,
            "os": self.os,
            "os_version": self.os_version,
        }


def parse_user_agent(user_agent: str | None) -> Platform:
    if not user_agent:
        return Platform(None, None, None, None)
    browser = browser_version = None
    for family, pattern in _BROWSERS:
        match = pattern.search(user_agent)
        if match:
            browser, browser_version = family, match.group(1)
            break
    os_name = os_version = None
    for family, pattern in _OSES:
        match = pattern.search(user_agent)
        if match:
            os_name, os_version = family, match.group(1).replace("_", ".") or None
            if family == "Windows" and os_version is not None:
                os_version = _WINDOWS_NAMES.get(os_version, os_version)
            break
    return Platform(browser, browser_version, os_name, os_version)
