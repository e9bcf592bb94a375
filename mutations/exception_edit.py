"""Edit an exception's payload before its replay (the console's "edit and replay").

    await edit_payload(deps, exception_id, {"opportunity": "006…", "input": {"template": "retainer"}})
    await replay_exception(deps, exception_id, principal=p)      # the handler reads the edited payload

Replay handlers read the payload the exception stores (``mutations.replay``), so an edit changes what the
replay does. An edit may change values, never the payload's shape: it must stay a JSON object, keep
every top-level key the stored one has, and each such key keeps its JSON kind (object, array, string,
number, boolean) — otherwise a handler would fail on a missing field instead of on the vendor's answer.
Every broken rule is one ``Problem`` of a ``VALIDATION_FAILED``; nothing is stored then. Only OPEN
exceptions can be edited (``CONFLICT`` otherwise, from the repository).

The caller's permission (``REPLAY_EXCEPTION``) and the audit entry are the replay mutation's: the edited
payload is part of its audited input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.errors import Problem, ValidationFailed
from mutations.deps import FlowDeps
from mutations.governance import unit_of_work
from store.repositories import ExceptionRepo


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def payload_problems(stored: Any, edited: Any) -> list[Problem]:
    """What is wrong with ``edited`` as a replacement for ``stored``; empty when it may replace it."""
    if not isinstance(edited, Mapping):
        return [Problem("payload", f"must be a JSON object, not {_kind(edited)}", "INVALID")]
    if not isinstance(stored, Mapping):
        return []
    problems: list[Problem] = []
    for key, value in stored.items():
        if key not in edited:
            problems.append(Problem(f"payload.{key}", "is missing: an edit may not remove it", "MISSING"))
            continue
        was, now = _kind(value), _kind(edited[key])
        if was != "null" and now != was:
            problems.append(Problem(f"payload.{key}", f"must stay {was}, not {now}", "INVALID"))
    return problems


async def edit_payload(deps: FlowDeps, exception_id: str, payload: Any) -> None:
    """Replace the payload of OPEN exception ``exception_id`` with ``payload`` (see the module rules)."""
    async with unit_of_work(deps) as session:
        repo = ExceptionRepo(session, clock=deps.clock)
        current = await repo.get(exception_id)
        problems = payload_problems(current.payload, payload)
        if problems:
            raise ValidationFailed(problems)
        await repo.update_payload(exception_id, dict(payload))


__all__ = ["edit_payload", "payload_problems"]
