"""Time posting is traced like FlowRunner's flows: a batch span, a step span per ERP write carrying the
entry's correlation id (the gateway's ObservedTransport hangs each upstream call under its step)."""

from __future__ import annotations

from datetime import date, timedelta

from mutations.governance import CORRELATION_ID
from mutations.posting.post import BATCH_FLOW
from tests.gateway.test_tracing import attr, named, parent_id, spans
from tests.mutations.posting_support import Posting

__all__ = ["spans"]  # the in-memory exporter fixture, shared with the gateway's tracing tests


async def test_a_posting_batch_is_a_flow_span_with_a_step_span_per_erp_write(
    posting: Posting, spans: object
) -> None:
    project = posting.project()
    start = await posting.psa_now()
    days = [date(2026, 11, 23) + timedelta(days=i) for i in range(2)]
    ids = [int((await posting.entry(project, on=day))["id"]) for day in days]
    for entry_id in ids:
        await posting.approve(entry_id)
    report = await posting.round(start)
    assert report.failed == 0

    (batch,) = named(spans, f"flow {BATCH_FLOW}")  # type: ignore[arg-type]
    assert attr(batch, "p2c.outcome") == "SUCCEEDED"
    assert attr(batch, "p2c.items") == 2
    writes = [s for s in spans.get_finished_spans() if s.name.startswith("step ")]  # type: ignore[attr-defined]
    assert len(writes) == 2
    assert {parent_id(s) for s in writes} == {batch.context.span_id}
    assert all(attr(s, CORRELATION_ID) for s in writes)  # each entry's own id
    assert {str(attr(s, "p2c.step_key")).split(":")[2] for s in writes} == {str(i) for i in ids}
