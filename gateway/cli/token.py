"""``p2c token``: mint a development bearer token, printed alone on stdout::

    TOKEN=$(p2c token --role finance --entity US01)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/graphql ...

It signs with the secret the gateway verifies with (``P2C_JWT_SECRET``, or the development default), and
refuses in production mode or when the gateway verifies RS256 tokens from a JWKS URL instead.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from canonical.errors import ConfigurationError, ValidationFailed
from canonical.principal import ALL_ENTITIES, Role
from gateway.auth import AuthConfig, mint_dev_token
from gateway.cli._boundary import reported_errors
from gateway.settings import env_name, load_settings

_TTL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``"8h"`` → 28800; plain numbers are seconds; units s, m, h, d."""
    match = _TTL.match(text.lower())
    if match is None or int(match.group(1)) == 0:
        raise ValidationFailed(f"{text!r} is not a duration like 3600, 90m, 8h or 2d", subject="--ttl")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def token(
    role: Annotated[
        list[Role],
        typer.Option("--role", "-r", help="a role the token grants (repeat for several)"),
    ],
    entity: Annotated[
        list[str] | None,
        typer.Option("--entity", "-e", help="a legal entity code it may see (repeat; '*' for all)"),
    ] = None,
    subject: Annotated[str, typer.Option(help="the token's subject (sub)")] = "dev-user",
    ttl: Annotated[str, typer.Option(help="lifetime: seconds, or 90m, 8h, 2d")] = "8h",
) -> None:
    """Print a development bearer token for the local gateway."""
    entities = [code.strip() for code in entity or [] if code.strip()]
    with reported_errors():
        ttl_s = parse_ttl(ttl)
        settings = load_settings(complete=False)
        if settings.mode == "production":
            raise ConfigurationError(
                f"p2c token mints development tokens only and {env_name('mode')} is production"
            )
        config = AuthConfig.from_settings(settings)
        if config.mode != "hs256" or config.secret is None:
            raise ConfigurationError(
                f"the gateway verifies RS256 tokens from {env_name('jwks_url')}; "
                "get a token from that identity provider"
            )
        minted = mint_dev_token(
            config.secret,
            subject,
            role,
            entities,
            ttl_s=ttl_s,
            audience=config.audience,
            issuer=config.issuer,
        )
    if not entities:
        typer.echo(
            f"warning: this token sees no legal entity (add --entity CODE, or --entity '{ALL_ENTITIES}')",
            err=True,
        )
    typer.echo(minted)


def register(app: typer.Typer) -> None:
    app.command()(token)
