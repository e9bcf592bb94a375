"""Salesforce and httpx failures → the gateway's error tree, translated once, here.

httpx.TimeoutException            → UpstreamTimeout
other httpx.TransportError        → UpstreamUnavailable
403 REQUEST_LIMIT_EXCEEDED        → UpstreamRateLimited   (Salesforce's limit is a 403, not a 429)
401 (after one token refresh)     → UpstreamAuthFailed    (also any token endpoint refusal)
404                               → UpstreamNotFound
other 4xx (300 ambiguous upsert)  → UpstreamRejected      (vendor_code, details from the error array)
5xx                               → UpstreamUnavailable
"""

from __future__ import annotations

import json
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

SYSTEM = "crm"
TOKEN_PATH = "/services/oauth2/token"


def endpoint(request: httpx.Request) -> str:
    """``GET /services/data/v62.0/query`` — never the query string (SOQL may hold customer data)."""
    return f"{request.method} {request.url.path}"


def error_items(response: httpx.Response) -> list[dict[str, Any]]:
    """Salesforce's error array, or the OAuth error object as one item; [] when the body is neither."""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return []
    if isinstance(body, dict) and "error" in body:
        return [{"errorCode": body["error"], "message": body.get("error_description", body["error"])}]
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    return []


def is_limit(response: httpx.Response) -> bool:
    """The retry transport's hook: an exhausted API budget is a rate limit although its status is 403."""
    return response.status_code == 403 and any(
        item.get("errorCode") == "REQUEST_LIMIT_EXCEEDED" for item in error_items(response)
    )


def from_exception(exc: httpx.HTTPError) -> UpstreamError:
    try:
        where: str | None = endpoint(exc.request)
    except RuntimeError:  # raised by httpx when the error is not tied to a request
        where = None
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(SYSTEM, f"timed out: {type(exc).__name__}", endpoint=where)
    return UpstreamUnavailable(SYSTEM, f"transport failure: {type(exc).__name__}", endpoint=where)


def from_response(response: httpx.Response) -> UpstreamError:
    items = error_items(response)
    code = str(items[0].get("errorCode")) if items else None
    message = "; ".join(str(i.get("message", "")) for i in items) or f"HTTP {response.status_code}"
    status = response.status_code
    kwargs: dict[str, Any] = {
        "status": status,
        "vendor_code": code,
        "endpoint": endpoint(response.request),
        "details": items or None,
    }
    # A limit first: the token endpoint shares the API budget, and an exhausted budget is no auth failure.
    if (status == 403 and code == "REQUEST_LIMIT_EXCEEDED") or status == 429:
        return UpstreamRateLimited(SYSTEM, f"API limit exceeded: {message}", **kwargs)
    if status >= 500:
        return UpstreamUnavailable(SYSTEM, f"server error: {message}", **kwargs)
    if response.request.url.path.endswith(TOKEN_PATH) or status == 401:
        return UpstreamAuthFailed(SYSTEM, f"authentication failed: {message}", **kwargs)
    if status == 404:
        return UpstreamNotFound(SYSTEM, message, **kwargs)
    return UpstreamRejected(SYSTEM, message, **kwargs)


def raise_for_response(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise from_response(response)
