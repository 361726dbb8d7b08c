"""Least privilege on the read APIs (issue 9): every endpoint family, every role, no token and
a bad token, over real HTTP (receipts under uvicorn, the dispatcher's faust pages on aiohttp's
test server) against a PostgreSQL database of the module's own.

- `support` and `engineering` (and ADMIN_API_TOKENS, which act as engineering) investigate,
  and never see more of a customer's number than its last four digits;
- `analyst` sees aggregates only (/audit/stats, /dlq/stats) and is refused (403) the rest;
- a missing or unknown token is 401 with `WWW-Authenticate: Bearer`; no token configured at
  all turns the API off (503).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import pytest_asyncio

from bridge import audit
from bridge.access import ENGINEERING, EVERYONE, INVESTIGATORS, Tokens, refusal, shown_event
from bridge.config import Settings
from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.protect import DataKeys, data_keys, new_key_entry
from dispatcher import dlq
from dispatcher.admin import DISABLED
from dispatcher.outcomes import DeadLettered
from receipts.app import DISABLED as AUDIT_DISABLED
from receipts.app import create_app
from tests.integration.test_admin_hostile import (  # noqa: F401 (fixtures)
    Client,
    admin_pages,
    database_url,
    pool,
)
from tests.problem_tools import problem_detail
from tests.serving import running

pytestmark = pytest.mark.integration

SUPPORT = "support-token-for-access-tests"
ENGINEER = "engineering-token-for-access-tests"
ANALYST = "analyst-token-for-access-tests"
LEGACY = "legacy-admin-token"  # ADMIN_API_TOKENS: engineering
PHONE = "+2348031234567"  # sealed in the stored event
OLD_PHONE = "08039876543"  # clear: a row written before numbers were sealed
RAW_PHONE = "08031112222"  # in a record that was not an event at all
PROVIDER = "accesstest"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Who calls, with what header; and which of them may read one transaction's story.
CALLERS: dict[str, dict[str, str]] = {
    "support": bearer(SUPPORT),
    "engineering": bearer(ENGINEER),
    "legacy admin": bearer(LEGACY),
    "analyst": bearer(ANALYST),
    "no token": {},
    "unknown token": bearer("not-a-token-anyone-configured"),
    "basic scheme": {"Authorization": f"Basic {SUPPORT}"},
}
INVESTIGATING = {"support", "engineering", "legacy admin"}
UNAUTHENTICATED = {"no token", "unknown token", "basic scheme"}


def with_tokens(settings: Settings, **update: Any) -> Settings:
    tokens = {
        "api_tokens": [f"support:{SUPPORT}", f"engineering:{ENGINEER}", f"analyst:{ANALYST}"],
        "admin_api_tokens": [LEGACY],
    }
    return settings.model_copy(update={**tokens, **update})


def assert_answer(caller: str, allowed: bool, ok: int, response_status: int, body: Any) -> None:
    """The status `caller` must get from an endpoint it is (not) `allowed` to use."""
    if caller in UNAUTHENTICATED:
        assert response_status == 401, (caller, body)
        assert body["detail"] in ("missing bearer token", "invalid bearer token")
    elif allowed:
        assert response_status == ok, (caller, body)
    else:
        assert response_status == 403, (caller, body)
        assert body["status"] == 403 and body["type"].endswith("#forbidden")
        assert "analyst" in body["detail"] and "aggregates only" in body["detail"]


# --- the stored data --------------------------------------------------------------------


@dataclass(frozen=True)
class Story:
    """What the module's database holds: dead letters (ids) whose payloads carry numbers."""

    sealed: int
    clear: int
    foreign: int  # sealed under a key no longer listed
    raw: int  # a record that was not an event
    reference: str  # the sealed one's, with a Siteti receipt trail too


def event_with_phone(phone: str) -> CanonicalEvent:
    data = EventData(
        provider=PROVIDER,
        transaction_reference=f"TX-{uuid.uuid4().hex[:10]}",
        amount=Decimal("5000.00"),
        customer=Customer(account_number="0123456789", name="Ada Obi", phone=phone),
    )
    return new_event(data, "payment.successful")


