"""Least privilege in PostgreSQL (issue 9): each service's role can do what its code does, and
nothing else; no service role can change the schema.

Real PostgreSQL: login roles of the test's own (members of the schema's group roles, made with
`bridge.db.ensure_login_role` as the deployments do) on the session's database, dropped at the
end. What a role must do runs the services' own statements where they are importable.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from bridge import audit
from bridge.config import Settings
from bridge.db import (
    OUT_OF_DATE,
    SERVICE_ROLES,
    SchemaOutOfDate,
    connect,
    create_pool,
    ensure_login_role,
    migrate,
)
from dispatcher.retention import RULES
from ingest.sources import filedrop, poller
from receipts.app import _store
from receipts.webhooks import Receipt

pytestmark = pytest.mark.integration

Pools = dict[str, asyncpg.Pool]
_RUN = uuid.uuid4().hex[:8]
# Before any row of the session: retention's statements run (and are checked) but delete none.
_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def login_dsn(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    return parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()


async def with_database(settings: Settings, body: Callable[[str], Awaitable[None]]) -> None:
    """`body(dsn)` on a new, empty database of the owner's, dropped afterwards."""
    name = f"bridge_roles_{_RUN}_{uuid.uuid4().hex[:6]}"
    admin = urlsplit(settings.database_url)._replace(path="/postgres").geturl()
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            await body(urlsplit(settings.database_url)._replace(path=f"/{name}").geturl())
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def logins(pg_pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[dict[str, str]]:
    """service -> DSN of a LOGIN role in that service's group."""
    dsns = {}
    async with pg_pool.acquire() as conn:
        for service in SERVICE_ROLES:
            name, password = f"bridge_t{_RUN}_{service}", secrets.token_hex(16)
            await ensure_login_role(conn, name, service, password)
            dsns[service] = login_dsn(settings.database_url, name, password)
    yield dsns
    async with pg_pool.acquire() as conn:
        for service in SERVICE_ROLES:
            await conn.execute(f'DROP ROLE IF EXISTS "bridge_t{_RUN}_{service}"')


@pytest.fixture(scope="module")
async def pools(logins: dict[str, str]) -> AsyncIterator[Pools]:
    """Each service's pool as the service opens it (`connect`: the schema is checked)."""
    opened = {service: await connect(dsn, max_size=2) for service, dsn in logins.items()}
    yield opened
    for pool in opened.values():
        await pool.close()


async def refused(pool: asyncpg.Pool, statement: str, *args: Any) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute(statement, *args)


DDL = (
    "CREATE TABLE intruder (id int)",
    "ALTER TABLE customers ADD COLUMN intruder text",
    "DROP TABLE outbox",
    "CREATE INDEX intruder_idx ON audit_log (stage)",
    "TRUNCATE audit_log",
    "CREATE ROLE intruder",
    "UPDATE bridge_schema SET sha256 = 'forged'",
    "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
)


@pytest.mark.parametrize("service", list(SERVICE_ROLES))
@pytest.mark.parametrize("statement", DDL)
async def test_no_service_role_changes_the_schema(
    pools: Pools, service: str, statement: str
) -> None:
    await refused(pools[service], statement)


async def test_the_ingest_role_keeps_its_tracking_and_reads_nothing_else(pools: Pools) -> None:
    pool, owner, source = pools["ingest"], f"test:{_RUN}", f"roles-{_RUN}"
    claimed = await pool.fetch(poller._CLAIM, source, owner, ["r1", "r2"], ["h1", "h2"], 60.0)
    assert sorted(r["source_id"] for r in claimed) == ["r1", "r2"]
    await pool.execute(poller._MARK_EMITTED, source, owner, ["r1"], ["e1"], ["t"], ["ref"])
    await pool.execute(poller._MARK_FAILED, source, owner, ["r2"], ["bad row"])
    assert await pool.fetchval(poller._STALE, source, 60.0) == 0

    file_id = await pool.fetchval(filedrop._CLAIM, f"f-{_RUN}.csv", "sha", 10, owner, 60.0)
    assert file_id is not None
    finished = await pool.execute(
        filedrop._FINISH, file_id, owner, "processed", 1, 1, 0, 0, {}, "processed/x", None
    )
    assert finished == "UPDATE 1"

    await refused(pool, "SELECT phone FROM customers")
    await refused(pool, "SELECT payload FROM dead_letters")
    await refused(pool, "SELECT detail FROM audit_log")
    await refused(pool, "INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', '{}')")
    await refused(pool, "DELETE FROM poller_tracking WHERE source = $1", source)
    await refused(pool, "DELETE FROM filedrop_files WHERE id = $1", file_id)


def receipt(event_id: str, reference: str) -> Receipt:
    return Receipt(
        event_id=event_id,
        type="message.delivered",
        stage="delivered",
        reference=reference,
        occurred_at=datetime.now(UTC),
        detail={"message_id": "msg_1"},
    )


async def test_the_receipts_role_stores_receipts_and_relays_the_outbox(pools: Pools) -> None:
    pool, reference = pools["receipts"], f"moniepoint:ROLES-{_RUN}"
    event_id = f"evt_{uuid.uuid4().hex}"
    assert await _store(pool, receipt(event_id, reference)) is True
    assert await _store(pool, receipt(event_id, reference)) is False  # a redelivery
    assert [e["stage"] for e in await audit.history(pool, reference)] == ["delivered"]

    # The relay's statements (bridge.audit.OutboxRelay), this receipt's row only.
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, topic, key, payload FROM outbox WHERE key = $1 ORDER BY id"
            " LIMIT 10 FOR UPDATE SKIP LOCKED",
            reference,
        )
        assert len(rows) == 1
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [rows[0]["id"]])

    # Issue 12: a failure of a recorded send is dead-lettered and its number flagged.
    event_id, message_id = f"evt_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}"
    await pools["dispatcher"].execute(
        "INSERT INTO sent_messages (message_id, reference, dedupe_key, customer_hash,"
        " phone_index, template_id, payload) VALUES ($1, $2, $3, 'h', $4, 't', $5)",
        message_id,
        reference,
        f"{reference}:payment.successful",
        f"ph-{_RUN}",
        {"type": "payment.successful", "data": {"provider": "moniepoint"}},
    )
    failed = Receipt(
        event_id=event_id,
        type="message.failed",
        stage="failed",
        reference=reference,
        occurred_at=datetime.now(UTC),
        detail={"message_id": message_id, "error": {"code": 131026, "title": "undeliverable"}},
    )
    assert await _store(pool, failed) is True
    assert (
        await pool.fetchval(
            "SELECT reason FROM dead_letters WHERE dedupe_key = $1",
            f"{reference}:payment.successful",
        )
        == "whatsapp_undeliverable"
    )

    await refused(pool, "SELECT phone FROM customers")
    await refused(pool, "DELETE FROM customers")
    await refused(pool, "DELETE FROM dead_letters")
    await refused(pool, "DELETE FROM sent_messages")
    await refused(pool, "DELETE FROM flagged_numbers")
    await refused(pool, "DELETE FROM siteti_webhook_events WHERE event_id = $1", event_id)
    await refused(pool, "UPDATE outbox SET topic = 'elsewhere'")
    await refused(pool, "DELETE FROM audit_log WHERE reference = $1", reference)
    await refused(pool, "SELECT count(*) FROM poller_tracking")


