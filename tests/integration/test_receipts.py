"""The receipts service against the real local stack: PostgreSQL for storage, Kafka for the
audit topic, uvicorn serving the app on a free port, webhooks signed as Siteti signs them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from bridge.config import Settings
from bridge.events import AUDIT_TOPIC
from bridge.signing import sign_siteti_webhook
from bridge.topics import ensure_topics
from receipts.app import create_app
from tests.conftest import free_port
from tests.kafka_tools import consumer_from_now
from tests.problem_tools import problem_detail
from tests.serving import running

pytestmark = pytest.mark.integration

OLD_SECRET = "siteti_webhook_secret_old"
NEW_SECRET = "siteti_webhook_secret_new"
MAX_BODY = 64 * 1024
PHONE = "2348031234567"
# An investigator's token: GET /audit/… needs one (test_access.py covers every role).
SUPPORT_TOKEN = "receipts-support-token"
T0 = datetime(2026, 1, 20, 14, 32, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "siteti_webhook_secrets": [OLD_SECRET, NEW_SECRET],
            "max_body_bytes": MAX_BODY,
            "api_tokens": [f"support:{SUPPORT_TOKEN}"],
        }
    )


@pytest.fixture(scope="module")
async def base_url(
    app_settings: Settings, pg_pool: asyncpg.Pool, kafka_bootstrap: str
) -> AsyncIterator[str]:
    await ensure_topics(kafka_bootstrap)
    async with running(create_app(app_settings)) as url:
        # Ready means the producer is started too, so the outbox relay is running.
        async with httpx.AsyncClient(base_url=url) as client:
            deadline = time.monotonic() + 60
            while (await client.get("/readyz")).status_code != 200:
                if time.monotonic() > deadline:
                    pytest.fail(
                        "the receipts app never became ready: " + (await client.get("/readyz")).text
                    )
                await asyncio.sleep(0.2)
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    auth = {"Authorization": f"Bearer {SUPPORT_TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=auth) as c:
        yield c


def new_reference() -> str:
    return f"moniepoint:TEST-{uuid.uuid4().hex[:12]}"


def webhook(
    event_type: str,
    reference: str | None,
    *,
    created_at: datetime = T0,
    event_id: str | None = None,
    **data: Any,
) -> tuple[str, bytes]:
    """(event id, raw body) for one Siteti webhook."""
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    fields: dict[str, Any] = {"message_id": "msg_" + event_id[-8:], "contact_id": "ct_31234567"}
    fields["to"] = PHONE
    if reference is not None:
        fields["reference"] = reference
    payload = {
        "id": event_id,
        "type": event_type,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "data": {**fields, **data},
    }
    return event_id, orjson.dumps(payload)


async def post(
    client: httpx.AsyncClient,
    body: bytes,
    *,
    event_id: str | None = None,
    secrets: tuple[str, ...] = (NEW_SECRET,),
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if event_id:
        headers["X-Siteti-Event-Id"] = event_id
    if signature is None:
        signature = sign_siteti_webhook(list(secrets), timestamp or int(time.time()), body)
    if signature:
        headers["X-Siteti-Signature"] = signature
    return await client.post("/siteti/webhooks", content=body, headers=headers)


def detail(response: httpx.Response) -> str:
    """The error answer's message (checked to be problem details for its status)."""
    return problem_detail(response.status_code, response.headers["content-type"], response.json())


async def audit_rows(pool: asyncpg.Pool, reference: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT stage, source, occurred_at, detail FROM audit_log WHERE reference = $1 ORDER BY id",
        reference,
    )
    return rows


def audit_topic_from_now(bootstrap: str) -> AbstractAsyncContextManager[AIOKafkaConsumer]:
    return consumer_from_now(bootstrap, AUDIT_TOPIC.name)


