"""The one error middleware on a live collector: the same fault gets the same status on
both APIs, as ``{error, detail}`` on ours and ``{error, errorCode}`` under /v1.0/,
whether a handler raised it, a route was missing or a method was wrong."""

from __future__ import annotations

from typing import Any

import pytest

from tests.services.collector import RunningCollector

UNKNOWN = "0" * 32

#: (our path, the rtcstats.com API's path, method, status, our code, its code): one
#: fault each. The codes differ only where each API's own handler names the fault.
FAULTS = [
    (f"/v1/sessions/{UNKNOWN}", f"/v1.0/sessions/{UNKNOWN}", "GET", 404, "not_found", "not_found"),
    (
        "/v1/sessions?colour=red",
        "/v1.0/sessions?colour=red",
        "GET",
        400,
        "bad_filter",
        "bad_request",
    ),
    ("/v1/no-such-route", "/v1.0/no-such-route", "GET", 404, "not_found", "not_found"),
    ("/v1/sessions", "/v1.0/sessions", "PUT", 405, "method_not_allowed", "method_not_allowed"),
]


async def answer(collector: RunningCollector, method: str, path: str) -> tuple[int, Any]:
    async with collector.http.request(method, collector.base_url + path) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("ours", "theirs", "method", "status", "code", "their_code"),
    FAULTS,
    ids=["raised", "bad-query", "no-route", "bad-method"],
)
async def test_one_fault_one_code_in_each_shape(
    collector: RunningCollector,
    ours: str,
    theirs: str,
    method: str,
    status: int,
    code: str,
    their_code: str,
) -> None:
    got, body = await answer(collector, method, ours)
    assert got == status and set(body) == {"error", "detail"}, body
    assert body["error"] == code and body["detail"]

    got, body = await answer(collector, method, theirs)
    assert got == status and set(body) == {"error", "errorCode"}, body
    assert body["errorCode"] == their_code and body["error"]
