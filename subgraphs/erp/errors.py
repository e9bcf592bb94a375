"""Translate NetSuite answers and httpx failures into the gateway's error tree, exactly once.

httpx.TimeoutException            → UpstreamTimeout
httpx.TransportError              → UpstreamUnavailable
429 (after retries)               → UpstreamRateLimited(retry_after)
401 (after one token refresh)     → UpstreamAuthFailed
404                               → UpstreamNotFound
400 / other 4xx envelope          → UpstreamRejected(vendor_code=o:errorCode, details=o:errorDetails)
                                    with ``reason`` "PERIOD_CLOSED" / "PROJECT_CLOSED" / "IDEMPOTENCY_ERROR"
                                    / "INVALID_REFERENCE" when recognisable, else the vendor code
5xx                               → UpstreamUnavailable
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx

from canonical.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from subgraphs.common.transport import parse_retry_after

SYSTEM = "erp"
PERIOD_CLOSED = "PERIOD_CLOSED"
PROJECT_CLOSED = "PROJECT_CLOSED"


class ErpRejected(UpstreamRejected):
    """NetSuite refused a request. ``reason`` is what flows map to their reason codes."""

    def __init__(self, message: str, *, reason: str, error_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(SYSTEM, message, **kwargs)
        self.reason = reason
        self.error_path = error_path
        self.extensions.update(reason=reason)


def error_details(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    details = body.get("o:errorDetails") if isinstance(body, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def classify(
    code: str | None, detail: str, period_patterns: Sequence[str], project_patterns: Sequence[str]
) -> str:
    if any(re.search(p, detail, re.IGNORECASE) for p in period_patterns):
        return PERIOD_CLOSED
    if any(re.search(p, detail, re.IGNORECASE) for p in project_patterns):
        return PROJECT_CLOSED
    if code == "INVALID_FLD_VALUE":
        return "INVALID_REFERENCE"
    return code or "REJECTED"


def from_response(
    response: httpx.Response,
    *,
    period_patterns: Sequence[str] = (),
    project_patterns: Sequence[str] = (),
) -> UpstreamError:
    status = response.status_code
    endpoint = f"{response.request.method} {response.request.url.path}"
    details = error_details(response)
    first = details[0] if details else {}
    code = first.get("o:errorCode")
    detail = str(first.get("detail") or response.reason_phrase or f"HTTP {status}")
    common: dict[str, Any] = {"status": status, "vendor_code": code, "endpoint": endpoint}
    if status == 429:
        return UpstreamRateLimited(
            SYSTEM,
            f"rate limited: {detail}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            **common,
        )
    if status == 401:
        return UpstreamAuthFailed(SYSTEM, f"authentication failed: {detail}", **common)
    if status == 404:
        return UpstreamNotFound(SYSTEM, detail, **common)
    if status >= 500:
        return UpstreamUnavailable(SYSTEM, f"server error: {detail}", **common)
    return ErpRejected(
        detail,
        reason=classify(code, detail, period_patterns, project_patterns),
        error_path=first.get("o:errorPath"),
        details=details,
        **common,
    )


def from_exception(exc: httpx.HTTPError, endpoint: str | None = None) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(SYSTEM, f"timed out: {type(exc).__name__}", endpoint=endpoint)
    return UpstreamUnavailable(SYSTEM, f"unreachable: {type(exc).__name__}: {exc}", endpoint=endpoint)
