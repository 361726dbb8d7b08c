"""Kafka over SASL_SSL (SCRAM-SHA-512, a CA of our own), on a second broker started here:
the bridge's topics are created through it, a webhook reaches Siteti through it, and clients
without the right password, without TLS or without the CA are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError

from bridge.events import AUDIT_TOPIC, DEAD_LETTER_TOPIC, EVENTS_TOPIC, TOPICS
from bridge.topics import DAY_MS, TopicPolicyError, ensure_topics

from ..e2e.harness import make_pipeline, new_reference, payment, running, stack_env, wait_for
from ..secure_kafka import SecureKafka, secure_broker

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def broker(kafka_bootstrap: str) -> Iterator[SecureKafka]:
    """The secure broker for the module (the stack must be up: its jars, database, Redis)."""
    with secure_broker() as kafka:
        yield kafka


async def topic_configs(kafka: SecureKafka, *names: str) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, **kafka.options())
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await admin.close()
    return {
        r[3]: {entry[0]: entry[1] for entry in r[4]} for resp in described for r in resp.resources
    }


async def test_topics_are_created_and_retention_capped_over_sasl_ssl(broker: SecureKafka) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, **broker.options())
    await admin.start()
    try:
        # An audit topic made by hand, kept forever, with a setting of its own.
        await admin.create_topics(
            [
                NewTopic(
                    AUDIT_TOPIC.name,
                    AUDIT_TOPIC.partitions,
                    1,
                    topic_configs={"retention.ms": "-1", "max.message.bytes": "2000000"},
                )
            ]
        )
    finally:
        await admin.close()

    with pytest.raises(TopicPolicyError, match="KAFKA_SINGLE_BROKER"):
        await ensure_topics(broker.bootstrap, broker.settings(kafka_single_broker=False))
    created = await ensure_topics(broker.bootstrap, broker.settings(retention_days=10))
    assert created == [t.name for t in TOPICS if t is not AUDIT_TOPIC]

    names = (EVENTS_TOPIC.name, DEAD_LETTER_TOPIC.name, AUDIT_TOPIC.name)
    for _ in range(50):  # an altered config reaches the broker's metadata a moment later
        configs = await topic_configs(broker, *names)
        if configs[AUDIT_TOPIC.name]["retention.ms"] != "-1":
            break
        await asyncio.sleep(0.1)
    assert configs[EVENTS_TOPIC.name]["retention.ms"] == str(7 * DAY_MS)  # its own is shorter
    assert configs[DEAD_LETTER_TOPIC.name]["retention.ms"] == str(10 * DAY_MS)
    assert configs[EVENTS_TOPIC.name]["min.insync.replicas"] == "1"  # min(2, one replica)
    # The existing topic's retention is lowered; its other setting survives the alteration.
    assert configs[AUDIT_TOPIC.name]["retention.ms"] == str(10 * DAY_MS)
    assert configs[AUDIT_TOPIC.name]["max.message.bytes"] == "2000000"
    # Run again: nothing to create, nothing to lower.
    assert await ensure_topics(broker.bootstrap, broker.settings(retention_days=10)) == []


async def refused(kafka: SecureKafka, caplog: pytest.LogCaptureFixture, **options: Any) -> str:
    """Why a client with `options` cannot reach the broker: aiokafka raises a bare
    "Unable to bootstrap" and logs the cause."""
    caplog.clear()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap, request_timeout_ms=5000, **options
    )
    try:
        with pytest.raises(KafkaConnectionError):
            await admin.start()
    finally:
        await admin.close()
    return caplog.text


async def test_clients_without_the_right_credentials_are_refused(
    broker: SecureKafka, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_password = broker.options(kafka_sasl_password="not-" + broker.password)
    assert "SaslAuthenticationFailed" in await refused(broker, caplog, **wrong_password)
    # TLS without our CA: the broker's certificate is not trusted, no credentials are sent.
    no_ca = broker.options(kafka_ssl_cafile="")
    assert "CERTIFICATE_VERIFY_FAILED" in await refused(broker, caplog, **no_ca)
    # Plaintext to a TLS listener: no handshake, no metadata.
    assert "Unable connect" in await refused(broker, caplog)


def test_webhook_reaches_siteti_through_sasl_ssl(broker: SecureKafka, tmp_path: Path) -> None:
    pipeline = make_pipeline({**stack_env(), **broker.env()})
    with running(pipeline):
        account = pipeline.new_customer(tmp_path, tier="returning")
        ref = new_reference()
        answer = pipeline.post_moniepoint(payment("payment.successful", account, ref))
        assert answer.status_code == 200, answer.text
        reference = f"moniepoint:{ref}"
        calls = wait_for(lambda: pipeline.trigger_calls(reference), timeout=60)
        assert len(calls) == 1 and calls[0]["status"] == 202
        wait_for(lambda: "dispatched" in pipeline.stages(reference), timeout=30)
        # The relays (receipts', the dispatcher's) emptied the outbox into the same broker.
        wait_for(lambda: asyncio.run(pipeline.fetchrow("SELECT count(*) FROM outbox"))[0] == 0)
