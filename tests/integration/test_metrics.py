"""The metrics against the real stack (docs/metrics.md): the dispatcher's gauges move with
PostgreSQL, Redis and Kafka; receipts and ingest time deliveries and provider events; the
poller and the file drop serve /metrics of their own; and `promtool check metrics` finds
every exposition clean.

/metrics is scraped over HTTP from the real ingest and receipts apps (one process registry:
the dispatcher's gauges refreshed in this process show there too).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bridge import metrics
from bridge.config import Settings
from bridge.db import connect
from bridge.signing import sign, sign_siteti_webhook
from dispatcher.gauges import Gauges, LagReader
from dispatcher.governor import Governor, GovernorConfig
from ingest.app import create_app as create_ingest
from receipts.app import create_app as create_receipts
from tests.conftest import free_port
from tests.integration.test_hostile_ingest import SECRETS, ingest_settings, moniepoint_with
from tests.process_tools import start_source, stopped_cleanly
from tests.serving import running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
PROMTOOL = "/usr/bin/promtool"
SITETI_SECRET = "metrics_test_webhook_secret"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: Samples, name: str, label: str, only: str) -> dict[tuple[str, ...], float]:
    """The samples of `name` whose `label` is `only`, by their other labels' values (sorted)."""
    found: dict[tuple[str, ...], float] = {}
    for (sample_name, labels), sample_value in samples.items():
        as_dict = dict(labels)
        if sample_name == name and as_dict.get(label) == only:
            found[tuple(v for k, v in sorted(as_dict.items()) if k != label)] = sample_value
    return found


def promtool_problems(exposition: bytes) -> str:
    """What `promtool check metrics` says about an exposition ('' when clean)."""
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"{PROMTOOL} is missing: install Debian's `prometheus` package")
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    said = (result.stdout + result.stderr).decode().strip()
    return said or ("" if result.returncode == 0 else f"exit status {result.returncode}")


# --- the apps ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def receipts_url(settings: Settings, pg_pool: asyncpg.Pool) -> AsyncIterator[str]:
    app_settings = settings.model_copy(update={"siteti_webhook_secrets": [SITETI_SECRET]})
    async with running(create_receipts(app_settings)) as url:
        yield url


@pytest.fixture(scope="module")
async def ingest_url(settings: Settings, events_topic: str) -> AsyncIterator[str]:
    async with running(create_ingest(ingest_settings(settings))) as url:
        yield url


# --- a database of the test's own: gauges read whole tables ----------------------------------


