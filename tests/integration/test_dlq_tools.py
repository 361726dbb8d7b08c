"""The dead-letter store's tools against real PostgreSQL and Redis and a real Siteti sandbox
(uvicorn on a free port): retry, the retrier's three passes, claims under concurrency, the
`bridge dlq` CLI and the admin API's faust pages.

Every test works under its own provider name (and the template test under its own template),
and the retriers here are scoped to those providers, so other work in the shared database is
never touched; rows made here are deleted at the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
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

import bridge_cli.dlq as cli_dlq
from bridge.access import Tokens
from bridge.config import Settings, get_settings
from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.protect import data_keys
from bridge.retry import RetryPolicy
from bridge_cli.main import app as cli_app
from dispatcher import dlq, outcomes
from dispatcher.admin import DISABLED, AdminAPI, register_admin
from dispatcher.dedupe import Dedupe
from dispatcher.directory import Directory, import_csv
from dispatcher.pipeline import Dispatcher, trigger_key
from dispatcher.recovery import Retrier, RoundReport, for_entry, retry_entry, retry_id
from dispatcher.rules import RuleSet, load_rules
from dispatcher.siteti import SitetiClient
from siteti_sandbox import SandboxConfig, create_app
from siteti_sandbox.testing import serve_app
from tests.problem_tools import problem_detail

pytestmark = pytest.mark.integration

ACCOUNT = "acc_dlqtest"
KEY = "sk_dlqtest"
SECRET = "signing_secret_dlqtest"
TOKEN = "admin-token-for-tests"
PAYMENT_VARS = ["customer_name", "amount", "trans_ref"]
# The DLQ's own backoff, shortened: 0.3 s, 0.6 s… instead of 1 min, 2 min…
FAST_BACKOFF = RetryPolicy(base_seconds=0.3, factor=2, max_seconds=5, max_retries=3)


# --- fixtures -----------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def sandbox() -> AsyncIterator[str]:
    config = SandboxConfig(
        account_id=ACCOUNT,
        api_keys=(KEY,),
        signing_secrets=(SECRET,),
        webhook_url="",
        rate_limit_per_minute=100_000,
    )
    async with serve_app(create_app(config)) as url:
        yield url


class Sandbox:
    """The sandbox's control API."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.base_url = f"{url}/v2.6/accounts/{ACCOUNT}"

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, f"{self.url}/_sandbox/{path}", json=body)
        response.raise_for_status()
        return response.json()

    async def messages(self, reference: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.control("GET", f"messages?reference={reference}")
        return result

    async def calls(self, path_contains: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.control(
            "GET", f"calls?path_contains={path_contains}"
        )
        return result

    async def triggers(self, reference: str) -> list[dict[str, Any]]:
        """The trigger calls made for a reference, in order."""
        calls = await self.calls("/trigger")
        return [c for c in calls if c["body"].get("reference") == reference]

    async def template(self, template_id: str, status: str) -> None:
        await self.control(
            "PUT", f"templates/{template_id}", {"status": status, "variables": PAYMENT_VARS}
        )

    async def fail(self, **spec: Any) -> None:
        await self.control("POST", "failures", spec)

    async def heal(self) -> None:
        await self.control("DELETE", "failures")


@pytest_asyncio.fixture
async def siteti(sandbox: str, http: httpx.AsyncClient) -> AsyncIterator[Sandbox]:
    box = Sandbox(http, sandbox)
    yield box
    await box.heal()


@pytest.fixture
def provider() -> str:
    """A provider name of this test's own: references `<provider>:<ref>`, retrier scope."""
    return f"dlqtest{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(autouse=True)
async def _clean_rows(pg_pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pg_pool.execute("DELETE FROM dead_letters WHERE provider LIKE 'dlqtest%'")
    await pg_pool.execute("DELETE FROM audit_log WHERE reference LIKE 'dlqtest%'")
    await pg_pool.execute("DELETE FROM outbox WHERE key LIKE 'acct:dlq%'")


MakeDispatcher = Callable[..., Dispatcher]


@pytest.fixture
def make_dispatcher(
    pg_pool: asyncpg.Pool, redis: Redis, http: httpx.AsyncClient, siteti: Sandbox
) -> MakeDispatcher:
    def make(name: str = "a", rules: RuleSet | None = None) -> Dispatcher:
        return Dispatcher(
            pool=pg_pool,
            directory=Directory(pg_pool, redis, data_keys(get_settings()), 300, "NG"),
            rules=rules or load_rules(None),
            siteti=SitetiClient(http, siteti.base_url, KEY, SECRET),
            dedupe=Dedupe(redis, lease_seconds=30, ttl_seconds=3600),
            # In-call retries: fast, and only one, so a failing Siteti dead-letters at once.
            # max_seconds (the pipeline's retry_in for the dead-letter entry) is an hour:
            # no retrier anywhere takes these entries before the test says so.
            policy=RetryPolicy(base_seconds=0.01, factor=2, max_seconds=3600, max_retries=1),
            instance_id=f"dlqtest-{name}-{uuid.uuid4().hex[:6]}",
            missing_contact_wait_seconds=0,
        )

    return make


def rules_for(template_id: str) -> RuleSet:
    return RuleSet.model_validate(
        {
            "version": 1,
            "templates": {template_id: PAYMENT_VARS},
            "rules": [{"name": "dlqtest", "template": template_id}],
        }
    )


async def on_template(
    make_dispatcher: MakeDispatcher, siteti: Sandbox, status: str
) -> tuple[str, Dispatcher]:
    """A dispatcher whose one rule sends a template of the test's own, `status` at Siteti."""
    template = f"tpl_dlqtest_{uuid.uuid4().hex[:6]}"
    await siteti.template(template, status)
    return template, make_dispatcher(rules=rules_for(template))


async def add_customer(
    pool: asyncpg.Pool, redis: Redis, tmp_path: Path, account: str, phone: str = "08031234567"
) -> None:
    """Through the directory import, as operators do (it also clears the look-up cache)."""
    csv = tmp_path / f"{account}-{uuid.uuid4().hex[:4]}.csv"
    csv.write_text(
        "account_number,email,phone,name,tier,late_payments\n"
        f"{account},,{phone},Ada {account},first_time,0\n"
    )
    report = await import_csv(pool, redis, data_keys(get_settings()), csv, "NG")
    assert report.imported == 1, report.rejected


def payment(provider: str, account: str) -> CanonicalEvent:
    data = EventData(
        provider=provider,
        transaction_reference=f"TX-{uuid.uuid4().hex[:10]}",
        amount=Decimal("5000.00"),
        customer=Customer(account_number=account, name="Ada Obi"),
    )
    return new_event(data, "payment.successful")


def new_account() -> str:
    return f"dlq{uuid.uuid4().int % 10**9:09d}"


async def entry_for(pool: asyncpg.Pool, event: CanonicalEvent) -> dlq.Entry:
    row = await pool.fetchrow("SELECT id FROM dead_letters WHERE dedupe_key = $1", event.dedupe_key)
    assert row is not None, f"no dead-letter entry for {event.reference}"
    entry = await dlq.get_entry(pool, row["id"])
    assert entry is not None
    return entry


async def unavailable_entry(
    dispatcher: Dispatcher,
    siteti: Sandbox,
    pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
    **failure: Any,
) -> tuple[CanonicalEvent, dlq.Entry]:
    """A customer with a number, Siteti failing on trigger: a siteti_unavailable entry."""
    account = new_account()
    await add_customer(pool, redis, tmp_path, account)
    await siteti.fail(mode="error_5xx", status=500, paths="/trigger", **failure)
    event = payment(provider, account)
    try:
        assert (await dispatcher.handle(event)).label == "dead_lettered:siteti_unavailable"
    finally:
        await siteti.heal()
    entry = await entry_for(pool, event)
    assert entry.status == "pending" and entry.reason == outcomes.SITETI_UNAVAILABLE
    return event, entry


async def make_due(pool: asyncpg.Pool, entry_id: int) -> None:
    await pool.execute(
        "UPDATE dead_letters SET next_attempt_at = now() - interval '1 second',"
        " updated_at = now() - interval '1 hour' WHERE id = $1",
        entry_id,
    )


async def stages(pool: asyncpg.Pool, reference: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT stage FROM audit_log WHERE reference = $1 ORDER BY id", reference
    )
    return [r["stage"] for r in rows]


# --- list, filter, show -----------------------------------------------------------------


async def test_list_filter_and_show(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    no_phone = new_account()
    await add_customer(pg_pool, redis, tmp_path, no_phone, phone="")
    missing = payment(provider, no_phone)
    assert (await dispatcher.handle(missing)).label == "dead_lettered:missing_contact"
    unavailable, _ = await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)

    everything = await dlq.list_entries(pg_pool, provider=provider)
    assert [e.reference for e in everything] == [missing.reference, unavailable.reference]
    review = await dlq.list_entries(pg_pool, status="manual_review", provider=provider)
    assert [(e.reason, e.status) for e in review] == [("missing_contact", "manual_review")]
    pending = await dlq.list_entries(pg_pool, reason="siteti_unavailable", provider=provider)
    assert [e.reference for e in pending] == [unavailable.reference]
    assert pending[0].template_id == "tpl_first_time"  # put takes it from the pipeline's extra
    both = await dlq.list_entries(pg_pool, status=["pending", "manual_review"], provider=provider)
    assert len(both) == 2
    hour = timedelta(hours=1)
    assert len(await dlq.list_entries(pg_pool, provider=provider, newer_than=hour)) == 2
    assert await dlq.list_entries(pg_pool, provider=provider, older_than=hour) == []
    assert len(await dlq.list_entries(pg_pool, provider=provider, limit=1)) == 1

    entry = await dlq.get_entry(pg_pool, review[0].id)
    assert entry is not None and entry.payload["subject"] == missing.reference
    assert entry.dedupe_key == missing.dedupe_key and entry.retry_count == 0
    story = [s["stage"] for s in await dlq.entry_history(pg_pool, entry)]
    assert story == ["received", "dead_lettered"]
    assert await dlq.get_entry(pg_pool, 10**12) is None


# --- retry --------------------------------------------------------------------------------


async def test_retry_after_siteti_recovers_sends_once(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    event, entry = await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)
    assert await siteti.messages(event.reference) == []

    result = await retry_id(dispatcher, entry.id, by="test")
    assert result.outcome.label == "sent" and result.ok
    messages = await siteti.messages(event.reference)
    assert len(messages) == 1 and messages[0]["template_id"] == "tpl_first_time"
    after = await dlq.get_entry(pg_pool, entry.id)
    assert after is not None and after.status == "completed" and after.retry_count == 1
    assert after.next_attempt_at is None
    assert (await stages(pg_pool, event.reference))[-2:] == ["dispatched", "retried"]

    again = await retry_id(dispatcher, entry.id, by="test")
    assert again.outcome.label == "not_retryable:completed" and again.ok
    assert (await dispatcher.handle(event)).label == "duplicate"  # a redelivery is a duplicate now
    assert len(await siteti.messages(event.reference)) == 1
    triggers = await siteti.triggers(event.reference)
    assert [c["status"] for c in triggers] == [500, 500, 202]  # 1 + 1 in-call retry, then sent
    assert len({c["idempotency_key"] for c in triggers}) == 1  # one key throughout


async def test_retry_when_siteti_had_accepted_is_an_idempotent_replay(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    """The answer was lost (Siteti queued the message, then answered 500): the retry gets
    Siteti's replay of the first answer and sends nothing new."""
    dispatcher = make_dispatcher()
    event, entry = await unavailable_entry(
        dispatcher, siteti, pg_pool, redis, tmp_path, provider, after_processing=True
    )
    assert len(await siteti.messages(event.reference)) == 1  # it went out after all

    result = await retry_id(dispatcher, entry.id, by="test")
    assert result.outcome.label == "sent"
    assert len(await siteti.messages(event.reference)) == 1
    triggers = await siteti.triggers(event.reference)
    assert triggers[-1]["replayed"] is True and triggers[-1]["status"] == 202
    done = await dlq.get_entry(pg_pool, entry.id)
    assert done is not None and done.status == "completed"


async def test_failed_retry_is_counted_and_backs_off_then_gives_up(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    event, entry = await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)
    retrier = Retrier(dispatcher, providers=[provider], policy=FAST_BACKOFF, max_retries=2)
    await siteti.fail(mode="error_5xx", status=500, paths="/trigger")

    assert (await retrier.run_once()).results == []  # not due yet (the pipeline said 1 h)
    await make_due(pg_pool, entry.id)
    report = await retrier.run_once()
    assert report.results == [(entry.id, "dead_lettered:siteti_unavailable")]
    first = await dlq.get_entry(pg_pool, entry.id)
    assert first is not None and (first.status, first.retry_count) == ("pending", 1)
    assert first.next_attempt_at is not None
    wait = (first.next_attempt_at - first.updated_at).total_seconds()
    assert wait == pytest.approx(FAST_BACKOFF.base_seconds)  # backoff(1) = base

    assert (await retrier.run_once()).results == []  # inside the backoff: left alone
    await asyncio.sleep(wait + 0.1)
    report = await retrier.run_once()
    assert report.results == [(entry.id, "gave_up:siteti_unavailable")]
    last = await dlq.get_entry(pg_pool, entry.id)
    assert last is not None and (last.status, last.retry_count) == ("failed", 2)
    assert last.next_attempt_at is None
    assert await siteti.messages(event.reference) == []
    assert (await stages(pg_pool, event.reference)).count("retried") == 2


async def test_template_approved_later_is_sent_by_the_retrier(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    template, dispatcher = await on_template(make_dispatcher, siteti, "PENDING")
    events = []
    for _ in range(2):
        account = new_account()
        await add_customer(pg_pool, redis, tmp_path, account)
        event = payment(provider, account)
        assert (await dispatcher.handle(event)).label == "dead_lettered:template_not_approved"
        events.append(event)
    entries = [await entry_for(pg_pool, e) for e in events]
    assert {(e.status, e.reason, e.template_id, e.key_generation) for e in entries} == {
        ("pending", "template_not_approved", template, 1)
    }
    retrier = Retrier(dispatcher, providers=[provider])
    status_calls = f"/templates/{template}"

    def gets(calls: list[dict[str, Any]]) -> int:
        return sum(1 for c in calls if c["method"] == "GET" and c["path"].endswith(status_calls))

    report = await retrier.run_once()
    assert report.templates_checked == {template: "PENDING"} and report.results == []
    assert gets(await siteti.calls(status_calls)) == 1  # one call per template, not per entry
    for event in events:
        assert await siteti.messages(event.reference) == []

    await siteti.template(template, "APPROVED")
    report = await retrier.run_once()
    assert report.templates_checked == {template: "APPROVED"}
    assert sorted(report.results) == sorted((e.id, "sent") for e in entries)
    assert gets(await siteti.calls(status_calls)) == 2
    # Siteti keeps its 404 under the first Idempotency-Key: the retry used the next one.
    for event in events:
        keys = [c["idempotency_key"] for c in await siteti.triggers(event.reference)]
        assert len(keys) == 2 and keys[0] != keys[1]
    for event, entry in zip(events, entries, strict=True):
        assert [m["template_id"] for m in await siteti.messages(event.reference)] == [template]
        done = await dlq.get_entry(pg_pool, entry.id)
        assert done is not None and done.status == "completed"
    assert (await retrier.run_once()).templates_checked == {}  # nothing waits any more


async def waiting_for(
    dispatcher: Dispatcher, pool: asyncpg.Pool, redis: Redis, tmp_path: Path, provider: str
) -> tuple[CanonicalEvent, dlq.Entry]:
    """A payment whose template Siteti has not approved: a template_not_approved entry."""
    account = new_account()
    await add_customer(pool, redis, tmp_path, account)
    event = payment(provider, account)
    assert (await dispatcher.handle(event)).label == "dead_lettered:template_not_approved"
    return event, await entry_for(pool, event)


async def test_rejected_template_moves_waiting_entries_to_manual_review(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    """Issue 12: a REJECTED template's entries stop waiting; an operator's retry after the
    template is fixed sends them, under a key Siteti has not refused."""
    template, dispatcher = await on_template(make_dispatcher, siteti, "PENDING")
    waiting = [await waiting_for(dispatcher, pg_pool, redis, tmp_path, provider) for _ in "ab"]
    retrier = Retrier(dispatcher, providers=[provider])

    await siteti.template(template, "REJECTED")
    report = await retrier.run_once()
    assert report.templates_checked == {template: "REJECTED"}
    assert sorted(report.results) == sorted(
        (entry.id, "dead_lettered:template_rejected") for _, entry in waiting
    )
    for event, entry in waiting:
        moved = await dlq.get_entry(pg_pool, entry.id)
        assert moved is not None
        assert (moved.status, moved.reason, moved.template_id) == (
            "manual_review",
            "template_rejected",
            template,
        )
        assert moved.last_error == f"{template} is REJECTED"
        assert (await stages(pg_pool, event.reference)).count("dead_lettered") == 2
        assert await siteti.messages(event.reference) == []
    assert (await retrier.run_once()).templates_checked == {}  # nothing waits any more

    await siteti.template(template, "APPROVED")
    event, entry = waiting[0]
    result = await retry_id(dispatcher, entry.id, by="test")
    assert result.outcome.label == "sent"
    assert [m["template_id"] for m in await siteti.messages(event.reference)] == [template]


async def test_rejected_at_the_trigger_goes_straight_to_manual_review(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    template, dispatcher = await on_template(make_dispatcher, siteti, "REJECTED")
    account = new_account()
    await add_customer(pg_pool, redis, tmp_path, account)
    event = payment(provider, account)
    assert (await dispatcher.handle(event)).label == "dead_lettered:template_rejected"
    entry = await entry_for(pg_pool, event)
    # Siteti keeps the refusal under the first key: the retry must use the next one.
    assert (entry.status, entry.key_generation) == ("manual_review", 1)
    assert await Retrier(dispatcher, providers=[provider]).run_once() == RoundReport()

    await siteti.template(template, "APPROVED")
    assert (await retry_id(dispatcher, entry.id, by="test")).outcome.label == "sent"
    keys = [c["idempotency_key"] for c in await siteti.triggers(event.reference)]
    assert len(keys) == 2 and keys[0] != keys[1]
    assert len(await siteti.messages(event.reference)) == 1


async def test_the_background_retrier_acts_within_one_interval_of_a_status_change(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    """Issue 12: approval releases, rejection moves, within one retrier interval."""
    interval = 1.5
    approved, rejected = (f"tpl_dlqtest_{uuid.uuid4().hex[:6]}" for _ in "ab")
    for template in (approved, rejected):
        await siteti.template(template, "PENDING")
    dispatcher = make_dispatcher(rules=rules_for(approved))
    released, _ = await waiting_for(dispatcher, pg_pool, redis, tmp_path, provider)
    _, stuck = await waiting_for(
        make_dispatcher(rules=rules_for(rejected)), pg_pool, redis, tmp_path, provider
    )
    retrier = Retrier(dispatcher, interval_seconds=interval, providers=[provider])
    running = asyncio.create_task(retrier.run())
    try:
        await asyncio.sleep(interval / 2)  # a status change lands anywhere in a round's wait
        await siteti.template(approved, "APPROVED")
        await siteti.template(rejected, "REJECTED")
        changed = time.monotonic()

        async def settled() -> bool:
            moved = await dlq.get_entry(pg_pool, stuck.id)
            sent = await siteti.messages(released.reference)
            return bool(sent) and moved is not None and moved.status == "manual_review"

        while not await settled():
            # One interval, plus the round's own few calls on a busy machine.
            assert time.monotonic() - changed < interval + 1.0, "not within one interval"
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_put_moves_the_idempotency_key_generation_only_when_a_key_is_burned(
    make_dispatcher: MakeDispatcher, pg_pool: asyncpg.Pool, provider: str
) -> None:
    event = payment(provider, new_account())

    async def put(reason: str) -> dlq.Entry:
        await dlq.put(
            pg_pool,
            event,
            outcomes.DeadLettered(reason, "pending", reason, template_id="t"),
            "customer-hash",
        )
        return await entry_for(pg_pool, event)

    async def failed_retry(reason: str) -> dlq.Entry:
        """A retry: claim, the pipeline's new decision, then the retry's bookkeeping."""
        claimed = await dlq.claim(pg_pool, first.id)
        assert claimed is not None
        await put(reason)
        after = dlq.after_retry(claimed, reason=reason, status="pending")
        settled = await dlq.settle_retry(pg_pool, claimed, after)
        assert settled is not None
        return settled

    first = await put(outcomes.TEMPLATE_NOT_APPROVED)  # the pipeline's attempt burned generation 0
    assert (first.key_generation, first.retry_count, first.template_id) == (1, 0, "t")
    # A redelivery through the pipeline uses generation 0 again: generation 1 is untouched.
    assert (await put(outcomes.TEMPLATE_NOT_APPROVED)).key_generation == 1
    second = await failed_retry(outcomes.TEMPLATE_NOT_APPROVED)  # generation 1 refused: burned
    assert (second.key_generation, second.retry_count, second.status) == (2, 1, "pending")
    assert second.next_attempt_at is not None and second.next_attempt_at > second.updated_at
    third = await failed_retry(outcomes.SITETI_UNAVAILABLE)  # no answer: the key may be used
    assert (third.key_generation, third.retry_count) == (2, 2)

    dispatcher = make_dispatcher()
    assert for_entry(dispatcher, replace(first, key_generation=0)) is dispatcher
    assert for_entry(dispatcher, third).key_generation == 2
    keys = {trigger_key("k", n) for n in range(3)}
    assert len(keys) == 3 and trigger_key("k", 2) == trigger_key("k", 2)


async def test_missing_contact_is_sent_once_the_directory_has_a_number(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    account = new_account()
    await add_customer(pg_pool, redis, tmp_path, account, phone="")
    event = payment(provider, account)
    assert (await dispatcher.handle(event)).label == "dead_lettered:missing_contact"
    entry = await entry_for(pg_pool, event)
    assert entry.status == "manual_review"
    retrier = Retrier(dispatcher, providers=[provider])

    assert (await retrier.run_once()).results == []  # still no number: left for review
    assert (await dlq.get_entry(pg_pool, entry.id)).status == "manual_review"  # type: ignore[union-attr]

    await add_customer(pg_pool, redis, tmp_path, account, phone="08039876543")
    report = await retrier.run_once()
    assert report.results == [(entry.id, "sent")]
    messages = await siteti.messages(event.reference)
    assert [m["to"] for m in messages] == ["2348039876543"]
    done = await dlq.get_entry(pg_pool, entry.id)
    assert done is not None and (done.status, done.retry_count) == ("completed", 1)
    assert (await retrier.run_once()).results == []


async def test_concurrent_retriers_send_exactly_once(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    event, entry = await unavailable_entry(
        make_dispatcher("a"), siteti, pg_pool, redis, tmp_path, provider
    )
    await make_due(pg_pool, entry.id)
    retriers = [Retrier(make_dispatcher(str(i)), providers=[provider]) for i in range(4)]
    reports = await asyncio.gather(*(r.run_once() for r in retriers))
    outcomes = [outcome for report in reports for _, outcome in report.results]
    assert outcomes == ["sent"]
    assert len(await siteti.messages(event.reference)) == 1

    # Claims themselves: many at once, one winner.
    _, other = await unavailable_entry(
        make_dispatcher("b"), siteti, pg_pool, redis, tmp_path, provider
    )
    claims = await asyncio.gather(*(dlq.claim(pg_pool, other.id) for _ in range(10)))
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].status == "processing" and won[0].claimed_from == "pending"
    # A claimed entry is nobody else's: not due, not claimable, not retryable by id.
    assert await dlq.claim(pg_pool, other.id) is None
    assert (await retry_id(make_dispatcher("c"), other.id, by="test")).outcome.label == "busy"
    with pytest.raises(ValueError, match="claim it"):
        await retry_entry(make_dispatcher("c"), other, by="test")
    released = await dlq.release(pg_pool, won[0])
    assert released is not None and released.status == "pending"


async def test_stale_processing_entries_are_recovered(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    _, entry = await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)
    assert await dlq.claim(pg_pool, entry.id) is not None  # …and its worker died
    await pg_pool.execute(
        "UPDATE dead_letters SET updated_at = now() - interval '1 hour' WHERE id = $1", entry.id
    )
    retrier = Retrier(dispatcher, providers=[provider], stale_after=timedelta(minutes=5))
    report = await retrier.run_once()
    assert report.recovered >= 1
    back = await dlq.get_entry(pg_pool, entry.id)
    assert back is not None and back.status in ("pending", "completed")


async def test_operator_resolve_and_close(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    event, entry = await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)
    closed = await dlq.operator_settle(pg_pool, entry.id, "failed", note="customer left", by="t")
    assert closed is not None and closed.status == "failed" and closed.next_attempt_at is None
    assert closed.last_error is not None and "operator: customer left" in closed.last_error
    # failed → resolvable (handled another way), not closable again
    assert await dlq.operator_settle(pg_pool, entry.id, "failed", note="again", by="t") is None
    resolved = await dlq.operator_settle(pg_pool, entry.id, "completed", note="phoned", by="t")
    assert resolved is not None and resolved.status == "completed"
    assert await dlq.operator_settle(pg_pool, entry.id, "completed", note="x", by="t") is None
    rows = await pg_pool.fetch(
        "SELECT detail FROM audit_log WHERE reference = $1 AND stage = 'resolved' ORDER BY id",
        event.reference,
    )
    assert [(r["detail"]["status"], r["detail"]["note"]) for r in rows] == [
        ("failed", "customer left"),
        ("completed", "phoned"),
    ]
    assert (await retry_id(dispatcher, entry.id, by="t")).outcome.label == "not_retryable:completed"
    assert await siteti.messages(event.reference) == []


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli(
    settings: Settings, siteti: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Awaitable[Any]]]:
    """`bridge …` in-process (a thread of its own: the CLI runs its own event loop), with
    Siteti settings pointing at this module's sandbox."""
    cli_settings = settings.model_copy(
        update={
            "siteti_base_url": siteti.base_url,
            "siteti_api_key": KEY,
            "siteti_signing_secret": SECRET,
            "siteti_rate_limit_per_minute": 100_000,
            "siteti_retry_base_seconds": 0.01,
            "siteti_max_retries": 1,
            "missing_contact_wait_seconds": 0,
        }
    )
    monkeypatch.setattr(cli_dlq, "get_settings", lambda: cli_settings)
    runner = CliRunner()

    async def invoke(*args: str, input: str | None = None) -> Any:
        return await asyncio.to_thread(
            runner.invoke, cli_app, ["dlq", *args], input=input, catch_exceptions=False
        )

    yield invoke


async def test_cli_list_show_retry_resolve_close(
    cli: Callable[..., Awaitable[Any]],
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    made = [
        await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)
        for _ in range(4)
    ]
    ids = [entry.id for _, entry in made]

    result = await cli("list", "--provider", provider, "--json")
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ids
    for line in lines:
        assert line["reference"].startswith(f"{provider}:TX-")
        assert (line["status"], line["reason"], line["retry_count"]) == (
            "pending",
            "siteti_unavailable",
            0,
        )
        assert line["provider"] == provider and line["event_type"] == "payment.successful"
        assert "500" in line["last_error"] and line["created_at"] and line["updated_at"]
    filtered = await cli("list", "--provider", provider, "--reason", "missing_contact", "--json")
    assert filtered.exit_code == 0 and filtered.stdout == ""
    table = await cli("list", "--provider", provider, "--status", "pending", "--newer-than", "1h")
    assert table.exit_code == 0 and f"{len(ids)} entries" in table.stdout
    bad = await cli("list", "--older-than", "soonish")
    assert bad.exit_code == 2

    shown = await cli("show", str(ids[0]), "--json")
    assert shown.exit_code == 0
    detail = orjson.loads(shown.stdout)
    assert detail["payload"]["subject"] == made[0][0].reference
    assert [h["stage"] for h in detail["history"]] == ["received", "dead_lettered"]
    text = await cli("show", str(ids[0]))
    assert text.exit_code == 0 and "dead_lettered" in text.stdout
    assert (await cli("show", "999999999999")).exit_code == 1

    one = await cli("retry", str(ids[0]))
    assert one.exit_code == 0, one.output
    assert one.stdout.startswith(f"ok   {ids[0]} ({made[0][0].reference}): sent")
    assert len(await siteti.messages(made[0][0].reference)) == 1
    mixed = await cli("retry", str(ids[0]), "999999999999")
    assert mixed.exit_code == 1
    assert "already completed" in mixed.stdout and "no such entry" in mixed.stdout

    # Bulk: asks first; no answer, no retry.
    declined = await cli("retry", "--provider", provider, "--status", "pending", input="n\n")
    assert declined.exit_code == 1
    for event, _ in made[1:]:
        assert await siteti.messages(event.reference) == []
    closed = await cli("close", str(ids[3]), "--note", "duplicate payment, refunded")
    assert closed.exit_code == 0 and "closed; now failed" in closed.stdout
    bulk = await cli("retry", "--provider", provider, "--status", "pending", "--yes")
    assert bulk.exit_code == 0, bulk.output
    assert "2 ok, 0 failed" in bulk.stdout
    for event, _ in made[:3]:
        assert len(await siteti.messages(event.reference)) == 1
    assert await siteti.messages(made[3][0].reference) == []

    resolved = await cli("resolve", str(ids[3]), "--note", "customer called")
    assert resolved.exit_code == 0 and "resolved; now completed" in resolved.stdout
    again = await cli("close", str(ids[3]), "--note", "too late")
    assert again.exit_code == 1 and "it is completed" in again.stdout
    assert (await cli("retry")).exit_code == 2  # neither ids nor filters
    assert (await cli("retry", "1", "--status", "pending")).exit_code == 2
    statuses = await pg_pool.fetch(
        "SELECT status, count(*) AS n FROM dead_letters WHERE provider = $1 GROUP BY 1", provider
    )
    assert {r["status"]: r["n"] for r in statuses} == {"completed": 4}


# --- the admin API (the real faust pages, served by aiohttp's test server) -----------------


Client = TestClient[Any, Any]
MakeAdmin = Callable[[list[str]], Awaitable[Client]]


class _Runtime:
    def __init__(self, pool: asyncpg.Pool, dispatcher: Dispatcher) -> None:
        self.pool = pool
        self.dispatcher = dispatcher


@pytest_asyncio.fixture
async def admin(
    make_dispatcher: MakeDispatcher, pg_pool: asyncpg.Pool, tmp_path: Path, settings: Settings
) -> AsyncIterator[MakeAdmin]:
    clients: list[Client] = []
    runtime = _Runtime(pg_pool, make_dispatcher("api"))

    async def get_runtime() -> _Runtime:
        return runtime

    async def make(admin_tokens: list[str]) -> Client:
        """The pages with ADMIN_API_TOKENS (engineering) only; test_access.py covers roles."""
        app = faust.App(
            f"dlq-admin-test-{uuid.uuid4().hex[:6]}",
            broker="kafka://127.0.0.1:9",  # never started: only its web pages are used
            web_port=8002,
            datadir=str(tmp_path / "faust"),
        )
        tokens = {"api_tokens": [], "admin_api_tokens": admin_tokens}
        register_admin(app, get_runtime, settings.model_copy(update=tokens))
        client: Client = TestClient(TestServer(cast(Any, app.web).web_app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_admin_api_auth(admin: MakeAdmin) -> None:
    disabled = await admin([])
    response = await disabled.get("/dlq", headers={"Authorization": f"Bearer {TOKEN}"})
    body = await response.json(content_type=None)
    assert problem_detail(503, response.content_type, body) == DISABLED

    api = await admin(["old-token", TOKEN])
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        for method, path in (("GET", "/dlq"), ("GET", "/dlq/1"), ("POST", "/dlq/1/retry"),
                             ("POST", "/dlq/1/resolve"), ("POST", "/dlq/1/close"),
                             ("POST", "/dlq/retry")):  # fmt: skip
            response = await api.request(method, path, headers=headers, json={"note": "x"})
            assert response.status == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await api.get("/dlq", headers={"Authorization": "Bearer old-token"})).status == 200


async def test_admin_api_pages(
    admin: MakeAdmin,
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    dispatcher = make_dispatcher()
    made = [
        await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)
        for _ in range(4)
    ]
    ids = [entry.id for _, entry in made]
    api = await admin([TOKEN])
    auth = {"Authorization": f"Bearer {TOKEN}"}

    response = await api.get("/dlq", params={"provider": provider, "limit": "3"}, headers=auth)
    assert response.status == 200
    listed = await response.json()
    assert [e["id"] for e in listed["entries"]] == ids[:3] and listed["count"] == 3
    assert set(listed["entries"][0]) >= {"id", "reference", "status", "reason", "retry_count"}
    response = await api.get("/dlq", params={"status": "bogus"}, headers=auth)
    assert response.status == 400

    response = await api.get(f"/dlq/{ids[0]}", headers=auth)
    assert response.status == 200
    detail = await response.json()
    assert detail["reference"] == made[0][0].reference
    assert [h["stage"] for h in detail["history"]] == ["received", "dead_lettered"]
    assert (await api.get("/dlq/999999999999", headers=auth)).status == 404
    assert (await api.get("/dlq/abc", headers=auth)).status == 404

    response = await api.post(f"/dlq/{ids[0]}/retry", headers=auth)
    assert response.status == 200
    body = await response.json()
    assert (body["outcome"], body["ok"], body["entry"]["status"]) == ("sent", True, "completed")
    assert len(await siteti.messages(made[0][0].reference)) == 1
    response = await api.post(f"/dlq/{ids[0]}/retry", headers=auth)
    assert response.status == 200 and (await response.json())["outcome"] == (
        "not_retryable:completed"
    )
    assert (await api.post("/dlq/999999999999/retry", headers=auth)).status == 404

    response = await api.post(f"/dlq/{ids[1]}/close", headers=auth)
    assert response.status == 400  # a note is required
    response = await api.post(f"/dlq/{ids[1]}/close", headers=auth, data=b"{not json")
    assert response.status == 400
    response = await api.post(f"/dlq/{ids[1]}/close", headers=auth, json={"note": "refunded"})
    assert response.status == 200 and (await response.json())["entry"]["status"] == "failed"
    response = await api.post(f"/dlq/{ids[1]}/close", headers=auth, json={"note": "again"})
    assert response.status == 409
    response = await api.post(f"/dlq/{ids[1]}/resolve", headers=auth, json={"note": "paid"})
    assert response.status == 200 and (await response.json())["entry"]["status"] == "completed"
    assert await siteti.messages(made[1][0].reference) == []

    response = await api.post("/dlq/retry", headers=auth, json={})
    assert response.status == 400  # a bulk retry needs a filter
    response = await api.post(
        "/dlq/retry", headers=auth, json={"provider": provider, "status": "pending"}
    )
    assert response.status == 200
    bulk = await response.json()
    assert (bulk["matched"], bulk["sent"], bulk["failed"]) == (2, 2, 0)
    assert sorted(r["id"] for r in bulk["results"]) == ids[2:]
    for event, _ in made[2:]:
        assert len(await siteti.messages(event.reference)) == 1


async def test_admin_handlers_directly(
    make_dispatcher: MakeDispatcher,
    siteti: Sandbox,
    pg_pool: asyncpg.Pool,
    redis: Redis,
    tmp_path: Path,
    provider: str,
) -> None:
    """The same logic without HTTP: what the pages wrap."""
    dispatcher = make_dispatcher()
    event, entry = await unavailable_entry(dispatcher, siteti, pg_pool, redis, tmp_path, provider)
    runtime = _Runtime(pg_pool, dispatcher)

    async def get_runtime() -> _Runtime:
        return runtime

    api = AdminAPI(get_runtime, Tokens.parse([], [TOKEN]))
    listed = await api.list_entries({"provider": provider, "reason": "siteti_unavailable"})
    assert listed.status == 200 and [e["id"] for e in listed.body["entries"]] == [entry.id]
    claimed = await dlq.claim(pg_pool, entry.id)
    assert claimed is not None
    busy = await api.retry(str(entry.id))
    assert busy.status == 409 and busy.body["outcome"] == "busy"
    await dlq.release(pg_pool, claimed)
    sent = await api.retry(str(entry.id))
    assert sent.status == 200 and sent.body["outcome"] == "sent"
    assert len(await siteti.messages(event.reference)) == 1
