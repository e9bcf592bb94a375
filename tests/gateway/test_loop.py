"""The event loop of long-running processes: uvloop unless P2C_EVENT_LOOP says otherwise."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from canonical.errors import ConfigurationError
from gateway.runtime.loop import ENV, loop_factory, run


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_a_worker_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert run(_loop_type()) is uvloop.Loop


def test_asyncio_keeps_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "asyncio")
    assert loop_factory() is None
    assert run(_loop_type()) is not uvloop.Loop


def test_an_unknown_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "trio")
    with pytest.raises(
        ConfigurationError, match="P2C_EVENT_LOOP must be auto, uvloop or asyncio, not 'trio'"
    ):
        loop_factory()


def test_the_worker_command_reports_a_bad_loop_choice_without_a_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    monkeypatch.setenv(ENV, "trio")
    result = CliRunner().invoke(app, ["worker", "--once"])
    assert result.exit_code != 0
    assert "P2C_EVENT_LOOP must be auto, uvloop or asyncio" in result.output
    assert "Traceback" not in result.output
