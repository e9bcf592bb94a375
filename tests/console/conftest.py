"""Fixtures for the ops console's browser tests: a real gateway process (embedded sandboxes, a SQLite store,
a free loopback port) and headless Chromium driven by Playwright.

Chromium is Debian's ``chromium`` package, launched by path (``CHROMIUM``); Playwright's own browser
download is never used. Without Chromium or the ``playwright`` package the browser tests are skipped on a
laptop; ``--require-browser`` (``.ci/run`` passes it, after installing Chromium when it is missing) turns
that skip into a failure, as ``--require-postgres`` does for PostgreSQL.

    def test_something(gateway: Gateway, console: Console) -> None:
        page = console.sign_in(gateway.token("integration_admin"))
        page.goto(gateway.url("/console/#/exceptions"))
        console.shot(page, "exceptions")          # test-artifacts/console/exceptions.png

Screenshots go to ``test-artifacts/console/`` (gitignored); the session prints the folder at its end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth import mint_dev_token
from tests.mutations.process_support import CLI, ROOT, child_env, free_port

CHROMIUM = os.environ.get("P2C_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "console"
JWT_SECRET = "console-browser-test-secret-0123456789abcdef"
DEMO_ACCOUNTS = "30"  # the flow tests' firm (seed 7): its opportunity ids are known
STARTUP_S = 60.0
TIMEOUT_MS = 20_000


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def chromium(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A headless Chromium for one test module; skipped (failed with --require-browser) when unavailable.

    Module-scoped on purpose: Playwright's sync API holds an event loop on the main thread while it
    lives, and pytest-asyncio cannot run the async tests of the next module beside it. Keep browser
    tests synchronous; do async set-up with ``off_loop``."""
    missing = _missing_browser()
    if missing is not None:
        if request.config.getoption("--require-browser"):
            pytest.fail(f"--require-browser given but {missing}", pytrace=False)
        pytest.skip(f"{missing}: browser tests skipped")  # only on a machine without a browser
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Gateway:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return self.base + path

    def token(self, role: str, subject: str | None = None, entities: tuple[str, ...] = ("*",)) -> str:
        return mint_dev_token(JWT_SECRET, subject or f"{role}-user", [role], entities)

    def graphql(self, token: str, query: str, correlation_id: str | None = None, **variables: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        if correlation_id:
            headers["X-Correlation-Id"] = correlation_id
        response = httpx.post(
            self.url("/graphql"), json={"query": query, "variables": variables}, headers=headers, timeout=60
        )
        return response.json()

    def sandbox(self, system: str) -> str:
        return self.url(f"/sandbox/{system}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, chromium: Any) -> Iterator[Gateway]:
    """``p2c serve`` as its own process: embedded sandboxes seeded with the 30-account firm, a fresh
    SQLite store, a free loopback port. Started only when a browser is there to talk to it."""
    folder = tmp_path_factory.mktemp("console-gateway")
    port = free_port()
    log = folder / "gateway.log"
    env = child_env(
        P2C_JWT_SECRET=JWT_SECRET,
        P2C_DEMO_ACCOUNTS=DEMO_ACCOUNTS,
        P2C_LOG_LEVEL="WARNING",
    )
    command = [
        sys.executable, "-c", CLI, "serve", "--port", str(port),
        "--database-url", f"sqlite+aiosqlite:///{folder / 'store.db'}",
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=ROOT)
    gateway = Gateway(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the gateway exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(gateway.url("/readyz"), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the gateway was not ready within {STARTUP_S:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield gateway
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Console:
    """Browser contexts on the console; every page's console errors and failed requests are collected."""

    browser: Any
    gateway: Gateway
    problems: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def page(self) -> Any:
        context = self.browser.new_context(viewport={"width": 1360, "height": 900})
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        return page

    def sign_in(self, token: str) -> Any:
        page = self.page()
        page.goto(self.gateway.url("/console/"))
        page.fill("#token-input", token)
        page.click("#sign-in")
        page.wait_for_selector("#page[data-ready='overview']")
        return page

    def open(self, page: Any, hash_: str) -> None:
        """Go to ``#/...`` and wait until that page finished rendering."""
        name = hash_.lstrip("#/").split("?")[0]
        page.evaluate("(h) => { location.hash = h; }", hash_)
        page.wait_for_selector(f"#page[data-ready='{name}'] .view[data-page='{name}']")

    def shot(self, page: Any, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def console(chromium: Any, gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> Iterator[Console]:
    made = Console(chromium, gateway)
    try:
        yield made
    finally:
        made.close()
        if made.shots:
            with capsys.disabled():
                print(f"\nconsole screenshots: {ARTIFACTS} ({', '.join(p.name for p in made.shots)})")
