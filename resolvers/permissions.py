"""Field permissions: the one place that decides who sees cost, margin and rate fields.

Apply with ``financial`` instead of ``strawberry.field``; a caller without finance or auditor gets the
field as null plus an error whose ``extensions.code`` is ``FORBIDDEN`` (the rest of the query resolves)::

    @financial
    async def margin_percent(self, info: Info) -> Decimal | None: ...

    cost_rate: Money | None = financial()
"""

from __future__ import annotations

import functools
from typing import Any

import strawberry
from strawberry.permission import BasePermission

from canonical.principal import Permission, Principal


class CanSeeFinancials(BasePermission):
    message = "cost, margin and rate fields need the role finance or auditor"
    error_extensions = {"code": "FORBIDDEN", "requiredPermission": str(Permission.READ_FINANCIALS)}

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        principal: Principal = info.context.principal
        return principal.can_see_financials()


financial = functools.partial(strawberry.field, permission_classes=[CanSeeFinancials])
