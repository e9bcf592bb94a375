"""HTTP error responses of the gateway: always JSON, always with the correlation id, never a trace.

    {"error": {"code": "NOT_FOUND", "message": "...", "correlationId": "..."}}

``GatewayError`` subclasses answer with their own ``http_status`` and ``as_body()``; anything
unexpected becomes a masked 500 and a log line carrying the exception for the operator.
"""

from __future__ import annotations

from contextlib import suppress
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from canonical.errors import GatewayError
from gateway.correlation import HEADER, scope_correlation_id
from gateway.logs import get_logger

log = get_logger("gateway.errors")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def error_response(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    correlation_id = scope_correlation_id(request.scope)
    out_headers = dict(headers or {})
    if correlation_id:
        body["error"]["correlationId"] = correlation_id
        # Set here too: the 500 handler runs outside the correlation middleware.
        out_headers[HEADER] = correlation_id
    return JSONResponse(body, status_code=status, headers=out_headers)


async def http_exception(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException only
        return await internal_error(request, exc)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    # Starlette's default details are reason phrases; say them the way our codes do.
    message = exc.detail
    with suppress(ValueError):
        if exc.detail == HTTPStatus(exc.status_code).phrase:
            message = code.lower().replace("_", " ")
    return error_response(
        request, exc.status_code, {"error": {"code": code, "message": message}}, dict(exc.headers or {})
    )


async def gateway_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, GatewayError):  # pragma: no cover
        return await internal_error(request, exc)
    if exc.http_status >= 500:
        log.warning("gateway.request.error", code=exc.code, error=exc.message, path=request.url.path)
    return error_response(request, exc.http_status, exc.as_body())


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error(
        "gateway.request.crashed",
        exc_info=True,
        path=request.url.path,
        error=type(exc).__name__,
        correlation_id=scope_correlation_id(request.scope),
    )
    return error_response(request, 500, {"error": {"code": "INTERNAL", "message": "internal error"}})


def exception_handlers() -> dict[Any, ExceptionHandler]:
    return {
        HTTPException: http_exception,
        GatewayError: gateway_error,
        Exception: internal_error,
    }
