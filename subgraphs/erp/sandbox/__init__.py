"""NetSuite REST sandbox: ``create_app(options)`` builds the emulator, seeded from the demo firm.

    app = create_app(SandboxOptions(seed=7, accounts=200))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp.sandbox")

The returned app is the vendor app wrapped in ``SandboxPlumbing`` (faults, counters, the concurrency cap
of 15 unless ``options.limits`` says otherwise); ``app.state.erp`` is the ``ErpSandbox`` (store, records).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from subgraphs.common.sandbox import Limits, SandboxOptions, SandboxPlumbing
from subgraphs.demo import AS_OF, generate_firm
from subgraphs.erp.sandbox.app import ErpSandbox, build_app, envelope, render_error
from subgraphs.erp.sandbox.seed import seed_firm, seed_reference
from subgraphs.erp.sandbox.state import Clock, Rules, Store

DEFAULT_CONCURRENCY_CAP = 15

__all__ = ["DEFAULT_CONCURRENCY_CAP", "ErpSandbox", "Rules", "create_app", "envelope"]


def create_app(options: SandboxOptions, rules: Rules | None = None) -> Starlette:
    firm = generate_firm(options.seed, options.accounts) if options.seed is not None else None
    store = Store.open(options.db_path, Clock(firm.as_of if firm else AS_OF), rules)
    store.db.execute("BEGIN")
    seed_reference(store)
    if firm is not None:
        seed_firm(store, firm)
    store.create_indexes()
    store.db.execute("COMMIT")
    vendor = build_app(store, options)
    plumbing = SandboxPlumbing(
        vendor,
        render_error=render_error,
        limits=options.limits or Limits(concurrency_cap=DEFAULT_CONCURRENCY_CAP),
    )
    app = Starlette(routes=[Mount("/", app=plumbing)])
    app.state.erp = vendor.state.sandbox
    app.state.plumbing = plumbing
    return app
