"""Checks run before a server starts listening, so a bad setting is one clear line, not a traceback
from inside uvicorn's lifespan: the mapping loads, the store is reachable, the schema is at head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from canonical.errors import ConfigurationError, MappingInvalid
from gateway.runtime.embedded import import_optional
from gateway.settings import Settings, env_name
from store.db import check_connection, make_engine, mask_url
from store.migrate import current_revision, head_revision, upgrade_to_head_async


def load_mapping(settings: Settings) -> Any:
    """The mapping at ``P2C_MAPPING_PATH``, or the shipped demo mapping.

    Raises ``MappingInvalid`` for a file that does not validate, ``ConfigurationError`` for one that
    is not there. Returns None only when no path is set and ``canonical.mapping`` is not installed.
    """
    module = import_optional("canonical.mapping")
    path = settings.mapping_path
    if path is None:
        return module.demo_mapping() if module is not None else None
    if not path.is_file():
        raise ConfigurationError(f"{env_name('mapping_path')}: no mapping file at {path}")
    if module is None:
        raise ConfigurationError(
            f"{env_name('mapping_path')} is set but canonical.mapping is not installed to read it"
        )
    try:
        return module.load_mapping(path)
    except MappingInvalid as exc:
        if str(path) in exc.message:
            raise
        raise MappingInvalid(exc.problems, subject=f"mapping file {path}") from exc


@dataclass(frozen=True)
class Preflight:
    database: str  # masked URL
    revision: str | None
    mapping: Any


async def migrate(database_url: str) -> str | None:
    """Upgrade the store to head; the revision it is at afterwards."""
    engine = make_engine(database_url, poolclass=sa.NullPool)
    try:
        await check_connection(engine)
        await upgrade_to_head_async(database_url)
        return await current_revision(engine)
    finally:
        await engine.dispose()


async def preflight(settings: Settings, *, migrate_store: bool) -> Preflight:
    """Fail fast, before serving: mapping, store connection, schema revision (migrating it if asked)."""
    mapping = load_mapping(settings)
    if migrate_store:
        revision = await migrate(settings.database_url)
    else:
        engine = make_engine(settings.database_url, poolclass=sa.NullPool)
        try:
            await check_connection(engine)
            revision = await current_revision(engine)
        finally:
            await engine.dispose()
        if revision != head_revision():
            raise ConfigurationError(
                f"store database {mask_url(settings.database_url)} is at revision {revision or 'none'}, "
                f"not {head_revision()}: run `p2c migrate`"
            )
    return Preflight(database=mask_url(settings.database_url), revision=revision, mapping=mapping)