async def dead_letter(
    db: asyncpg.Pool, phone: str, reason: str = "siteti_unavailable"
) -> tuple[int, str]:
    event = event_with_phone(phone)
    entry_id = await dlq.put(db, event, DeadLettered(reason, "pending", "boom"), "hash")
    return entry_id, event.reference


@pytest_asyncio.fixture(scope="module")
async def story(pool: asyncpg.Pool, settings: Settings) -> Story:  # noqa: F811
    keys = data_keys(settings)
    # A key nobody lists any more: what it sealed cannot be opened.
    gone = DataKeys.parse([new_key_entry("gone")], base64.b64encode(os.urandom(32)).decode())
    sealed, reference = await dead_letter(pool, keys.seal(PHONE, "phone"))
    clear, _ = await dead_letter(pool, OLD_PHONE)
    foreign, _ = await dead_letter(pool, gone.seal(PHONE, "phone"))
    value = f'{{"subject": "{PROVIDER}:RAW", "note": "call {RAW_PHONE}"'.encode()
    raw = await dlq.put_record(pool, dlq.RecordPosition("events", 0, 7, None, value), "not JSON")
    for stage in ("sent", "delivered"):
        await audit.record_now(pool, reference=reference, stage=stage, source="receipts", detail={})
    return Story(sealed, clear, foreign, raw, reference)


