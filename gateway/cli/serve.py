"""``p2c serve``: check everything, then run the gateway under uvicorn.

With no settings at all this is the newcomer's demo: SQLite file in the working directory, migrated to
head, the three vendor sandboxes in-process with the seeded demo firm, on http://127.0.0.1:8000.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
        tryton_entity: Annotated[
            str | None,
            typer.Option(
                "--tryton-entity",
                help="demo: book this legal entity (e.g. EU01) in a real Tryton server started here, beside "
                "the NetSuite ones; built in --tryton-dir the first time (~1 min)",
            ),
        ] = None,
        tryton_dir: Annotated[
            Path, typer.Option("--tryton-dir", help="where --tryton-entity keeps Tryton's database")
        ] = Path("var/tryton"),
    ) -> None:
        """Serve the GraphQL gateway (GraphiQL at /graphql in development)."""
        with reported_errors(), ExitStack() as stack:
            if tryton_entity is not None:
                if database_url is None and not os.environ.get(env_name("database_url")):
                    database_url = fresh_store(tryton_dir)
                stack.enter_context(tryton_demo(tryton_entity, tryton_dir))
            _serve(host, port, database_url, workers, reload)


def _serve(host: str | None, port: int | None, database_url: str | None, workers: int, reload: bool) -> None:
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


def fresh_store(directory: Path) -> str:
    """The two-ERP demo's store: a new SQLite file per start, like its sandboxes and its Tryton database."""
    directory.mkdir(parents=True, exist_ok=True)
    store = (directory / "gateway.db").resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{store}"


@contextmanager
def tryton_demo(entity: str, directory: Path) -> Iterator[None]:
    """A real Tryton server booking ``entity`` for this process's life, the gateway pointed at it.

    Built once in ``directory`` (``p2c erp tryton init``'s company, the demo firm's employees of the
    entity) and kept as a pristine copy; every start restores that copy, because the in-process
    sandboxes start afresh too. The settings go through the environment, like any other."""
    from gateway.cli.erp import demo_company
    from subgraphs.erp_tryton.sandbox.server import TrytonSite, stop

    entity = entity.upper()
    if not entity.isalnum():
        raise ConfigurationError(f"--tryton-entity must be a legal entity code such as EU01, not {entity!r}")
    for name in SYSTEMS:
        if os.environ.get(env_name(name, "base_url")):
            raise ConfigurationError(
                f"--tryton-entity is the embedded demo's: unset {env_name(name, 'base_url')}, or point "
                "a real gateway at Tryton with `p2c erp tryton init` and its settings"
            )
    site = TrytonSite(directory)
    pristine = directory.resolve() / "p2c.pristine.sqlite"
    built = site.built()
    if built is None or built.get("entity") != entity or not pristine.exists():
        Console(stderr=True).print(f"building Tryton for {entity} in {site.directory} (once, about a minute)")
        built = site.initialize(demo_company(entity))
        site.snapshot(pristine)
    else:
        site.restore(pristine)
    process, url = site.start()
    os.environ.update(
        {
            f"P2C_LEGAL_ENTITIES__{entity}__ERP": "tryton",
            env_name("tryton", "base_url"): url,
            env_name("tryton", "database"): site.name,
            env_name("tryton", "company"): str(built["company"]),
            env_name("tryton", "password"): site.admin_password(),
        }
    )
    try:
        yield
    finally:
        stop(process)


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
