"""How errors leave the graph.

``GatewayErrors`` is ``MaskErrors`` that knows the gateway's error tree: a ``GatewayError`` keeps its
message and gets ``extensions`` from ``as_extensions()`` (``code``; ``system`` for upstream errors;
``problems`` for validation), GraphQL's own errors (syntax, validation, limits, permissions) pass as they
are, and anything else — a bug — becomes "Unexpected error." with code ``INTERNAL``, no stack, no text.
"""

from __future__ import annotations

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from canonical.errors import GatewayError


def _gateway_error(error: GraphQLError) -> GatewayError | None:
    original = error.original_error
    return original if isinstance(original, GatewayError) else None


def should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GatewayError | GraphQLError)


class GatewayErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=should_mask, error_message="Unexpected error.")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL"}
        return masked

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed: list[GraphQLError] = []
        for error in errors:
            known = _gateway_error(error)
            if known is not None:
                processed.append(
                    GraphQLError(
                        known.message,
                        nodes=error.nodes,
                        source=error.source,
                        positions=error.positions,
                        path=error.path,
                        original_error=known,
                        extensions=known.as_extensions(),
                    )
                )
            elif self.should_mask_error(error):
                processed.append(self.anonymise_error(error))
            else:
                processed.append(error)
        return processed
