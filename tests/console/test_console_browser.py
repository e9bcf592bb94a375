"""The ops console in headless Chromium against a real gateway process with embedded sandboxes.

An integration admin signs in with a token, sees the exception an injected ERP fault raised, replays it
once the fault is cleared, and sees it resolved with its audit entries; a ``sales`` token gets no replay
button, and the server refuses the mutation anyway with ``FORBIDDEN``. Every page is screenshotted to
``test-artifacts/console/``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from mutations.identity import provisioned_project_canonical_id
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from tests.console.conftest import Console, Gateway
from tests.mutations.test_provision_scenarios import EXISTING_FIXED_FEE, NEW_CUSTOMER_FIXED_FEE, NO_STREET, TM

T = TypeVar("T")
PROVISION = """mutation($opp: ID!, $key: String!) {
  provisionEngagement(opportunityId: $opp, idempotencyKey: $key) { status exceptionId runId reasonCode }
}"""


def off_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run async set-up in a thread of its own: Playwright's sync API owns this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


def win(gateway: Gateway, opportunity: str) -> None:
    async def update() -> None:
        crm = CrmClient.from_config(CrmConfig(base_url=gateway.sandbox("crm")))
        try:
            await crm.update("Opportunity", opportunity, {"StageName": "Closed Won"})
        finally:
            await crm.aclose()

    off_loop(update)


def erp_faults(gateway: Gateway, **faults: Any) -> None:
    url = gateway.sandbox("erp") + "/__sandbox/faults"
    response = httpx.put(url, json=faults) if faults else httpx.delete(url)
    response.raise_for_status()


def test_an_admin_sees_a_fault_s_exception_replays_it_and_sees_it_resolved_and_audited(
    gateway: Gateway, console: Console
) -> None:
    admin = gateway.token("integration_admin", "ops-admin")
    win(gateway, NEW_CUSTOMER_FIXED_FEE)
    erp_faults(gateway, fail_records={provisioned_project_canonical_id(NEW_CUSTOMER_FIXED_FEE): 400})
    body = gateway.graphql(
        admin, PROVISION, correlation_id="browser-fault", opp=NEW_CUSTOMER_FIXED_FEE, key="browser-k-1"
    )
    failed = body["data"]["provisionEngagement"]
    assert failed["status"] == "EXCEPTION" and failed["reasonCode"] == "UPSTREAM_REJECTED", body
    exception_id = failed["exceptionId"]

    page = console.page()
    page.goto(gateway.url("/console/"))
    page.wait_for_selector("#login:not([hidden])")
    assert not page.is_visible("#nav") and not page.is_visible("#page")  # nothing before a token
    console.shot(page, "01-sign-in")
    page.fill("#token-input", "not-a-token")
    page.click("#sign-in")
    page.wait_for_selector("#login-error:has-text('UNAUTHENTICATED')")
    assert [p for p in console.problems if "401" not in p] == []  # the browser logs the refused token
    console.problems.clear()
    page.fill("#token-input", admin)
    page.click("#sign-in")

    # overview: the provisioning flow shows the open exception
    page.wait_for_selector("#page[data-ready='overview']")
    assert page.inner_text("[data-test=viewer]") == "ops-admin"
    card = page.locator("[data-test=flow-card][data-flow=provision_engagement]")
    assert "1 failed" in card.inner_text() and card.locator(".pill").inner_text() in {"AMBER", "RED"}
    assert page.locator("svg.sparkline").count() >= 4 and page.locator("[data-test=sla]").count() == 3
    console.shot(page, "02-overview")

    # the queue, filtered to the flow: the exception is there, OPEN
    console.open(page, "#/exceptions?status=OPEN&flow=provision_engagement")
    row = page.locator(f"[data-test=exception-row][data-id='{exception_id}']")
    assert row.get_attribute("data-status") == "OPEN" and "UPSTREAM_REJECTED" in row.inner_text()
    console.shot(page, "03-exception-queue")

    row.locator("[data-test=open-exception]").click()
    page.wait_for_selector("#page[data-ready='exception'] #replay")
    assert '"system": "erp"' in page.inner_text("#upstream-error")
    assert "opportunity" in page.input_value("#payload")
    console.shot(page, "04-exception-open")

    # the fault clears; replay from the console
    erp_faults(gateway)
    page.click("#replay")
    outcome = page.wait_for_selector("[data-test=outcome][data-status=RESOLVED]")
    assert outcome is not None
    page.wait_for_selector("#page[data-ready='exception']")
    actions = page.locator("#outcome [data-test=audit-row][data-operation=replayException]")
    assert actions.count() >= 2  # the mutation's entry and the replay's own, under one correlation id
    assert {actions.nth(i).get_attribute("data-status") for i in range(actions.count())} >= {"RESOLVED"}
    assert page.locator("#replay").count() == 0  # nothing left to do
    console.shot(page, "05-exception-resolved")

    # the same from the graph
    one = "query($id: ID!) { integrationException(id: $id) { status } }"
    after = gateway.graphql(admin, one, id=exception_id)["data"]["integrationException"]
    assert after["status"] == "RESOLVED"

    # the run, found by the exception's correlation id: every step succeeded after the replay
    page.locator(".details a[href^='#/runs?correlationId=']").first.click()
    page.wait_for_selector("#page[data-ready='runs'] [data-test=run]")
    run = page.locator(f"[data-test=run][data-id='{failed['runId']}']")
    assert run.get_attribute("data-status") == "SUCCEEDED"
    assert run.locator("svg.timeline").count() == 1
    assert run.locator("[data-test=step][data-status=FAILED]").count() == 0
    console.shot(page, "06-run-by-correlation-id")

    console.open(page, "#/audit?operation=replayException")
    assert page.locator("[data-test=audit-row][data-status=RESOLVED]").count() >= 1
    console.shot(page, "07-audit")

    console.open(page, "#/reconciliation?run=1&from=2026-01-01&to=2026-12-31&legalEntity=US01")
    assert page.inner_text("[data-test=reconciliation-state]")
    assert page.locator("svg.comparison").count() == 1
    console.shot(page, "08-reconciliation")

    console.open(page, "#/mapping")
    assert page.inner_text("[data-test=mapping-version]")
    assert page.locator("[data-test=mapping-row]").count() > 0
    console.shot(page, "09-mapping")

    # back on the overview: the provisioning flow is green again and its cycle time has a sample
    console.open(page, "#/overview?hours=6")
    card = page.locator("[data-test=flow-card][data-flow=provision_engagement]")
    assert card.locator(".pill").inner_text() == "GREEN" and "1 ok" in card.inner_text()
    assert "of 1 within target" in page.inner_text("[data-test=sla][data-name=provisioning_cycle_time]")
    console.shot(page, "10-overview-after-replay")

    assert console.problems == []


def test_a_sales_token_gets_no_replay_and_the_server_refuses_it(gateway: Gateway, console: Console) -> None:
    sales = gateway.token("sales", "sam-sales")
    win(gateway, NO_STREET)
    body = gateway.graphql(sales, PROVISION, opp=NO_STREET, key="browser-k-2")
    exception_id = body["errors"][0]["extensions"]["exceptionId"]  # VALIDATION_FAILED: no billing street

    page = console.sign_in(sales)
    assert "FORBIDDEN" in page.inner_text("#page .error-box")  # flowHealth is for operators only
    console.shot(page, "11-sales-overview")

    console.open(page, f"#/exception?id={exception_id}")
    assert page.locator("#replay").count() == 0 and page.locator("#dismiss").count() == 0
    assert "may not replay" in page.inner_text("[data-test=no-permission]")
    console.shot(page, "12-sales-exception")

    # even past the page, straight at the graph with the page's own token, the server says no
    refused = page.evaluate(
        """async (id) => {
          const r = await fetch("/graphql", {method: "POST", headers: {"Content-Type": "application/json",
            "Authorization": "Bearer " + sessionStorage.getItem("p2c.console.token")},
            body: JSON.stringify({query: `mutation($id: ID!) { replayException(id: $id, idempotencyKey: "s-1")
              { exception { status } } }`, variables: {id}})});
          return await r.json();
        }""",
        exception_id,
    )
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "replayException" in refused["errors"][0]["message"]
    assert console.problems == []


def test_an_admin_edits_a_payload_and_replays_and_dismisses_with_a_reason(
    gateway: Gateway, console: Console
) -> None:
    admin = gateway.token("integration_admin", "ops-editor")
    projects = [provisioned_project_canonical_id(o) for o in (EXISTING_FIXED_FEE, TM)]
    erp_faults(gateway, fail_records=dict.fromkeys(projects, 400))
    ids = []
    for n, opportunity in enumerate((EXISTING_FIXED_FEE, TM)):
        win(gateway, opportunity)
        body = gateway.graphql(admin, PROVISION, opp=opportunity, key=f"browser-k-{3 + n}")
        ids.append(body["data"]["provisionEngagement"]["exceptionId"])
    edited_id, dismissed_id = ids
    erp_faults(gateway)
    page = console.sign_in(admin)

    # an edit that drops a field is refused by the server, field by field, and nothing changes
    console.open(page, f"#/exception?id={edited_id}")
    payload = json.loads(page.input_value("#payload"))
    page.fill("#payload", json.dumps({"opportunity": payload["opportunity"]}))
    page.click("#edit-replay")
    refused = page.wait_for_selector("#outcome .error-box[data-code=VALIDATION_FAILED]")
    assert refused is not None and "payload.input" in refused.inner_text()
    console.shot(page, "13-edit-refused")

    # an edit of a value is stored, then replayed
    payload["input"]["billing_contact"] = "ap@fixed.test"
    page.fill("#payload", json.dumps(payload))
    page.click("#edit-replay")
    page.wait_for_selector("[data-test=outcome][data-status=RESOLVED]")
    assert '"billing_contact": "ap@fixed.test"' in page.input_value("#payload")
    console.shot(page, "14-edited-and-replayed")

    # dismissal needs a reason; the server says so, then keeps it
    console.open(page, f"#/exception?id={dismissed_id}")
    page.click("#dismiss")
    assert page.wait_for_selector("#outcome .error-box[data-code=VALIDATION_FAILED]") is not None
    page.fill("#dismiss-reason", "deal re-scoped; provisioned by hand")
    page.click("#dismiss")
    page.wait_for_selector("[data-test=outcome][data-status=DISMISSED]")
    assert "deal re-scoped; provisioned by hand" in page.inner_text(".details")
    assert page.locator("#outcome [data-test=audit-row][data-operation=dismissException]").count() >= 1
    console.shot(page, "15-dismissed")
    assert console.problems == []
