"""Replies and conversation states through the real receipts app onto the real topics: signed
`message.received` and `conversation.state` webhooks → one schema-valid CloudEvent each on
bridge.replies.v1 / bridge.conversations.v1, keyed by the keyed hash, with no clear number; a
redelivered webhook (the same event id) adds no second record."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord
from jsonschema import Draft202012Validator

from bridge.config import Settings
from bridge.events import CONVERSATIONS_TOPIC, REPLIES_TOPIC
from bridge.protect import DataKeys, data_keys
from bridge.topics import ensure_topics
from receipts.app import create_app
from tests.integration.test_receipts import NEW_SECRET, PHONE, audit_rows, post, webhook
from tests.kafka_tools import consumer_from_now
from tests.serving import running

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1"


@pytest.fixture(scope="module")
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"siteti_webhook_secrets": [NEW_SECRET]})


@pytest.fixture(scope="module")
def keys(app_settings: Settings) -> DataKeys:
    return data_keys(app_settings)


@pytest.fixture(scope="module")
async def client(
    app_settings: Settings, pg_pool: asyncpg.Pool, kafka_bootstrap: str
) -> AsyncIterator[httpx.AsyncClient]:
    await ensure_topics(kafka_bootstrap)
    async with running(create_app(app_settings)) as url, httpx.AsyncClient(base_url=url) as c:
        # Ready: the producer is started, so the outbox relay runs.
        deadline = time.monotonic() + 60
        while (await c.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, (await c.get("/readyz")).text
            await asyncio.sleep(0.2)
        yield c


def schema_errors(document: dict[str, Any]) -> list[str]:
    name = document["dataschema"].removeprefix("urn:siteti-bridge:schema:").rpartition(":")[0]
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    checker = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [e.message for e in checker.iter_errors(document)]


async def records_until(
    consumer: AIOKafkaConsumer, last_id: str, timeout: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record read until the one whose event id is `last_id`. Posted last on the same
    key, it is relayed after the others, on the same partition: whatever else the webhooks
    before it produced has arrived by then."""
    seen: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            seen += batch
            if any(orjson.loads(r.value)["id"] == last_id for r in batch):
                return seen
    pytest.fail(f"{last_id} never reached {consumer.assignment()} within {timeout} s")


def with_id(
    found: list[ConsumerRecord[bytes, bytes]], event_id: str
) -> list[ConsumerRecord[bytes, bytes]]:
    return [r for r in found if orjson.loads(r.value)["id"] == event_id]


async def test_a_reply_is_one_sealed_record_on_the_replies_topic(
    client: httpx.AsyncClient, pg_pool: asyncpg.Pool, kafka_bootstrap: str, keys: DataKeys
) -> None:
    reference = f"moniepoint:TEST-{uuid.uuid4().hex[:12]}"
    event_id, body = webhook(
        "message.received",
        reference,
        text="YES, it is 0803 123 4567",
        button_payload="confirm_number:yes",
        context={"message_id": "msg_out_1"},
        **{"from": PHONE},
    )
    last_id, last = webhook("message.received", None, text="thanks", **{"from": PHONE})
    async with consumer_from_now(kafka_bootstrap, REPLIES_TOPIC.name) as consumer:
        assert (await post(client, body)).json() == {"status": "stored"}
        assert (await post(client, body)).json() == {"status": "duplicate"}
        assert (await post(client, last)).json() == {"status": "stored"}
        found = await records_until(consumer, last_id)

    (record,) = with_id(found, event_id)
    assert record.key == keys.phone_index(PHONE).encode()
    assert PHONE.encode() not in record.value and PHONE[-9:].encode() not in record.value
    value = orjson.loads(record.value)
    assert schema_errors(value) == []
    assert (value["type"], value["subject"]) == ("bridge.message.received.v1", reference)
    data = value["data"]
    assert keys.open(data["from"], "phone") == PHONE
    assert data["from_index"] == record.key.decode()
    assert (data["text"], data["button_payload"]) == ("YES, it is •••4567", "confirm_number:yes")
    assert (data["context_message_id"], data["reference"]) == ("msg_out_1", reference)
    # The audit row stays as it was: neither the text nor the number.
    (row,) = await audit_rows(pg_pool, reference)
    assert row["stage"] == "replied"
    assert "YES" not in orjson.dumps(row["detail"]).decode()


async def test_a_conversation_state_by_bsuid_is_one_record_keyed_by_its_hash(
    client: httpx.AsyncClient, kafka_bootstrap: str, keys: DataKeys
) -> None:
    bsuid = f"NG.{uuid.uuid4().hex[:16]}"
    state: dict[str, Any] = {"contact_id": None, "to": None, "bsuid": bsuid, "state": "open"}
    event_id, body = webhook(
        "conversation.state", None, window_expires_at="2026-01-21T14:32:05Z", **state
    )
    last_id, last = webhook("conversation.state", None, **{**state, "state": "closed"})
    async with consumer_from_now(kafka_bootstrap, CONVERSATIONS_TOPIC.name) as consumer:
        for answer in ("stored", "duplicate", "duplicate"):
            assert (await post(client, body)).json() == {"status": answer}
        assert (await post(client, last)).json() == {"status": "stored"}
        found = await records_until(consumer, last_id)

    (record,) = with_id(found, event_id)
    assert record.key == keys.index(bsuid, "bsuid").encode()
    value = orjson.loads(record.value)
    assert schema_errors(value) == []
    assert value["type"] == "bridge.conversation.state.v1"
    assert value["subject"] == f"bsuid:{bsuid}"
    assert value["data"] == {
        "contact_id": None,
        "state": "open",
        "window_expires_at": "2026-01-21T14:32:05Z",
        "bsuid": bsuid,
        "from_index": None,
        "changed_at": "2026-01-20T14:32:05Z",
    }
    assert orjson.loads(with_id(found, last_id)[0].value)["data"]["state"] == "closed"
