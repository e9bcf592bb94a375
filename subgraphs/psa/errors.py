"""Harvest and httpx failures as gateway errors — translated here, once, ``raise ... from exc``.

httpx.TimeoutException           → UpstreamTimeout
httpx.TransportError             → UpstreamUnavailable
429 (after the retry budget)     → UpstreamRateLimited(retry_after=Retry-After)
401, 403                         → UpstreamAuthFailed
404                              → UpstreamNotFound
400, 409, 422 and other 4xx      → UpstreamRejected (Harvest's ``message``)
5xx (after the retry budget)     → UpstreamUnavailable
"""

from __future__ import annotations

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

SYSTEM = "psa"


def _endpoint(request: httpx.Request) -> str:
    # Path only: query strings may carry cursors and ids, never credentials, but keep logs tidy.
    return f"{request.method} {request.url.path}"


def _message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase, None
    if isinstance(body, dict):
        if "message" in body:
            return str(body["message"]), None
        if "error" in body:
            return str(body.get("error_description") or body["error"]), str(body["error"])
    return str(body)[:200], None


def from_response(response: httpx.Response) -> UpstreamError:
    status = response.status_code
    message, vendor_code = _message(response)
    endpoint = _endpoint(response.request)
    kind: type[UpstreamError]
    retry_after = None
    if status == 429:
        kind, text = UpstreamRateLimited, f"rate limited on {endpoint}: {message}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    elif status in (401, 403):
        kind, text = UpstreamAuthFailed, f"not authorised for {endpoint}: {message}"
    elif status == 404:
        kind, text = UpstreamNotFound, f"{endpoint} not found"
    elif status >= 500:
        kind, text = UpstreamUnavailable, f"{endpoint} answered {status}: {message}"
    else:
        kind, text = UpstreamRejected, f"{endpoint} rejected: {message}"
    return kind(
        SYSTEM, text, status=status, vendor_code=vendor_code, endpoint=endpoint, retry_after=retry_after
    )


def from_exception(exc: httpx.HTTPError, request: httpx.Request | None = None) -> UpstreamError:
    endpoint = _endpoint(request) if request is not None else None
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(SYSTEM, f"timed out on {endpoint}: {type(exc).__name__}", endpoint=endpoint)
    return UpstreamUnavailable(SYSTEM, f"cannot reach {endpoint}: {type(exc).__name__}", endpoint=endpoint)
