"""The graph's SDL, as committed in ``schema.graphql`` (``p2c schema`` prints it).

Regenerate the snapshot after an intended change: ``P2C_UPDATE_SCHEMA_SNAPSHOT=1 pytest tests/resolvers``
or ``python -m resolvers.sdl > schema.graphql``.
"""

from __future__ import annotations

from resolvers.schema import build_schema


def print_sdl() -> str:
    return build_schema().as_str() + "\n"


if __name__ == "__main__":
    print(print_sdl(), end="")
