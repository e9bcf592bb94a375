"""``p2c migrate``: bring the store's schema to the newest revision."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from gateway.cli._boundary import reported_errors
from gateway.runtime.startup import migrate as migrate_store
from gateway.settings import load_settings
from store.db import mask_url


def register(app: typer.Typer) -> None:
    @app.command()
    def migrate(
        database_url: Annotated[
            str | None, typer.Option("--database-url", help="store URL (default: P2C_DATABASE_URL)")
        ] = None,
    ) -> None:
        """Upgrade the store database (SQLite or PostgreSQL) to head and print its revision."""
        with reported_errors():
            overrides = {"database_url": database_url} if database_url is not None else {}
            settings = load_settings(complete=False, **overrides)
            revision = asyncio.run(migrate_store(settings.database_url))
        typer.echo(f"{mask_url(settings.database_url)} at revision {revision}")
