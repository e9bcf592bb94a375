"""``p2c``: the gateway's command line.

Each command group lives in its own module with a ``register(app)`` function; adding one is a new
module here plus a line in ``_COMMANDS``::

    # gateway/cli/backfill.py
    def register(app: typer.Typer) -> None:
        @app.command()
        def backfill(...) -> None:
            with reported_errors():
                ...
"""

from __future__ import annotations

import typer

from gateway.cli import backfill, erp, exceptions, migrate, reconcile, sandbox, schema, serve, token, worker

app = typer.Typer(
    name="p2c",
    help="Project-to-Cash Gateway: one GraphQL engagement graph over CRM, PSA and ERP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMANDS = (serve, migrate, sandbox, token, schema, backfill, worker, exceptions, reconcile, erp)
for _module in _COMMANDS:
    _module.register(app)

__all__ = ["app"]
