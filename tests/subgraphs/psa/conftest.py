from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from subgraphs.common.sandbox import Limits, SandboxOptions
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.sandbox import create_app

BASE = "http://psa.sandbox"
HEADERS = {"Authorization": "Bearer p2c-demo-secret", "Harvest-Account-Id": "p2c-demo", "User-Agent": "tests"}
ACCOUNTS = 60


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("P2C_"):
            monkeypatch.delenv(name)


@pytest.fixture
def app() -> Starlette:
    return create_app(SandboxOptions(accounts=ACCOUNTS, limits=Limits()))


@pytest.fixture
async def raw(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the sandbox with Harvest's headers (admin routes need none)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, headers=HEADERS
    ) as client:
        yield client


MakeClient = Callable[..., PsaClient]


@pytest.fixture
async def make_client(app: Starlette) -> AsyncIterator[MakeClient]:
    made: list[PsaClient] = []

    def make(**config: Any) -> PsaClient:
        sleep = config.pop("sleep", None)
        kwargs = {"sleep": sleep} if sleep is not None else {}
        client = PsaClient.from_config(PsaConfig(**config), httpx.ASGITransport(app=app), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


class FakeSleep:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """The app on uvicorn at a free local port, in a thread; yields the base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