async def test_the_dispatcher_role_delivers_erases_and_applies_retention(
    pools: Pools, pg_pool: asyncpg.Pool
) -> None:
    pool, account = pools["dispatcher"], f"ROLES{_RUN}"
    customer_id = await pg_pool.fetchval(  # importing customers is the operator's
        "INSERT INTO customers (account_number) VALUES ($1) RETURNING id", account
    )
    assert await pool.fetchval("SELECT id FROM customers WHERE account_number = $1", account)
    await pool.execute("UPDATE customers SET contact_id = 'ct_1' WHERE id = $1", customer_id)

    reference = f"moniepoint:ROLES-{_RUN}-d"
    entry = await pool.fetchval(
        "INSERT INTO dead_letters (dedupe_key, reference, provider, event_type, payload, status,"
        " reason, customer_hash) VALUES ($1, $2, 'moniepoint', 'payment.successful', '{}',"
        " 'pending', 'customer_not_found', 'h') RETURNING id",
        f"{reference}:payment.successful",
        reference,
    )
    await audit.record_now(
        pool, reference=reference, stage="dead_lettered", source="dispatcher", detail={}
    )
    await pool.execute("UPDATE dead_letters SET status = 'completed' WHERE id = $1", entry)

    # An erasure: the request, the customer gone, their rows scrubbed.
    erasure = await pool.fetchval(
        "INSERT INTO erasures (subject_hash, subject_kind, requested_by, status)"
        " VALUES ('h', 'account', 'test', 'pending') RETURNING id"
    )
    await pool.execute("UPDATE audit_log SET detail = '{}' WHERE reference = $1", reference)
    await pool.execute("DELETE FROM dead_letters WHERE id = $1", entry)
    await pool.execute("DELETE FROM customers WHERE id = $1", customer_id)
    await pool.execute("UPDATE erasures SET status = 'done' WHERE id = $1", erasure)
    await pool.execute("DELETE FROM outbox WHERE key = $1", reference)

    for rule in RULES:  # retention's own statements
        assert await pool.execute(rule.delete_sql(), _LONG_AGO, 100) == "DELETE 0"
        await pool.fetchval(rule.count_sql(), _LONG_AGO)

    await refused(pool, "INSERT INTO customers (account_number) VALUES ($1)", f"{account}x")
    await refused(pool, "UPDATE siteti_webhook_events SET type = 'forged'")
    await refused(
        pool, "INSERT INTO poller_tracking (source, source_id, status) VALUES ('a', 'b', 'claimed')"
    )
    await refused(pool, "UPDATE filedrop_files SET status = 'failed'")
    await refused(pool, "DELETE FROM erasures")


