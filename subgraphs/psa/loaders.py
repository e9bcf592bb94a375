"""Batch load functions for aiodataloader, one connector call (or one paged read) per batch.

Harvest has no ``ids`` filter, so a batch of projects is read one of two ways, whichever costs fewer
requests: up to ``per_id_threshold`` keys → concurrent ``GET /v2/projects/{id}`` (one request each);
more → the whole project list, paged at 2000 (⌈projects / 2000⌉ requests, 5 for the 10,000-account firm),
picking the keys. Users are always read as the full list (firms have hundreds, one page).

    loaders = PsaLoaders(client, ids)           # per request: a shared loader leaks data between users
    project = await loaders.projects.load(20000)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from functools import partial

from aiodataloader import DataLoader

from canonical.entities import Project, TimeEntry
from canonical.errors import UpstreamNotFound
from subgraphs.psa.client import PsaClient
from subgraphs.psa.mapping import IdMap, project_to_canonical, time_entry_to_canonical
from subgraphs.psa.wire import WireProject, WireUser


async def load_projects(
    client: PsaClient, ids: IdMap, keys: Sequence[int], *, per_id_threshold: int = 10
) -> list[Project | None]:
    found: dict[int, WireProject] = {}
    if len(keys) <= per_id_threshold:

        async def one(project_id: int) -> None:
            with contextlib.suppress(UpstreamNotFound):
                found[project_id] = await client.project(project_id)

        async with asyncio.TaskGroup() as group:
            for key in dict.fromkeys(keys):
                group.create_task(one(key))
    else:
        wanted = set(keys)
        async for page in client.projects():
            found.update((p["id"], p) for p in page if p["id"] in wanted)
    return [project_to_canonical(found[k], ids) if k in found else None for k in keys]


async def load_time_entries_by_project(
    client: PsaClient, ids: IdMap, keys: Sequence[int]
) -> list[list[TimeEntry]]:
    by_project = await client.time_entries_by_project_ids(keys)
    return [[time_entry_to_canonical(e, ids) for e in by_project.get(k, [])] for k in keys]


async def load_users(client: PsaClient, keys: Sequence[int]) -> list[WireUser | None]:
    users = {u["id"]: u for u in await client.users()}
    return [users.get(k) for k in keys]


class PsaLoaders:
    """The PSA's DataLoaders for one request."""

    def __init__(self, client: PsaClient, ids: IdMap) -> None:
        self.projects: DataLoader[int, Project | None] = DataLoader(partial(load_projects, client, ids))
        self.time_entries_by_project: DataLoader[int, list[TimeEntry]] = DataLoader(
            partial(load_time_entries_by_project, client, ids)
        )
        self.users: DataLoader[int, WireUser | None] = DataLoader(partial(load_users, client))
