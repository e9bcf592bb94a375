from __future__ import annotations

import json
import logging

import pytest

from gateway.correlation import _correlation_id
from gateway.logs import ConsoleFormatter, JsonFormatter, get_logger, redact_text, sanitize_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/v2/projects?page=2", "https://api.example.com/v2/projects?page=2"),
        (
            "https://api.example.com/x?access_token=abc&page=2",
            "https://api.example.com/x?access_token=REDACTED&page=2",
        ),
        (
            "https://api.example.com/x?api_key=k&client_secret=s",
            "https://api.example.com/x?api_key=REDACTED&client_secret=REDACTED",
        ),
        ("postgresql://p2c:hunter2@db/p2c", "postgresql://p2c:REDACTED@db/p2c"),
        ("https://user@host/path", "https://user@host/path"),
    ],
)
def test_sanitize_url(url: str, expected: str) -> None:
    assert sanitize_url(url) == expected


def test_redact_text_sanitises_urls_inside_messages() -> None:
    text = "GET https://h/x?token=abc failed: connection refused"
    assert redact_text(text) == "GET https://h/x?token=REDACTED failed: connection refused"


def _record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    log = get_logger("test.events")
    with caplog.at_level(logging.INFO, logger="test.events"):
        token = _correlation_id.set("cid-123")
        try:
            log.info("erp.timebill.posted", run_id="r1", entry=42)
        finally:
            _correlation_id.reset(token)
    (record,) = [r for r in caplog.records if r.name == "test.events"]
    return record


def test_json_formatter_renders_event_context_and_correlation_id(caplog: pytest.LogCaptureFixture) -> None:
    record = _record(caplog)
    payload = json.loads(JsonFormatter().format(record))
    assert payload["event"] == "erp.timebill.posted"
    assert payload["level"] == "info"
    assert payload["correlation_id"] == "cid-123"
    assert payload["run_id"] == "r1"
    assert payload["entry"] == 42


def test_console_formatter_is_one_readable_line(caplog: pytest.LogCaptureFixture) -> None:
    line = ConsoleFormatter().format(_record(caplog))
    assert "erp.timebill.posted run_id=r1 entry=42 [cid-123]" in line
    assert "\n" not in line


def test_plain_stdlib_records_render_too() -> None:
    record = logging.LogRecord("lib", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    payload = json.loads(JsonFormatter().format(record))
    assert payload["event"] == "hello world"
    assert "correlation_id" not in payload