@pytest.fixture(scope="module")
async def own_pool(settings: Settings, pg_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    name = f"bridge_metrics_{uuid.uuid4().hex[:10]}"
    await pg_pool.execute(f'CREATE DATABASE "{name}"')
    pool = await connect(urlsplit(settings.database_url)._replace(path=f"/{name}").geturl())
    try:
        yield pool
    finally:
        await pool.close()
        await pg_pool.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def governor(redis_client: Redis) -> Governor:
    return Governor(redis_client, GovernorConfig(60, key_prefix=f"test:metrics:{uuid.uuid4().hex}"))


async def add_dead_letter(pool: asyncpg.Pool, status: str, reason: str, age: timedelta) -> int:
    key = uuid.uuid4().hex
    entry_id: int = await pool.fetchval(
        "INSERT INTO dead_letters (dedupe_key, reference, provider, event_type, payload, status,"
        " reason, created_at) VALUES ($1, $2, 'moniepoint', 'payment.successful', '{}'::jsonb,"
        " $3, $4, now() - $5::interval) RETURNING id",
        f"moniepoint:{key}:payment.successful",
        f"moniepoint:{key}",
        status,
        reason,
        age,
    )
    return entry_id


async def test_dead_letter_outbox_and_erasure_gauges_follow_the_database(
    own_pool: asyncpg.Pool, governor: Governor, receipts_url: str
) -> None:
    gauges = Gauges(own_pool, governor, lag=None)
    hour = timedelta(hours=1)
    await add_dead_letter(own_pool, "pending", "missing_contact", hour)
    await add_dead_letter(own_pool, "pending", "missing_contact", timedelta(0))
    review = await add_dead_letter(own_pool, "manual_review", "template_not_approved", 3 * hour)
    await add_dead_letter(own_pool, "processing", "siteti_error", 2 * hour)
    await add_dead_letter(own_pool, "completed", "missing_contact", 5 * hour)  # settled: not open
    await add_dead_letter(own_pool, "failed", "siteti_rejected", 6 * hour)
    await own_pool.execute(
        "INSERT INTO outbox (topic, key, payload, created_at)"
        " VALUES ('t', 'k', '{}'::jsonb, now() - interval '10 minutes'), ('t', 'k', '{}', now())"
    )
    await own_pool.execute(
        "INSERT INTO erasures (subject_hash, subject_kind, requested_by, status) VALUES"
        " ('a', 'phone', 'test', 'pending'), ('b', 'account', 'test', 'pending'),"
        " ('c', 'phone', 'test', 'done')"
    )

    await gauges.refresh()
    samples = await scrape(receipts_url)
    depth = {
        labels: v for (name, labels), v in samples.items() if name == "bridge_dead_letter_depth"
    }
    assert depth == {
        frozenset({("status", "pending"), ("reason", "missing_contact")}): 2,
        frozenset({("status", "manual_review"), ("reason", "template_not_approved")}): 1,
        frozenset({("status", "processing"), ("reason", "siteti_error")}): 1,
    }
    # The manual-review entry, 3 h old: not the settled ones, older still.
    assert 3 * 3600 <= value(samples, "bridge_dead_letter_oldest_pending_seconds") < 5 * 3600
    assert 600 <= value(samples, "bridge_outbox_oldest_seconds") < 3600
    assert value(samples, "bridge_erasures_pending") == 2

    # Worked off: what emptied reads 0, not its last value.
    await own_pool.execute(
        "UPDATE dead_letters SET status = 'completed' WHERE status = 'pending' OR id = $1",
        review,
    )
    await own_pool.execute("DELETE FROM outbox")
    await own_pool.execute("UPDATE erasures SET status = 'done'")
    await gauges.refresh()
    samples = await scrape(receipts_url)
    assert (
        value(samples, "bridge_dead_letter_depth", status="pending", reason="missing_contact") == 0
    )
    assert (
        value(
            samples,
            "bridge_dead_letter_depth",
            status="manual_review",
            reason="template_not_approved",
        )
        == 0
    )
    assert (
        value(samples, "bridge_dead_letter_depth", status="processing", reason="siteti_error") == 1
    )
    assert 2 * 3600 <= value(samples, "bridge_dead_letter_oldest_pending_seconds") < 3 * 3600
    assert value(samples, "bridge_outbox_oldest_seconds") == 0
    assert value(samples, "bridge_erasures_pending") == 0

    await own_pool.execute("UPDATE dead_letters SET status = 'failed'")
    await gauges.refresh()
    assert value(await scrape(receipts_url), "bridge_dead_letter_oldest_pending_seconds") == 0


async def test_governor_pauses_are_counted_when_they_start_or_extend_and_shown_while_they_last(
    own_pool: asyncpg.Pool, governor: Governor, receipts_url: str
) -> None:
    gauges = Gauges(own_pool, governor, lag=None)
    await gauges.refresh()
    before = await scrape(receipts_url)
    assert value(before, "bridge_governor_pause_remaining_seconds") == 0

    await governor.pause(30, reason="503")
    await governor.pause(5, reason="503")  # shorter than the pause in force: no change
    await governor.observe(remaining=0, reset_at=time.time() + 60)  # at the floor: extends
    await gauges.refresh()
    after = await scrape(receipts_url)

    def pauses(samples: Samples, reason: str) -> float:
        return value(samples, "bridge_governor_pauses_total", reason=reason)

    assert pauses(after, "503") - pauses(before, "503") == 1
    assert pauses(after, "remaining_floor") - pauses(before, "remaining_floor") == 1
    assert 30 < value(after, "bridge_governor_pause_remaining_seconds") <= 60


class OwnedPartitions:
    """faust's consumer as the lag reader sees it, over a plain aiokafka consumer."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    def assignment(self) -> set[Any]:
        return set(self._consumer.assignment())

    async def highwaters(self, *partitions: TopicPartition) -> Mapping[Any, int]:
        return await self._consumer.end_offsets(list(partitions))

    async def earliest_offsets(self, *partitions: TopicPartition) -> Mapping[Any, int]:
        return await self._consumer.beginning_offsets(list(partitions))


@pytest.fixture
async def lag_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    topic = f"test.metrics.lag.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        yield topic
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def test_consumer_lag_per_owned_partition_and_a_partition_given_up_goes(
    own_pool: asyncpg.Pool,
    governor: Governor,
    settings: Settings,
    kafka_bootstrap: str,
    lag_topic: str,
    receipts_url: str,
) -> None:
    group = f"test-metrics-{uuid.uuid4().hex[:10]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 2)):
            for n in range(count):
                await producer.send_and_wait(lag_topic, f"r{n}".encode(), partition=partition)
    finally:
        await producer.stop()
    p0, p1 = TopicPartition(lag_topic, 0), TopicPartition(lag_topic, 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    reader = LagReader(
        OwnedPartitions(consumer),
        settings.model_copy(
            update={"dispatcher_group_id": group, "kafka_bootstrap_servers": kafka_bootstrap}
        ),
    )
    gauges = Gauges(own_pool, governor, reader)
    try:
        consumer.assign([p0, p1])
        await consumer.commit({p0: 2})  # p1: nothing committed yet
        before = await scrape(receipts_url)
        await gauges.refresh()
        samples = await scrape(receipts_url)
        assert labelled(samples, "bridge_consumer_lag", "topic", lag_topic) == {
            ("0",): 3,
            ("1",): 2,
        }

        consumer.assign([p0])  # a rebalance took partition 1 away
        await consumer.commit({p0: 4})
        await gauges.refresh()
        samples = await scrape(receipts_url)
        assert labelled(samples, "bridge_consumer_lag", "topic", lag_topic) == {("0",): 1}
        failures = "bridge_metrics_refresh_failures_total"
        for source in ("postgres", "redis", "kafka"):
            assert value(samples, failures, source=source) == value(before, failures, source=source)
    finally:
        await reader.aclose()
        await consumer.stop()


async def test_a_failed_read_is_counted_and_the_other_gauges_still_refresh(
    settings: Settings, governor: Governor, receipts_url: str
) -> None:
    closed = await connect(settings.database_url, min_size=1, max_size=1)
    await closed.close()
    before = await scrape(receipts_url)
    await governor.pause(20, reason="429")
    await Gauges(closed, governor, lag=None).refresh()  # must not raise
    after = await scrape(receipts_url)
    failures = "bridge_metrics_refresh_failures_total"
    assert (
        value(after, failures, source="postgres") - value(before, failures, source="postgres") == 1
    )
    assert value(after, failures, source="redis") == value(before, failures, source="redis")
    assert 0 < value(after, "bridge_governor_pause_remaining_seconds") <= 20


# --- deliveries and provider times --------------------------------------------------------


async def post_receipt(
    url: str, event_id: str, created_at: datetime, kind: str = "delivered", **data: str
) -> None:
    body = orjson.dumps(
        {
            "id": event_id,
            "type": f"message.{kind}",
            "created_at": created_at.isoformat().replace("+00:00", "Z"),
            "data": {"status": kind, "to": "2348031234567", **data},
        }
    )
    signature = sign_siteti_webhook([SITETI_SECRET], int(time.time()), body)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{url}/siteti/webhooks", content=body, headers={"X-Siteti-Signature": signature}
        )
    assert response.status_code == 200, response.text


async def test_a_delivery_is_counted_once_per_message_and_timed_from_its_acceptance(
    pg_pool: asyncpg.Pool, receipts_url: str
) -> None:
    reference = f"moniepoint:METRICS-{uuid.uuid4().hex[:10]}"
    message_id, read_first = (f"msg_{uuid.uuid4().hex[:12]}" for _ in range(2))
    sent_at = datetime(2026, 2, 1, 9, 0, 0, tzinfo=UTC)
    # As the dispatcher records an accepted message (dispatcher.sent), one for each.
    await pg_pool.execute(
        "INSERT INTO sent_messages (message_id, reference, accepted_at)"
        " VALUES ($1, $3, $4), ($2, $3, $4)",
        message_id,
        read_first,
        reference,
        sent_at,
    )
    count, total = "bridge_send_to_delivered_seconds_count", "bridge_send_to_delivered_seconds_sum"
    delivered = "bridge_messages_delivered_total"
    before = await scrape(receipts_url)

    event_id = f"evt_{uuid.uuid4().hex}"
    at = sent_at + timedelta(seconds=42)
    await post_receipt(receipts_url, event_id, at, reference=reference, message_id=message_id)
    await post_receipt(receipts_url, event_id, at, reference=reference, message_id=message_id)
    # The same delivery reported again under another event id: the state does not move.
    await post_receipt(
        receipts_url, f"evt_{uuid.uuid4().hex}", at, reference=reference, message_id=message_id
    )
    # Read before delivered: delivered once, when the read came; the delivered adds nothing.
    for kind in ("read", "delivered"):
        await post_receipt(
            receipts_url,
            f"evt_{uuid.uuid4().hex}",
            at,
            kind,
            reference=reference,
            message_id=read_first,
        )
    # A delivery of a message not recorded (another system's): counted, not timed.
    await post_receipt(
        receipts_url, f"evt_{uuid.uuid4().hex}", at, reference=reference, message_id="msg_unknown"
    )
    after = await scrape(receipts_url)

    assert value(after, delivered) - value(before, delivered) == 3
    assert value(after, count) - value(before, count) == 2
    assert value(after, total) - value(before, total) == pytest.approx(84)
    assert (
        value(after, "bridge_send_to_delivered_seconds_bucket", le="60.0")
        - value(before, "bridge_send_to_delivered_seconds_bucket", le="60.0")
        == 2
    )
    states = await pg_pool.fetch(
        "SELECT message_id, state FROM sent_messages WHERE reference = $1", reference
    )
    assert {r["message_id"]: r["state"] for r in states} == {
        message_id: "delivered",
        read_first: "read",
        "msg_unknown": "delivered",
    }


async def test_ingest_times_an_event_from_the_providers_own_timestamp(ingest_url: str) -> None:
    count = "bridge_provider_to_accepted_seconds_count"
    total = "bridge_provider_to_accepted_seconds_sum"
    before = await scrape(ingest_url)
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = orjson.dumps(moniepoint_with({"timestamp": two_hours_ago}))
    header = sign(SECRETS["moniepoint_webhook_secrets"][0], body)
    async with httpx.AsyncClient(timeout=15) as client:
        response = await client.post(
            f"{ingest_url}/webhooks/moniepoint",
            content=body,
            headers={"X-Moniepoint-Signature": header},
        )
    assert response.status_code == 200, response.text
    after = await scrape(ingest_url)
    assert (
        value(after, count, provider="moniepoint") - value(before, count, provider="moniepoint")
        == 1
    )
    waited = value(after, total, provider="moniepoint") - value(
        before, total, provider="moniepoint"
    )
    assert 7200 <= waited < 7200 + 600


# --- the sources' own /metrics ---------------------------------------------------------------


async def scrape_until(url: str, done: Any, process: subprocess.Popen[bytes]) -> Samples:
    """Scrape `url` until `done(samples)`; fails if the process exits or a minute passes."""
    deadline = time.monotonic() + 60
    last: Samples = {}
    while time.monotonic() < deadline and process.poll() is None:
        try:
            last = await scrape(url)
        except httpx.TransportError:
            last = {}
        if last and done(last):
            return last
        await asyncio.sleep(0.2)
    pytest.fail(f"{url}/metrics never showed the expected values; last: {last}")


async def test_the_poller_process_serves_its_polls_on_its_metrics_port(
    settings: Settings, kafka_bootstrap: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        # A valid query with no rows: every poll succeeds and emits nothing.
        "POLLER_QUERY": "SELECT 'x'::text AS source_id WHERE false",
        "POLLER_SOURCE_NAME": f"metrics{uuid.uuid4().hex[:8]}",
        "POLLER_INTERVAL_SECONDS": "0.2",
        "POLLER_METRICS_PORT": str(port),
        "INGEST_HOST": "127.0.0.1",
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    process = start_source("poller", env)
    url = f"http://127.0.0.1:{port}"
    try:
        samples = await scrape_until(
            url, lambda s: value(s, "bridge_poller_polls_total", outcome="ok") >= 2, process
        )
        assert value(samples, "bridge_poller_polls_total", outcome="error") == 0
        last_success = value(samples, "bridge_poller_last_success_timestamp_seconds")
        assert time.time() - 60 < last_success <= time.time()
        async with httpx.AsyncClient(timeout=10) as client:
            exposition = (await client.get(f"{url}/metrics")).content
        assert promtool_problems(exposition) == ""
    finally:
        await stopped_cleanly(process)


async def test_the_filedrop_process_serves_files_and_rows_on_its_metrics_port(
    settings: Settings,
    kafka_bootstrap: str,
    events_topic: str,
    tmp_path: Path,
    pg_pool: asyncpg.Pool,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "FILEDROP_DIR": str(inbox),
        "FILEDROP_POLL_SECONDS": "0.2",
        "FILEDROP_SETTLE_SECONDS": "0.2",
        "FILEDROP_METRICS_PORT": str(port),
        "INGEST_HOST": "127.0.0.1",
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    name = f"rent-{uuid.uuid4().hex[:10]}.csv"
    process = start_source("filedrop", env)
    url = f"http://127.0.0.1:{port}"
    try:
        shutil.copyfile(ROOT / "tests/fixtures/filedrop/rent_status.csv", inbox / name)
        samples = await scrape_until(
            url,
            lambda s: value(s, "bridge_filedrop_files_total", outcome="processed") == 1,
            process,
        )
        rows = {
            outcome: value(samples, "bridge_filedrop_rows_total", outcome=outcome)
            for outcome in ("emitted", "skipped", "rejected")
        }
        assert rows == {"emitted": 2, "skipped": 1, "rejected": 0}  # R-3 is `paid`: nothing to send
        assert value(samples, "bridge_filedrop_pending_files") == 0
        async with httpx.AsyncClient(timeout=10) as client:
            exposition = (await client.get(f"{url}/metrics")).content
        assert promtool_problems(exposition) == ""
    finally:
        await stopped_cleanly(process)
        await pg_pool.execute("DELETE FROM filedrop_files WHERE name = $1", name)


# --- promtool --------------------------------------------------------------------------------


@contextmanager
def every_metric_sampled() -> Iterator[None]:
    """promtool lints the names of samples, and a labelled metric has none until used: give
    each bridge metric one (label values `lint`) while the block runs, so none goes unchecked."""
    added = []
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:  # no public accessor
            values = ["lint"] * len(metric._labelnames)
            metric.labels(*values)
            added.append((metric, values))
    try:
        yield
    finally:
        for metric, values in added:
            metric.remove(*values)


async def test_promtool_finds_every_services_metrics_clean(
    ingest_url: str, receipts_url: str
) -> None:
    with every_metric_sampled():
        async with httpx.AsyncClient(timeout=10) as client:
            expositions = {
                "ingest": (await client.get(f"{ingest_url}/metrics")).content,
                "receipts": (await client.get(f"{receipts_url}/metrics")).content,
            }
        # The dispatcher's /metrics is its process registry, every bridge_* name included.
        expositions["dispatcher registry"] = generate_latest()
    for exposition in expositions.values():
        assert b"bridge_dead_letter_depth" in exposition
    assert {name: promtool_problems(text) for name, text in expositions.items()} == {
        name: "" for name in expositions
    }