@pytest_asyncio.fixture(scope="module")
async def dispatcher_pages(
    pool: asyncpg.Pool,  # noqa: F811
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Client]:
    async with admin_pages(pool, with_tokens(settings), tmp_path_factory.mktemp("f")) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def receipts(
    database_url: str,  # noqa: F811
    settings: Settings,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(with_tokens(settings, database_url=database_url))
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def page(api: Client, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
    response = await api.request(method, path, headers=headers, **kw)
    text = await response.text()
    return response, text, orjson.loads(text)


# --- the pure parts ---------------------------------------------------------------------


def test_refusal_says_who_may_do_what() -> None:
    tokens = Tokens.parse([f"support:{SUPPORT}", f"analyst:{ANALYST}"], [LEGACY])
    assert refusal(tokens, f"Bearer {SUPPORT}", INVESTIGATORS, "off") is None
    assert refusal(tokens, f"bearer  {LEGACY} ", ENGINEERING, "off") is None
    assert refusal(tokens, f"Bearer {ANALYST}", EVERYONE, "off") is None
    denied = refusal(tokens, f"Bearer {SUPPORT}", ENGINEERING, "off")
    assert denied is not None and denied.status == 403 and denied.headers == {}
    assert denied.message == "the support role may not do this; it needs engineering"
    for header, message in ((None, "missing"), ("Basic x", "missing"), ("Bearer x", "invalid")):
        denied = refusal(tokens, header, EVERYONE, "off")
        assert denied is not None and denied.status == 401 and message in denied.message
        assert denied.headers == {"WWW-Authenticate": "Bearer"}
    # Header bytes that are not UTF-8 reach the app as surrogates: unknown, not a crash.
    denied = refusal(tokens, "Bearer \udcff\ud800", EVERYONE, "off")
    assert denied is not None and denied.status == 401
    off = refusal(Tokens.parse([], [""]), f"Bearer {SUPPORT}", EVERYONE, "off")
    assert off is not None and (off.status, off.message) == (503, "off")


def test_shown_event_masks_the_customer_number(settings: Settings) -> None:
    keys = data_keys(settings)
    gone = DataKeys.parse([new_key_entry("gone")], base64.b64encode(os.urandom(32)).decode())

    def shown(phone: Any, with_keys: DataKeys | None = keys) -> Any:
        payload = {"id": "e", "data": {"amount": "5", "customer": {"name": "A", "phone": phone}}}
        return shown_event(payload, with_keys)["data"]["customer"]["phone"]

    assert shown(keys.seal(PHONE, "phone")) == "•••4567"
    assert shown(OLD_PHONE) == "•••6543"
    assert shown(2348031234567) == "•••4567"  # a number where text belonged: masked all the same
    assert shown(gone.seal(PHONE, "phone")) == "sealed"  # a key no longer listed
    assert shown(keys.seal(PHONE, "phone"), None) == "sealed"  # no keys here at all
    assert shown("n/a") == "•••"
    raw = shown_event({"raw": f"call {RAW_PHONE} now", "offset": 7}, keys)
    assert RAW_PHONE not in raw["raw"] and raw["offset"] == 7
    for untouched in ({"data": {"customer": {"email": "a@b.c"}}}, {"data": 1}, ["x"], None):
        assert shown_event(untouched, keys) == untouched


# --- the dispatcher's dead-letter API ---------------------------------------------------


async def test_dead_letter_pages_by_role(dispatcher_pages: Client, story: Story) -> None:
    missing = 9_000_000_000
    note = {"json": {"note": "checked"}}
    # (method, path, investigators only?, the status an allowed caller gets, request extras)
    routes: list[tuple[str, str, bool, int, dict[str, Any]]] = [
        ("GET", "/dlq/stats", False, 200, {}),
        ("GET", f"/dlq?provider={PROVIDER}", True, 200, {}),
        ("GET", f"/dlq/{story.clear}", True, 200, {}),
        ("POST", f"/dlq/{missing}/retry", True, 404, {}),
        ("POST", f"/dlq/{missing}/resolve", True, 404, note),
        ("POST", f"/dlq/{missing}/close", True, 404, note),
        ("POST", "/dlq/retry", True, 200, {"json": {"provider": "no-such-provider"}}),
    ]
    for caller, headers in CALLERS.items():
        for method, path, investigators_only, ok, extra in routes:
            response, _, body = await page(dispatcher_pages, method, path, headers, **extra)
            allowed = caller in INVESTIGATING or not investigators_only
            assert_answer(caller, allowed, ok, response.status, body)
            if response.status == 401:
                assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_support_and_engineering_settle_entries(
    dispatcher_pages: Client,
    pool: asyncpg.Pool,  # noqa: F811
) -> None:
    resolved, _ = await dead_letter(pool, OLD_PHONE, reason="template_not_approved")
    closed, _ = await dead_letter(pool, OLD_PHONE, reason="template_not_approved")
    note = {"note": "handled by hand"}
    response = await dispatcher_pages.post(
        f"/dlq/{resolved}/resolve", headers=bearer(SUPPORT), json=note
    )
    assert response.status == 200 and (await response.json())["entry"]["status"] == "completed"
    response = await dispatcher_pages.post(
        f"/dlq/{closed}/close", headers=bearer(ENGINEER), json=note
    )
    assert response.status == 200 and (await response.json())["entry"]["status"] == "failed"
    # A completed entry is not retried again, whoever asks.
    response = await dispatcher_pages.post(f"/dlq/{resolved}/retry", headers=bearer(SUPPORT))
    assert response.status == 200
    assert (await response.json())["outcome"] == "not_retryable:completed"


async def test_investigators_see_the_last_four_digits_at_most(
    dispatcher_pages: Client, story: Story
) -> None:
    expected = {story.sealed: "•••4567", story.clear: "•••6543", story.foreign: "sealed"}
    for caller in ("support", "engineering"):
        for entry_id, phone in expected.items():
            response, text, body = await page(
                dispatcher_pages, "GET", f"/dlq/{entry_id}", CALLERS[caller]
            )
            assert response.status == 200, text
            assert body["payload"]["data"]["customer"]["phone"] == phone
            assert body["payload"]["data"]["customer"]["name"] == "Ada Obi"  # the rest is there
            for digits in ("8031234567", "8039876543", "enc:"):
                assert digits not in text, (caller, entry_id)
        response, text, body = await page(
            dispatcher_pages, "GET", f"/dlq/{story.raw}", CALLERS[caller]
        )
        assert response.status == 200 and "8031112222" not in text
        assert body["payload"]["topic"] == "events"  # where it was read, still shown


async def test_analysts_get_dead_letter_counts_only(dispatcher_pages: Client, story: Story) -> None:
    response, text, body = await page(dispatcher_pages, "GET", "/dlq/stats", CALLERS["analyst"])
    assert response.status == 200, text
    assert body["by_reason"]["siteti_unavailable"] == 3
    assert body["by_reason"]["unprocessable"] == 1
    assert {"status": "pending", "reason": "siteti_unavailable", "count": 3} in body[
        "by_status_and_reason"
    ]
    assert body["total"] == sum(body["by_status"].values()) == sum(body["by_reason"].values())
    assert body["window_seconds"] is None
    assert story.reference not in text and PROVIDER not in text and "•••" not in text
    # A window: everything here was made in the last hour, nothing is older than the window.
    _, _, hour = await page(dispatcher_pages, "GET", "/dlq/stats?newer_than=1h", CALLERS["analyst"])
    assert hour["window_seconds"] == 3600 and hour["total"] == body["total"]
    response, _, bad = await page(
        dispatcher_pages, "GET", "/dlq/stats?newer_than=soon", CALLERS["analyst"]
    )
    assert "duration" in problem_detail(400, response.content_type, bad)


async def test_without_tokens_the_dead_letter_api_is_off(
    pool: asyncpg.Pool,  # noqa: F811
    settings: Settings,
    tmp_path: Path,
) -> None:
    off = settings.model_copy(update={"api_tokens": [], "admin_api_tokens": []})
    async with admin_pages(pool, off, tmp_path) as api:
        for path in ("/dlq/stats", "/dlq", "/dlq/1"):
            response, _, body = await page(api, "GET", path, bearer(SUPPORT))
            assert problem_detail(response.status, response.content_type, body) == DISABLED
            assert response.status == 503


# --- receipts' audit API ----------------------------------------------------------------


async def test_audit_endpoints_by_role(receipts: httpx.AsyncClient, story: Story) -> None:
    for caller, headers in CALLERS.items():
        response = await receipts.get(f"/audit/{story.reference}", headers=headers)
        assert_answer(caller, caller in INVESTIGATING, 200, response.status_code, response.json())
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
        response = await receipts.get("/audit/stats", headers=headers)
        assert_answer(caller, True, 200, response.status_code, response.json())
    trail = (await receipts.get(f"/audit/{story.reference}", headers=bearer(SUPPORT))).json()
    assert [e["stage"] for e in trail["events"]] == ["dead_lettered", "sent", "delivered"]
    # The token is checked before anything else: a caller without one learns nothing more.
    assert (await receipts.get("/audit/stats?hours=0")).status_code == 401
    assert (await receipts.get("/audit/a%00b")).status_code == 401


async def test_analysts_get_audit_counts_only(receipts: httpx.AsyncClient, story: Story) -> None:
    response = await receipts.get("/audit/stats", headers=bearer(ANALYST))
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["window_hours"] == 24
    assert stats["stages"]["sent"] == {"events": 1, "transactions": 1}
    assert stats["stages"]["delivered"] == {"events": 1, "transactions": 1}
    assert stats["stages"]["dead_lettered"]["events"] >= 4
    assert list(stats["stages"]).index("dead_lettered") < list(stats["stages"]).index("sent")
    assert stats["events"] == sum(s["events"] for s in stats["stages"].values())
    assert story.reference not in response.text and PROVIDER not in response.text
    response = await receipts.get("/audit/stats?hours=1", headers=bearer(ANALYST))
    assert response.json()["window_hours"] == 1 and response.json()["stages"] == stats["stages"]
    assert (await receipts.get("/audit/stats?hours=0", headers=bearer(ANALYST))).status_code == 422


async def test_without_tokens_the_audit_api_is_off(database_url: str, settings: Settings) -> None:  # noqa: F811
    off = settings.model_copy(
        update={"api_tokens": [], "admin_api_tokens": [], "database_url": database_url}
    )
    async with running(create_app(off)) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("/audit/stats", "/audit/moniepoint:X"):
            response = await client.get(path, headers=bearer(SUPPORT))
            content_type = response.headers["content-type"]
            assert response.status_code == 503
            assert problem_detail(503, content_type, response.json()) == AUDIT_DISABLED
