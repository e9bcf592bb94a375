"""``mapping``: the mapping set in force, table by table, and the gaps open exceptions blame on it.

    query { mapping {
      version fingerprint description
      tables { name columns rows }
      gaps { table key exceptions exceptionIds }
    } }

Each table of the YAML becomes rows of strings: the first column is the entry's key, nested values are
flattened to dotted columns (``schedule.kind``), lists are joined. ``gaps`` groups the active
``MAPPING_MISSING`` exceptions (in the caller's legal entities) by the table and key they name — what to
add before "fix the mapping, replay". Finance, integration admins and auditors only (``FORBIDDEN``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import strawberry

from canonical.errors import ConfigurationError
from canonical.mapping import MappingSet
from canonical.principal import Permission
from resolvers.context import Info
from resolvers.operations import EXCEPTION_SCAN_LIMIT, OperationsContext
from store.repositories import ExceptionRepo
from store.repositories.exceptions import ACTIVE

MAPPING = "mapping"
MAPPING_MISSING = "MAPPING_MISSING"


@strawberry.type(description="One table of the mapping: the first column is each entry's key")
class MappingTable:
    name: str
    columns: list[str]
    rows: list[list[str]]


@strawberry.type(description="Active MAPPING_MISSING exceptions that name one table and key")
class MappingGap:
    table: str
    key: str
    exceptions: int
    exception_ids: list[strawberry.ID]


@strawberry.type
class MappingView:
    version: str
    description: str
    fingerprint: str
    tables: list[MappingTable]
    gaps: list[MappingGap]


def _flatten(value: Any, prefix: str, into: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), into)
    elif isinstance(value, list):
        simple = all(not isinstance(v, Mapping | list) for v in value)
        into[prefix or "value"] = ", ".join(map(str, value)) if simple else json.dumps(value)
    else:
        into[prefix or "value"] = "" if value is None else str(value)


def mapping_tables(mapping: MappingSet) -> list[MappingTable]:
    """Every table (a mapping of entries) of ``mapping``, entries sorted by key."""
    tables: list[MappingTable] = []
    for name, table in mapping.as_dict().items():
        if not isinstance(table, Mapping):
            continue  # version, description: shown on their own
        flat: dict[str, dict[str, str]] = {}
        for key, entry in table.items():
            cells: dict[str, str] = {}
            _flatten(entry, "", cells)
            flat[str(key)] = cells
        columns = list(dict.fromkeys(c for cells in flat.values() for c in cells))
        tables.append(
            MappingTable(
                name=name,
                columns=["key", *columns],
                rows=[[key, *(flat[key].get(c, "") for c in columns)] for key in sorted(flat)],
            )
        )
    return tables


async def mapping_view(info: Info) -> MappingView:
    ctx = info.context
    ctx.principal.require(Permission.READ_AUDIT, action=MAPPING)
    mapping = ctx.mapping if isinstance(ctx, OperationsContext) else None
    if mapping is None:
        raise ConfigurationError("no mapping loaded")
    async with ctx.sessionmaker() as session:
        rows = await ExceptionRepo(session).list(
            status=ACTIVE, reason_code=MAPPING_MISSING, limit=EXCEPTION_SCAN_LIMIT
        )
    gaps: dict[tuple[str, str], list[str]] = {}
    for row in ctx.principal.visible(rows, lambda r: r.legal_entity):
        error = row.upstream_error if isinstance(row.upstream_error, dict) else {}
        where = (str(error.get("table") or "?"), str(error.get("key") or "?"))
        gaps.setdefault(where, []).append(row.id)
    return MappingView(
        version=mapping.version,
        description=mapping.description,
        fingerprint=mapping.fingerprint(),
        tables=mapping_tables(mapping),
        gaps=[
            MappingGap(
                table=table,
                key=key,
                exceptions=len(ids),
                exception_ids=[strawberry.ID(i) for i in ids],
            )
            for (table, key), ids in sorted(gaps.items(), key=lambda item: (-len(item[1]), item[0]))
        ],
    )


@strawberry.type
class MappingQuery:
    @strawberry.field(
        description="The mapping set in force, table by table, and the gaps open MAPPING_MISSING exceptions "
        "name. Finance, integration admins and auditors only"
    )
    async def mapping(self, info: Info) -> MappingView:
        return await mapping_view(info)


__all__ = ["MappingGap", "MappingQuery", "MappingTable", "MappingView", "mapping_tables", "mapping_view"]
