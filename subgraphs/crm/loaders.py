"""Batch load functions for per-request DataLoaders: one SOQL ``IN`` query per chunk of keys.

Each returns one entry per key, in key order: the entity, ``None`` when the CRM has no such record, or
the ``MappingInvalid`` error of a record that cannot be mapped (aiodataloader raises an exception value
for its own key only, so one bad record does not fail the whole batch)::

    accounts = DataLoader(functools.partial(load_accounts, client))
    account = await accounts.load("001000000000001AAA")
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeAlias, TypeVar

from canonical.entities import Account, Invoice, Opportunity, OpportunityLine
from canonical.errors import MappingInvalid
from subgraphs.crm.client import CrmClient
from subgraphs.crm.mapping import account_from_wire, invoice_from_wire, line_from_wire, opportunity_from_wire
from subgraphs.crm.wire import OpportunityLineRecord

T = TypeVar("T")
R = TypeVar("R")
Loaded: TypeAlias = T | MappingInvalid | None


def _map(record: R, mapper: Callable[[R], T]) -> T | MappingInvalid:
    try:
        return mapper(record)
    except MappingInvalid as exc:
        return exc


async def load_accounts(client: CrmClient, ids: Sequence[str]) -> list[Loaded[Account]]:
    """By Salesforce Account Id."""
    by_id = {r["Id"]: r for r in await client.accounts_by_ids(ids)}
    return [_map(by_id[i], account_from_wire) if i in by_id else None for i in ids]


async def load_opportunity_lines(client: CrmClient, ids: Sequence[str]) -> list[tuple[OpportunityLine, ...]]:
    """Line items per Salesforce Opportunity Id; an opportunity without lines (or unknown) gets ()."""
    grouped = _group(await client.lines_for_opportunities(ids))
    return [
        tuple(line_from_wire(r, r.get("CurrencyIsoCode") or "USD") for r in grouped.get(i, ())) for i in ids
    ]


async def load_opportunities(client: CrmClient, ids: Sequence[str]) -> list[Loaded[Opportunity]]:
    """By Salesforce Opportunity Id, with their line items (the two queries run concurrently)."""
    records, lines = await asyncio.gather(
        client.opportunities_by_ids(ids), client.lines_for_opportunities(ids)
    )
    by_id = {r["Id"]: r for r in records}
    grouped = _group(lines)
    return [
        _map(by_id[i], lambda r: opportunity_from_wire(r, grouped.get(r["Id"], []))) if i in by_id else None
        for i in ids
    ]


async def load_invoices(client: CrmClient, ids: Sequence[str]) -> list[Loaded[Invoice]]:
    """By canonical invoice id (``Invoice__c.P2C_Id__c``, stamped by the write-back)."""
    by_id = {r.get("P2C_Id__c"): r for r in await client.invoices_by_p2c_ids(ids)}
    return [_map(by_id[i], invoice_from_wire) if i in by_id else None for i in ids]


def _group(lines: list[OpportunityLineRecord]) -> dict[str, list[OpportunityLineRecord]]:
    grouped: dict[str, list[OpportunityLineRecord]] = defaultdict(list)
    for line in lines:
        grouped[line["OpportunityId"]].append(line)
    return grouped
