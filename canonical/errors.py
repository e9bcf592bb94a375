"""The gateway's error tree. Every error carries a stable ``code`` that reaches GraphQL as
``extensions.code`` and HTTP bodies as ``{"error": {"code": ...}}``.

    GatewayError
    ├── ValidationFailed          VALIDATION_FAILED        (bad input; ``problems`` names every field)
    │   └── MappingInvalid        MAPPING_INVALID          (a mapping file that does not validate)
    ├── NotFound                  NOT_FOUND
    ├── Conflict                  CONFLICT                 (same idempotency key still running, …)
    ├── IdempotencyKeyReused      IDEMPOTENCY_KEY_REUSED
    ├── IdempotencyKeyRequired    IDEMPOTENCY_KEY_REQUIRED
    ├── PermissionDenied          FORBIDDEN
    ├── Unauthenticated           UNAUTHENTICATED
    ├── ConfigurationError        CONFIGURATION_ERROR      (start-up: missing or bad setting)
    └── UpstreamError             UPSTREAM_ERROR           (a vendor system; ``system`` names it)
        ├── UpstreamUnavailable   UPSTREAM_UNAVAILABLE     (connection refused, 5xx after retries)
        │   └── UpstreamTimeout   UPSTREAM_TIMEOUT
        ├── UpstreamRateLimited   UPSTREAM_RATE_LIMITED    (429 / 403 REQUEST_LIMIT_EXCEEDED after retries)
        ├── UpstreamAuthFailed    UPSTREAM_AUTH_FAILED
        ├── UpstreamNotFound      UPSTREAM_NOT_FOUND
        └── UpstreamRejected      UPSTREAM_REJECTED        (the vendor refused the record: 4xx, UserError)

Messages are built in ``__init__`` from the ids involved, so callers pass facts, not prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: which field, what is wrong, and a machine-readable reason."""

    field: str
    message: str
    reason: str = "INVALID"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "reason": self.reason}


class GatewayError(Exception):
    code = "INTERNAL"
    http_status = 500

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {k: v for k, v in extensions.items() if v is not None}

    def as_extensions(self) -> dict[str, Any]:
        return {"code": self.code, **self.extensions}

    def as_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, **self.as_extensions()}}


class ValidationFailed(GatewayError):
    code = "VALIDATION_FAILED"
    http_status = 422

    def __init__(self, problems: Sequence[Problem] | str, *, subject: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(field=subject or "input", message=problems)]
        self.problems = list(problems)
        what = f"{subject}: " if subject else ""
        message = what + "; ".join(f"{p.field}: {p.message}" for p in self.problems)
        super().__init__(message, problems=[p.as_dict() for p in self.problems])


class MappingInvalid(ValidationFailed):
    code = "MAPPING_INVALID"


class NotFound(GatewayError):
    code = "NOT_FOUND"
    http_status = 404

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key!s} not found", kind=kind, key=str(key))


class Conflict(GatewayError):
    code = "CONFLICT"
    http_status = 409


class IdempotencyKeyReused(GatewayError):
    code = "IDEMPOTENCY_KEY_REUSED"
    http_status = 422

    def __init__(self, key: str, operation: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for {operation} with a different input",
            operation=operation,
        )


class IdempotencyKeyRequired(GatewayError):
    code = "IDEMPOTENCY_KEY_REQUIRED"
    http_status = 400

    def __init__(self, operation: str) -> None:
        super().__init__(f"{operation} needs an idempotency key", operation=operation)


class PermissionDenied(GatewayError):
    code = "FORBIDDEN"
    http_status = 403


class Unauthenticated(GatewayError):
    code = "UNAUTHENTICATED"
    http_status = 401


class ConfigurationError(GatewayError):
    code = "CONFIGURATION_ERROR"


class UpstreamError(GatewayError):
    """A vendor system answered badly. ``system`` is one of crm, psa, erp (or an adapter name)."""

    code = "UPSTREAM_ERROR"
    http_status = 502

    def __init__(
        self,
        system: str,
        message: str,
        *,
        status: int | None = None,
        vendor_code: str | None = None,
        endpoint: str | None = None,
        retry_after: float | None = None,
        details: Mapping[str, Any] | Sequence[Any] | None = None,
    ) -> None:
        self.system = system
        self.status = status
        self.vendor_code = vendor_code
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.details = details
        super().__init__(
            f"{system}: {message}",
            system=system,
            status=status,
            vendorCode=vendor_code,
            endpoint=endpoint,
        )


class UpstreamUnavailable(UpstreamError):
    code = "UPSTREAM_UNAVAILABLE"
    http_status = 503


class UpstreamTimeout(UpstreamUnavailable):
    code = "UPSTREAM_TIMEOUT"
    http_status = 504


class UpstreamRateLimited(UpstreamError):
    code = "UPSTREAM_RATE_LIMITED"
    http_status = 503


class UpstreamAuthFailed(UpstreamError):
    code = "UPSTREAM_AUTH_FAILED"


class UpstreamNotFound(UpstreamError):
    code = "UPSTREAM_NOT_FOUND"
    http_status = 404


class UpstreamRejected(UpstreamError):
    code = "UPSTREAM_REJECTED"
    http_status = 422
