"""Who is asking, and what they may see and do.

A ``Principal`` is built once per request (by ``gateway.auth`` from a bearer token) or once per worker
(``Principal.system("time-poster")``) and passed down. It answers two kinds of question:

* **Which rows?** ``can_see_entity`` / ``visible_entities`` / ``visible``. Rows of a legal entity the
  caller may not see are filtered out silently — a read never fails in a way that reveals they exist.
* **Which operations and fields?** ``may(Permission.X)`` against ``PERMISSIONS``, the one table of who
  may do what; ``can_see_financials`` gates cost, margin and rate fields. ``require_*`` raise
  ``PermissionDenied`` (``FORBIDDEN``) for writes::

      principal.require(Permission.REPLAY_EXCEPTION, action="replayException")
      principal.require_entity(contract.legal_entity, action="provisionEngagement")
      rows = principal.visible(invoices, lambda invoice: invoice.legal_entity)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

from canonical.errors import PermissionDenied

T = TypeVar("T")

ALL_ENTITIES = "*"


class Role(StrEnum):
    SALES = "sales"
    DELIVERY = "delivery"
    FINANCE = "finance"
    INTEGRATION_ADMIN = "integration_admin"
    AUDITOR = "auditor"


class Permission(StrEnum):
    READ_FINANCIALS = "read_financials"  # cost, margin and rate fields
    REPLAY_EXCEPTION = "replay_exception"
    DISMISS_EXCEPTION = "dismiss_exception"
    PROVISION = "provision"  # closed-won → ERP customer, contract, billing schedule, project
    POST_TIME = "post_time"  # approved time and expenses → ERP
    READ_AUDIT = "read_audit"
    ADMIN = "admin"  # mappings, sync cursors, sandbox faults


_R = Role
# Auditors read everything money-related but never write. Integration admins run the plumbing (replay,
# provisioning, posting) but see cost and margin only if they also hold finance.
PERMISSIONS: Mapping[Permission, frozenset[Role]] = MappingProxyType(
    {
        Permission.READ_FINANCIALS: frozenset({_R.FINANCE, _R.AUDITOR}),
        Permission.REPLAY_EXCEPTION: frozenset({_R.FINANCE, _R.INTEGRATION_ADMIN}),
        Permission.DISMISS_EXCEPTION: frozenset({_R.FINANCE, _R.INTEGRATION_ADMIN}),
        Permission.PROVISION: frozenset({_R.SALES, _R.DELIVERY, _R.INTEGRATION_ADMIN}),
        Permission.POST_TIME: frozenset({_R.DELIVERY, _R.FINANCE, _R.INTEGRATION_ADMIN}),
        Permission.READ_AUDIT: frozenset({_R.FINANCE, _R.INTEGRATION_ADMIN, _R.AUDITOR}),
        Permission.ADMIN: frozenset({_R.INTEGRATION_ADMIN}),
    }
)


def _role_names(roles: Iterable[Role]) -> list[str]:
    return sorted(str(role) for role in roles)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``legal_entities`` are entity codes (``"US01"``); ``all_entities``
    stands for the ``"*"`` grant, which is never spelled as a member of ``legal_entities``."""

    subject: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    legal_entities: frozenset[str] = field(default_factory=frozenset)
    all_entities: bool = False
    token_id: str | None = None

    def __post_init__(self) -> None:
        # Accept any iterable of role names so callers need not build frozensets of enums by hand;
        # Role(...) raises ValueError on a name that is not a role.
        object.__setattr__(self, "roles", frozenset(Role(role) for role in self.roles))
        object.__setattr__(self, "legal_entities", frozenset(self.legal_entities))
        if not self.subject:
            raise ValueError("a principal needs a subject")
        if ALL_ENTITIES in self.legal_entities:
            raise ValueError("grant all legal entities with all_entities=True, not '*'")

    @classmethod
    def system(cls, name: str) -> Principal:
        """The principal a worker or poller acts as: every legal entity, integration admin."""
        return cls(subject=f"system:{name}", roles=frozenset({Role.INTEGRATION_ADMIN}), all_entities=True)

    # --- roles and permissions -----------------------------------------------------------------------

    def has_role(self, *roles: Role) -> bool:
        """True if the principal holds any of ``roles``."""
        return not self.roles.isdisjoint(roles)

    def may(self, permission: Permission) -> bool:
        return self.has_role(*PERMISSIONS[permission])

    def can_see_financials(self) -> bool:
        """Cost, margin and rate fields: finance or auditor."""
        return self.may(Permission.READ_FINANCIALS)

    def require_role(self, *roles: Role, action: str) -> None:
        if not self.has_role(*roles):
            raise _denied(action, _role_names(roles))

    def require(self, permission: Permission, *, action: str | None = None) -> None:
        if not self.may(permission):
            raise _denied(action or str(permission), _role_names(PERMISSIONS[permission]))

    # --- legal entities ------------------------------------------------------------------------------

    def can_see_entity(self, code: str) -> bool:
        return self.all_entities or code in self.legal_entities

    def visible_entities(self, candidates: Iterable[str]) -> list[str]:
        """The candidates this principal may see, in their given order."""
        return [code for code in candidates if self.can_see_entity(code)]

    def visible(self, rows: Iterable[T], entity_of: Callable[[T], str | None]) -> list[T]:
        """Keep the rows whose legal entity the principal may see. A row with no legal entity yet is
        visible only to a principal granted all of them (least privilege)."""
        kept: list[T] = []
        for row in rows:
            code = entity_of(row)
            if self.all_entities or (code is not None and code in self.legal_entities):
                kept.append(row)
        return kept

    def require_entity(self, code: str, *, action: str) -> None:
        """For writes: refuse to act in a legal entity the principal may not see. The error names only
        the code the caller itself supplied, so it says nothing about which records exist there."""
        if not self.can_see_entity(code):
            raise PermissionDenied(
                f"{action} is not allowed in legal entity {code}", action=action, legalEntity=code
            )


def _denied(action: str, needed: list[str]) -> PermissionDenied:
    return PermissionDenied(
        f"{action} needs the role {' or '.join(needed)}", action=action, requiredRoles=needed
    )


__all__ = ["ALL_ENTITIES", "PERMISSIONS", "Permission", "Principal", "Role"]
