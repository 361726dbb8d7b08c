"""Retention against the real PostgreSQL, Redis and filesystem, with an injected clock.

The clock is set in 2001, so the cutoff falls long before anything other tests of the session
store (all at the real now): a round deletes exactly this module's old rows. Every row carries
the test's tag and a label saying what it is; the labels still there after a round are checked.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

import bridge_cli.retention as cli_retention
from bridge.config import Settings
from bridge_cli.main import app as cli_app
from dispatcher.retention import LEASE_KEY, Lease, plan, run, scheduled_round

pytestmark = pytest.mark.integration

NOW = datetime(2001, 6, 1, 12, 0, tzinfo=UTC)
CUTOFF = plan(NOW, 90).cutoff
OLD = CUTOFF - timedelta(days=1)
NEW = CUTOFF + timedelta(days=1)
TABLES = (
    "audit_log",
    "dead_letters",
    "siteti_webhook_events",
    "filedrop_files",
    "poller_tracking",
    "sent_messages",
    "flagged_numbers",
    "number_confirmations",
)


@pytest.fixture
async def tag(pg_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """This test's rows: removed afterwards whatever the test left."""
    tag = f"ret-{uuid.uuid4().hex[:10]}"
    yield tag
    await pg_pool.execute("DELETE FROM audit_log WHERE reference = $1", tag)
    await pg_pool.execute("DELETE FROM dead_letters WHERE reference = $1", tag)
    await pg_pool.execute("DELETE FROM siteti_webhook_events WHERE reference = $1", tag)
    await pg_pool.execute("DELETE FROM filedrop_files WHERE sha256 = $1", tag)
    await pg_pool.execute("DELETE FROM poller_tracking WHERE source = $1", tag)
    await pg_pool.execute("DELETE FROM sent_messages WHERE reference = $1", tag)
    await pg_pool.execute("DELETE FROM flagged_numbers WHERE reference = $1", tag)
    # Its number confirmations go with it (ON DELETE CASCADE).
    await pg_pool.execute("DELETE FROM customers WHERE account_number = $1", tag)


async def add_audit(
    pool: asyncpg.Pool, tag: str, label: str, recorded: datetime, occurred: datetime
) -> None:
    await pool.execute(
        "INSERT INTO audit_log (reference, stage, source, occurred_at, recorded_at)"
        " VALUES ($1, $2, 'test', $3, $4)",
        tag,
        label,
        occurred,
        recorded,
    )


async def add_dead_letter(
    pool: asyncpg.Pool, tag: str, label: str, status: str, created: datetime, updated: datetime
) -> None:
    await pool.execute(
        "INSERT INTO dead_letters (dedupe_key, reference, provider, event_type, payload, status,"
        " reason, created_at, updated_at)"
        " VALUES ($1, $2, 'test', 'payment.received', $3, $4, 'missing_contact', $5, $6)",
        f"{tag}:{label}",
        tag,
        {"label": label},
        status,
        created,
        updated,
    )


async def add_webhook_event(pool: asyncpg.Pool, tag: str, label: str, received: datetime) -> None:
    await pool.execute(
        "INSERT INTO siteti_webhook_events (event_id, type, reference, received_at)"
        " VALUES ($1, 'message.delivered', $2, $3)",
        f"{tag}:{label}",
        tag,
        received,
    )


async def add_filedrop(
    pool: asyncpg.Pool,
    tag: str,
    label: str,
    status: str,
    claimed: datetime,
    finished: datetime | None,
) -> None:
    await pool.execute(
        "INSERT INTO filedrop_files (name, sha256, size_bytes, status, claimed_at, finished_at,"
        " created_at) VALUES ($1, $2, 10, $3, $4, $5, $4)",
        label,
        tag,
        status,
        claimed,
        finished,
    )


async def add_poller_row(
    pool: asyncpg.Pool, tag: str, label: str, status: str, updated: datetime
) -> None:
    await pool.execute(
        "INSERT INTO poller_tracking (source, source_id, status, claimed_at, created_at,"
        " updated_at) VALUES ($1, $2, $3, $4, $4, $4)",
        tag,
        label,
        status,
        updated,
    )


async def add_sent_and_flag(pool: asyncpg.Pool, tag: str, label: str, when: datetime) -> None:
    """A sent message and a flagged number (issue 12), both last changed `when`."""
    await pool.execute(
        "INSERT INTO sent_messages (message_id, reference, created_at, updated_at)"
        " VALUES ($1, $2, $3, $3)",
        f"{tag}:{label}",
        tag,
        when,
    )
    await pool.execute(
        "INSERT INTO flagged_numbers (phone_index, code, reference, flagged_at)"
        " VALUES ($1, 131026, $2, $3)",
        f"{tag}:{label}",
        tag,
        when,
    )


