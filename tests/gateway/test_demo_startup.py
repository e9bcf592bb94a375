"""The embedded demo's start-up runs backfill, so the store holds the demo firm's cross-references."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import aliased

from canonical.principal import ALL_ENTITIES, Role
from gateway.app import create_app
from gateway.auth import AuthConfig, Authenticator, mint_dev_token
from gateway.cli.serve import dev_token
from gateway.settings import Settings, load_settings
from store.models import CrossReference, IntegrationException, IntegrationRun

DEMO_ACCOUNTS = 20


@pytest.fixture
def demo(sqlite_url: str) -> Settings:
    return load_settings(database_url=sqlite_url, demo_accounts=DEMO_ACCOUNTS)


async def _links(app: Any) -> dict[tuple[str, str], int]:
    async with app.state.runtime.sessionmaker() as session:
        rows = await session.execute(
            sa.select(CrossReference.system, CrossReference.entity_type, sa.func.count()).group_by(
                CrossReference.system, CrossReference.entity_type
            )
        )
        return {(system, kind): count for system, kind, count in rows.all()}


async def _runs(app: Any) -> list[str]:
    async with app.state.runtime.sessionmaker() as session:
        return list((await session.scalars(sa.select(IntegrationRun.status))).all())


async def _accounts_without_erp_link(app: Any) -> set[str]:
    crm, erp = aliased(CrossReference), aliased(CrossReference)
    query = (
        sa.select(crm.canonical_id)
        .outerjoin(erp, sa.and_(erp.canonical_id == crm.canonical_id, erp.system == "erp"))
        .where(crm.system == "crm", crm.entity_type == "Account", erp.id.is_(None))
    )
    async with app.state.runtime.sessionmaker() as session:
        return set((await session.scalars(query)).all())


async def _open_exception_subjects(app: Any) -> set[str]:
    query = sa.select(IntegrationException.subject).where(
        IntegrationException.flow == "backfill", IntegrationException.status == "OPEN"
    )
    async with app.state.runtime.sessionmaker() as session:
        return {subject for subject in (await session.scalars(query)).all() if subject}


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "gateway.backfill"]


async def test_embedded_start_builds_cross_references(
    demo: Settings, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.backfill")
    app = create_app(demo)
    async with serve(app):
        links = await _links(app)
        runs = await _runs(app)
        unlinked = await _accounts_without_erp_link(app)
        raised = await _open_exception_subjects(app)
    assert "gateway.backfill.done" in _events(caplog)
    assert runs == ["SUCCEEDED"]
    # The demo firm is a day-one firm with deliberate gaps (accounts missing from the ERP, an ambiguous
    # account number): most accounts link, and every one that does not is an open exception, never lost.
    assert links[("crm", "Account")] == DEMO_ACCOUNTS
    assert DEMO_ACCOUNTS // 2 < links[("erp", "Account")] <= DEMO_ACCOUNTS
    assert links[("psa", "Account")] > DEMO_ACCOUNTS // 2
    assert links[("erp", "Project")] > 0
    assert links[("psa", "Project")] > 0
    assert unlinked
    assert unlinked <= raised


async def test_the_graph_reads_the_links_backfill_made(demo: Settings, serve: Any) -> None:
    assert demo.jwt_secret is not None
    token = mint_dev_token(demo.jwt_secret, "ana", [Role.FINANCE], [ALL_ENTITIES])
    query = "{ accounts(first: 50) { edges { node { id crmId erpId psaId } } } }"
    app = create_app(demo)
    async with serve(app) as client:
        response = await client.post(
            "/graphql", json={"query": query}, headers={"authorization": f"Bearer {token}"}
        )
        links = await _links(app)
    nodes = [edge["node"] for edge in response.json()["data"]["accounts"]["edges"]]
    assert len(nodes) == DEMO_ACCOUNTS
    assert all(node["crmId"] for node in nodes)
    # The PSA id of an account exists only as a cross-reference: backfill is where it comes from.
    assert sum(1 for node in nodes if node["psaId"]) == links[("psa", "Account")]


async def test_a_second_start_links_nothing_new(demo: Settings, serve: Any) -> None:
    first = create_app(demo)
    async with serve(first):
        before = await _links(first)
    second = create_app(demo)
    async with serve(second):
        after = await _links(second)
        runs = await _runs(second)
    assert after == before
    assert runs == ["SUCCEEDED", "SUCCEEDED"]


async def test_not_every_system_embedded_means_no_backfill(
    demo: Settings, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.backfill")
    external = demo.model_copy(update={"crm": demo.crm.model_copy(update={"base_url": "http://127.0.0.1:9"})})
    app = create_app(external)
    async with serve(app):
        assert await _links(app) == {}
    assert _events(caplog) == []


async def test_without_the_backfill_module_start_up_skips_it(
    demo: Settings, serve: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.backfill")
    monkeypatch.setitem(sys.modules, "mutations.backfill", None)  # import raises ModuleNotFoundError
    app = create_app(demo)
    async with serve(app) as client:
        assert await _links(app) == {}
        assert (await client.get("/healthz")).status_code == 200
    assert _events(caplog) == ["gateway.backfill.skipped"]


async def test_an_unmigrated_store_skips_backfill_and_still_serves(
    tmp_path: Any, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.backfill")
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", demo_accounts=5)
    async with serve(create_app(settings)) as client:
        assert (await client.get("/healthz")).status_code == 200
    (record,) = [r for r in caplog.records if r.name == "gateway.backfill"]
    assert record.getMessage() == "gateway.backfill.skipped"
    assert "p2c migrate" in record.event_context["reason"]


async def test_serve_banner_token_is_a_finance_token_for_every_entity(demo: Settings) -> None:
    token = dev_token(demo)
    assert token is not None
    principal = await Authenticator(AuthConfig.from_settings(demo)).authenticate(f"Bearer {token}")
    assert principal.roles == frozenset({Role.FINANCE})
    assert principal.all_entities


def test_no_banner_token_in_production(sqlite_url: str) -> None:
    production = load_settings(
        mode="production",
        database_url=sqlite_url,
        jwt_secret="p" * 40,
        webhook_secret="w" * 40,
        complete=False,
    )
    assert dev_token(production) is None


def test_serve_banner_names_the_console(demo: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli.serve import print_banner
    from gateway.runtime.startup import Preflight

    print_banner(demo, Preflight(database="sqlite", revision="v0001", mapping=None))
    out = capsys.readouterr().out
    assert "/console" in out
    assert "/graphql" in out
