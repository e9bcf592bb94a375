"""``p2c schema``: print the graph's SDL, the Apollo Federation v2 subgraph schema a router composes.

It is the text of the committed ``schema.graphql`` snapshot, so a router's composition check can run on
``p2c schema > schema.graphql`` without starting the gateway.
"""

from __future__ import annotations

import sys

import typer

from gateway.cli._boundary import reported_errors
from gateway.runtime.embedded import import_optional


def sdl() -> str:
    """``resolvers.sdl.print_sdl()`` (the committed snapshot's text), else the schema printed as is."""
    module = import_optional("resolvers.sdl")
    print_sdl = getattr(module, "print_sdl", None) if module is not None else None
    if callable(print_sdl):
        return str(print_sdl())
    from resolvers.schema import build_schema

    return build_schema().as_str() + "\n"


def register(app: typer.Typer) -> None:
    @app.command()
    def schema() -> None:
        """Print the GraphQL schema (federation SDL) on stdout."""
        with reported_errors():
            text = sdl()
        sys.stdout.write(text)
