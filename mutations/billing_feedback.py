"""Invoice and payment status → CRM and subscribers (DESIGN flow 4): the entry points the worker, the
``/webhooks/erp`` route and tests use. The flow lives in ``mutations.billing``:

    poller = ErpChangePoller(deps)                            # the worker runs it on its interval
    await handle_erp_event(deps, event, correlation_id=cid)   # POST /webhooks/erp
    await crm_writeback(deps, job.payload, correlation_id=c)  # worker handler for CRM_WRITEBACK items
    message(row.id, row.topic, row.payload)                   # an outbox row as subscribers see it

Event topics and payload shapes: ``mutations.billing.events`` (the contract with subscriptions).
"""

from __future__ import annotations

from mutations.billing.events import (
    CREDIT_MEMO_APPLIED,
    INTEGRATION_EVENT,
    INVOICE_STATUS_CHANGED,
    PAYMENT_RECEIVED,
    TOPICS,
    message,
)
from mutations.billing.intake import CRM_WRITEBACK, ERP_CURSOR, ErpChangePoller, handle_erp_event
from mutations.billing.writeback import crm_writeback

__all__ = [
    "CREDIT_MEMO_APPLIED",
    "CRM_WRITEBACK",
    "ERP_CURSOR",
    "INTEGRATION_EVENT",
    "INVOICE_STATUS_CHANGED",
    "PAYMENT_RECEIVED",
    "TOPICS",
    "ErpChangePoller",
    "crm_writeback",
    "handle_erp_event",
    "message",
]
