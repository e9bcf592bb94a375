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
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule

from resolvers.errors import GatewayErrors
from resolvers.mutation import extend_schema_kwargs
from resolvers.types.contract import Contract

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000

# The limit rules are built once per process. ``QueryDepthLimiter`` and ``MaxAliasesLimiter`` used as
# extension factories build a new rule class per operation, and the validation cache is keyed by the rule
# classes, so it never hit. Same rules, same messages (the gateway codes errors by their text).
_LIMIT_RULES: list[type[ASTValidationRule]] = [
    max_depth_rule(MAX_DEPTH, None),
    max_aliases_rule(MAX_ALIASES),
]
_PRODUCTION_RULES: list[type[ASTValidationRule]] = [*_LIMIT_RULES, NoSchemaIntrospectionCustomRule]


def build_schema(*, production: bool = False) -> strawberry.Schema:
    # Factories, not instances: strawberry builds extensions per operation; the parser and validation
    # caches live at module level, keyed by document, so they survive that.
    extensions: list[Callable[[], SchemaExtension]] = [
        partial(ParserCache, maxsize=256),
        partial(ValidationCache, maxsize=256),
        partial(AddValidationRules, _PRODUCTION_RULES if production else _LIMIT_RULES),
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        GatewayErrors,
    ]
    # Federation v2 (strawberry's federation schema defaults to the latest 2.x).
    return strawberry.federation.Schema(**extend_schema_kwargs(), types=[Contract], extensions=extensions)
