"""Webhooks in: ``POST /webhooks/crm`` receives the CRM's signed change events, ``POST /webhooks/psa`` the
PSA's (time entries, expenses, milestones — see ``psa_webhook``) and ``POST /webhooks/erp`` the ERP's
(invoices, payments, credit memos — see ``erp_webhook``), signed the same way.

    POST /webhooks/crm
    X-P2C-Signature: sha256=<hex HMAC-SHA256 of the raw body with P2C_WEBHOOK_SECRET>
    X-P2C-Event-Id: 4711
    {"replayId": 4711, "channel": "/data/OpportunityChangeEvent", "payload": {"ChangeEventHeader": ...}}

    202 {"status": "accepted" | "duplicate" | "ignored"}

The order of the checks is the point: the body is read up to ``MAX_BODY_BYTES`` (413 past it), its
signature is checked in constant time over the raw bytes (401, nothing stored, before a byte of it is
parsed), and only then is it parsed (400 when it is no JSON change event). The event id used for dedupe is
the signed body's ``replayId``, not the ``X-P2C-Event-Id`` header, which the signature does not cover.

What the event causes is decided by ``mutations.intake.handle_crm_event``; a CRM that cannot be read
while deciding answers 503 with nothing stored, so the sender's retry is processed, not deduplicated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canonical.errors import UpstreamError, ValidationFailed
from gateway.errors import error_response
from gateway.logs import get_logger
from gateway.runtime import get_runtime
from gateway.types import SystemName
from mutations.billing_feedback import handle_erp_event
from mutations.intake import Clock, Outcome, handle_crm_event
from mutations.time_posting import handle_psa_event
from store.models import utcnow
from subgraphs.crm.client import CrmClient
from subgraphs.erp.client import ErpClient
from subgraphs.psa.client import PsaClient

log = get_logger("gateway.webhooks")

MAX_BODY_BYTES = 1_000_000
SIGNATURE_HEADER = "X-P2C-Signature"
_STATUS = {
    Outcome.ACCEPTED: "accepted",
    Outcome.DUPLICATE: "duplicate",
    Outcome.IGNORED_ECHO: "ignored",
    Outcome.IGNORED: "ignored",
}


class _TooLarge(Exception):
    pass


@dataclass(frozen=True)
class _IntakeDeps:
    crm: CrmClient
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock = utcnow


def signature(body: bytes, secret: str) -> str:
    """The header value a sender puts on ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(body: bytes, received: str | None, secret: str) -> bool:
    if not received or not secret:
        return False
    return hmac.compare_digest(signature(body, secret).encode(), received.strip().encode())


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(request: Request, status: int, code: str, message: str) -> Response:
    return error_response(request, status, {"error": {"code": code, "message": message}})


async def _verified_json(request: Request, system: str) -> dict[str, Any] | Response:
    """The body as a JSON object once its size and signature check out; else the error response."""
    try:
        body = await _read_body(request, MAX_BODY_BYTES)
    except _TooLarge:
        return _error(request, 413, "PAYLOAD_TOO_LARGE", f"webhook body larger than {MAX_BODY_BYTES} bytes")

    settings = request.app.state.settings
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else ""
    if not signature_ok(body, request.headers.get(SIGNATURE_HEADER), secret):
        log.warning(f"{system}.webhook.unauthenticated", signed=SIGNATURE_HEADER.lower() in request.headers)
        return _error(request, 401, "UNAUTHENTICATED", "bad webhook signature")

    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error(request, 400, "BAD_REQUEST", "webhook body is not JSON")
    if not isinstance(event, dict):
        return _error(request, 400, "BAD_REQUEST", "webhook body is not a JSON object")
    return event


async def _intake(
    request: Request,
    system: SystemName,
    client_type: type[Any],
    make_deps: Callable[[Any, async_sessionmaker[AsyncSession]], Any],
    handle: Callable[..., Awaitable[Any]],
) -> Response:
    """What every webhook does: verify, find the system's connector, hand the event to its intake, and
    answer 202 with the outcome; an event the system cannot confirm stores nothing (503)."""
    event = await _verified_json(request, system)
    if isinstance(event, Response):
        return event
    runtime = get_runtime(request)
    client = runtime.systems[system].client
    if not isinstance(client, client_type):
        return _error(request, 503, "UPSTREAM_UNAVAILABLE", f"{system}: no connector configured")
    correlation_id = request.scope.get("state", {}).get("correlation_id")
    try:
        result = await handle(
            make_deps(client, runtime.sessionmaker), event, source=system, correlation_id=correlation_id
        )
    except ValidationFailed as exc:
        return _error(request, 400, "BAD_REQUEST", exc.message)
    except UpstreamError as exc:
        return _error(request, 503, "UPSTREAM_UNAVAILABLE", f"{system}: {exc.message}")
    log.info(
        f"{system}.webhook.received",
        event_id=result.event_id,
        outcome=str(result.outcome),
        queued=len(getattr(result, "queued", ())),
    )
    return JSONResponse({"status": _STATUS[result.outcome]}, status_code=202)


async def crm_webhook(request: Request) -> Response:
    return await _intake(
        request, "crm", CrmClient, lambda c, s: _IntakeDeps(crm=c, sessionmaker=s), handle_crm_event
    )


@dataclass(frozen=True)
class _PsaDeps:
    psa: PsaClient
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock = utcnow


async def psa_webhook(request: Request) -> Response:
    """``POST /webhooks/psa``: ``{"id", "event": "time_entry.updated" | "expense.updated" |
    "milestone.completed", "data": {"id", ...}}``, signed like the CRM's. The record is read again from
    the PSA (503, nothing stored, when it cannot be), then queued by ``handle_psa_event``."""
    return await _intake(
        request, "psa", PsaClient, lambda c, s: _PsaDeps(psa=c, sessionmaker=s), handle_psa_event
    )


@dataclass(frozen=True)
class _ErpDeps:
    erp: ErpClient
    sessionmaker: async_sessionmaker[AsyncSession]
    clock: Clock = utcnow


async def erp_webhook(request: Request) -> Response:
    """``POST /webhooks/erp``: ``{"id", "recordType": "invoice" | "customerPayment" | "creditMemo",
    "recordId", "action"?}``, signed like the CRM's. The record is read again from the ERP (503, nothing
    stored, when it cannot be); ``mutations.billing_feedback.handle_erp_event`` records what changed."""
    return await _intake(
        request, "erp", ErpClient, lambda c, s: _ErpDeps(erp=c, sessionmaker=s), handle_erp_event
    )


def webhook_routes() -> list[Route]:
    """The routes to add to the app: ``table.extend(webhook_routes())``."""
    return [
        Route("/webhooks/crm", crm_webhook, methods=["POST"], name="webhook_crm"),
        Route("/webhooks/psa", psa_webhook, methods=["POST"], name="webhook_psa"),
        Route("/webhooks/erp", erp_webhook, methods=["POST"], name="webhook_erp"),
    ]
