"""PostgreSQL adapter: one asyncpg pool per process, and the schema applied at start-up."""

from __future__ import annotations

import hashlib
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


class SchemaOutOfDate(RuntimeError):
    """The database is not at this version's schema and this role may not apply it."""


OUT_OF_DATE = "the schema is out of date: run `bridge db migrate` with the owner's DATABASE_URL"

# The group role of each service (shared/bridge/schema.sql grants them their rights).
SERVICE_ROLES = {
    "ingest": "bridge_ingest",
    "dispatcher": "bridge_dispatcher",
    "receipts": "bridge_receipts",
    "operator": "bridge_operator",
}


def schema_sql() -> str:
    return files("bridge").joinpath("schema.sql").read_text()


def schema_digest() -> str:
    return hashlib.sha256(schema_sql().encode()).hexdigest()


async def applied_digest(conn: asyncpg.Connection) -> str | None:
    """The schema the database is at; None before the first migration."""
    if await conn.fetchval("SELECT to_regclass('bridge_schema')") is None:
        return None
    digest: str | None = await conn.fetchval("SELECT sha256 FROM bridge_schema")
    return digest


async def migrate(pool: asyncpg.Pool) -> bool:
    """Bring the database to this version's schema; False when it already was.

    Only the owner can apply it (DDL, grants); a service's role is refused, and then fails
    with `SchemaOutOfDate` rather than run on a schema it was not written for."""
    schema = schema_sql()
    digest = hashlib.sha256(schema.encode()).hexdigest()
    try:
        async with pool.acquire() as conn:
            if await applied_digest(conn) == digest:
                return False
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                if await applied_digest(conn) == digest:  # another process just applied it
                    return False
                await conn.execute(schema)
                await conn.execute(
                    "INSERT INTO bridge_schema (sha256) VALUES ($1)"
                    " ON CONFLICT (id) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
                    digest,
                )
    except asyncpg.InsufficientPrivilegeError:
        raise SchemaOutOfDate(OUT_OF_DATE) from None
    return True


async def ensure_login_role(
    conn: asyncpg.Connection, name: str, service: str, password: str
) -> None:
    """Create (or update) LOGIN role `name` with `password`, member of the service's group role
    and nothing else. Needs CREATEROLE (on PostgreSQL 16+, ADMIN on the group role too: the
    owner has it when its migration created the group roles)."""
    group = SERVICE_ROLES[service]
    async with conn.transaction():
        # Roles are per cluster: the lock (per database) serialises callers connected to the
        # same database, as concurrent ALTER ROLEs of one role fail ("tuple concurrently
        # updated").
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK + 1)
        exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", name)
        verb = "ALTER" if exists else "CREATE"
        # Utility statements take no parameters: format() quotes the name and the password.
        statement = await conn.fetchval(
            "SELECT format('%s ROLE %I LOGIN INHERIT NOCREATEDB NOCREATEROLE"
            " PASSWORD %L', $1::text, $2::text, $3::text)",
            verb,
            name,
            password,
        )
        await conn.execute(statement)
        member = await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_auth_members"
            " WHERE roleid = $1::text::regrole AND member = $2::text::regrole)",
            group,
            name,
        )
        if not member:
            grant = await conn.fetchval(
                "SELECT format('GRANT %I TO %I', $1::text, $2::text)", group, name
            )
            await conn.execute(grant)


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Pool:
    """A ready pool, the database at this version's schema (applied when this role owns it)."""
    pool = await create_pool(dsn, **kwargs)
    try:
        await migrate(pool)
    except BaseException:
        await pool.close()
        raise
    return pool