async def wait_for_audit_record(
    consumer: AIOKafkaConsumer, reference: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                if record.key == reference.encode():
                    found: dict[str, Any] = orjson.loads(record.value)
                    return found
    pytest.fail(f"no audit record for {reference} on {AUDIT_TOPIC.name} within {timeout} s")


# --- storing ---------------------------------------------------------------------------------


async def test_delivered_is_stored_and_relayed_to_the_audit_topic(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool, kafka_bootstrap: str
) -> None:
    reference = new_reference()
    event_id, body = webhook("message.delivered", reference, status="delivered")
    async with audit_topic_from_now(kafka_bootstrap) as consumer:
        response = await post(client, body, event_id=event_id)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "stored"}

        rows = await audit_rows(pg_pool, reference)
        assert [(r["stage"], r["source"]) for r in rows] == [("delivered", "receipts")]
        assert rows[0]["occurred_at"] == T0
        detail = rows[0]["detail"]
        assert detail["event_id"] == event_id
        assert detail["type"] == "message.delivered"
        assert detail["contact_id"] == "ct_31234567"
        assert detail["message_id"]
        assert PHONE not in orjson.dumps(detail).decode()

        record = await wait_for_audit_record(consumer, reference)
    assert record["stage"] == "delivered"
    assert record["source"] == "receipts"
    assert record["detail"]["event_id"] == event_id
    assert PHONE not in orjson.dumps(record).decode()
    stored = await pg_pool.fetchrow(
        "SELECT type, reference FROM siteti_webhook_events WHERE event_id = $1", event_id
    )
    assert stored is not None
    assert dict(stored) == {"type": "message.delivered", "reference": reference}


