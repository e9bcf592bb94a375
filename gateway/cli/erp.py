"""``p2c erp tryton init|start``: a real Tryton 8.2 server with a demo company, for an entity booked there.

    p2c erp tryton init --dir var/tryton --entity EU01 --serve     # build (idempotent), then serve it
    p2c erp tryton start --dir var/tryton --port 8001               # serve an existing database
    p2c erp tryton init --database-url postgresql://postgres@127.0.0.1:5432/

``init`` activates the Tryton modules (``trytond-admin``) and builds the demo company (chart of accounts,
fiscal years with monthly periods, service products, the entity's employees of the demo firm); it prints the
settings that point the gateway at it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from canonical.errors import ConfigurationError
from gateway.cli._boundary import reported_errors
from subgraphs.demo import generate_firm
from subgraphs.erp_tryton.sandbox.server import DemoCompany, TrytonSite, stop

erp_app = typer.Typer(help="The ERPs besides NetSuite.", no_args_is_help=True)
tryton_app = typer.Typer(
    help="A real Tryton server for a legal entity (P2C_LEGAL_ENTITIES__<code>__ERP=tryton).",
    no_args_is_help=True,
)
erp_app.add_typer(tryton_app, name="tryton")

DirOption = Annotated[Path, typer.Option("--dir", help="where the config, password and SQLite file live")]
NameOption = Annotated[str, typer.Option("--name", help="the Tryton database name")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL server for Tryton, e.g. postgresql://user@host:5432/ (default: SQLite in --dir)",
    ),
]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="port trytond listens on")]


def _site(directory: Path, name: str, database_url: str | None) -> TrytonSite:
    if database_url is not None and not database_url.startswith(("postgresql://", "sqlite://")):
        raise ConfigurationError(
            f"--database-url must be postgresql://user@host:port/ (or sqlite://), not {database_url!r}"
        )
    uri = database_url.rstrip("/") + "/" if database_url and database_url.startswith("postgresql") else None
    return TrytonSite(directory, name=name, uri=uri)


def demo_company(
    entity: str,
    name: str = "Northwind Advisory GmbH",
    currency: str = "EUR",
    seed: int = 7,
    accounts: int = 200,
) -> DemoCompany:
    """The entity's company in the demo firm: its employees of ``entity`` (PSA users match by e-mail)."""
    firm = generate_firm(seed, accounts)
    people = [{"name": e.name, "email": e.email} for e in firm.employees if e.legal_entity == entity]
    return DemoCompany(entity=entity, name=name, currency=currency.upper(), employees=people)


def _serve(site: TrytonSite, port: int) -> None:
    process, url = site.start(port)
    typer.echo(f"trytond serving database {site.name!r} on {url} (Ctrl-C stops it)")
    try:
        while process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
    if process.returncode not in (0, -15, None):
        log = site.directory / "trytond.log"
        raise ConfigurationError(f"trytond exited with {process.returncode}; see {log}")


@tryton_app.command("init")
def init(
    directory: DirOption = Path("var/tryton"),
    name: NameOption = "p2c",
    database_url: UrlOption = None,
    entity: Annotated[str, typer.Option(help="the legal entity the company books for")] = "EU01",
    company: Annotated[str, typer.Option(help="company name")] = "Northwind Advisory GmbH",
    currency: Annotated[str, typer.Option(help="company currency (ISO 4217)")] = "EUR",
    seed: Annotated[int, typer.Option(help="demo firm seed (its employees of --entity)")] = 7,
    accounts: Annotated[int, typer.Option(min=0, help="demo firm size")] = 200,
    port: PortOption = 8001,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="start the server afterwards")] = False,
) -> None:
    """Build the Tryton database and demo company (again: only what is missing), print the settings."""
    with reported_errors():
        if len(currency) != 3 or not currency.isalpha():
            raise ConfigurationError(f"--currency must be an ISO 4217 code, not {currency!r}")
        site = _site(directory, name, database_url)
        typer.echo(f"building Tryton database {name!r} in {site.directory} (the first time takes a minute)")
        built = site.initialize(demo_company(entity, company, currency, seed, accounts))
        typer.echo(
            f"company {built['company']} ({currency.upper()}): {len(built['products'])} service products, "
            f"{len(built['employees'])} employees"
        )
        typer.echo("point the gateway at it:")
        typer.echo(f"  P2C_LEGAL_ENTITIES__{entity.upper()}__ERP=tryton")
        typer.echo(f"  P2C_TRYTON__BASE_URL=http://127.0.0.1:{port}")
        typer.echo(f"  P2C_TRYTON__DATABASE={name}")
        typer.echo(f"  P2C_TRYTON__COMPANY={built['company']}")
        typer.echo(f"  P2C_TRYTON__PASSWORD=$(cat {site.password_file})")
        if serve:
            _serve(site, port)


@tryton_app.command("start")
def start(
    directory: DirOption = Path("var/tryton"),
    name: NameOption = "p2c",
    database_url: UrlOption = None,
    port: PortOption = 8001,
) -> None:
    """Serve a database ``init`` built, in the foreground."""
    with reported_errors():
        site = _site(directory, name, database_url)
        if site.built() is None:
            raise ConfigurationError(
                f"no Tryton database built in {site.directory}: run `p2c erp tryton init`"
            )
        _serve(site, port)


def register(app: typer.Typer) -> None:
    app.add_typer(erp_app, name="erp")
