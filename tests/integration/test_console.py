"""The operations console's routes over real HTTP: the console under uvicorn, calling the real
admin pages (the dispatcher's faust web app on aiohttp's test server) and the real receipts
service, over a PostgreSQL database of the module's own and the stack's Redis.

Sign-in and sign-out, roles (an analyst is refused every page but health), CSRF on every
form, masking kept as the APIs give it, a bulk job to the end, and readable pages when a
backend is away.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bridge import audit
from bridge.config import Settings
from bridge.events import Customer, EventData, new_event
from bridge.protect import data_keys
from console.app import create_app as create_console
from console.sessions import COOKIE
from dispatcher import dlq
from dispatcher.outcomes import DeadLettered
from receipts.app import create_app as create_receipts
from tests.conftest import free_port
from tests.integration.test_admin_hostile import (  # noqa: F401 (fixtures)
    Client,
    admin_pages,
    database_url,
    pool,
)
from tests.serving import running

pytestmark = pytest.mark.integration

SUPPORT = "support-token-for-console-tests"
ANALYST = "analyst-token-for-console-tests"
PHONE = "+2348031234567"
PROVIDER = "consoletest"


def with_tokens(settings: Settings, **update: Any) -> Settings:
    tokens = [f"support:{SUPPORT}", f"analyst:{ANALYST}"]
    return settings.model_copy(update={"api_tokens": tokens, "admin_api_tokens": [], **update})


@dataclass(frozen=True)
class Stored:
    entry: int  # missing_contact, its number sealed, with an audit trail
    reference: str
    others: tuple[int, int]  # two more, for a bulk job


async def put(pool: asyncpg.Pool, phone: str | None = None) -> tuple[int, str]:  # noqa: F811
    data = EventData(
        provider=PROVIDER,
        transaction_reference=f"TX-{uuid.uuid4().hex[:10]}",
        amount=Decimal("5000.00"),
        customer=Customer(account_number="0123456789", name="Ada Obi", phone=phone),
    )
    event = new_event(data, "payment.successful")
    outcome = DeadLettered("missing_contact", "manual_review", "no phone number")
    return await dlq.put(pool, event, outcome, "hash"), event.reference


@pytest_asyncio.fixture(scope="module")
async def stored(pool: asyncpg.Pool, settings: Settings) -> Stored:  # noqa: F811
    entry, reference = await put(pool, data_keys(settings).seal(PHONE, "phone"))
    await audit.record_now(pool, reference=reference, stage="received", source="ingest", detail={})
    first, _ = await put(pool)
    second, _ = await put(pool)
    return Stored(entry, reference, (first, second))


@pytest_asyncio.fixture(scope="module")
async def console_url(
    pool: asyncpg.Pool,  # noqa: F811
    database_url: str,  # noqa: F811
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    configured = with_tokens(settings, database_url=database_url)
    async with (
        admin_pages(pool, configured, tmp_path_factory.mktemp("faust")) as admin,
        running(create_receipts(configured)) as receipts_url,
    ):
        console = create_console(
            configured.model_copy(
                update={
                    "console_admin_url": str(admin.make_url("")).rstrip("/"),
                    "console_receipts_url": receipts_url,
                    "console_ingest_url": f"http://127.0.0.1:{free_port()}",  # nobody there
                }
            )
        )
        async with running(console) as url:
            yield url


@pytest_asyncio.fixture
async def anonymous(console_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_url, timeout=30) as client:
        yield client


async def signed_in(console_url: str, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=console_url, timeout=30)
    answer = await client.post("/signin", data={"token": token})
    assert answer.status_code == 303, answer.text
    return client


@pytest_asyncio.fixture
async def support(console_url: str) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(console_url, SUPPORT)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def analyst(console_url: str) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(console_url, ANALYST)
    yield client
    await client.aclose()


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


async def entry_status(pool: asyncpg.Pool, entry_id: int) -> str:  # noqa: F811
    return str(await pool.fetchval("SELECT status FROM dead_letters WHERE id = $1", entry_id))


# --- sign-in ------------------------------------------------------------------------------


async def test_pages_need_a_sign_in(anonymous: httpx.AsyncClient) -> None:
    for path in ("/dlq", "/health", "/story?reference=x", "/dlq/1"):
        answer = await anonymous.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/signin?next=")


async def test_an_unknown_token_is_refused(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.post("/signin", data={"token": "not-a-token-anyone-has"})
    assert answer.status_code == 401
    assert "not known" in answer.text
    assert COOKIE not in answer.cookies
    assert (await anonymous.post("/signin", data={"token": ""})).status_code == 401


async def test_sign_in_keeps_no_token_in_clear(
    console_url: str, redis_client: Redis, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=console_url, timeout=30) as client:
        answer = await client.post("/signin", data={"token": SUPPORT, "next": "/health"})
        assert answer.status_code == 303 and answer.headers["location"] == "/health"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        session_id = answer.cookies[COOKIE].partition(".")[0]
        stored = [
            v
            async for key in redis_client.scan_iter("console:session:*")
            for v in (await redis_client.hgetall(key)).values()
        ]
        assert stored and not any(SUPPORT.encode() in v for v in stored)
        assert not [k async for k in redis_client.scan_iter(f"*{session_id}*")]


async def test_never_redirects_off_the_console(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.post("/signin", data={"token": SUPPORT, "next": "//evil.example"})
    assert answer.headers["location"] == "/dlq"


async def test_sign_out_ends_the_session(console_url: str) -> None:
    client = await signed_in(console_url, SUPPORT)
    try:
        page = await client.get("/dlq")
        cookie = client.cookies[COOKIE]
        answer = await client.post("/signout", data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 303 and answer.headers["location"] == "/signin"
        # The old cookie, replayed, is signed out too (its Redis entry is gone).
        client.cookies.set(COOKIE, cookie)
        replay = await client.get("/dlq")
        assert replay.status_code == 303
    finally:
        await client.aclose()


# --- roles --------------------------------------------------------------------------------


async def test_analysts_see_health_only(analyst: httpx.AsyncClient, stored: Stored) -> None:
    home = await analyst.get("/")
    assert home.headers["location"] == "/health"
    health = await analyst.get("/health")
    assert health.status_code == 200
    assert "manual_review" in health.text  # the dead-letter counts (aggregates)
    for path in ("/dlq", f"/dlq/{stored.entry}", f"/story?reference={stored.reference}"):
        refused = await analyst.get(path)
        assert refused.status_code == 403, path
        assert "aggregates only" in refused.text
        assert stored.reference not in refused.text


async def test_support_works_on_dead_letters(support: httpx.AsyncClient, stored: Stored) -> None:
    listed = await support.get(
        "/dlq", params={"reason": "missing_contact", "provider": PROVIDER, "age": "newer_than:1h"}
    )
    assert listed.status_code == 200
    assert stored.reference in listed.text
    detail = await support.get(f"/dlq/{stored.entry}")
    assert detail.status_code == 200
    assert "•••4567" in detail.text  # masked as the admin API gives it
    assert PHONE not in detail.text and PHONE[1:] not in detail.text
    assert "received" in detail.text  # the audit timeline


async def test_the_story_of_a_reference(support: httpx.AsyncClient, stored: Stored) -> None:
    story = await support.get("/story", params={"reference": stored.reference})
    assert story.status_code == 200
    assert f'href="/dlq/{stored.entry}"' in story.text
    assert "received" in story.text and "Found in" in story.text
    unknown = await support.get("/story", params={"reference": "nowhere:NOPE"})
    assert unknown.status_code == 200 and "Nothing is known" in unknown.text


# --- forms --------------------------------------------------------------------------------


async def test_forms_without_their_csrf_token_are_refused(
    support: httpx.AsyncClient,
    stored: Stored,
    pool: asyncpg.Pool,  # noqa: F811
) -> None:
    path = f"/dlq/{stored.entry}/resolve"
    for data in ({"note": "x"}, {"note": "x", "csrf": "0" * 64}):
        answer = await support.post(path, data=data)
        assert answer.status_code == 403
        assert "did not come from the console" in answer.text
    bulk = await support.post("/dlq/bulk", data={"action": "close", "note": "x", "id": "1"})
    assert bulk.status_code == 403
    assert await entry_status(pool, stored.entry) == "manual_review"


async def test_an_action_refused_by_the_api_is_explained(
    support: httpx.AsyncClient, stored: Stored
) -> None:
    page = await support.get(f"/dlq/{stored.entry}")
    # resolve without a note: the admin API's 400, shown on the entry's page.
    answer = await support.post(
        f"/dlq/{stored.entry}/resolve", data={"csrf": csrf_of(page.text), "note": ""}
    )
    assert answer.status_code == 303
    after = await support.get(answer.headers["location"])
    assert "Resolve refused" in after.text and "note" in after.text


async def test_a_bulk_close_runs_as_a_job(
    support: httpx.AsyncClient,
    stored: Stored,
    pool: asyncpg.Pool,  # noqa: F811
) -> None:
    page = await support.get("/dlq")
    data = {
        "csrf": csrf_of(page.text),
        "action": "close",
        "note": "duplicates of a test payment",
        "id": [str(i) for i in stored.others],
    }
    started = await support.post("/dlq/bulk", data=data)
    assert started.status_code == 303 and started.headers["location"].startswith("/jobs/")
    job_url = started.headers["location"]
    assert (await support.get(job_url)).status_code == 200
    for _ in range(200):
        state = (await support.get(job_url + ".json")).json()
        if state["finished"]:
            break
        await asyncio.sleep(0.1)
    assert state == {**state, "total": 2, "done": 2, "failed": 0, "finished": True}
    assert [await entry_status(pool, i) for i in stored.others] == ["failed", "failed"]
    # Closing them again fails per entry, and the job page says why.
    again = await support.post("/dlq/bulk", data=data)
    for _ in range(200):
        state = (await support.get(again.headers["location"] + ".json")).json()
        if state["finished"]:
            break
        await asyncio.sleep(0.1)
    assert state["failed"] == 2
    assert (
        "only pending, manual_review entries" in (await support.get(again.headers["location"])).text
    )


async def test_a_bulk_job_needs_entries_and_a_note(support: httpx.AsyncClient) -> None:
    page = await support.get("/dlq")
    answer = await support.post(
        "/dlq/bulk", data={"csrf": csrf_of(page.text), "action": "resolve", "id": "1"}
    )
    assert answer.status_code == 303
    after = await support.get(answer.headers["location"])
    assert "Nothing started" in after.text


# --- backends -----------------------------------------------------------------------------


async def test_health_shows_what_it_can(support: httpx.AsyncClient) -> None:
    health = await support.get("/health")
    assert health.status_code == 200
    assert "ingest /metrics is unreachable" in health.text  # nobody on its port: a banner
    assert "Dead letters by status and reason" in health.text


async def test_an_unreachable_admin_api_is_a_banner(settings: Settings, stored: Stored) -> None:
    console = create_console(
        with_tokens(settings, console_admin_url=f"http://127.0.0.1:{free_port()}")
    )
    async with running(console) as url:
        client = await signed_in(url, SUPPORT)
        try:
            listed = await client.get("/dlq")
            assert listed.status_code == 502
            assert "dispatcher admin API is unreachable" in listed.text
            assert "Traceback" not in listed.text
            entry = await client.get(f"/dlq/{stored.entry}")
            assert entry.status_code == 502 and "unreachable" in entry.text
        finally:
            await client.aclose()


async def test_pages_carry_security_headers(support: httpx.AsyncClient) -> None:
    answer = await support.get("/dlq")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
