"""The sessions page at /ui/ over HTTP: what it serves and under which policy, where
(with api.listen), and the list filters it uses (issue 19, item 5). The page at work
in chromium: tests/http/viewer/test_ui_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

from tests.http.viewer.test_viewer_http import frame_ancestors
from tests.services.collector import RunningCollector, free_port, run_collector
from tests.services.stored_dumps import store_dump_file

FIREFOX = Path("real") / "jitsi-firefox97-standard-stats-sfu.jsonl"
CHROME = Path("real") / "jitsi-chrome-standard-pc-failed.jsonl"


async def test_the_page_and_its_files_under_a_nonce_policy(collector: RunningCollector) -> None:
    async with collector.http.get(collector.base_url + "/ui", allow_redirects=False) as response:
        assert response.status == 308 and response.headers["Location"] == "/ui/"
    async with collector.http.get(collector.base_url + "/ui/") as response:
        assert response.status == 200 and response.content_type == "text/html"
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
        page = await response.text()
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy)
    assert nonce and f"style-src 'nonce-{nonce.group(1)}'" in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert frame_ancestors(response.headers) == "'none'"  # it holds a token: never framed
    assert "unsafe" not in policy
    # the script and style load with this response's nonce, from this server only
    assert f'<script src="static/ui.js" nonce="{nonce.group(1)}"></script>' in page
    assert f'<link rel=stylesheet href="static/ui.css" nonce="{nonce.group(1)}">' in page
    assert not re.search(r"\son[a-z]+=", page), "an inline handler"
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script"
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)
    assert '<option value="ice_failed">' in page and '<option value="Firefox">' in page
    async with collector.http.get(collector.base_url + "/ui/") as again:
        assert nonce.group(1) not in again.headers["Content-Security-Policy"]  # fresh each time

    for name, kind in (("ui.js", "text/javascript"), ("ui.css", "text/css")):
        url = f"{collector.base_url}/ui/static/{name}"
        async with collector.http.get(url) as response:
            assert response.status == 200 and response.content_type == kind
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            etag = response.headers["ETag"]
            body = await response.text()
        assert len(body) > 500
        async with collector.http.get(url, headers={"If-None-Match": etag}) as response:
            assert response.status == 304
    async with collector.http.get(f"{collector.base_url}/ui/static/ui.js") as response:
        js = await response.text()
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|\beval\(", js)
    for missing in ("/ui/static/../ui.py", "/ui/static/x.js", "/ui/static/"):
        async with collector.http.get(collector.base_url + missing) as response:
            assert response.status == 404, missing


async def test_with_api_listen_the_page_is_where_the_api_is(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    api_port = free_port()
    settings = {"api": {"listen": f"127.0.0.1:{api_port}"}}
    async with run_collector(tmp_path, settings) as collector:
        api = f"http://127.0.0.1:{api_port}"
        async with collector.http.get(collector.base_url + "/ui/") as response:
            assert response.status == 404
        async with collector.http.get(f"{api}/ui/") as response:
            assert response.status == 200
        async with collector.http.get(f"{api}/ui/static/ui.js") as response:
            assert response.status == 200
        # what the page calls answers there too: the list, and the viewer its rows open
        session_id = await store_dump_file(collector, fixtures_dir / FIREFOX)
        async with collector.http.get(f"{api}/v1/sessions?browser=Firefox") as response:
            listed = (await response.json())["sessions"]
        assert [item["id"] for item in listed] == [session_id]
        viewer_url = listed[0]["viewer_url"]
        assert viewer_url.startswith(collector.base_url)  # public_base_url: the public port
        async with collector.http.get(api + viewer_url[len(collector.base_url) :]) as response:
            assert response.status == 200


async def test_the_list_filters_the_page_uses(
    collector: RunningCollector, fixtures_dir: Path
) -> None:
    firefox = await store_dump_file(
        collector, fixtures_dir / FIREFOX, {"user_id": "ann", "conference_id": "standup"}
    )
    chrome = await store_dump_file(
        collector, fixtures_dir / CHROME, {"user_id": "bob", "conference_id": "standup"}
    )

    async def found(query: str) -> list[str]:
        body = await collector.get_json(f"/v1/sessions?{query}")
        return [item["id"] for item in body["sessions"]]

    assert await found("conference_id=standup") == [chrome, firefox]  # newest first
    assert await found("browser=Firefox") == [firefox]
    assert await found("browser=Chrome") == [chrome]
    assert await found("browser=chrome") == []  # exact, as the page offers the names
    assert await found("user_id=bob&browser=Firefox") == []
    record = await collector.get_json(f"/v1/sessions/{firefox}")
    assert await found(f"os={record['os']}&user_id=ann") == [firefox]
    finding = (await collector.get_json(f"/v1/sessions/{chrome}"))["findings"][0]
    assert chrome in await found(f"finding={finding}&browser=Chrome")
    async with collector.http.get(f"{collector.base_url}/v1/sessions?browsers=x") as response:
        assert response.status == 400  # unknown parameters are still refused
