"""The ``/graphql`` endpoint: the schema from ``resolvers`` served by Strawberry's ASGI app.

The engagement graph plugs in here — subclass ``GraphQL`` and override ``get_context`` to build the
per-request ``Context`` (principal, loaders, correlation id) from ``get_runtime(request)``.
"""

from __future__ import annotations

from typing import Literal

from strawberry.asgi import GraphQL

from gateway.settings import Settings
from resolvers.schema import build_schema


def graphql_app(settings: Settings) -> GraphQL[None, None]:
    ide: Literal["graphiql"] | None = "graphiql" if settings.mode == "development" else None
    return GraphQL(build_schema(), graphql_ide=ide)
