"""Salesforce REST emulator for the CRM: ``create_app(SandboxOptions()) -> Starlette``.

Salesforce API served under ``/services/data/vNN.0`` (any ``vNN.0``): ``query`` (SOQL subset, see
``soql.py``; batches of at most 2,000 with ``nextRecordsUrl``; ``Sforce-Query-Options: batchSize=N``),
``sobjects/{Obj}`` (create), ``sobjects/{Obj}/{id}`` (get, update, delete),
``sobjects/{Obj}/{ExtField}/{value}`` (get, upsert: 201 created / 200 updated / 300 several matches),
``composite/sobjects`` (create ≤ 200) and
``composite/sobjects/{Obj}/{ExtField}`` (upsert ≤ 200), ``limits``; OAuth client credentials at
``POST /services/oauth2/token``. Every API response carries ``Sforce-Limit-Info: api-usage=N/M``; an exhausted
budget or any injected limit is a 403 ``REQUEST_LIMIT_EXCEEDED``.

Objects: Account, Opportunity, OpportunityLineItem and the custom ``Invoice__c`` (fields in ``schema.py``).
Every create, update and delete appends a change-data-capture event (``ChangeEventHeader`` with
``changeOrigin`` ``com/salesforce/api/rest/62.0;client=<name>`` from ``Sforce-Call-Options: client=<name>``).

Sandbox extensions (not Salesforce):

- ``GET /services/data/vNN.0/p2c/events?after=<replayId>&limit=<≤1000>`` (authenticated) →
  ``{"events": [{"replayId", "channel", "payload": {"ChangeEventHeader", ...fields}}], "latestReplayId"}``:
  polling stands in for the Pub/Sub API.
- ``PUT /__sandbox/crm/webhook {"url", "secret"}`` (``GET`` status, ``DELETE`` stops): every event is
  POSTed to ``url`` with ``X-P2C-Signature: sha256=<hex HMAC-SHA256 of the body>`` and
  ``X-P2C-Event-Id: <replayId>``, at-least-once, retried briefly.
- ``POST /__sandbox/crm/expire-tokens``: every issued access token stops working (the next call gets 401).
- ``GET|PUT /__sandbox/crm/settings {"query_batch_size"}``: page size cap, to exercise paging cheaply.
- Shared plumbing: ``/__sandbox/faults``, ``/__sandbox/counters`` (see ``subgraphs.common.sandbox``).
"""

from __future__ import annotations

from subgraphs.crm.sandbox.app import create_app, render_error
from subgraphs.crm.sandbox.state import CrmState
from subgraphs.crm.sandbox.webhooks import Deliver, deliver_via, sign

__all__ = ["CrmState", "Deliver", "create_app", "deliver_via", "render_error", "sign"]
