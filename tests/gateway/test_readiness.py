from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.settings import Settings, load_settings

# A port nothing listens on: connection refused at once.
UNREACHABLE = "http://127.0.0.1:9"


async def test_ready_with_store_and_embedded_systems(
    database_url: str, stand_in_systems: None, serve: Any
) -> None:
    settings = load_settings(database_url=database_url, demo_accounts=5, readiness_timeout_s=10)
    async with serve(create_app(settings)) as client:
        response = await client.get("/readyz")
        counters = await client.get("/sandbox/crm/__sandbox/counters")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"store", "migrations", "crm", "psa", "erp"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["crm"]["embedded"] is True
    assert body["checks"]["migrations"]["revision"]
    assert counters.status_code == 200  # the in-process sandbox is reachable over HTTP too


async def test_unreachable_system_is_named(
    settings: Settings, stand_in_systems: None, serve: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("P2C_ERP__BASE_URL", UNREACHABLE)
    monkeypatch.setenv("P2C_ERP__RETRY__ATTEMPTS", "1")
    monkeypatch.setenv("P2C_READINESS_TIMEOUT_S", "5")
    settings = load_settings(database_url=settings.database_url, demo_accounts=5)
    async with serve(create_app(settings)) as client:
        response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "not_ready"
    erp = body["checks"]["erp"]
    assert erp["ok"] is False
    assert erp["embedded"] is False
    assert erp["error"]
    assert "Traceback" not in response.text
    assert body["checks"]["crm"]["ok"] is True
    assert body["checks"]["store"]["ok"] is True


async def test_missing_sandbox_package_is_reported(settings: Settings, serve: Any, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "subgraphs.psa.sandbox", None)  # import now raises ImportError
    async with serve(create_app(settings)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    psa = response.json()["checks"]["psa"]
    assert psa["ok"] is False
    assert "sandbox not available" in psa["error"]


async def test_unreachable_database_is_named(tmp_path: Path, serve: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'store.db'}"
    async with serve(create_app(load_settings(database_url=url, demo_accounts=5))) as client:
        response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["store"]["ok"] is False
    assert "unreachable" in body["checks"]["store"]["error"]
    assert body["checks"]["migrations"]["ok"] is False
    assert "Traceback" not in response.text


async def test_unmigrated_database_is_not_ready(tmp_path: Path, serve: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    async with serve(create_app(load_settings(database_url=url, demo_accounts=5))) as client:
        response = await client.get("/readyz")
    checks = response.json()["checks"]
    assert response.status_code == 503
    assert checks["store"]["ok"] is True
    assert checks["migrations"] == {
        "ok": False,
        "revision": None,
        "head": checks["migrations"]["head"],
        "error": "store schema is not at head",
    }


async def test_a_sandbox_that_fails_to_start_is_reported_not_fatal(
    settings: Settings, serve: Any, monkeypatch: Any
) -> None:
    def broken(options: Any) -> Any:
        raise RuntimeError("seed data does not fit the schema")

    module = types.ModuleType("subgraphs.crm.sandbox")
    module.create_app = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "subgraphs.crm.sandbox", module)
    async with serve(create_app(settings)) as client:
        health = await client.get("/healthz")
        response = await client.get("/readyz")
    assert health.status_code == 200
    assert response.status_code == 503
    crm = response.json()["checks"]["crm"]
    assert crm["ok"] is False
    assert crm["error"] == "sandbox failed to start: RuntimeError: seed data does not fit the schema"


async def test_ready_with_the_real_sandboxes(sqlite_url: str, serve: Any) -> None:
    settings = load_settings(database_url=sqlite_url, demo_accounts=5, readiness_timeout_s=30)
    async with serve(create_app(settings)) as client:
        response = await client.get("/readyz")
        counters = await client.get("/sandbox/erp/__sandbox/counters")
    assert response.status_code == 200, response.json()
    assert counters.status_code == 200


async def test_a_connector_that_fails_to_import_is_reported_not_fatal(
    settings: Settings, stand_in_systems: None, serve: Any, monkeypatch: Any
) -> None:
    # A client module that exists but trips over something missing when used.
    module = types.ModuleType("subgraphs.psa.client")

    def __getattr__(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'subgraphs.psa.queries'", name="subgraphs.psa.queries")

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "subgraphs.psa.client", module)
    async with serve(create_app(settings)) as client:
        response = await client.get("/readyz")
    psa = response.json()["checks"]["psa"]
    assert response.status_code == 503
    assert psa["ok"] is False
    assert psa["error"].startswith("connector failed to start: ModuleNotFoundError")
    assert response.json()["checks"]["crm"]["ok"] is True
