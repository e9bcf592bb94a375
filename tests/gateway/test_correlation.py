from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from gateway.app import create_app
from gateway.correlation import HEADER, accept_correlation_id, current_correlation_id
from gateway.settings import Settings


@pytest.mark.parametrize("value", ["abc", "req-1.2:3_x", "A" * 128, "0f8fad5bd9cb469fa16570867728950e"])
def test_sane_ids_are_kept(value: str) -> None:
    assert accept_correlation_id(value) == value


@pytest.mark.parametrize("value", [None, "", "A" * 129, "has space", "semi;colon", "ünïcode", "a\nb"])
def test_other_ids_are_replaced(value: str | None) -> None:
    replacement = accept_correlation_id(value)
    assert replacement != value
    assert re.fullmatch(r"[0-9a-f]{32}", replacement)


async def test_incoming_id_is_echoed(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        response = await client.get("/healthz", headers={HEADER: "caller-42"})
    assert response.headers[HEADER] == "caller-42"


async def test_bad_incoming_id_is_replaced(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        response = await client.get("/healthz", headers={HEADER: "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers[HEADER])


async def test_missing_id_is_generated_and_unique(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        first = await client.get("/healthz")
        second = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers[HEADER])
    assert first.headers[HEADER] != second.headers[HEADER]


async def test_id_is_on_the_request_log_record_and_unbound_after(
    settings: Settings, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(create_app(settings)) as client:
        with caplog.at_level(logging.INFO, logger="gateway.request"):
            await client.get("/healthz?token=secret", headers={HEADER: "trace-me"})
    (record,) = [r for r in caplog.records if r.getMessage() == "gateway.request.finished"]
    assert record.correlation_id == "trace-me"  # type: ignore[attr-defined]
    context = record.event_context  # type: ignore[attr-defined]
    assert context["method"] == "GET"
    assert context["path"] == "/healthz"  # no query string: it may carry secrets
    assert context["status"] == 200
    assert context["duration_ms"] >= 0
    assert "secret" not in caplog.text
    assert current_correlation_id() is None


async def test_id_is_on_error_responses(settings: Settings, serve: Any) -> None:
    async with serve(create_app(settings)) as client:
        response = await client.get("/no/such/thing", headers={HEADER: "lost-1"})
    assert response.status_code == 404
    assert response.headers[HEADER] == "lost-1"
    assert response.json()["error"]["correlationId"] == "lost-1"