async def test_body_id_is_the_event_id_without_the_header(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    reference = new_reference()
    event_id, body = webhook("message.sent", reference)
    assert (await post(client, body)).json() == {"status": "stored"}
    assert (await post(client, body)).json() == {"status": "duplicate"}
    rows = await audit_rows(pg_pool, reference)
    assert [r["detail"]["event_id"] for r in rows] == [event_id]


async def test_redelivery_is_acknowledged_and_stored_once(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    reference = new_reference()
    event_id, body = webhook("message.read", reference)
    first = await post(client, body, event_id=event_id)
    second = await post(client, body, event_id=event_id)
    assert (first.status_code, first.json()) == (200, {"status": "stored"})
    assert (second.status_code, second.json()) == (200, {"status": "duplicate"})
    assert len(await audit_rows(pg_pool, reference)) == 1


async def test_the_same_signed_body_under_other_event_id_headers_is_a_duplicate(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    # Regression: the unsigned header decided dedupe, so a replay with a fresh header was
    # stored again. Now only the signed body's id counts.
    reference = new_reference()
    event_id, body = webhook("message.delivered", reference)
    answers = [
        await post(client, body, event_id=event_id),
        await post(client, body, event_id=f"evt_{uuid.uuid4().hex}"),
        await post(client, body, event_id="forged"),
        await post(client, body),
    ]
    assert [a.json() for a in answers] == [{"status": "stored"}] + [{"status": "duplicate"}] * 3
    assert [r["detail"]["event_id"] for r in await audit_rows(pg_pool, reference)] == [event_id]


async def test_different_bodies_under_one_event_id_header_are_all_stored(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    # A forged (or reused) header must not suppress a real event.
    reference = new_reference()
    header = f"evt_{uuid.uuid4().hex}"
    sent_id, sent = webhook("message.sent", reference)
    delivered_id, delivered = webhook("message.delivered", reference)
    assert (await post(client, sent, event_id=header)).json() == {"status": "stored"}
    assert (await post(client, delivered, event_id=header)).json() == {"status": "stored"}
    rows = await audit_rows(pg_pool, reference)
    assert [(r["stage"], r["detail"]["event_id"]) for r in rows] == [
        ("sent", sent_id),
        ("delivered", delivered_id),
    ]


async def test_values_postgresql_cannot_hold_are_422_not_503(client: httpx.AsyncClient) -> None:
    for reference in ("moniepoint:\x00", "r" * 10_000):
        _, body = webhook("message.sent", reference)
        response = await post(client, body)
        assert response.status_code == 422, response.text
    _, body = webhook("message.sent", new_reference(), created_at=T0.replace(year=1))
    body = body.replace(b"0001-01-20T14:32:05Z", b"0001-01-01T00:00:00+01:00")
    assert (await post(client, body)).status_code == 422
    for path in ("/audit/a%00b", "/audit/" + "r" * 10_000):
        assert (await client.get(path)).status_code == 404


async def test_concurrent_redeliveries_store_once(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    reference = new_reference()
    event_id, body = webhook("message.sent", reference)
    answers = await asyncio.gather(*(post(client, body, event_id=event_id) for _ in range(8)))
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["duplicate"] * 7 + ["stored"]
    assert len(await audit_rows(pg_pool, reference)) == 1


async def test_failed_keeps_the_meta_error(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    reference = new_reference()
    event_id, body = webhook(
        "message.failed", reference, error={"code": 131026, "title": "Message undeliverable"}
    )
    assert (await post(client, body, event_id=event_id)).status_code == 200
    (row,) = await audit_rows(pg_pool, reference)
    assert row["stage"] == "failed"
    assert row["detail"]["error"] == {"code": 131026, "title": "Message undeliverable"}
    audit = (await client.get(f"/audit/{reference}")).json()
    assert audit["status"] == "failed"


async def test_customer_reply_stores_neither_text_nor_phone(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    reference = new_reference()
    text = "Thanks! Call me on 08031234567"
    sender: dict[str, Any] = {"from": PHONE}  # `from` is a keyword: passed as a mapping
    event_id, body = webhook("message.received", reference, text=text, **sender)
    assert (await post(client, body, event_id=event_id)).json() == {"status": "stored"}
    (row,) = await audit_rows(pg_pool, reference)
    assert row["stage"] == "replied"
    stored = orjson.dumps(row["detail"]).decode()
    assert "Thanks" not in stored
    assert PHONE not in stored
    assert "08031234567" not in stored
    assert row["detail"]["text_length"] == len(text)


async def test_conversation_state_is_filed_under_the_contact(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool
) -> None:
    contact_id = f"ct_{uuid.uuid4().hex[:10]}"
    event_id, body = webhook(
        "conversation.state",
        None,
        contact_id=contact_id,
        state="open",
        window_expires_at="2026-01-21T14:32:05Z",
    )
    assert (await post(client, body, event_id=event_id)).json() == {"status": "stored"}
    response = await client.get(f"/audit/contact:{contact_id}")
    assert response.status_code == 200, response.text
    audit = response.json()
    assert audit["reference"] == f"contact:{contact_id}"
    (event,) = audit["events"]
    assert event["stage"] == "conversation"
    assert event["detail"]["state"] == "open"
    assert event["detail"]["window_expires_at"] == "2026-01-21T14:32:05Z"
    stored = await pg_pool.fetchval(
        "SELECT reference FROM siteti_webhook_events WHERE event_id = $1", event_id
    )
    assert stored == f"contact:{contact_id}"


# --- ordering and the audit view -----------------------------------------------------------


async def test_read_before_delivered_is_shown_in_event_time_order(
    client: httpx.AsyncClient,
) -> None:
    reference = new_reference()
    sent_id, sent = webhook("message.sent", reference, created_at=T0)
    read_id, read = webhook("message.read", reference, created_at=T0 + timedelta(seconds=9))
    delivered_id, delivered = webhook(
        "message.delivered", reference, created_at=T0 + timedelta(seconds=4)
    )
    # Siteti's queue does not keep order: read arrives first, then delivered, then sent.
    for event_id, body in ((read_id, read), (delivered_id, delivered), (sent_id, sent)):
        assert (await post(client, body, event_id=event_id)).json() == {"status": "stored"}

    response = await client.get(f"/audit/{reference}")
    assert response.status_code == 200, response.text
    audit = response.json()
    assert audit["reference"] == reference
    assert audit["status"] == "read"
    assert [e["stage"] for e in audit["events"]] == ["sent", "delivered", "read"]
    first = audit["events"][0]
    assert set(first) == {"stage", "source", "occurred_at", "recorded_at", "detail"}
    assert datetime.fromisoformat(first["occurred_at"]) == T0
    assert first["source"] == "receipts"


async def test_unknown_reference_is_404(client: httpx.AsyncClient) -> None:
    reference = new_reference()
    response = await client.get(f"/audit/{reference}")
    assert response.status_code == 404
    assert detail(response) == f"no audit record for {reference}"


# --- signatures ----------------------------------------------------------------------------


async def test_tampered_body_is_401(client: httpx.AsyncClient, pg_pool: asyncpg.Pool) -> None:
    reference = new_reference()
    event_id, body = webhook("message.delivered", reference)
    signature = sign_siteti_webhook([NEW_SECRET], int(time.time()), body)
    tampered = body.replace(b"delivered", b"read", 1)
    response = await post(client, tampered, event_id=event_id, signature=signature)
    assert response.status_code == 401
    assert "match" in detail(response)
    assert await audit_rows(pg_pool, reference) == []
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM siteti_webhook_events WHERE event_id = $1", event_id
        )
        == 0
    )


async def test_stale_timestamp_is_401(client: httpx.AsyncClient) -> None:
    event_id, body = webhook("message.delivered", new_reference())
    response = await post(client, body, event_id=event_id, timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert "300 s" in detail(response)


async def test_missing_signature_is_401(client: httpx.AsyncClient) -> None:
    event_id, body = webhook("message.delivered", new_reference())
    response = await post(client, body, event_id=event_id, signature="")
    assert response.status_code == 401
    assert detail(response) == "missing X-Siteti-Signature header"


async def test_unknown_secret_is_401(client: httpx.AsyncClient) -> None:
    event_id, body = webhook("message.delivered", new_reference())
    response = await post(client, body, event_id=event_id, secrets=("not_our_secret",))
    assert response.status_code == 401


async def test_rotation_header_with_two_v1_values_only_the_second_valid(
    client: httpx.AsyncClient,
) -> None:
    event_id, body = webhook("message.delivered", new_reference())
    header = sign_siteti_webhook(["retired_secret", NEW_SECRET], int(time.time()), body)
    assert header.count("v1=") == 2
    response = await post(client, body, event_id=event_id, signature=header)
    assert (response.status_code, response.json()) == (200, {"status": "stored"})


@pytest.mark.parametrize("secret", [OLD_SECRET, NEW_SECRET])
async def test_rotation_either_configured_secret_is_accepted(
    client: httpx.AsyncClient, secret: str
) -> None:
    event_id, body = webhook("message.delivered", new_reference())
    response = await post(client, body, event_id=event_id, secrets=(secret,))
    assert (response.status_code, response.json()) == (200, {"status": "stored"})


# --- malformed requests --------------------------------------------------------------------


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    _, body = webhook("message.delivered", new_reference(), padding="x" * MAX_BODY)
    response = await post(client, body)
    assert response.status_code == 413
    assert "larger than" in detail(response)


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"x" * 4096

    response = await client.post("/siteti/webhooks", content=chunks())
    assert response.status_code == 413


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await post(client, b'{"id": "evt_x", "type": ')
    assert response.status_code == 400
    assert "JSON" in detail(response)


async def test_missing_fields_are_422(client: httpx.AsyncClient) -> None:
    response = await post(
        client, orjson.dumps({"id": "evt_x", "created_at": "2026-01-20T14:32:05Z"})
    )
    assert response.status_code == 422
    assert "type, data" in detail(response)


async def test_unknown_type_is_acknowledged_and_ignored(client: httpx.AsyncClient) -> None:
    reference = new_reference()
    event_id, body = webhook("template.approved", reference)
    assert (await post(client, body, event_id=event_id)).json() == {"status": "ignored"}
    assert (await client.get(f"/audit/{reference}")).status_code == 404


# --- operations ----------------------------------------------------------------------------


async def test_health_readiness_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    event_id, body = webhook("message.sent", new_reference())
    await post(client, body, event_id=event_id)
    await post(client, body, event_id=event_id)
    await post(client, body, event_id=event_id, signature="t=1,v1=00")
    metrics = (await client.get("/metrics")).text
    assert 'bridge_receipts_total{outcome="stored",type="message.sent"}' in metrics
    assert 'bridge_receipts_total{outcome="duplicate",type="message.sent"}' in metrics
    assert 'bridge_receipts_total{outcome="rejected",type="unknown"}' in metrics


async def test_database_down_is_503_so_siteti_retries(
    app_settings: Settings, base_url: str
) -> None:
    # A second instance whose pool is then closed under it: the real asyncpg failure path.
    app = create_app(app_settings)
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        app.state.runtime.pool.terminate()
        event_id, body = webhook("message.delivered", new_reference())
        response = await post(c, body, event_id=event_id)
        assert response.status_code == 503
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert "postgres" in ready.json()["failed"] and "postgres" in detail(ready)
        assert (await c.get("/healthz")).status_code == 200
        auth = {"Authorization": f"Bearer {SUPPORT_TOKEN}"}
        for path in (f"/audit/{new_reference()}", "/audit/stats"):
            response = await c.get(path, headers=auth)
            assert response.status_code == 503 and detail(response), path


async def test_kafka_down_still_stores_and_is_not_ready(
    app_settings: Settings, pg_pool: asyncpg.Pool, base_url: str
) -> None:
    # Nothing listens on this port: the producer cannot start, the outbox keeps the record.
    settings = app_settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    async with running(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as c:
        reference = new_reference()
        event_id, body = webhook("message.delivered", reference)
        assert (await post(c, body, event_id=event_id)).json() == {"status": "stored"}
        assert [r["stage"] for r in await audit_rows(pg_pool, reference)] == ["delivered"]
        ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert set(ready.json()["failed"]) == {"kafka"}
