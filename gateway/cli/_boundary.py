"""The CLI's error boundary: a known failure is one ``error: ...`` line on stderr and a non-zero exit,
never a traceback. Exit code 2 for bad input or settings, 1 for an environment that does not answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from canonical.errors import ConfigurationError, GatewayError, ValidationFailed
from gateway.logs import redact_text

EXIT_UNAVAILABLE = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    typer.echo(f"error: {' '.join(redact_text(message).split())}", err=True)
    raise typer.Exit(code)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Wrap a command's body: ``with reported_errors(): ...``."""
    try:
        yield
    except (ConfigurationError, ValidationFailed) as exc:
        fail(exc.message, EXIT_BAD_INPUT)
    except GatewayError as exc:
        fail(exc.message, EXIT_UNAVAILABLE)
    except SQLAlchemyError as exc:
        fail(f"database: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", EXIT_UNAVAILABLE)
    except OSError as exc:
        fail(str(exc) or type(exc).__name__, EXIT_UNAVAILABLE)
