"""`bridge` against the real PostgreSQL and Redis (Typer's runner, in a thread): a
transaction's story (`bridge audit`), `--json` on the listings, and `customers import` with
`--dry-run` (which must leave the directory exactly as it was) and a progress bar.

Rows are made under names of this module's own (provider, account numbers, e-mails), so
other work in the session's database does not disturb the assertions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
import pytest_asyncio
from typer.testing import CliRunner, Result

from bridge import audit
from bridge.config import Settings
from bridge.events import Customer, EventData, new_event
from bridge.protect import data_keys
from bridge_cli.main import app
from dispatcher import dlq
from dispatcher.outcomes import DeadLettered
from tests.conftest import free_port

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PROVIDER = f"clitest{RUN}"
PHONE = "08031234567"
CLEAR_DIGITS = "8031234567"  # any writing of the number holds these
runner = CliRunner()


async def cli(*args: str) -> Result:
    """The CLI as an operator runs it; wide, so tables do not wrap."""
    return await asyncio.to_thread(runner.invoke, app, list(args), env={"COLUMNS": "220"})


@dataclass(frozen=True)
class Story:
    reference: str
    entry_id: int


@pytest_asyncio.fixture(scope="module")
async def story(pg_pool: asyncpg.Pool, settings: Settings) -> Story:
    """A payment whose message could not go: received, then dead-lettered with an error that
    (as Siteti's might) quotes the number in clear."""
    data = EventData(
        provider=PROVIDER,
        transaction_reference=f"TX-{RUN}",
        amount=Decimal("5000.00"),
        customer=Customer(
            account_number="0123456789",
            name="Ada Obi",
            phone=data_keys(settings).seal(PHONE, "phone"),
        ),
    )
    event = new_event(data, "payment.successful")
    await audit.record_now(
        pg_pool,
        reference=event.reference,
        stage="received",
        source="ingest",
        detail={"type": event.type},
    )
    outcome = DeadLettered("siteti_unavailable", "pending", f"Siteti 503 sending to {PHONE}")
    entry_id = await dlq.put(pg_pool, event, outcome, "hash")
    return Story(event.reference, entry_id)


def no_clear_number(text: str) -> None:
    assert CLEAR_DIGITS not in text.replace(" ", "").replace("-", "")


# --- bridge audit -------------------------------------------------------------------------


async def test_audit_json_tells_the_whole_story_masked(story: Story) -> None:
    result = await cli("audit", story.reference, "--json")
    assert result.exit_code == 0, result.output
    told = orjson.loads(result.stdout)
    assert told["reference"] == story.reference
    assert told["status"] == "dead_lettered"
    assert [(e["stage"], e["source"]) for e in told["events"]] == [
        ("received", "ingest"),
        ("dead_lettered", "dispatcher"),
    ]
    assert told["events"][1]["detail"]["reason"] == "siteti_unavailable"
    [dead] = told["dead_letters"]
    assert (dead["id"], dead["status"], dead["reason"]) == (
        story.entry_id,
        "pending",
        "siteti_unavailable",
    )
    assert dead["last_error"].startswith("Siteti 503 sending to ***")
    no_clear_number(result.stdout)


async def test_audit_table_shows_the_same(story: Story) -> None:
    result = await cli("audit", story.reference)
    assert result.exit_code == 0, result.output
    for text in (story.reference, "received", "dead_lettered", "siteti_unavailable"):
        assert text in result.stdout
    assert str(story.entry_id) in result.stdout and "dead letters" in result.stdout
    no_clear_number(result.stdout)


async def test_audit_of_an_unknown_reference_says_so_and_exits_1() -> None:
    result = await cli("audit", f"{PROVIDER}:nothing-here", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"no audit record or dead letter for '{PROVIDER}:nothing-here'\n"


# --- --json on the listings ---------------------------------------------------------------


async def test_dlq_listings_in_json(story: Story) -> None:
    listed = await cli("dlq", "list", "--reference", story.reference, "--json")
    assert listed.exit_code == 0, listed.output
    [line] = [orjson.loads(text) for text in listed.stdout.splitlines()]
    assert line["id"] == story.entry_id and line["reference"] == story.reference
    no_clear_number(listed.stdout)

    none = await cli("dlq", "list", "--reference", f"{PROVIDER}:none", "--json")
    assert (none.exit_code, none.stdout) == (0, "")

    stats = await cli("dlq", "stats", "--newer-than", "1h", "--json")
    assert stats.exit_code == 0, stats.output
    counts = orjson.loads(stats.stdout)
    assert counts["window_seconds"] == 3600
    assert counts["by_reason"]["siteti_unavailable"] >= 1
    assert counts["total"] == sum(counts["by_status"].values())

    shown = await cli("dlq", "show", str(story.entry_id), "--json")
    assert shown.exit_code == 0, shown.output
    entry = orjson.loads(shown.stdout)
    assert entry["payload"]["data"]["customer"]["phone"] == "•••4567"
    assert [step["stage"] for step in entry["history"]] == ["received", "dead_lettered"]
    no_clear_number(shown.stdout)


async def test_other_reports_in_json() -> None:
    check = await cli("templates", "check", "--json")
    assert check.exit_code == 0, check.output
    verdict = orjson.loads(check.stdout)
    assert verdict["valid"] is True and verdict["errors"] == 0 and verdict["rules"] > 0

    retention = await cli("retention", "run", "--dry-run", "--json")
    assert retention.exit_code == 0, retention.output
    report = orjson.loads(retention.stdout)
    assert report["dry_run"] is True and "audit_log" in report["rows"]


# --- customers import ---------------------------------------------------------------------

HEADER = "account_number,email,phone,name,tier,late_payments\n"


def csv_file(tmp_path: Path, name: str, *rows: str) -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


async def directory(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(row) for row in await pool.fetch("SELECT * FROM customers ORDER BY id")]


async def test_import_dry_run_reports_every_row_and_writes_nothing(
    pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first, second, third = (f"CLI{RUN}{n}" for n in (1, 2, 3))
    email = f"ada.{RUN}@example.com"
    base = csv_file(tmp_path, "base.csv", f"{first},{email},{PHONE},Ada Obi,first_time,0")
    done = await cli("customers", "import", str(base), "--json")
    assert done.exit_code == 0, done.output
    assert orjson.loads(done.stdout)["inserted"] == [2]

    trial = csv_file(
        tmp_path,
        "trial.csv",
        f"{first},{email},{PHONE},Ada Obi,returning,1",  # 2: an update (tier, late payments)
        f"{second},,,Bola,first_time,0",  # 3: a new customer, no number
        f"{third},,12,,,",  # 4: not a mobile number
        f"{third},,,,gold,",  # 5: no such tier
        f"{third},{email},,,,",  # 6: Ada's e-mail, on another account
        ",,,,,",  # 7: nobody
    )
    before = await directory(pg_pool)
    dry = await cli("customers", "import", str(trial), "--dry-run", "--json")
    assert dry.exit_code == 1, dry.output  # rows were rejected
    assert orjson.loads(dry.stdout) == {
        "dry_run": True,
        "inserted": [3],
        "updated": [2],
        "without_phone": 1,
        "rejected": [
            {"line": 4, "reason": "phone is not a valid mobile number"},
            {"line": 5, "reason": "tier must be one of first_time, returning"},
            {"line": 6, "reason": "its email belongs to another customer"},
            {"line": 7, "reason": "needs an account_number or an email"},
        ],
    }
    assert await directory(pg_pool) == before

    text = await cli("customers", "import", str(trial), "--dry-run")
    assert text.exit_code == 1
    assert text.stdout.splitlines()[:3] == [
        "dry run: nothing was written",
        "1 would be inserted (line 3)",
        "1 would be updated (line 2)",
    ]
    assert "  line 6: its email belongs to another customer" in text.stdout
    no_clear_number(text.stdout)
    assert await directory(pg_pool) == before


async def test_import_shows_progress_when_asked_and_writes(
    pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    accounts = [f"BAR{RUN}{n:03}" for n in range(40)]
    path = csv_file(tmp_path, "many.csv", *(f"{a},,,,returning,0" for a in accounts))
    result = await cli("customers", "import", str(path), "--json", "--progress")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["inserted"] == list(range(2, 42))
    assert "importing" in result.stderr  # the bar, on stderr only
    stored = await pg_pool.fetchval(
        "SELECT count(*) FROM customers WHERE account_number = ANY($1::text[])"
        " AND tier = 'returning'",
        accounts,
    )
    assert stored == len(accounts)

    quiet = await cli("customers", "import", str(path), "--json")
    assert quiet.exit_code == 0 and quiet.stderr == ""  # not a terminal: no bar
    assert orjson.loads(quiet.stdout)["updated"] == list(range(2, 42))


# --- the other dependencies away (PostgreSQL there) ------------------------------------------


def bridge(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI in a process of its own, with the session's settings and `env`."""
    command = [str(Path(sys.executable).with_name("bridge")), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


async def test_import_without_redis_says_so_before_writing(
    pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, "redis.csv", f"NOREDIS{RUN},,,,,")
    before = await directory(pg_pool)
    port = free_port()
    done = await asyncio.to_thread(
        bridge, "customers", "import", str(path), REDIS_URL=f"redis://:secretpw@127.0.0.1:{port}/0"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"error: cannot reach Redis at 127.0.0.1:{port} (connection refused):"
        " start it (make stack-up) or set REDIS_URL\n"
    )
    assert await directory(pg_pool) == before


async def test_privacy_scan_without_kafka_says_so(tmp_path: Path) -> None:
    servers = f"127.0.0.1:{free_port()}"
    done = await asyncio.to_thread(
        bridge,
        "privacy", "scan", "--number", PHONE, "--logs", str(tmp_path), "--json",
        KAFKA_BOOTSTRAP_SERVERS=servers,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: cannot reach Kafka at {servers} (")
    assert done.stderr.endswith("or set KAFKA_BOOTSTRAP_SERVERS\n")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


async def test_a_wrong_password_is_one_line_without_it(settings: Settings) -> None:
    url = urlsplit(settings.database_url)
    wrong = url._replace(netloc=f"{url.username}:wrong-pw-5521@{url.hostname}:{url.port}")
    done = await asyncio.to_thread(bridge, "audit", "x:y", DATABASE_URL=wrong.geturl())
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"error: PostgreSQL at {url.hostname}:{url.port} refused us (password authentication"
        f' failed for user "{url.username}"): check DATABASE_URL\n'
    )


async def test_settling_reports_each_entry_in_json(pg_pool: asyncpg.Pool) -> None:
    data = EventData(
        provider=PROVIDER,
        transaction_reference=f"TX-close-{RUN}",
        amount=Decimal("100.00"),
        customer=Customer(account_number="0123456789"),
    )
    event = new_event(data, "payment.successful")
    outcome = DeadLettered("missing_contact", "manual_review", "no phone number")
    entry_id = await dlq.put(pg_pool, event, outcome, "hash")

    result = await cli("dlq", "close", str(entry_id), "999999999999", "--note", "left", "--json")
    assert result.exit_code == 1, result.output  # one of them is unknown
    assert [orjson.loads(line) for line in result.stdout.splitlines()] == [
        {
            "id": entry_id,
            "reference": event.reference,
            "ok": True,
            "outcome": "closed",
            "message": "closed; now failed",
        },
        {
            "id": 999999999999,
            "reference": None,
            "ok": False,
            "outcome": "unknown",
            "message": "no such entry",
        },
    ]