async def test_the_operator_role_works_rows_but_not_the_schema(pools: Pools) -> None:
    pool, account = pools["operator"], f"ROLESOP{_RUN}"
    await pool.execute("INSERT INTO customers (account_number) VALUES ($1)", account)
    await pool.execute("UPDATE customers SET tier = 'returning' WHERE account_number = $1", account)
    await pool.execute("DELETE FROM customers WHERE account_number = $1", account)
    await pool.execute("UPDATE dead_letters SET status = status WHERE id = 0")
    await pool.fetchval("SELECT count(*) FROM erasures")


async def test_a_service_role_refuses_to_start_on_an_out_of_date_schema(
    settings: Settings, logins: dict[str, str]
) -> None:
    async def check(dsn: str) -> None:
        ingest = urlsplit(logins["ingest"])._replace(path=urlsplit(dsn).path).geturl()
        # A new database: no schema at all, and the service may not create it.
        with pytest.raises(SchemaOutOfDate, match=f"^{re.escape(OUT_OF_DATE)}$"):
            await connect(ingest, max_size=1)

        owner = await create_pool(dsn, max_size=1)
        try:
            assert await migrate(owner) is True
            assert await migrate(owner) is False  # already at it: nothing runs
            (await connect(ingest, max_size=1)).terminate()

            # The schema of a later version would differ: the service must not run on it.
            await owner.execute("UPDATE bridge_schema SET sha256 = 'another version'")
            with pytest.raises(SchemaOutOfDate):
                await connect(ingest, max_size=1)
            assert await migrate(owner) is True
        finally:
            await owner.close()

    await with_database(settings, check)


async def test_concurrent_migrations_of_several_databases(settings: Settings) -> None:
    """Roles are per cluster: first migrations of databases side by side all succeed."""

    async def migrated(dsn: str) -> None:
        owner = await create_pool(dsn, max_size=1)
        try:
            assert await migrate(owner) is True
        finally:
            await owner.close()

    await asyncio.gather(*(with_database(settings, migrated) for _ in range(3)))