async def add_confirmation(
    pool: asyncpg.Pool, tag: str, label: str, status: str, when: datetime
) -> None:
    """A number confirmation (issue 12) asked `when`, for the test's customer."""
    customer = await pool.fetchval(
        "INSERT INTO customers (account_number) VALUES ($1)"
        " ON CONFLICT (account_number) DO UPDATE SET updated_at = now() RETURNING id",
        tag,
    )
    await pool.execute(
        "INSERT INTO number_confirmations (customer_id, phone, phone_index, status, reference,"
        " template_id, requested_at, expires_at) VALUES ($1, 'enc:k:x', $2, $3, $2,"
        " 'tpl_confirm_number', $4::timestamptz, $4::timestamptz + interval '1 day')",
        customer,
        f"{tag}:{label}",
        status,
        when,
    )


async def labels(pool: asyncpg.Pool, tag: str) -> dict[str, set[str]]:
    """The labels of this test's rows, per table."""
    queries = {
        "audit_log": "SELECT stage FROM audit_log WHERE reference = $1",
        "dead_letters": (
            "SELECT split_part(dedupe_key, ':', 2) FROM dead_letters WHERE reference = $1"
        ),
        "siteti_webhook_events": (
            "SELECT split_part(event_id, ':', 2) FROM siteti_webhook_events WHERE reference = $1"
        ),
        "filedrop_files": "SELECT name FROM filedrop_files WHERE sha256 = $1",
        "poller_tracking": "SELECT source_id FROM poller_tracking WHERE source = $1",
        "sent_messages": (
            "SELECT split_part(message_id, ':', 2) FROM sent_messages WHERE reference = $1"
        ),
        "flagged_numbers": (
            "SELECT split_part(phone_index, ':', 2) FROM flagged_numbers WHERE reference = $1"
        ),
        "number_confirmations": (
            "SELECT split_part(reference, ':', 2) FROM number_confirmations"
            " WHERE split_part(reference, ':', 1) = $1"
        ),
    }
    return {table: {row[0] for row in await pool.fetch(sql, tag)} for table, sql in queries.items()}


def touch(path: Path, when: datetime) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


ALL_ROWS = {
    "audit_log": {"old", "new", "backdated"},
    "dead_letters": {
        "completed_old",
        "failed_old",
        "completed_recently",
        "pending_old",
        "processing_old",
        "review_old",
        "pending_new",
    },
    "siteti_webhook_events": {"old", "new"},
    "filedrop_files": {"processed_old", "failed_old", "processed_new", "processing_old"},
    "poller_tracking": {"emitted_old", "failed_old", "claimed_old", "emitted_new"},
    "sent_messages": {"old", "new"},
    "flagged_numbers": {"old", "new"},
    "number_confirmations": {"answered_old", "open_old", "answered_new"},
}
KEPT = {
    "audit_log": {"new", "backdated"},
    "dead_letters": {
        "completed_recently",
        "pending_old",
        "processing_old",
        "review_old",
        "pending_new",
    },
    "siteti_webhook_events": {"new"},
    "filedrop_files": {"processed_new", "processing_old"},
    "poller_tracking": {"claimed_old", "emitted_new"},
    "sent_messages": {"new"},
    "flagged_numbers": {"new"},
    # Still waiting for the customer's answer: kept however old.
    "number_confirmations": {"open_old", "answered_new"},
}


