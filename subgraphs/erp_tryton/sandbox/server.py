"""Build, snapshot and run a real Tryton server — the launcher behind ``p2c erp tryton init`` and the tests.

    site = TrytonSite(Path("var/tryton"))                  # SQLite by default; uri="postgresql://..." too
    company = site.initialize(DemoCompany(entity="EU01"))  # idempotent: activates modules, builds the company
    with site.serve(port=8001) as url:                      # trytond -c CONF -d DB, until the block ends
        ...

Nothing here emulates Tryton: the modules come from PyPI, the database is built by ``trytond-admin`` and
by ``build.py`` (run in a child process, trytond keeps process-wide state), and the server is trytond
itself. The gateway only ever talks to it over JSON-RPC.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from canonical.errors import ConfigurationError

MODULES = ("project_invoice", "timesheet", "account_invoice", "project")
ADMIN = "admin"


@dataclass(frozen=True)
class DemoCompany:
    """What the demo company holds: the entity it books for, its currency, fiscal years and people."""

    entity: str = "EU01"
    name: str = "Northwind Advisory GmbH"
    currency: str = "EUR"
    years: tuple[int, ...] = (2025, 2026, 2027)
    employees: Sequence[dict[str, str]] = field(default_factory=tuple)  # [{"name", "email"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ConfigurationError(
            f"{name} is not installed: pip install 'p2c-gateway[tryton]' (Tryton 8.2 and its modules)"
        )
    return found


@dataclass
class TrytonSite:
    """One Tryton database and its configuration file in ``directory``.

    ``uri`` is trytond's ``[database] uri``: empty → SQLite files in ``directory``; ``postgresql://user@host/``
    → PostgreSQL (the database ``name`` is created when missing).
    """

    directory: Path
    name: str = "p2c"
    uri: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()

    @property
    def sqlite(self) -> bool:
        return not self.uri or self.uri.startswith("sqlite")

    @property
    def config_file(self) -> Path:
        return self.directory / "trytond.conf"

    @property
    def database_file(self) -> Path:
        return self.directory / f"{self.name}.sqlite"

    @property
    def company_file(self) -> Path:
        return self.directory / f"{self.name}.company.json"

    @property
    def password_file(self) -> Path:
        return self.directory / "admin.password"

    def admin_password(self) -> str:
        if self.password:
            return self.password
        if self.password_file.exists():
            return self.password_file.read_text().strip()
        return ""

    def write_config(self, port: int = 8000) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        uri = self.uri or "sqlite://"
        lines = ["[database]", f"uri = {uri}"]
        if self.sqlite:
            lines.append(f"path = {self.directory}")
        lines += ["", "[web]", f"listen = 127.0.0.1:{port}", "", "[session]", "timeout = 3600", ""]
        self.config_file.write_text("\n".join(lines))
        return self.config_file

    def _run(self, args: list[str], what: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            args, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
        )
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise ConfigurationError(f"{what} failed (exit {done.returncode}): {tail}")
        return done.stdout

    def _create_postgres_database(self) -> None:
        import psycopg

        try:
            with psycopg.connect(f"{self.uri}postgres", autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{self.name}"')
        except psycopg.Error as exc:
            raise ConfigurationError(f"PostgreSQL at {self.uri}: {exc}") from None

    def initialize(self, company: DemoCompany) -> dict[str, Any]:
        """Activate the modules (once) and build the demo company (each part only when missing).

        Returns what ``build.py`` reports: company id, product ids by CRM product code, employee ids by
        email, the payment term; also written to ``company_file`` for the connector's settings.
        """
        self.write_config()
        if not self.password and not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(16) + "\n")
        self.password_file.write_text(self.admin_password() + "\n")
        if self.sqlite:
            self.database_file.touch(exist_ok=True)
        else:
            self._create_postgres_database()
        if not self.company_file.exists():
            self._run(
                [_tool("trytond-admin"), "-c", str(self.config_file), "-d", self.name,
                 "--email", "admin@example.com", "-u", *MODULES, "--activate-dependencies"],
                "trytond-admin (activating the Tryton modules)",
                env={"TRYTONPASSFILE": str(self.password_file)},
            )
        out = self._run(
            [sys.executable, "-m", "subgraphs.erp_tryton.sandbox.build", str(self.config_file), self.name,
             "--company", company.name, "--currency", company.currency,
             "--years", *map(str, company.years), "--employees", json.dumps(list(company.employees))],
            "building the demo company",
        )
        built: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        built["entity"] = company.entity
        self.company_file.write_text(json.dumps(built, indent=2) + "\n")
        return built

    def built(self) -> dict[str, Any] | None:
        return json.loads(self.company_file.read_text()) if self.company_file.exists() else None

    # -- snapshots (SQLite): the suite builds once and restores per test module ---------------------------
    def snapshot(self, to: Path) -> Path:
        shutil.copyfile(self.database_file, to)
        return to

    def restore(self, snapshot: Path) -> None:
        """Only while the server is stopped. A left-over write-ahead log would be replayed onto the copy."""
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self.database_file}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(snapshot, self.database_file)

    # -- the server ------------------------------------------------------------------------------------
    def start(
        self, port: int | None = None, *, log: Path | None = None
    ) -> tuple[subprocess.Popen[bytes], str]:
        """``trytond -c CONF -d NAME`` on loopback; returns once it answers. The ``-d`` list is required."""
        port = port or free_port()
        self.write_config(port)
        out = open(log or self.directory / "trytond.log", "ab")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(
            [_tool("trytond"), "-c", str(self.config_file), "-d", self.name],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ConfigurationError(f"trytond exited with {process.returncode}; see {self.directory}")
            try:
                httpx.post(f"{url}/{self.name}/rpc/", json={"id": 0, "method": "common.server.version",
                                                            "params": []}, timeout=1)
                return process, url
            except httpx.TransportError:
                time.sleep(0.1)
        process.kill()
        raise ConfigurationError(f"trytond did not answer on {url} within 30 s")

    @contextmanager
    def serve(self, port: int | None = None) -> Iterator[str]:
        process, url = self.start(port)
        try:
            yield url
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
