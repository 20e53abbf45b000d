"""The sessions page at ``/ui/``: find a session, open its viewer, open a dump a
customer sent.

The page holds no data of its own: it is static HTML plus one script and one style
sheet shipped in the package (``ui_static/``), and everything it shows comes from the
API with the caller's own credentials (``GET /v1/sessions``, ``POST
/v1/sessions/{id}/viewer-url``, ``POST /v1.0/upload``). So serving it needs no
permission; reading through it needs a token (asked once, kept in the tab's
sessionStorage) or, with no token configured, a client on this host, exactly as the
API decides. It runs under the viewer's strict policy: the script and style load
only with the response's nonce, nothing inline runs, nothing comes from elsewhere,
and it may not be framed (it holds a token). With ``api.listen`` the page is served
on the API's port only, where the API it calls answers.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from html import escape
from importlib import resources
from typing import Final

from aiohttp import web

from rtcstats_server.analysis.findings import SEVERITIES
from rtcstats_server.analysis.useragent import BROWSER_FAMILIES

UI_PATH: Final = "/ui/"
#: The files of ``ui_static/`` the page loads, and their types.
STATIC_TYPES: Final = {"ui.js": "text/javascript", "ui.css": "text/css"}


def is_ui(path: str) -> bool:
    return path == "/ui" or path.startswith(UI_PATH)


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def _load_static() -> dict[str, StaticFile]:
    """The page's script and style, read once when the app is built (not per request)."""
    folder = resources.files("rtcstats_server.http") / "ui_static"
    files = {}
    for name, content_type in STATIC_TYPES.items():
        body = (folder / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[name] = StaticFile(body, content_type, etag)
    return files


def _policy(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def _options(values: tuple[str, ...]) -> str:
    """A select's choices: "any" (no filter) first."""
    choices = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return '<option value="">any</option>' + choices


def page(nonce: str) -> str:
    findings = tuple(sorted(SEVERITIES))
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>Sessions · rtcstats</title><link rel=icon href="data:,">
<link rel=stylesheet href="static/ui.css" nonce="{nonce}">
</head><body>
<header><h1>Sessions</h1>
<form id=upload><label class=button>Open a dump…<input type=file id=file hidden></label>
<span id=upload-status role=status></span></form>
</header>
<form id=auth hidden><p>This collector needs an API token to list sessions (the
<code>read</code> scope; <code>upload</code> to open a dump). It is kept in this tab only.</p>
<label>Token <input type=password id=token autocomplete=off required></label>
<button type=submit>Use token</button> <span id=auth-status role=status></span></form>
<form id=search>
<label>User <input name=user_id autocomplete=off></label>
<label>Conference <input name=conference_id autocomplete=off></label>
<label>From (UTC) <input type=date name=from></label>
<label>To (UTC) <input type=date name=to></label>
<label>Finding <select name=finding>{_options(findings)}</select></label>
<label>Browser <select name=browser>{_options(BROWSER_FAMILIES)}</select></label>
<button type=submit>Search</button> <button type=reset id=clear>Clear</button>
</form>
<p id=status role=status></p>
<table id=sessions hidden><thead><tr><th>Started (UTC)</th><th>User</th><th>Conference</th>
<th>Browser</th><th>Duration</th><th>Findings</th><th>State</th></tr></thead><tbody></tbody></table>
<button id=more type=button hidden>More</button>
<script src="static/ui.js" nonce="{nonce}"></script>
</body></html>
"""


def _headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": _policy(nonce),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


async def ui_page(request: web.Request) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    return web.Response(
        text=page(nonce), content_type="text/html", charset="utf-8", headers=_headers(nonce)
    )


async def ui_redirect(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(UI_PATH)


def add_routes(app: web.Application) -> None:
    files = _load_static()

    async def static(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        headers = {
            "ETag": found.etag,
            "Cache-Control": "no-cache",  # revalidated: a new version shows at once
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("If-None-Match") == found.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=found.body, content_type=found.content_type, charset="utf-8", headers=headers
        )

    app.router.add_get("/ui", ui_redirect)
    app.router.add_get(UI_PATH, ui_page)
    app.router.add_get(UI_PATH + "static/{name}", static)
