"""``p2c serve``: check everything, then run the gateway under uvicorn.

With no settings at all this is the newcomer's demo: SQLite file in the working directory, migrated to
head, the three vendor sandboxes in-process with the seeded demo firm, on http://127.0.0.1:8000.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from sqlalchemy.engine import make_url

from canonical.errors import ConfigurationError
from canonical.principal import ALL_ENTITIES, Role
from gateway.app import create_app
from gateway.auth import AuthConfig, mint_dev_token
from gateway.cli._boundary import reported_errors
from gateway.logs import configure_logging
from gateway.runtime.startup import Preflight, preflight
from gateway.settings import Settings, env_name, load_settings
from gateway.types import SYSTEMS

WORKER_HEALTHCHECK_S = 60  # uvicorn's default is 5: too short for a worker's start-up under load


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Annotated[str | None, typer.Option(help="interface to bind (default 127.0.0.1)")] = None,
        port: Annotated[int | None, typer.Option(help="port to listen on (default 8000)")] = None,
        database_url: Annotated[str | None, typer.Option("--database-url", help="store URL")] = None,
        workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
        reload: Annotated[bool, typer.Option(help="restart on code changes (development)")] = False,
    ) -> None:
        """Serve the GraphQL gateway (GraphiQL at /graphql in development)."""
        overrides: dict[str, Any] = {
            key: value
            for key, value in {"host": host, "port": port, "database_url": database_url}.items()
            if value is not None
        }
        with reported_errors():
            settings = load_settings(**overrides)
            configure_logging(settings.log_level, settings.log_format or "console")
            if (workers > 1 or reload) and settings.embedded_systems():
                unset = ", ".join(env_name(name, "base_url") for name in settings.embedded_systems())
                raise ConfigurationError(
                    "--workers/--reload need every system on a real base URL (in-process sandboxes "
                    f"live in one process); set {unset}"
                )
            report = asyncio.run(preflight(settings, migrate_store=settings.mode == "development"))
        print_banner(settings, report)
        if workers > 1 or reload:
            # Each worker builds its own app from the environment, so CLI flags travel through it.
            for key, value in overrides.items():
                os.environ[env_name(key)] = str(value)
            uvicorn.run(
                "gateway.app:create_app_from_env",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=workers,
                reload=reload,
                log_config=None,
                access_log=False,
                # A spawned worker re-imports the CLI before it can answer the supervisor's ping; on a
                # busy machine that takes longer than uvicorn's 5 s, and the worker is killed and
                # restarted for ever.
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            )
        else:
            uvicorn.run(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
            )


def print_banner(settings: Settings, report: Preflight) -> None:
    base = f"http://{settings.host}:{settings.port}"
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]Project-to-Cash Gateway[/bold] ({settings.mode})")
    ide = "  (GraphiQL in a browser)" if settings.mode == "development" else ""
    console.print(f"  graph     {base}/graphql{ide}")
    console.print(f"  console   {base}/console   (ops console: paste a token to sign in)")
    console.print(f"  ready     {base}/readyz    metrics {base}/metrics")
    console.print(f"  store     {_where(settings.database_url)}  (revision {report.revision})")
    mapping = settings.mapping_path or "shipped demo mapping"
    console.print(f"  mapping   {mapping}")
    for name in SYSTEMS:
        config = settings.system(name)
        if config.base_url is None:
            where = (
                f"in-process sandbox, {base}/sandbox/{name} "
                f"(demo firm seed {settings.demo_seed}, {settings.demo_accounts} accounts, in memory)"
            )
        else:
            where = config.base_url
        console.print(f"  {name:<9} {where}")
    token = dev_token(settings)
    if token is not None:
        console.print("  token     finance, all legal entities, 8 h (mint others with `p2c token`):")
        console.print(f"            {token}")
        query = '{"query": "{ accounts(first: 5) { edges { node { id name } } } }"}'
        console.print("  try       curl -s " + base + "/graphql -H 'content-type: application/json' \\")
        console.print(f"              -H 'authorization: Bearer {token}' \\")
        console.print(f"              -d '{query}'")


def dev_token(settings: Settings) -> str | None:
    """A finance token for every legal entity, signed with the development secret; None in production
    or when tokens come from an identity provider (we cannot sign those)."""
    if settings.mode != "development":
        return None
    config = AuthConfig.from_settings(settings)
    if config.mode != "hs256" or config.secret is None:
        return None
    return mint_dev_token(
        config.secret,
        "dev-user",
        [Role.FINANCE],
        [ALL_ENTITIES],
        audience=config.audience,
        issuer=config.issuer,
    )


def _where(database_url: str) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return str(Path(url.database or "").resolve())
    return url.render_as_string(hide_password=True)
