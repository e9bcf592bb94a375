"""A real Tryton server for tests: the database is built once per pytest run, kept as a snapshot file, and
each test module restores it into its own directory and runs trytond on a free loopback port.

    with tryton_server(tmp_path_factory) as server:     # module-scoped fixtures wrap this
        client = server.client()
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
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
        self.site.restore(snapshot().file)
        self.process, self.url = self.site.start()


@contextmanager
def tryton_server(directory: Path) -> Iterator[Server]:
    built = snapshot()
    site = TrytonSite(directory, password=built.password)
    site.write_config()
    site.restore(built.file)
    process, url = site.start()
    server = Server(site, url, process, built.company)
    try:
        yield server
    finally:
        stop(server.process)
