from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.repositories import RunRepo
from store.repositories.postings import IN_CHUNK, PostingRepo


async def test_head_lookups_take_more_keys_than_one_statement_may_bind(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # A month-end poll asks for tens of thousands of heads at once; PostgreSQL refuses more than
    # 32,767 bind parameters in one statement, so the repository must chunk.
    keys = [f"psa:time:{n}:head" for n in range(7 * IN_CHUNK)]
    async with sessionmaker.begin() as session:
        run = await RunRepo(session).start("post_time.batch", subject="test", input={})
        ledger = PostingRepo(session)
        claimed: dict[str, Any] = await ledger.claim_heads(run.id, [keys[3], keys[-1]])
        assert set(claimed) == {keys[3], keys[-1]}
        heads = await ledger.heads(keys)
        assert set(heads) == {keys[3], keys[-1]}
        assert await ledger.succeeded(keys) == {}
