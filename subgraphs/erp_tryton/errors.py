"""Translate Tryton answers and httpx failures into the gateway's error tree, exactly once.

httpx.TimeoutException             → UpstreamTimeout
httpx.TransportError               → UpstreamUnavailable
401 (after one re-login)           → UpstreamAuthFailed
403 (no such RPC method)           → TrytonRejected(reason="UNKNOWN_METHOD")
5xx                                → UpstreamUnavailable
200 + "error": ["UserError", [message, description, domain]]
                                   → TrytonRejected(vendor_code="UserError") with ``reason``
                                     PERIOD_CLOSED / ALREADY_BILLED / AFTER_END_DATE / BEFORE_START_DATE /
                                     NOTHING_TO_INVOICE
                                     when recognisable, else USER_ERROR
200 + "error": ["'name'", ""] (a KeyError: no such model or field)
                                   → TrytonRejected(reason="UNKNOWN_METHOD")
200 + "error": ["UserWarning", ...] → TrytonRejected(reason="USER_WARNING") (needs a person to confirm)
200 + any other "error"            → TrytonRejected(reason="SERVER_ERROR")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx

from canonical.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from subgraphs.erp.errors import ErpRejected
from subgraphs.erp_tryton.config import TrytonConfig

SYSTEM = "erp"
PERIOD_CLOSED = "PERIOD_CLOSED"
ALREADY_BILLED = "ALREADY_BILLED"
AFTER_END_DATE = "AFTER_END_DATE"
BEFORE_START_DATE = "BEFORE_START_DATE"
NOTHING_TO_INVOICE = "NOTHING_TO_INVOICE"
UNKNOWN_METHOD = "UNKNOWN_METHOD"
USER_ERROR = "USER_ERROR"


class TrytonRejected(ErpRejected):
    """Tryton refused a call. An ``ErpRejected``: flows map ``reason`` to their reason codes whichever ERP
    refused (PERIOD_CLOSED means the same thing in both)."""

    def __init__(self, message: str, *, reason: str, description: str = "", **kwargs: Any) -> None:
        super().__init__(message, reason=reason, **kwargs)
        self.description = description
        self.extensions.update(erp="tryton")


def _matches(patterns: Sequence[str], *texts: str) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in patterns for text in texts)


def classify(message: str, domain: str, config: TrytonConfig) -> str:
    if _matches(config.period_closed_patterns, message):
        return PERIOD_CLOSED
    if _matches(config.already_billed_patterns, message):
        return ALREADY_BILLED
    if _matches(config.after_end_date_patterns, domain):
        return AFTER_END_DATE
    if _matches(config.before_start_date_patterns, domain):
        return BEFORE_START_DATE
    if _matches(config.nothing_to_invoice_patterns, message):
        return NOTHING_TO_INVOICE
    return USER_ERROR


def from_error(error: Any, method: str, config: TrytonConfig) -> UpstreamError:
    """The ``error`` member of a JSON-RPC answer → a typed rejection."""
    endpoint = f"rpc {method}"
    if isinstance(error, list) and error and error[0] == "UserError":
        args = error[1] if len(error) > 1 and isinstance(error[1], list) else []
        message = str(args[0]) if args else "UserError"
        description = str(args[1]) if len(args) > 1 and args[1] else ""
        domain = repr(args[2]) if len(args) > 2 and args[2] else ""
        return TrytonRejected(
            message,
            reason=classify(message, domain, config),
            description=description,
            status=200,
            vendor_code="UserError",
            endpoint=endpoint,
        )
    first = str(error[0]) if isinstance(error, list) and error else str(error)
    if first == "UserWarning":  # Tryton wants a person to confirm (e.g. a date before the last invoice's)
        args = error[1] if len(error) > 1 and isinstance(error[1], list) else []
        return TrytonRejected(
            f"Tryton asks for confirmation: {args[1] if len(args) > 1 else args or ''}",
            reason="USER_WARNING", status=200, vendor_code="UserWarning", endpoint=endpoint,
        )
    if re.fullmatch(r"'[\w.]+'", first):  # trytond answers a KeyError for a model it does not have
        return TrytonRejected(
            f"{method}: Tryton has no model or field {first}",
            reason=UNKNOWN_METHOD, status=200, vendor_code="KeyError", endpoint=endpoint,
        )
    return TrytonRejected(
        f"server error: {first}", reason="SERVER_ERROR", status=200, vendor_code=first[:80], endpoint=endpoint
    )


def from_response(response: httpx.Response, method: str) -> UpstreamError:
    status = response.status_code
    endpoint = f"rpc {method}"
    if status == 401:
        return UpstreamAuthFailed(SYSTEM, "Tryton session refused after a fresh login", status=401,
                                  endpoint=endpoint)
    if status == 403:
        return TrytonRejected(f"unknown method {method}", reason=UNKNOWN_METHOD, status=403,
                              endpoint=endpoint)
    if status >= 500:
        return UpstreamUnavailable(SYSTEM, f"server error: HTTP {status}", status=status, endpoint=endpoint)
    return TrytonRejected(f"HTTP {status}", reason="REJECTED", status=status, endpoint=endpoint)


def from_exception(exc: httpx.HTTPError, method: str) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(SYSTEM, f"timed out: {type(exc).__name__}", endpoint=f"rpc {method}")
    return UpstreamUnavailable(SYSTEM, f"unreachable: {type(exc).__name__}: {exc}", endpoint=f"rpc {method}")
