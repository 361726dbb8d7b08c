"""The Siteti sandbox over real HTTP: uvicorn on a free port, requests signed like the bridge
signs them, and a second tiny app that receives (and verifies) the outbound webhooks.
Needs no Kafka, Redis or PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request, Response

from bridge.signing import SignatureError, sign_siteti_request, verify_siteti_webhook
from siteti_sandbox import SandboxConfig, create_app
from siteti_sandbox.testing import serve_app

ACCOUNT = "acc_test"
BASE_PATH = f"/v2.6/accounts/{ACCOUNT}"
KEY, OTHER_KEY = "sk_test_1", "sk_test_2"
SECRET = "signing_secret_test"
# Two webhook secrets, as during a rotation; the receiver only knows the new one.
WEBHOOK_SECRETS = ("webhook_secret_old", "webhook_secret_new")
PHONE = "2348031234567"
VARS = {"customer_name": "Ada Obi", "amount": "₦5,000.00", "trans_ref": "MNP-889900"}
# The contract's independent vectors, beside the repo (read-only, present in CI too).
VECTORS = Path(__file__).resolve().parents[1] / "fixtures/contracts/signature-vectors.json"


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Receiver:
    """The bridge's receipts endpoint, reduced to: verify, store, answer."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_next = 0  # answer 500 to this many deliveries first
        self.app = FastAPI()
        self.app.add_api_route("/hooks", self.hook, methods=["POST"])

    async def hook(self, request: Request) -> Response:
        raw = await request.body()
        if self.fail_next > 0:
            self.fail_next -= 1
            return Response(status_code=500)
        try:
            verify_siteti_webhook(
                request.headers.get("x-siteti-signature"), raw, [WEBHOOK_SECRETS[1]]
            )
        except SignatureError:
            return Response(status_code=401)
        self.events.append(
            {"event_id": request.headers["x-siteti-event-id"], "raw": raw, "body": json.loads(raw)}
        )
        return Response(status_code=200)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async def enough() -> bool:
            return len(self.events) >= count

        await wait_until(enough, timeout)
        return self.events