async def seed(pool: asyncpg.Pool, tag: str) -> None:
    await add_audit(pool, tag, "old", OLD, OLD)
    await add_audit(pool, tag, "new", NEW, NEW)
    # The provider's clock says long ago; the bridge stored it after the cutoff: kept.
    await add_audit(pool, tag, "backdated", NEW, OLD - timedelta(days=1000))
    await add_dead_letter(pool, tag, "completed_old", "completed", OLD, OLD)
    await add_dead_letter(pool, tag, "failed_old", "failed", OLD, OLD)
    # Dead-lettered long ago, settled after the cutoff: kept for the period.
    await add_dead_letter(pool, tag, "completed_recently", "completed", OLD, NEW)
    await add_dead_letter(pool, tag, "pending_old", "pending", OLD, OLD)
    await add_dead_letter(pool, tag, "processing_old", "processing", OLD, OLD)
    await add_dead_letter(pool, tag, "review_old", "manual_review", OLD, OLD)
    await add_dead_letter(pool, tag, "pending_new", "pending", NEW, NEW)
    await add_webhook_event(pool, tag, "old", OLD)
    await add_webhook_event(pool, tag, "new", NEW)
    await add_filedrop(pool, tag, "processed_old", "processed", OLD, OLD)
    await add_filedrop(pool, tag, "failed_old", "failed", OLD, OLD)
    await add_filedrop(pool, tag, "processed_new", "processed", OLD, NEW)
    await add_filedrop(pool, tag, "processing_old", "processing", OLD, None)
    await add_poller_row(pool, tag, "emitted_old", "emitted", OLD)
    await add_poller_row(pool, tag, "failed_old", "failed", OLD)
    await add_poller_row(pool, tag, "claimed_old", "claimed", OLD)
    await add_poller_row(pool, tag, "emitted_new", "emitted", NEW)
    await add_sent_and_flag(pool, tag, "old", OLD)
    await add_sent_and_flag(pool, tag, "new", NEW)
    await add_confirmation(pool, tag, "answered_old", "confirmed", OLD)
    await add_confirmation(pool, tag, "open_old", "requested", OLD)
    await add_confirmation(pool, tag, "answered_new", "declined", NEW)


def seed_files(root: Path) -> dict[str, Path]:
    return {
        "old": touch(root / "processed" / "rent.csv", OLD),
        "old_report": touch(root / "processed" / "rent.csv.report.json", OLD),
        "failed_old": touch(root / "failed" / "bad.xml", OLD),
        "failed_old_report": touch(root / "failed" / "bad.xml.report.json", OLD),
        # written by the legacy system long ago, read after the cutoff: kept with its report
        "late": touch(root / "processed" / "late.csv", OLD),
        "late_report": touch(root / "processed" / "late.csv.report.json", NEW),
        "inbox": touch(root / "waiting.csv", OLD),  # not read yet: never touched
    }


EXPECTED_ROWS = {table: len(ALL_ROWS[table] - KEPT[table]) for table in TABLES}


async def test_old_settled_rows_and_files_go_open_dead_letters_stay(
    pg_pool: asyncpg.Pool, tag: str, tmp_path: Path
) -> None:
    await seed(pg_pool, tag)
    files = seed_files(tmp_path)
    assert await labels(pg_pool, tag) == ALL_ROWS

    dry = await run(pg_pool, tmp_path, plan(NOW, 90), dry_run=True)
    assert (dry.cutoff, dry.dry_run, dry.rows, dry.files) == (CUTOFF, True, EXPECTED_ROWS, 4)
    assert dry.open_dead_letters == 3
    assert await labels(pg_pool, tag) == ALL_ROWS  # the dry run deleted nothing
    assert all(path.exists() for path in files.values())

    # Batches of 2 rows: every table takes several statements.
    done = await run(pg_pool, tmp_path, plan(NOW, 90), batch_size=2)
    assert (done.dry_run, done.rows, done.files, done.open_dead_letters) == (
        False,
        EXPECTED_ROWS,
        4,
        3,
    )
    assert await labels(pg_pool, tag) == KEPT
    gone = {"old", "old_report", "failed_old", "failed_old_report"}
    assert {name for name, path in files.items() if not path.exists()} == gone

    again = await run(pg_pool, tmp_path, plan(NOW, 90))
    assert again.rows == dict.fromkeys(TABLES, 0)
    assert (again.files, again.open_dead_letters) == (0, 3)
    assert await labels(pg_pool, tag) == KEPT


