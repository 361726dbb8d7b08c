"""PostgreSQL adapter: one asyncpg pool per process, and the schema applied at start-up."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import asyncpg
import orjson

# Any fixed number: it only has to be the same in every service.
_MIGRATION_LOCK = 0x5171E71


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


# A connection attempt that takes longer is failed rather than awaited (asyncpg's default is
# 60 s): while PostgreSQL restarts, callers get an error at once and retry on their own
# backoff. The pool replaces connections the restart closed as they are used (and refills
# its floor in the background), so nothing needs restarting once PostgreSQL is back.
CONNECT_TIMEOUT_SECONDS = 5.0


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        timeout=CONNECT_TIMEOUT_SECONDS,
    )
    return pool


async def migrate(pool: asyncpg.Pool) -> None:
    schema = files("bridge").joinpath("schema.sql").read_text()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(schema)


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    """A ready pool with the schema in place."""
    pool = await create_pool(dsn, **kwargs)
    await migrate(pool)
    return pool
