"""The embedded demo's first day: backfill once at start-up.

A real firm connects the gateway to three systems that already hold years of records, and its first
run of ``mutations.backfill`` ties them together (cross-references, plus exceptions for what does not
match). The embedded demo seeds its sandboxes fresh on every start, so it replays that day every start —
otherwise the graph would show a firm whose systems the gateway has never reconciled.

Backfill is idempotent (a second run over the same store writes nothing), so restarting on a kept
SQLite file is harmless. Failing here never stops the demo from serving: the reason is logged, and the
graph answers with whatever the store holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from canonical.errors import GatewayError
from gateway.correlation import new_correlation_id
from gateway.logs import get_logger
from gateway.runtime.embedded import import_optional
from store.migrate import current_revision, head_revision

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = get_logger("gateway.backfill")


async def backfill_demo(runtime: Runtime) -> Any:
    """Run ``mutations.backfill.backfill`` over the runtime's connectors; its report, or None if skipped."""
    module = import_optional("mutations.backfill")
    backfill = getattr(module, "backfill", None) if module is not None else None
    if backfill is None:
        log.info("gateway.backfill.skipped", reason="mutations.backfill is not installed")
        return None
    missing = [name for name, system in runtime.systems.items() if system.client is None]
    if missing:
        log.warning("gateway.backfill.skipped", reason=f"no connector for {', '.join(missing)}")
        return None
    try:
        revision = await current_revision(runtime.engine)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("gateway.backfill.skipped", reason=f"store unreachable: {type(exc).__name__}")
        return None
    if revision != head_revision():
        log.warning(
            "gateway.backfill.skipped",
            reason=f"store at revision {revision or 'none'}, not {head_revision()}: run `p2c migrate`",
        )
        return None

    correlation_id = new_correlation_id()
    try:
        report = await backfill(
            crm=runtime.systems["crm"].client,
            psa=runtime.systems["psa"].client,
            erp=runtime.systems["erp"].client,
            sessionmaker=runtime.sessionmaker,
            correlation_id=correlation_id,
        )
    except GatewayError as exc:
        log.error("gateway.backfill.failed", code=exc.code, error=exc.message, correlation_id=correlation_id)
        return None
    except Exception as exc:  # a start-up convenience must not take the demo down; the trace is logged
        log.error(
            "gateway.backfill.crashed", exc_info=True, error=type(exc).__name__, correlation_id=correlation_id
        )
        return None
    log.info(
        "gateway.backfill.done",
        run_id=getattr(report, "run_id", None),
        accounts=getattr(report, "accounts", None),
        xrefs_created=getattr(report, "xrefs_created", None),
        missing=getattr(report, "missing", None),
        ambiguous=getattr(report, "ambiguous", None),
        duration_s=getattr(report, "duration_s", None),
        correlation_id=correlation_id,
    )
    return report
