"""The posting ledger: what the gateway posted to the ERP for each PSA entry, on integration runs and steps.

No table of its own. Every entry has one *head* step (``psa:time:<entry id>:head``) whose ``result`` says
which version is live in the ERP; every write is a step with a deterministic key
(``erp:timebill:<entry id>:v<version>``, ``…:reversal``) under the run of the batch that made it. All
reads and writes here are bulk — one statement per batch, never one per entry:

    ledger = PostingRepo(session)
    claimed = await ledger.claim_heads(run_id, ["psa:time:42:head", ...])   # {key: result | None}
    ...                                                                      # the ERP writes
    await ledger.record(run_id, steps=[StepRow(...)], heads={"psa:time:42:head": {...}})

A head is claimed (status RUNNING) for the duration of a batch, so two workers never correct the same
entry at once; a claim older than ``stale_after`` belongs to a dead worker and is taken over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa

from store.models import IntegrationException, IntegrationStep
from store.repositories._base import Repository
from store.repositories.runs import CLAIM_TIMEOUT

HEAD = "head"
STEPS = cast(sa.Table, IntegrationStep.__table__)


@dataclass(frozen=True)
class StepRow:
    """One finished write of a batch: SUCCEEDED with its result, or FAILED with the error."""

    key: str
    name: str
    status: str
    result: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None


class PostingRepo(Repository):
    async def claim_heads(
        self, run_id: str, keys: Sequence[str], *, stale_after: timedelta = CLAIM_TIMEOUT
    ) -> dict[str, Any]:
        """Claim the heads ``keys`` (created when new) → ``{key: result}`` of those claimed; a head another
        batch holds under a live claim is left out."""
        if not keys:
            return {}
        table = STEPS
        connection = await self.session.connection()
        rows = [{"run_id": run_id, "name": HEAD, "key": k, "status": "PENDING", "attempts": 0} for k in keys]
        await connection.execute(
            self.upsert_insert(table).on_conflict_do_nothing(index_elements=["key"]), rows
        )
        now = self.clock()
        claimable = sa.or_(
            table.c.status != "RUNNING",
            table.c.started_at.is_(None),
            table.c.started_at <= now - stale_after,
        )
        claim = (
            sa.update(table)
            .where(table.c.key.in_(list(keys)), claimable)
            .values(status="RUNNING", started_at=now, attempts=table.c.attempts + 1)
            .returning(table.c.key, table.c.result)
        )
        return {row.key: row.result for row in await connection.execute(claim)}

    async def release_heads(self, heads: Mapping[str, Any]) -> None:
        """End the claims: each head keeps the result given (None: never posted → PENDING)."""
        if not heads:
            return
        table = STEPS
        now = self.clock()
        statement = (
            sa.update(table)
            .where(table.c.key == sa.bindparam("b_key"))
            .values(
                status=sa.bindparam("b_status"),
                result=sa.bindparam("b_result", type_=sa.JSON),
                finished_at=now,
                started_at=None,
            )
        )
        rows = [
            {"b_key": k, "b_status": "PENDING" if r is None else "SUCCEEDED", "b_result": r}
            for k, r in heads.items()
        ]
        await (await self.session.connection()).execute(statement, rows)

    async def heads(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: result}`` of existing heads (read only; no claim)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        found: dict[str, Any] = {}
        for chunk in _chunks(wanted):
            query = sa.select(IntegrationStep.key, IntegrationStep.result).where(
                IntegrationStep.key.in_(chunk)
            )
            found.update({row.key: row.result for row in await self.session.execute(query)})
        return found

    async def succeeded(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: result}`` of the steps among ``keys`` that SUCCEEDED."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        found: dict[str, Any] = {}
        for chunk in _chunks(wanted):
            query = sa.select(IntegrationStep.key, IntegrationStep.result).where(
                IntegrationStep.key.in_(chunk), IntegrationStep.status == "SUCCEEDED"
            )
            found.update({row.key: row.result or {} for row in await self.session.execute(query)})
        return found

    async def record_steps(self, run_id: str, steps: Sequence[StepRow]) -> None:
        """Insert or overwrite the steps of a batch in one statement."""
        if not steps:
            return
        table = STEPS
        now = self.clock()
        rows = [
            {
                "run_id": run_id,
                "name": s.name[:64],
                "key": s.key,
                "status": s.status,
                "attempts": 1,
                "result": dict(s.result) if s.result is not None else None,
                "error": dict(s.error) if s.error is not None else None,
                "started_at": now,
                "finished_at": now,
            }
            for s in steps
        ]
        insert = self.upsert_insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "run_id": insert.excluded.run_id,
                "status": insert.excluded.status,
                "result": insert.excluded.result,
                "error": insert.excluded.error,
                "attempts": table.c.attempts + 1,
                "finished_at": insert.excluded.finished_at,
            },
        )
        await (await self.session.connection()).execute(statement, rows)

    async def active_exceptions(self, flow: str, subjects: Iterable[str]) -> dict[str, list[str]]:
        """``{subject: [exception id, ...]}`` of OPEN or REPLAYING exceptions of ``flow`` for ``subjects``."""
        wanted = list(dict.fromkeys(subjects))
        if not wanted:
            return {}
        query = sa.select(IntegrationException.subject, IntegrationException.id).where(
            IntegrationException.flow == flow,
            IntegrationException.subject.in_(wanted),
            IntegrationException.status.in_(("OPEN", "REPLAYING")),
        )
        found: dict[str, list[str]] = {}
        for row in await self.session.execute(query):
            found.setdefault(str(row.subject), []).append(str(row.id))
        return found


#: Keys per IN list: PostgreSQL takes at most 32,767 bind parameters a statement, SQLite 32,766.
IN_CHUNK = 5000


def _chunks(keys: list[str], size: int = IN_CHUNK) -> list[list[str]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]
