"""Erasure against real PostgreSQL, Redis, files and a real Siteti sandbox (uvicorn on a free
port): by account and by number, Siteti down (pending, then the retry), idempotence, the dry
run, the log's contents, `bridge erase` and the admin API's roles.

Every test seeds its own customer (account numbers and references made up per test) beside
a bystander whose rows must survive, and deletes what it made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
import faust
import httpx
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from typer.testing import CliRunner

import bridge_cli.erase as cli_erase
from bridge.config import Settings
from bridge.protect import DataKeys, data_keys
from bridge.retry import RetryPolicy
from bridge_cli.main import app as cli_app
from dispatcher import erasure, erasure_contacts
from dispatcher.dedupe import Dedupe
from dispatcher.erasure_api import register_erasures
from dispatcher.runtime import Runtime, build_runtime
from dispatcher.siteti import SitetiClient, SitetiError
from ingest.sources.filedrop_reader import FiledropConfig
from siteti_sandbox import SandboxConfig, create_app
from siteti_sandbox.testing import serve_app

pytestmark = pytest.mark.integration

ACCOUNT_ID = "acc_erasetest"
KEY = "sk_erasetest"
SECRET = "signing_secret_erasetest"
FAST = RetryPolicy(base_seconds=0.01, factor=2, max_seconds=0.05, max_retries=1)
NOW = RetryPolicy(base_seconds=0, factor=1, max_seconds=0, max_retries=0)  # backoff: due at once
ENGINEER, SUPPORT = "engineering-token-erasure", "support-token-for-erasure"


@pytest_asyncio.fixture(scope="module")
async def sandbox_url() -> AsyncIterator[str]:
    config = SandboxConfig(
        account_id=ACCOUNT_ID, api_keys=(KEY,), signing_secrets=(SECRET,), webhook_url="",
        rate_limit_per_minute=100_000,
    )  # fmt: skip
    async with serve_app(create_app(config)) as url:
        yield url


@pytest.fixture
def siteti(http: httpx.AsyncClient, sandbox_url: str) -> SitetiClient:
    return SitetiClient(http, f"{sandbox_url}/v2.6/accounts/{ACCOUNT_ID}", KEY, SECRET)


@pytest.fixture
def keys(settings: Settings) -> DataKeys:
    return data_keys(settings)


@pytest.fixture
def ctx(pg_pool: asyncpg.Pool, redis: Redis, keys: DataKeys, tmp_path: Path) -> erasure.Context:
    return erasure.Context(pg_pool, redis, keys, "NG", tmp_path / "inbox", FiledropConfig())


@pytest_asyncio.fixture(autouse=True)
async def _clean(pg_pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    for table, column in (("dead_letters", "reference"), ("audit_log", "reference"),
                          ("outbox", "key"), ("customers", "account_number")):  # fmt: skip
        await pg_pool.execute(f"DELETE FROM {table} WHERE {column} LIKE 'erasetest%'")
    await pg_pool.execute("DELETE FROM erasures WHERE requested_by LIKE 'erasetest%'")


@dataclass
class Person:
    account: str
    phone: str  # Siteti's form
    national: str  # as the file drop writes it
    reference: str
    contact_id: str


async def seed(
    ctx: erasure.Context, siteti: SitetiClient, national: str, *, with_files: bool = True
) -> Person:
    """A customer as the bridge holds them: a directory record with a Siteti contact, a dead
    letter, dispatcher and receipts audit rows, dedupe and cache keys, file-drop rows."""
    tag = uuid.uuid4().hex[:8]
    account, phone = f"erasetest{tag}", "234" + national[1:]
    contact_id = await siteti.upsert_contact(phone, None, {}, f"erasetest-{tag}")
    k = ctx.keys
    await ctx.pool.execute(
        "INSERT INTO customers (account_number, phone, phone_index, email, email_index, name,"
        " contact_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        account, k.seal(phone, "phone"), k.phone_index(phone), k.seal(f"{tag}@x.ng", "email"),
        k.email_index(f"{tag}@x.ng"), k.seal("Ada Obi", "name"), contact_id,
    )  # fmt: skip
    reference, by_phone = f"erasetest{tag}:TX-1", f"erasetest{tag}:TX-2"
    payload = {"subject": reference, "data": {"customer": {"account_number": account}}}
    await ctx.pool.execute(
        "INSERT INTO dead_letters (dedupe_key, reference, provider, event_type, payload, status,"
        " reason, customer_hash) VALUES ($1, $2, 'erasetest', 'payment.successful', $3,"
        " 'pending', 'siteti_unavailable', $4)",
        f"{reference}:payment.successful", reference, payload, k.index(account, "account"),
    )  # fmt: skip
    for ref, customer_hash in ((reference, k.index(account, "account")),
                               (by_phone, k.phone_index(phone)), (reference, None)):  # fmt: skip
        await ctx.pool.execute(
            "INSERT INTO audit_log (reference, stage, source, occurred_at, detail, customer_hash)"
            " VALUES ($1, 'sent', 'erasetest', now(), $2, $3)",
            ref, {"to": phone, "name": "Ada Obi"}, customer_hash,
        )  # fmt: skip
    await ctx.pool.execute(
        "INSERT INTO outbox (topic, key, payload) VALUES ('t', $1, $2)", by_phone, {"to": phone}
    )
    await ctx.redis.set(Dedupe.key(f"{reference}:payment.successful"), "done", ex=600)
    await ctx.redis.set(Dedupe.key(f"{by_phone}:rent.overdue"), "done", ex=600)
    await ctx.redis.set(f"bridge:customer:acct:{account}", "{}", ex=600)
    if with_files:
        for folder in ("processed", "failed"):
            (ctx.filedrop_dir / folder).mkdir(parents=True, exist_ok=True)
        (ctx.filedrop_dir / "processed" / f"rent-{tag}.csv").write_text(
            "record_id,tenant_account,name,phone,amount_due,status\n"
            f"R-1,{account},Ada Obi,{national},450000,overdue\n"
            f"R-2,erasetest-other,Tunde,08032345678,1000,overdue\n"
            f"R-3,erasetest-x,Ada again,+234 {national[1:4]} {national[4:]},1,overdue\n"
        )
        (ctx.filedrop_dir / "failed" / f"rent-{tag}.xml").write_text(
            f"<records><record><tenant_account>{account}</tenant_account><amount_due>1"
            "</amount_due><status>overdue</status></record><record><tenant_account>"
            "erasetest-other</tenant_account><amount_due>2</amount_due><status>overdue"
            "</status></record></records>"
        )
    return Person(account, phone, national, reference, contact_id)


async def holds(ctx: erasure.Context, p: Person) -> dict[str, int]:
    """What the bridge still holds about `p`, counted."""
    pool, refs = ctx.pool, [p.reference, p.reference.replace("TX-1", "TX-2")]
    files = "\n".join(f.read_text() for f in ctx.filedrop_dir.glob(f"*/rent-{p.account[9:]}.*"))
    return {
        "customers": await pool.fetchval(
            "SELECT count(*) FROM customers WHERE account_number = $1", p.account
        ),
        "dead_letters": await pool.fetchval(
            "SELECT count(*) FROM dead_letters WHERE reference = ANY($1)", refs
        ),
        "audit_details": await pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE reference = ANY($1) AND detail <> $2",
            refs,
            erasure.ERASED,
        ),
        "outbox": await pool.fetchval("SELECT count(*) FROM outbox WHERE key = ANY($1)", refs),
        "redis": await ctx.redis.exists(
            Dedupe.key(f"{refs[0]}:payment.successful"),
            Dedupe.key(f"{refs[1]}:rent.overdue"),
            f"bridge:customer:acct:{p.account}",
        ),
        "file_rows": sum(
            any(mark in line for mark in (p.account, p.national, "Ada again"))
            for line in files.splitlines()
        ),
    }


HELD = {"customers": 1, "dead_letters": 1, "audit_details": 3, "outbox": 1, "redis": 3}


async def contact_exists(siteti: SitetiClient, contact_id: str) -> bool:
    try:
        await siteti.delete_contact(contact_id)  # the only probe the API offers; it deletes
    except SitetiError as exc:
        assert exc.status == 404
        return False
    return True


async def test_erase_by_account_dry_run_then_for_real_then_again(
    ctx: erasure.Context, siteti: SitetiClient, pg_pool: asyncpg.Pool
) -> None:
    person = await seed(ctx, siteti, "08031230001")
    bystander = await seed(ctx, siteti, "08031230002")
    subject = erasure.subject_of("account", person.account, ctx.keys, "NG")

    dry = await erasure.erase(
        ctx, siteti, subject, requested_by="erasetest", dry_run=True, policy=FAST
    )
    assert dry.status == "dry_run" and dry.erasure_id is None and not dry.nothing
    assert await holds(ctx, person) == {**HELD, "file_rows": 3}
    assert dry.removed["file_rows"] == 3 and dry.removed["files_rewritten"] == 2

    done = await erasure.erase(ctx, siteti, subject, requested_by="erasetest", policy=FAST)
    assert done.status == "done" and done.contacts_left == 0
    assert {k: v for k, v in done.removed.items() if k != "customer_hashes"} == {
        "directory_records": 1, "siteti_contacts": 1, "dead_letters": 1,
        "audit_rows_scrubbed": 3, "outbox_rows": 1, "dedupe_keys": 2, "cache_keys": 1,
        "files_rewritten": 2, "file_rows": 3, "files_unreadable": 0,
    }  # fmt: skip
    assert await holds(ctx, person) == dict.fromkeys([*HELD, "file_rows"], 0)
    assert await holds(ctx, bystander) == {**HELD, "file_rows": 3}
    kept = (ctx.filedrop_dir / "processed" / f"rent-{person.account[9:]}.csv").read_text()
    assert kept.splitlines()[1:] == ["R-2,erasetest-other,Tunde,08032345678,1000,overdue"]
    assert not await contact_exists(siteti, person.contact_id)
    assert await contact_exists(siteti, bystander.contact_id)

    log = await erasure.get(pg_pool, done.erasure_id or 0)
    assert log is not None and log["status"] == "done" and log["requested_by"] == "erasetest"
    assert log["subject_kind"] == "account" and log["subject_hash"] == subject.hash
    assert log["completed_at"] and log["removed"]["customer_hashes"]
    text = orjson.dumps(await pg_pool.fetchrow("SELECT * FROM erasures WHERE id = $1",
                                               done.erasure_id), default=str).decode()  # fmt: skip
    for secret in (person.account, person.phone, person.national, person.phone[3:]):
        assert secret not in text

    again = await erasure.erase(ctx, siteti, subject, requested_by="erasetest", policy=FAST)
    assert again.nothing and again.status == "done" and again.erasure_id != done.erasure_id
    assert again.removed["file_rows"] == 0 and again.removed["audit_rows_scrubbed"] == 0
    assert "nothing (more) to erase" in again.describe()[0]


async def test_erase_by_phone_finds_the_record_and_the_events_keyed_by_number(
    ctx: erasure.Context, siteti: SitetiClient
) -> None:
    person = await seed(ctx, siteti, "08031230003")
    subject = erasure.subject_of("phone", f"+234 {person.national[1:]}", ctx.keys, "NG")
    result = await erasure.erase(ctx, siteti, subject, requested_by="erasetest", policy=FAST)
    assert result.status == "done" and result.removed["directory_records"] == 1
    assert await holds(ctx, person) == dict.fromkeys([*HELD, "file_rows"], 0)
    assert not await contact_exists(siteti, person.contact_id)


async def test_siteti_down_leaves_it_pending_until_the_retry(
    ctx: erasure.Context, siteti: SitetiClient, http: httpx.AsyncClient, sandbox_url: str,
    pg_pool: asyncpg.Pool,
) -> None:  # fmt: skip
    person = await seed(ctx, siteti, "08031230004", with_files=False)
    subject = erasure.subject_of("account", person.account, ctx.keys, "NG")
    failures = f"{sandbox_url}/_sandbox/failures"
    spec = {"mode": "error_5xx", "paths": "/contacts/", "status": 503}
    (await http.post(failures, json=spec)).raise_for_status()
    try:
        result = await erasure.erase(ctx, siteti, subject, requested_by="erasetest", policy=FAST)
        assert result.status == "pending" and result.contacts_left == 1
        row = await pg_pool.fetchrow("SELECT * FROM erasures WHERE id = $1", result.erasure_id)
        assert row["contact_ids"] == [person.contact_id] and row["attempts"] == 1
        assert row["last_error"].startswith("503") and row["completed_at"] is None
        # Everything but Siteti's part is gone already.
        assert await holds(ctx, person) == dict.fromkeys([*HELD, "file_rows"], 0)
        await pg_pool.execute(
            "UPDATE erasures SET next_attempt_at = now() WHERE id = $1", result.erasure_id
        )
        still = await erasure_contacts.retry_pending(pg_pool, siteti, policy=FAST, backoff=NOW)
        assert still.get(result.erasure_id or 0) == "pending"
    finally:
        (await http.delete(failures)).raise_for_status()
    await asyncio.sleep(0.01)
    outcomes = await erasure_contacts.retry_pending(pg_pool, siteti, policy=FAST, backoff=NOW)
    assert outcomes.get(result.erasure_id or 0) == "done"
    row = await pg_pool.fetchrow("SELECT * FROM erasures WHERE id = $1", result.erasure_id)
    assert (row["status"], row["contact_ids"], row["attempts"]) == ("done", [], 3)
    assert row["completed_at"] is not None
    assert not await contact_exists(siteti, person.contact_id)
    # The same subject again: nothing more, and the earlier erasure is no longer pending.
    again = await erasure.erase(ctx, siteti, subject, requested_by="erasetest", policy=FAST)
    assert again.nothing and again.earlier_pending == ()


async def test_already_deleted_contact_counts_as_deleted(
    ctx: erasure.Context, siteti: SitetiClient
) -> None:
    person = await seed(ctx, siteti, "08031230005", with_files=False)
    await siteti.delete_contact(person.contact_id)  # gone from Siteti already
    subject = erasure.subject_of("account", person.account, ctx.keys, "NG")
    result = await erasure.erase(ctx, siteti, subject, requested_by="erasetest", policy=FAST)
    assert result.status == "done" and result.contacts_left == 0


# --- bridge erase ---------------------------------------------------------------------------


@pytest.fixture
def erase_settings(settings: Settings, sandbox_url: str, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "siteti_base_url": f"{sandbox_url}/v2.6/accounts/{ACCOUNT_ID}",
            "siteti_api_key": KEY, "siteti_api_keys": [KEY], "siteti_signing_secret": SECRET,
            "siteti_rate_limit_per_minute": 100_000, "siteti_retry_base_seconds": 0.01,
            "siteti_max_retries": 1, "filedrop_dir": str(tmp_path / "inbox"),
            "api_tokens": [f"engineering:{ENGINEER}", f"support:{SUPPORT}"],
            "admin_api_tokens": [],
        }
    )  # fmt: skip


async def test_cli(
    ctx: erasure.Context, siteti: SitetiClient, erase_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(cli_erase, "get_settings", lambda: erase_settings)
    person = await seed(ctx, siteti, "08031230006")

    def run(*args: str) -> Any:
        return asyncio.to_thread(
            CliRunner().invoke, cli_app, ["erase", *args], catch_exceptions=False
        )

    dry = await run("--phone", person.national, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = orjson.loads(dry.stdout)
    assert report["status"] == "dry_run" and report["removed"]["file_rows"] == 3
    assert await holds(ctx, person) == {**HELD, "file_rows": 3}

    real = await run("--account", person.account, "--requested-by", "erasetest-cli")
    assert real.exit_code == 0, real.output
    assert "directory_records: 1" in real.stdout and ": done" in real.stdout
    assert person.national not in real.output and person.phone not in real.output
    assert await holds(ctx, person) == dict.fromkeys([*HELD, "file_rows"], 0)
    again = await run("--account", person.account, "--requested-by", "erasetest-cli")
    assert again.exit_code == 0 and "nothing (more) to erase" in again.stdout
    assert (await run("--phone", "12")).exit_code == 2
    assert (await run()).exit_code == 2


# --- the admin API ----------------------------------------------------------------------------


async def test_admin_api_engineering_only(
    ctx: erasure.Context, siteti: SitetiClient, erase_settings: Settings, tmp_path: Path,
    pg_pool: asyncpg.Pool, redis: Redis,
) -> None:  # fmt: skip
    person = await seed(ctx, siteti, "08031230007")
    # The process's own runtime, as app.py builds it (Siteti calls through the governor).
    runtime = await build_runtime(erase_settings, pool_size=2, http_connections=2)

    async def get_runtime() -> Runtime:
        return runtime

    def client_for(settings: Settings) -> TestClient[Any, Any]:
        app = faust.App(
            f"erasure-test-{uuid.uuid4().hex[:6]}", broker="kafka://127.0.0.1:9",
            web_port=8002, datadir=str(tmp_path / "faust"),
        )  # fmt: skip
        register_erasures(app, get_runtime, settings)
        return TestClient(TestServer(cast(Any, app.web).web_app))

    off = client_for(erase_settings.model_copy(update={"api_tokens": []}))
    api = client_for(erase_settings)
    await off.start_server()
    await api.start_server()
    try:
        body = {"account": person.account}
        assert (await off.post("/erasures", json=body)).status == 503
        assert (await api.post("/erasures", json=body)).status == 401
        bad = {"Authorization": "Bearer nope-nope-nope-nope"}
        assert (await api.post("/erasures", json=body, headers=bad)).status == 401
        support = {"Authorization": f"Bearer {SUPPORT}"}
        assert (await api.post("/erasures", json=body, headers=support)).status == 403
        assert (await api.get("/erasures/1", headers=support)).status == 403
        assert await holds(ctx, person) == {**HELD, "file_rows": 3}

        eng = {"Authorization": f"Bearer {ENGINEER}"}
        for wrong in ({}, {"account": "a", "phone": "0803"}, {"phone": 8031}, {"phone": "x"}):
            assert (await api.post("/erasures", json=wrong, headers=eng)).status == 400
        dry = await api.post("/erasures", json={**body, "dry_run": True}, headers=eng)
        assert dry.status == 200 and (await dry.json())["status"] == "dry_run"
        made = await api.post("/erasures", json=body, headers=eng)
        assert made.status == 201, await made.text()
        created = await made.json()
        assert created["status"] == "done" and created["removed"]["directory_records"] == 1
        assert await holds(ctx, person) == dict.fromkeys([*HELD, "file_rows"], 0)

        shown = await api.get(f"/erasures/{created['id']}", headers=eng)
        assert shown.status == 200
        entry = await shown.json()
        assert entry["requested_by"] == "api:engineering" and entry["status"] == "done"
        assert person.account not in await shown.text()
        assert (await api.get("/erasures/999999999999", headers=eng)).status == 404
        await pg_pool.execute(
            "UPDATE erasures SET requested_by = 'erasetest-api' WHERE requested_by = $1",
            "api:engineering",
        )
    finally:
        await off.close()
        await api.close()
        await runtime.aclose()


async def test_erasing_a_number_removes_every_confirmation_request_for_it(
    ctx: erasure.Context, siteti: SitetiClient
) -> None:
    person = await seed(ctx, siteti, "08031230009", with_files=False)
    index, sealed = ctx.keys.phone_index(person.phone), ctx.keys.seal(person.phone, "phone")
    other = await ctx.pool.fetchval(
        "INSERT INTO customers (account_number) VALUES ($1) RETURNING id",
        f"erasetest{uuid.uuid4().hex[:8]}",
    )
    owner = await ctx.pool.fetchval(
        "SELECT id FROM customers WHERE account_number = $1", person.account
    )
    # The person's own number asked, and the same number given by an event as another's.
    for customer_id in (owner, other):
        await ctx.pool.execute(
            "INSERT INTO number_confirmations (customer_id, phone, phone_index, status,"
            " reference, template_id, expires_at) VALUES ($1, $2, $3, 'requested', $4,"
            " 'tpl_confirm_number', now() + interval '1 day')",
            customer_id, sealed, index, f"number-confirmation:{uuid.uuid4().hex}",
        )  # fmt: skip
    subject = erasure.subject_of("phone", person.national, ctx.keys, "NG")
    await erasure.erase(ctx, siteti, subject, requested_by="erasetest", policy=FAST)
    left = await ctx.pool.fetchval(
        "SELECT count(*) FROM number_confirmations WHERE phone_index = $1", index
    )
    assert left == 0
    assert await ctx.pool.fetchval("SELECT count(*) FROM customers WHERE id = $1", other) == 1
