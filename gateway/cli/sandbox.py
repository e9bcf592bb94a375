"""``p2c sandbox serve crm|psa|erp``: one vendor emulator on its own port, e.g. to rehearse an
integration against it or to point a gateway at it with ``P2C_CRM__BASE_URL``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from gateway.cli._boundary import EXIT_UNAVAILABLE, fail, reported_errors
from gateway.logs import configure_logging
from gateway.runtime.embedded import load_sandbox_factory, sandbox_options


class System(StrEnum):
    crm = "crm"
    psa = "psa"
    erp = "erp"


sandbox_app = typer.Typer(help="Run the vendor sandboxes.", no_args_is_help=True)


@sandbox_app.command("serve")
def serve_sandbox(
    system: Annotated[System, typer.Argument(help="which vendor to emulate")],
    port: Annotated[int, typer.Option(help="port to listen on")] = 8100,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    db: Annotated[Path | None, typer.Option(help="SQLite file for its state (default: in memory)")] = None,
    seed: Annotated[int, typer.Option(help="demo firm seed")] = 7,
    accounts: Annotated[int, typer.Option(min=0, help="demo firm size")] = 200,
    empty: Annotated[bool, typer.Option(help="start without the demo firm")] = False,
) -> None:
    """Serve one sandbox standalone."""
    with reported_errors():
        factory = load_sandbox_factory(system.value)
        if factory is None:
            fail(
                f"the {system.value} sandbox is not installed (subgraphs.{system.value}.sandbox)",
                EXIT_UNAVAILABLE,
            )
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        options = sandbox_options(
            seed=None if empty else seed, accounts=accounts, db_path=str(db) if db else ":memory:"
        )
        sandbox = factory(options)
    configure_logging("INFO", "console")
    typer.echo(f"{system.value} sandbox on http://{host}:{port} (state: {db or 'in memory'})")
    uvicorn.run(sandbox, host=host, port=port, log_config=None, access_log=False)


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