async def test_a_missing_filedrop_dir_deletes_no_files(
    pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    report = await run(pg_pool, tmp_path / "absent", plan(NOW, 90), dry_run=True)
    assert report.files is None
    assert "FILEDROP_DIR not found" in report.lines()[-2]


async def test_a_lease_has_one_holder_renewed_and_released_only_by_it(redis_client: Redis) -> None:
    key = f"test:retention:{uuid.uuid4().hex}"
    first = Lease(redis_client, "first", key=key, seconds=0.3)
    second = Lease(redis_client, "second", key=key, seconds=0.3)
    async with first.held() as held:
        assert held
        async with second.held() as also:
            assert not also
        assert not await second.renew()
        await second.release()  # not the owner: nothing happens
        await asyncio.sleep(0.9)  # three lease lengths: renewed meanwhile
        assert await redis_client.get(key) == b"first"
    assert await redis_client.get(key) is None  # released on exit
    assert await second.acquire()
    await second.release()


async def test_concurrent_rounds_one_holds_the_lease_then_one_round_per_interval(
    pg_pool: asyncpg.Pool, redis_client: Redis, tag: str, tmp_path: Path
) -> None:
    await seed(pg_pool, tag)
    key = f"test:retention:{uuid.uuid4().hex}"

    def instance(name: str) -> Awaitable[Any]:
        lease = Lease(redis_client, name, key=key)
        return scheduled_round(pg_pool, lease, tmp_path, now=NOW, days=90, interval_seconds=2.0)

    first, second = await asyncio.gather(instance("a"), instance("b"))
    reports = [report for report in (first, second) if report is not None]
    assert len(reports) == 1  # the other found the lease held
    assert reports[0].rows == EXPECTED_ROWS
    assert await labels(pg_pool, tag) == KEPT
    assert await redis_client.get(key) is None  # released

    assert await instance("b") is None  # a round was made within the interval
    await asyncio.sleep(2.1)
    later = await instance("b")
    assert later is not None and later.rows == dict.fromkeys(TABLES, 0)
    await redis_client.delete(f"{key}:round")


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> Callable[..., Awaitable[Any]]:
    """`bridge retention …` in-process, with the file drop in a temporary directory."""
    cli_settings = settings.model_copy(update={"filedrop_dir": str(tmp_path)})
    monkeypatch.setattr(cli_retention, "get_settings", lambda: cli_settings)
    runner = CliRunner()

    async def invoke(*args: str) -> Any:
        return await asyncio.to_thread(runner.invoke, cli_app, ["retention", *args])

    return invoke


async def test_cli_dry_run_then_run(
    cli: Callable[..., Awaitable[Any]],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    tag: str,
    tmp_path: Path,
) -> None:
    # The command's clock is the real one.
    now = datetime.now(UTC)
    await add_audit(pg_pool, tag, "old", now - timedelta(days=91), now - timedelta(days=91))
    await add_audit(pg_pool, tag, "new", now - timedelta(days=89), now - timedelta(days=89))
    old_file = touch(tmp_path / "processed" / "rent.csv", now - timedelta(days=91))

    dry = await cli("run", "--dry-run")
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0].startswith("cutoff ") and lines[0].endswith("(dry run)")
    cutoff = datetime.fromisoformat(lines[0].split()[1])
    assert now - timedelta(days=90) <= cutoff <= datetime.now(UTC) - timedelta(days=90)
    assert any(line.split() == ["would", "delete", "audit_log", "1"] for line in lines)
    assert any(line.split() == ["would", "delete", "files", "1"] for line in lines)
    assert (await labels(pg_pool, tag))["audit_log"] == {"old", "new"}
    assert old_file.exists()

    # While a dispatcher's round holds the lease, a real run is refused.
    foreign = Lease(redis_client, "dispatcher-elsewhere", key=LEASE_KEY)
    async with foreign.held() as held:
        assert held
        busy = await cli("run")
    assert busy.exit_code == 1
    assert "lease held" in busy.output

    done = await cli("run")
    assert done.exit_code == 0, done.output
    assert any(line.split() == ["deleted", "audit_log", "1"] for line in done.output.splitlines())
    assert (await labels(pg_pool, tag))["audit_log"] == {"new"}
    assert not old_file.exists()


@pytest.fixture
async def dispatcher_dsn(pg_pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[str]:
    """A login role of this test's own, member of the dispatcher's group role only."""
    name, password = f"ret_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    await pg_pool.execute(
        f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE bridge_dispatcher"
    )
    url = urlsplit(settings.database_url)
    yield url._replace(netloc=f"{name}:{password}@{url.hostname}:{url.port or 5432}").geturl()
    await pg_pool.execute(f"DROP ROLE {name}")


async def test_the_dispatchers_role_may_run_it(
    pg_pool: asyncpg.Pool, dispatcher_dsn: str, tag: str, tmp_path: Path
) -> None:
    """Least privilege: a round runs with the rights schema.sql grants `bridge_dispatcher`."""
    await seed(pg_pool, tag)
    pool = await asyncpg.create_pool(dispatcher_dsn, min_size=1, max_size=1)
    try:
        report = await run(pool, tmp_path, plan(NOW, 90))
    finally:
        await pool.close()
    assert report.rows == EXPECTED_ROWS
    assert await labels(pg_pool, tag) == KEPT
