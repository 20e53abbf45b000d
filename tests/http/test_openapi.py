"""/openapi.json is held to the truth: schemathesis generates requests for every
documented operation against a live collector holding real sessions, and must find
no server error and no answer outside the documented statuses and schemas."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from pathlib import Path

import orjson

from tests.services.collector import run_collector

ADMIN = "admin-token-for-schemathesis"
#: Bounded run: a few examples per operation, well under a minute on two cores.
MAX_EXAMPLES = 40
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


async def test_openapi_document_lists_both_apis(collector) -> None:  # type: ignore[no-untyped-def]
    async with collector.http.get(collector.base_url + "/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.")
    served = {route.resource.canonical for route in collector.app.router.routes()}
    documented = {path.replace("{rtcstatsId}", "{id}") for path in document["paths"]}
    # Every API route is documented (the viewer's HTML pages under /view and the
    # sessions page under /ui are not an API).
    pages = ("/view/", "/ui")
    assert {p for p in served if not p.startswith(pages)} == documented


async def test_schemathesis_finds_no_server_error(tmp_path: Path, fixtures_dir: Path) -> None:
    command = shutil.which("schemathesis") or shutil.which("st")
    assert command, "schemathesis is a test dependency (pip install -e .[test])"
    tokens = [
        {"name": "st", "sha256": hashlib.sha256(ADMIN.encode()).hexdigest(), "scope": "admin"}
    ]
    async with run_collector(tmp_path / "data", {"api": {"tokens": tokens}}) as c:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        for name in (
            "jitsi-chrome-standard-pc-failed.jsonl",
            "rtcstats-gumonly.rtcstatsdump.jsonl",
        ):
            body = (fixtures_dir / "real" / name).read_bytes()
            async with c.http.post(c.base_url + "/v1.0/upload", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
        report = tmp_path / "schemathesis.json"
        process = await asyncio.create_subprocess_exec(
            command, "run", c.base_url + "/openapi.json",
            "--header", f"Authorization: Bearer {ADMIN}",
            "--checks", CHECKS,
            "--max-examples", str(MAX_EXAMPLES),
            "--phases", "examples,coverage,fuzzing",
            "--seed", "11",
            "--no-shrink",
            "--workers", "1",
            "--request-timeout", "20",
            "--report", "json", "--report-json-path", str(report),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )  # fmt: skip
        # Awaited, not waited for: the collector answers on this same event loop.
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = output.decode(errors="replace")
    sys.stdout.write(text[-3000:])
    assert process.returncode == 0, text[-6000:]
    if report.exists():
        summary = orjson.loads(report.read_bytes())
        assert summary, "schemathesis wrote an empty report"
