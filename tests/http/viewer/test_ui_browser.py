"""The sessions page (/ui/) in headless chromium: search by user and open the session,
a token entered once, and a dump uploaded through the file picker opened as a new
session; never a console error (the strict CSP would report any inline code).

Screenshots go to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from rtcstats_server.http.access import hash_token
from tests.http.viewer.test_viewer_browser import bed, opened  # noqa: F401 (a fixture)
from tests.services.browser import BrowserBed
from tests.services.collector import RunningCollector, run_collector
from tests.services.stored_dumps import store_dump_file

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
FIREFOX = Path("real") / "jitsi-firefox97-standard-stats-sfu.jsonl"
CHROME = Path("real") / "jitsi-chrome-standard-pc-failed.jsonl"
UPLOADED = Path("real") / "jitsi-safari-standard-stats.jsonl"


async def test_the_sessions_page_finds_a_session_by_user_and_opens_it(
    bed: BrowserBed,  # noqa: F811
    collector: RunningCollector,
    fixtures_dir: Path,
) -> None:
    ann = await store_dump_file(
        collector, fixtures_dir / FIREFOX, {"user_id": "ann@example.com", "conference_id": "c1"}
    )
    bob = await store_dump_file(
        collector, fixtures_dir / CHROME, {"user_id": "bob@example.com", "conference_id": "c1"}
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with opened(bed) as view:
        page = view.page
        await page.goto(collector.base_url + "/ui/")  # a loopback client: no token needed
        rows = page.locator("tr.session")
        await expect(rows).to_have_count(2)
        assert await rows.nth(0).get_attribute("data-id") == bob  # newest first
        assert await page.locator("#auth").is_hidden()

        await page.fill("input[name=user_id]", "ann@example.com")
        await page.click("#search button[type=submit]")
        await expect(rows).to_have_count(1)
        assert await rows.first.get_attribute("data-id") == ann
        assert "user_id=ann%40example.com" in page.url  # the search is in the address
        assert "Firefox" in await rows.first.inner_text()
        await page.screenshot(path=ARTIFACTS / "sessions-by-user.png", full_page=True)

        # the other filters, each narrowing to the one session that has it
        await page.fill("input[name=user_id]", "")
        await page.select_option("select[name=browser]", "Chrome")
        await page.click("#search button[type=submit]")
        await expect(page.locator(f"tr.session[data-id='{bob}']")).to_have_count(1)
        await expect(rows).to_have_count(1)
        await page.select_option("select[name=browser]", "")
        finding = (await collector.get_json(f"/v1/sessions/{bob}"))["findings"][0]
        await page.select_option("select[name=finding]", finding)
        await page.fill("input[name=conference_id]", "c1")
        await page.click("#search button[type=submit]")
        await expect(page.locator("#status")).to_have_text("1 session, newest first.")
        assert await rows.first.get_attribute("data-id") == bob
        await page.select_option("select[name=finding]", "")
        today = (await collector.get_json(f"/v1/sessions/{ann}"))["started_at"][:10]
        await page.fill("input[name=from]", "2000-01-01")
        await page.fill("input[name=to]", "2000-01-02")
        await page.click("#search button[type=submit]")
        await expect(page.locator("#status")).to_have_text("No session matches.")
        await page.fill("input[name=from]", today)
        await page.fill("input[name=to]", today)
        await page.click("#search button[type=submit]")
        await expect(rows).to_have_count(2)

        # a reload keeps the search; a click on the row opens its viewer
        await page.goto(collector.base_url + "/ui/?user_id=ann%40example.com")
        await expect(rows).to_have_count(1)
        await rows.first.locator("td").nth(2).click()  # not the link: the row itself
        await page.wait_for_url(re.compile(rf"/view/{ann}\?sig="))
        assert await page.locator("header h1").inner_text() == f"Session {ann}"
        await page.screenshot(path=ARTIFACTS / "opened-from-sessions.png")
        assert view.errors == [], view.errors


async def test_a_token_once_and_a_dump_through_the_file_picker(
    bed: BrowserBed,  # noqa: F811
    tmp_path: Path,
    fixtures_dir: Path,
) -> None:
    read, upload = "ui-read-token-0123456789", "ui-upload-token-0123456789"
    tokens = [
        {"name": "support", "sha256": hash_token(read), "scope": "read"},
        {"name": "uploader", "sha256": hash_token(upload), "scope": "upload"},
    ]
    async with run_collector(tmp_path / "data", {"api": {"tokens": tokens}}) as collector:
        existing = await store_dump_file(collector, fixtures_dir / CHROME, {"user_id": "carol"})
        async with opened(bed) as view:
            page = view.page
            await page.goto(collector.base_url + "/ui/")
            await page.wait_for_selector("#auth:not([hidden])")
            assert await page.locator("tr.session").count() == 0
            await page.fill("#token", "not-a-token")
            await page.click("#auth button[type=submit]")
            await expect(page.locator("#auth-status")).to_have_text("That token was refused.")
            await page.fill("#token", read)
            await page.click("#auth button[type=submit]")
            await page.wait_for_selector(f"tr.session[data-id='{existing}']")
            assert await page.evaluate("sessionStorage.getItem('rtcstats.token')") == read

            # kept for the tab: a reload lists at once; a read token may not upload
            await page.reload()
            await page.wait_for_selector(f"tr.session[data-id='{existing}']")
            await page.set_input_files("#file", str(fixtures_dir / UPLOADED))
            await page.wait_for_selector("#upload-status.bad")
            assert "scope" in await page.locator("#upload-status").inner_text()

            await page.evaluate(f"sessionStorage.setItem('rtcstats.token', '{upload}')")
            await page.set_input_files("#file", str(fixtures_dir / UPLOADED))
            await page.wait_for_url(re.compile(r"/view/[0-9a-f]{32}\?sig="), timeout=60_000)
            session_id = page.url.split("/view/", 1)[1].split("?", 1)[0]
            assert await page.locator("header h1").inner_text() == f"Session {session_id}"
            await page.wait_for_selector("svg.chart")
            await page.screenshot(path=ARTIFACTS / "uploaded-and-opened.png", full_page=True)
            # chromium reports each refusal provoked above, and nothing else: the first
            # list without a token, the wrong token, the upload with a read token
            refused = "Failed to load resource: the server responded with a status of "
            assert view.errors == [
                refused + "401 (Unauthorized)",
                refused + "401 (Unauthorized)",
                refused + "403 (Forbidden)",
            ], view.errors
        headers = {"Authorization": f"Bearer {read}"}
        record = await collector.get_json(f"/v1/sessions/{session_id}", headers=headers)
        assert record["source"] == "upload" and record["upload_file_name"] == UPLOADED.name


async def test_a_row_whose_stored_link_expires_opens_a_fresh_one(
    bed: BrowserBed,  # noqa: F811
    tmp_path: Path,
    fixtures_dir: Path,
) -> None:
    """Records written with expiring links (``viewer.record_url_ttl_s``, or by an older
    version): the page asks the API for a fresh link instead of opening a dead one."""
    settings = {"viewer": {"record_url_ttl_s": 60}}  # within the page's minute of margin
    async with run_collector(tmp_path / "data", settings) as collector:
        session_id = await store_dump_file(collector, fixtures_dir / CHROME, {"user_id": "dan"})
        stored = (await collector.get_json(f"/v1/sessions/{session_id}"))["viewer_url"]
        async with opened(bed) as view:
            page = view.page
            await page.goto(collector.base_url + "/ui/")
            row = page.locator(f"tr.session[data-id='{session_id}']")
            await expect(row).to_have_count(1)
            assert await row.locator("a").get_attribute("href") == "#"
            await row.locator("a").click()
            await page.wait_for_url(re.compile(rf"/view/{session_id}\?exp=\d+&sig="))
            assert page.url != stored
            exp = int(page.url.split("exp=", 1)[1].split("&", 1)[0])
            assert exp > int(stored.split("exp=", 1)[1].split("&", 1)[0]) + 3600  # url_ttl_s
            assert await page.locator("header h1").inner_text() == f"Session {session_id}"
            assert view.errors == [], view.errors
