"""A real Tryton server for tests: the database is built once per pytest run, kept as a snapshot file, and
each test module restores it into its own directory and runs trytond on a free loopback port.

With ``P2C_TEST_TRYTON_URI=postgresql://postgres@127.0.0.1:5432/`` (``.ci/run`` sets it) Tryton's own
database is on PostgreSQL instead: the snapshot is a database, each module gets a copy made with
``CREATE DATABASE … TEMPLATE`` (dropped afterwards).

    with tryton_server(tmp_path_factory) as server:     # module-scoped fixtures wrap this
        client = server.client()
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from subgraphs.common.config import RetryConfig
from subgraphs.demo import generate_firm
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.config import TrytonConfig
from subgraphs.erp_tryton.sandbox.server import DemoCompany, TrytonSite, stop

SEED = 7
ACCOUNTS = 30  # the flow tests' demo firm (tests/mutations/conftest.py)
ENTITY = "EU01"
#: read at import, before the autouse fixture clears P2C_* variables
TRYTON_URI: str | None = os.environ.get("P2C_TEST_TRYTON_URI") or None
SNAPSHOT_DB = "p2c_tryton_snapshot"
RETRY = RetryConfig(attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005, budget_s=10)


def demo_company() -> DemoCompany:
    firm = generate_firm(SEED, ACCOUNTS)
    people = [{"name": e.name, "email": e.email} for e in firm.employees if e.legal_entity == ENTITY]
    return DemoCompany(entity=ENTITY, employees=people)


@dataclass(frozen=True)
class Snapshot:
    file: Path
    password: str
    company: dict[str, Any]


@functools.cache
def snapshot() -> Snapshot:
    """Build the demo database once for the whole run (~30–90 s) and keep a copy of the file."""
    directory = Path(tempfile.mkdtemp(prefix="p2c-tryton-build-"))
    if TRYTON_URI:
        _postgres(f"DROP DATABASE IF EXISTS {SNAPSHOT_DB} WITH (FORCE)")
        site = TrytonSite(directory, name=SNAPSHOT_DB, uri=TRYTON_URI, password="p2c-test-admin")
        company = site.initialize(demo_company())
        shutil.rmtree(directory, ignore_errors=True)
        return Snapshot(Path(SNAPSHOT_DB), "p2c-test-admin", company)
    site = TrytonSite(directory, password="p2c-test-admin")
    company = site.initialize(demo_company())
    kept = Path(tempfile.mkdtemp(prefix="p2c-tryton-snapshot-")) / "p2c.sqlite"
    site.snapshot(kept)
    shutil.rmtree(directory, ignore_errors=True)
    return Snapshot(kept, "p2c-test-admin", company)


@dataclass
class Server:
    site: TrytonSite
    url: str
    process: subprocess.Popen[bytes]
    company: dict[str, Any]

    def config(self, **overrides: Any) -> TrytonConfig:
        values: dict[str, Any] = {
            "base_url": self.url,
            "database": self.site.name,
            "password": SecretStr(self.site.admin_password()),
            "company": int(self.company["company"]),
            "retry": RETRY,
            **overrides,
        }
        return TrytonConfig(**values)

    def client(self, **overrides: Any) -> TrytonClient:
        return TrytonClient.from_config(self.config(**overrides))

    def restart(self) -> None:
        stop(self.process)
        self.process, self.url = self.site.start()

    def reset(self) -> None:
        """Back to the built database (for tests whose other systems start afresh, ids included)."""
        stop(self.process)
        _restore(self.site)
        self.process, self.url = self.site.start()


def _postgres(statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{TRYTON_URI}postgres", autocommit=True) as conn:
        conn.execute(statement)


def _restore(site: TrytonSite) -> None:
    if TRYTON_URI:
        _postgres(f'DROP DATABASE IF EXISTS "{site.name}" WITH (FORCE)')
        _postgres(f'CREATE DATABASE "{site.name}" TEMPLATE {SNAPSHOT_DB}')
    else:
        site.restore(snapshot().file)


@contextmanager
def tryton_server(directory: Path) -> Iterator[Server]:
    built = snapshot()
    name = f"p2c_tryton_{uuid.uuid4().hex[:12]}" if TRYTON_URI else "p2c"
    site = TrytonSite(directory, name=name, uri=TRYTON_URI, password=built.password)
    site.write_config()
    _restore(site)
    process, url = site.start()
    server = Server(site, url, process, built.company)
    try:
        yield server
    finally:
        stop(server.process)
        if TRYTON_URI:
            _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