class Api:
    """Signs like the dispatcher: over base path + path (+ query) and the exact body bytes."""

    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        key: str = KEY,
        secret: str = SECRET,
        timestamp: int | None = None,
        idempotency_key: str | None = None,
        timeout: float = 5.0,
    ) -> httpx.Response:
        content = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json; charset=utf-8",
            "X-Siteti-Timestamp": str(ts),
            "X-Siteti-Signature": sign_siteti_request(
                secret, ts, method, BASE_PATH + path, content
            ),
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return await self.http.request(
            method,
            self.base_url + BASE_PATH + path,
            content=content,
            headers=headers,
            timeout=timeout,
        )

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        response = await self.http.request(method, f"{self.base_url}/_sandbox{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def trigger(self, template: str = "tpl_first_time", **overrides: Any) -> httpx.Response:
        body = {"to": PHONE, "variables": VARS, "reference": "moniepoint:MNP-889900"}
        key = overrides.pop("idempotency_key", None)
        return await self.call(
            "POST", f"/templates/{template}/trigger", {**body, **overrides}, idempotency_key=key
        )


@pytest_asyncio.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    async with serve_app(hooks.app) as url:
        yield hooks, url + "/hooks"


@pytest_asyncio.fixture(scope="module")
async def sandbox_url(receiver: tuple[Receiver, str]) -> AsyncIterator[str]:
    config = SandboxConfig(
        account_id=ACCOUNT,
        api_keys=(KEY, OTHER_KEY),
        signing_secrets=(SECRET,),
        webhook_url=receiver[1],
        webhook_secrets=WEBHOOK_SECRETS,
        delay_sent_seconds=0.02,
        delay_delivered_seconds=0.06,
        delay_read_seconds=0.1,
        webhook_backoff_seconds=0.02,
    )
    async with serve_app(create_app(config)) as url:
        yield url


@pytest_asyncio.fixture
async def api(
    http: httpx.AsyncClient, sandbox_url: str, receiver: tuple[Receiver, str]
) -> AsyncIterator[Api]:
    client = Api(http, sandbox_url)
    await client.control("POST", "/reset")
    receiver[0].events.clear()
    receiver[0].fail_next = 0
    yield client
    await client.control("POST", "/reset")  # also cancels webhooks still queued


@pytest.fixture
def hooks(receiver: tuple[Receiver, str]) -> Receiver:
    return receiver[0]


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# --- signatures and auth ------------------------------------------------------------------


async def test_accepts_the_contract_signature_vector(http: httpx.AsyncClient) -> None:
    vector = next(
        v for v in json.loads(VECTORS.read_text())["vectors"] if v["provider"] == "siteti-request"
    )
    ts = int(vector["headers"]["X-Siteti-Timestamp"])
    account = vector["path"].split("/")[3]
    clock = {"now": float(ts + 120)}  # within the 300 s tolerance
    config = SandboxConfig(
        account_id=account,
        api_keys=(KEY,),
        signing_secrets=(vector["secret"],),
        clock=lambda: clock["now"],
    )
    body = vector["body"].encode()
    async with serve_app(create_app(config)) as url:

        async def send(content: bytes) -> httpx.Response:
            headers = {"Authorization": f"Bearer {KEY}", **vector["headers"]}
            return await http.post(url + vector["path"], content=content, headers=headers)

        accepted = await send(body)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["reference"] == "moniepoint:MNP-889900"

        one_byte_changed = body.replace(b"5,000", b"6,000")
        assert error_code(await send(one_byte_changed)) == "invalid_signature"

        clock["now"] = ts + 301.0
        stale = await send(body)
        assert stale.status_code == 401
        assert error_code(stale) == "invalid_signature"


async def test_auth_failures_are_401_and_logged(api: Api) -> None:
    bad_key = await api.call("GET", "/templates/tpl_first_time", key="sk_revoked")
    assert bad_key.status_code == 401
    assert error_code(bad_key) == "invalid_api_key"
    assert "X-RateLimit-Limit" not in bad_key.headers  # unauthenticated: not counted

    bad_sig = await api.call("GET", "/templates/tpl_first_time", secret="wrong_secret")
    assert bad_sig.status_code == 401
    assert error_code(bad_sig) == "invalid_signature"

    for skew in (-301, 301):
        stale = await api.call(
            "GET", "/templates/tpl_first_time", timestamp=int(time.time()) + skew
        )
        assert stale.status_code == 401
        assert error_code(stale) == "invalid_signature"

    # Rotation: every configured key is accepted.
    assert (await api.call("GET", "/templates/tpl_first_time", key=OTHER_KEY)).status_code == 200

    calls = await api.control("GET", "/calls")
    assert [c["status"] for c in calls] == [401, 401, 401, 401, 200]
    assert [c["seq"] for c in calls] == [1, 2, 3, 4, 5]


async def test_signature_covers_the_query_string(api: Api) -> None:
    response = await api.call("GET", "/templates/tpl_first_time?lang=en")
    assert response.status_code == 200
    calls = await api.control("GET", "/calls", None)
    assert calls[-1]["path"] == BASE_PATH + "/templates/tpl_first_time?lang=en"


async def test_body_over_one_mib_is_413(api: Api) -> None:
    response = await api.call("PUT", "/contacts", raw=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413


async def test_unknown_endpoint_is_404_after_auth(api: Api) -> None:
    response = await api.call("GET", "/nothing/here")
    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert "X-RateLimit-Remaining" in response.headers


# --- contacts -----------------------------------------------------------------------------


async def test_contact_upsert_creates_then_updates(api: Api) -> None:
    first = await api.call("PUT", "/contacts", {"phone": PHONE, "name": "Ada"})
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/json")
    assert first.json()["created"] is True
    assert first.json()["phone"] == PHONE
    contact_id = first.json()["contact_id"]
    assert contact_id.startswith("ct_")

    second = await api.call("PUT", "/contacts", {"phone": PHONE, "name": "Ada Obi"})
    assert second.json() == {"contact_id": contact_id, "phone": PHONE, "created": False}

    contacts = await api.control("GET", "/contacts")
    assert [(c["contact_id"], c["name"]) for c in contacts] == [(contact_id, "Ada Obi")]


@pytest.mark.parametrize(
    "phone",
    ["08031234567", "+2348031234567", "234803123456", "2341031234567", "123456789", "", None, 42],
)
async def test_contact_upsert_rejects_invalid_phone(api: Api, phone: Any) -> None:
    response = await api.call("PUT", "/contacts", {"phone": phone})
    assert response.status_code == 422
    assert error_code(response) == "invalid_phone"


async def test_contact_delete(api: Api) -> None:
    contact_id = (await api.call("PUT", "/contacts", {"phone": PHONE})).json()["contact_id"]
    deleted = await api.call("DELETE", f"/contacts/{contact_id}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    again = await api.call("DELETE", f"/contacts/{contact_id}")
    assert again.status_code == 404
    assert error_code(again) == "contact_not_found"


# --- templates and webhooks ---------------------------------------------------------------


async def test_trigger_queues_and_sends_signed_webhooks(api: Api, hooks: Receiver) -> None:
    contact_id = (await api.call("PUT", "/contacts", {"phone": PHONE})).json()["contact_id"]
    response = await api.trigger(contact_id=contact_id)
    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "queued"
    assert answer["reference"] == "moniepoint:MNP-889900"
    assert answer["message_id"].startswith("msg_")

    events = await hooks.wait_for(3)  # the receiver verified each signature
    assert [e["body"]["type"] for e in events] == [
        "message.sent",
        "message.delivered",
        "message.read",
    ]
    for event in events:
        assert event["event_id"] == event["body"]["id"]
        assert event["body"]["data"] == {
            "message_id": answer["message_id"],
            "contact_id": contact_id,
            "to": PHONE,
            "reference": "moniepoint:MNP-889900",
            "status": event["body"]["type"].removeprefix("message."),
        }
    assert len({e["event_id"] for e in events}) == 3

    log = await api.control("GET", "/webhooks?reference=moniepoint:MNP-889900")
    assert [(w["status_code"], w["attempt"]) for w in log] == [(200, 1)] * 3
    messages = await api.control("GET", "/messages")
    assert len(messages) == 1
    assert messages[0]["variables"] == VARS
    assert messages[0]["template_id"] == "tpl_first_time"


async def test_webhook_failures_are_retried_with_the_same_event(api: Api, hooks: Receiver) -> None:
    hooks.fail_next = 2
    assert (await api.trigger()).status_code == 202
    events = await hooks.wait_for(3)
    log = await api.control("GET", "/webhooks")
    assert sorted(w["status_code"] for w in log) == [200, 200, 200, 500, 500]
    assert {e["event_id"] for e in events} == {w["event_id"] for w in log}
    for event_id in {w["event_id"] for w in log}:
        attempts = [w["attempt"] for w in log if w["event_id"] == event_id]
        assert attempts == list(range(1, len(attempts) + 1))


async def test_webhook_sender_gives_up_after_max_attempts(api: Api) -> None:
    await api.control(
        "PUT",
        "/config",
        {"webhook_url": "http://127.0.0.1:9/closed", "webhook_max_attempts": 2},
    )
    assert (await api.trigger()).status_code == 202

    async def all_gave_up() -> bool:
        stats = await api.control("GET", "/stats")
        return bool(stats["webhooks_gave_up"] == 3)

    await wait_until(all_gave_up)
    log = await api.control("GET", "/webhooks")
    assert all(w["status_code"] is None and w["error"] for w in log)
    assert sorted(w["attempt"] for w in log) == [1, 1, 1, 2, 2, 2]


async def test_duplicate_and_shuffled_webhooks(api: Api, hooks: Receiver) -> None:
    await api.control("PUT", "/config", {"duplicate_webhooks": True, "shuffle_webhooks": True})
    assert (await api.trigger()).status_code == 202
    events = await hooks.wait_for(6)
    types = [e["body"]["type"] for e in events]
    assert types.index("message.read") < types.index("message.delivered")
    by_id: dict[str, list[bytes]] = {}
    for event in events:
        by_id.setdefault(event["event_id"], []).append(event["raw"])
    assert len(by_id) == 3
    assert all(len(copies) == 2 and copies[0] == copies[1] for copies in by_id.values())


async def test_unknown_template_is_404(api: Api) -> None:
    response = await api.trigger("tpl_nope")
    assert response.status_code == 404
    assert error_code(response) == "template_not_found"
    assert error_code(await api.call("GET", "/templates/tpl_nope")) == "template_not_found"


@pytest.mark.parametrize("status", ["PENDING", "REJECTED"])
async def test_template_not_approved(api: Api, status: str) -> None:
    await api.control("PUT", "/templates/tpl_first_time", {"status": status})
    response = await api.trigger()
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "template_not_approved"
    assert response.json()["error"]["template_status"] == status

    described = await api.call("GET", "/templates/tpl_first_time")
    assert described.json() == {
        "id": "tpl_first_time",
        "status": status,
        "variables": ["customer_name", "amount", "trans_ref"],
    }
    assert await api.control("GET", "/messages") == []


async def test_templates_registered_through_the_control_api(api: Api) -> None:
    await api.control(
        "PUT",
        "/templates/tpl_refund_issued",
        {"status": "APPROVED", "variables": ["customer_name", "amount", "refund_ref"]},
    )
    ok = await api.trigger("tpl_refund_issued", variables={**VARS, "refund_ref": "RF-1"})
    assert ok.status_code == 202
    missing = await api.trigger("tpl_refund_issued")
    assert missing.status_code == 422
    assert missing.json()["error"]["missing"] == ["refund_ref"]


async def test_validation_errors(api: Api) -> None:
    missing = await api.trigger(variables={"customer_name": "Ada", "amount": "₦1.00"})
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "validation_error"
    assert missing.json()["error"]["missing"] == ["trans_ref"]

    for to in (None, "08031234567", "2341031234567"):
        bad_to = await api.trigger(to=to)
        assert bad_to.status_code == 422
        assert error_code(bad_to) == "validation_error"

    not_json = await api.call("POST", "/templates/tpl_first_time/trigger", raw=b"{nope")
    assert error_code(not_json) == "validation_error"

    # next_due_date is optional where templates.md marks it so.
    assert (await api.trigger("tpl_returning_good")).status_code == 202
    assert len(await api.control("GET", "/messages")) == 1


# --- idempotency and rate limits ----------------------------------------------------------


async def test_idempotent_replay_and_reuse(api: Api, hooks: Receiver) -> None:
    first = await api.trigger(idempotency_key="idem-1")
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers

    # Same body with another key order and spacing: still "the same body".
    same = orjson.dumps(
        {"reference": "moniepoint:MNP-889900", "variables": VARS, "to": PHONE},
        option=orjson.OPT_INDENT_2,
    )
    replay = await api.call(
        "POST", "/templates/tpl_first_time/trigger", raw=same, idempotency_key="idem-1"
    )
    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()

    reused = await api.trigger(idempotency_key="idem-1", reference="moniepoint:OTHER")
    assert reused.status_code == 409
    assert error_code(reused) == "idempotency_key_reused"

    assert len(await api.control("GET", "/messages")) == 1
    await hooks.wait_for(3)
    await asyncio.sleep(0.2)  # time enough for any extra (wrong) webhooks to arrive
    assert len(hooks.events) == 3

    calls = await api.control("GET", "/calls?path_contains=/trigger")
    assert [(c["status"], c["replayed"]) for c in calls] == [
        (202, False),
        (202, True),
        (409, False),
    ]
    assert all(c["idempotency_key"] == "idem-1" for c in calls)
    # Replays count against the rate limit like any other call.
    assert int(replay.headers["X-RateLimit-Remaining"]) == 58
    stats = await api.control("GET", "/stats")
    assert stats["replays"] == 1
    assert stats["messages"] == 1


async def test_contact_upsert_replay_returns_the_first_answer(api: Api) -> None:
    first = await api.call("PUT", "/contacts", {"phone": PHONE}, idempotency_key="c-1")
    replay = await api.call("PUT", "/contacts", {"phone": PHONE}, idempotency_key="c-1")
    assert replay.json() == first.json() == {**first.json(), "created": True}
    assert replay.headers["Idempotent-Replayed"] == "true"


async def test_rate_limit_headers_and_429(api: Api) -> None:
    await api.control("PUT", "/config", {"rate_limit_per_minute": 3})
    before = int(time.time())
    remaining = []
    for _ in range(3):
        response = await api.call("GET", "/templates/tpl_first_time")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert before + 59 <= int(response.headers["X-RateLimit-Reset"]) <= before + 62
    assert remaining == [2, 1, 0]

    limited = await api.trigger()
    assert limited.status_code == 429
    assert error_code(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert await api.control("GET", "/messages") == []
    assert (await api.control("GET", "/calls"))[-1]["status"] == 429


# --- injected failures --------------------------------------------------------------------


async def test_error_5xx_with_count_and_path_filter(api: Api) -> None:
    await api.control(
        "POST", "/failures", {"mode": "error_5xx", "status": 502, "count": 2, "paths": "/trigger"}
    )
    # The path filter leaves other endpoints alone.
    assert (await api.call("GET", "/templates/tpl_first_time")).status_code == 200
    statuses = [(await api.trigger(idempotency_key="k")).status_code for _ in range(3)]
    assert statuses == [502, 502, 202]
    calls = await api.control("GET", "/calls?path_contains=/trigger")
    # Failed calls stored nothing: the third call ran for real, it is no replay.
    assert [(c["status"], c["replayed"]) for c in calls] == [
        (502, False),
        (502, False),
        (202, False),
    ]
    assert len(await api.control("GET", "/messages")) == 1


async def test_error_5xx_share_is_reproducible_with_a_seed(api: Api) -> None:
    await api.control("POST", "/failures", {"mode": "error_5xx", "share": 0.5, "seed": 7})
    statuses = [(await api.call("GET", "/templates/tpl_first_time")).status_code for _ in range(20)]
    assert 0 < statuses.count(500) < 20
    assert set(statuses) == {200, 500}


async def test_rate_limit_storm(api: Api) -> None:
    await api.control("POST", "/failures", {"mode": "rate_limit_storm", "retry_after": 7})
    response = await api.trigger()
    assert response.status_code == 429
    assert error_code(response) == "rate_limited"
    assert response.headers["Retry-After"] == "7"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert (await api.control("DELETE", "/failures")) == {"cleared": 1}
    assert (await api.trigger()).status_code == 202


async def test_maintenance_window_ends(api: Api) -> None:
    await api.control(
        "POST", "/failures", {"mode": "maintenance", "duration_seconds": 0.3, "retry_after": 2}
    )
    response = await api.trigger()
    assert response.status_code == 503
    assert error_code(response) == "maintenance"
    assert response.headers["Retry-After"] == "2"
    await asyncio.sleep(0.35)
    assert (await api.trigger()).status_code == 202


async def test_timeout(api: Api) -> None:
    await api.control("POST", "/failures", {"mode": "timeout", "timeout_seconds": 0.3, "count": 2})
    started = time.monotonic()
    slow = await api.trigger()
    assert slow.status_code == 504
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        await api.call("GET", "/templates/tpl_first_time", timeout=0.1)
    assert [c["status"] for c in await api.control("GET", "/calls")] == [504, 504]
    assert await api.control("GET", "/messages") == []


@pytest.mark.parametrize("mode", ["timeout", "error_5xx"])
async def test_answer_lost_after_processing(api: Api, mode: str) -> None:
    await api.control(
        "POST",
        "/failures",
        {"mode": mode, "timeout_seconds": 0.05, "count": 1, "after_processing": True},
    )
    lost = await api.trigger(idempotency_key="lost-1")
    assert lost.status_code in (500, 504)
    # The call took effect: the retry with the same key is a replay of the stored answer.
    retry = await api.trigger(idempotency_key="lost-1")
    assert retry.status_code == 202
    assert retry.headers["Idempotent-Replayed"] == "true"
    messages = await api.control("GET", "/messages")
    assert [m["message_id"] for m in messages] == [retry.json()["message_id"]]


# --- session window -----------------------------------------------------------------------


async def test_free_form_message_needs_an_open_session(api: Api) -> None:
    contact_id = (await api.call("PUT", "/contacts", {"phone": PHONE})).json()["contact_id"]
    body = {"to": PHONE, "text": "Thanks!", "reference": "chat:1"}
    closed = await api.call("POST", "/messages", body)
    assert closed.status_code == 422
    assert error_code(closed) == "outside_session_window"
    conversation = await api.call("GET", f"/conversations/{contact_id}")
    assert conversation.json()["state"] == "closed"

    await api.control("PUT", "/config", {"open_session_for": [contact_id]})
    sent = await api.call("POST", "/messages", body)
    assert sent.status_code == 202
    assert set(sent.json()) == {"message_id", "status"}
    conversation = (await api.call("GET", f"/conversations/{contact_id}")).json()
    assert conversation["state"] == "open"
    assert conversation["window_expires_at"].endswith("Z")

    assert error_code(await api.call("GET", "/conversations/ct_nope")) == "contact_not_found"


# --- control API, health, metrics ---------------------------------------------------------


async def test_reset_clears_everything(api: Api, hooks: Receiver) -> None:
    await api.control("PUT", "/config", {"rate_limit_per_minute": 100})
    await api.control("PUT", "/templates/tpl_first_time", {"status": "PENDING"})
    await api.control("POST", "/failures", {"mode": "error_5xx", "paths": "/nothing"})
    await api.call("PUT", "/contacts", {"phone": PHONE}, idempotency_key="r-1")
    await api.trigger("tpl_failed_generic")
    await hooks.wait_for(3)

    await api.control("POST", "/reset")
    stats = await api.control("GET", "/stats")
    assert stats["calls"] == stats["messages"] == stats["contacts"] == 0
    assert stats["webhooks_sent"] == stats["webhooks_pending"] == 0
    assert await api.control("GET", "/failures") == []
    assert (await api.control("GET", "/config"))["rate_limit_per_minute"] == 60
    templates = {t["id"]: t["status"] for t in await api.control("GET", "/templates")}
    assert len(templates) == 9  # the eight payment templates and tpl_confirm_number
    assert set(templates.values()) == {"APPROVED"}
    # The idempotency store is empty again: the same key runs for real.
    again = await api.call("PUT", "/contacts", {"phone": PHONE}, idempotency_key="r-1")
    assert again.json()["created"] is True
    assert "Idempotent-Replayed" not in again.headers
    assert again.headers["X-RateLimit-Remaining"] == "59"  # a fresh window


async def test_health_and_metrics(api: Api, http: httpx.AsyncClient) -> None:
    await api.call("PUT", "/contacts", {"phone": PHONE})
    for path in ("/healthz", "/readyz"):
        response = await http.get(api.base_url + path)
        assert response.json() == {"status": "ok"}
    metrics = (await http.get(api.base_url + "/metrics")).text
    assert 'siteti_sandbox_calls_total{method="PUT",path="/contacts",status="200"}' in metrics
