"""The engagement graph's schema: an Apollo Federation v2 subgraph with bounded operations.

    schema = build_schema(production=settings.production)
    result = await schema.execute(query, context_value=build_context(...))

Bounds: depth ≤ 10, aliases ≤ 30, tokens ≤ 2000; parsed documents and validation results are cached;
introspection is refused when ``production`` is true (``_service { sdl }`` still answers, for the router).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from resolvers.errors import GatewayErrors
from resolvers.mutation import extend_schema_kwargs
from resolvers.types.contract import Contract

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000


def build_schema(*, production: bool = False) -> strawberry.Schema:
    # Factories, not instances: strawberry builds extensions per operation; the parser and validation
    # caches live at module level, keyed by document, so they survive that.
    extensions: list[Callable[[], SchemaExtension]] = [
        partial(ParserCache, maxsize=256),
        partial(ValidationCache, maxsize=256),
        partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
        partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        GatewayErrors,
    ]
    if production:
        extensions.append(partial(AddValidationRules, [NoSchemaIntrospectionCustomRule]))
    # Federation v2 (strawberry's federation schema defaults to the latest 2.x).
    return strawberry.federation.Schema(**extend_schema_kwargs(), types=[Contract], extensions=extensions)
