"""Child process of ``test_tryton_crash``: post the entries in a JSON file to Tryton in one batch.

    python -m tests.mutations.tryton_crash_child job.json     # {"database_url", "tryton": {...}, "items"}

The PSA is the in-process sandbox of the flow tests' firm (only its users are read); the store and Tryton
are the parent's. Heads a killed run left claimed are taken over at once (``stale_after=0``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from canonical.mapping import demo_mapping
from mutations.deps import FlowDeps
from mutations.posting.model import PostItem
from mutations.posting.post import post_items
from mutations.posting.snapshot import PostingCaches
from store.db import make_engine, make_sessionmaker
from subgraphs.common.sandbox import Limits, SandboxOptions
from subgraphs.crm.client import CrmClient
from subgraphs.crm.config import CrmConfig
from subgraphs.erp.client import ErpClient
from subgraphs.erp.config import ErpConfig
from subgraphs.erp_tryton.client import TrytonClient
from subgraphs.erp_tryton.config import TrytonConfig
from subgraphs.psa.client import PsaClient
from subgraphs.psa.config import PsaConfig
from subgraphs.psa.sandbox import create_app as psa_app


async def main(job: dict[str, Any]) -> int:
    engine = make_engine(job["database_url"])
    psa = PsaClient.from_config(PsaConfig(), httpx.ASGITransport(
        app=psa_app(SandboxOptions(seed=job["seed"], accounts=job["accounts"], limits=Limits()))))
    config = TrytonConfig(**{**job["tryton"], "password": SecretStr(job["password"])})
    tryton = TrytonClient.from_config(config)
    deps = FlowDeps(
        crm=CrmClient.from_config(CrmConfig()), psa=psa, erp=ErpClient.from_config(ErpConfig()),
        sessionmaker=make_sessionmaker(engine), mapping=demo_mapping(), tryton=tryton,
        erp_by_entity={"EU01": "tryton"},
    )
    items = [PostItem.of(payload) for payload in job["items"]]
    report = await post_items(deps, items, caches=PostingCaches(ttl_s=0), stale_after=timedelta(0))
    print(json.dumps({str(i.entry_id): o.status for i, o in report.outcomes.items()}))
    await tryton.aclose()
    await psa.aclose()
    await engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()))))
