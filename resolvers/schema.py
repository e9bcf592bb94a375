"""Placeholder graph so ``/graphql`` answers while the engagement graph is being built.

The real schema replaces this module; the gateway only relies on ``build_schema()``.
"""

from __future__ import annotations

import strawberry


@strawberry.type
class Query:
    @strawberry.field
    def health(self) -> str:
        """Always "ok" while the gateway is serving."""
        return "ok"


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query)
