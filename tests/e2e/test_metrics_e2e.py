"""Issue 10's metrics through the whole pipeline, scraped from the real processes: a message
shows as sent (dispatcher) and delivered (receipts) and is timed at each step; the
dispatcher's gauges report its consumer lag and the dead-letter depth; `promtool check
metrics` is clean on the dispatcher's own /metrics (faust's web server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.events import EVENTS_TOPIC
from tests.integration.test_metrics import promtool_problems

from .harness import Pipeline, make_pipeline, post_payment, running, stack_env, wait_for

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    # Gauges refreshed often, so the test need not wait 15 s for them.
    with running(make_pipeline(stack_env(), METRICS_REFRESH_SECONDS="0.5")) as pipeline:
        yield pipeline


def exposition(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def scrape(url: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition(url))
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def lag(samples: Samples, topic: str) -> dict[str, float]:
    return {
        dict(labels)["partition"]: v
        for (name, labels), v in samples.items()
        if name == "bridge_consumer_lag" and dict(labels).get("topic") == topic
    }


def test_a_message_is_counted_sent_and_delivered_and_timed_at_each_step(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    dispatcher = f"http://127.0.0.1:{pipeline.ports['dispatcher-1']}"
    reference = post_payment(pipeline, pipeline.new_customer(tmp_path))
    wait_for(lambda: "delivered" in pipeline.stages(reference))

    sent = scrape(dispatcher)
    assert value(sent, "bridge_messages_sent_total", type="payment.successful") == 1
    assert value(sent, "bridge_event_to_send_seconds_count") == 1
    received = wait_for(
        lambda: (
            (s := scrape(pipeline.receipts))
            and value(s, "bridge_send_to_delivered_seconds_count") == 1
            and s
        )
    )
    assert value(received, "bridge_messages_delivered_total") == 1
    accepted = scrape(pipeline.ingest)
    # The Moniepoint payload carries the provider's timestamp.
    count = "bridge_provider_to_accepted_seconds_count"
    assert value(accepted, count, provider="moniepoint") == 1

    # Every partition of the topic is this one instance's, and all is committed.
    topic = pipeline.env["EVENTS_TOPIC"]
    partitions = {str(p) for p in range(EVENTS_TOPIC.partitions)}
    settled = wait_for(
        lambda: (
            (s := scrape(dispatcher))
            and set(lag(s, topic)) == partitions
            and sum(lag(s, topic).values()) == 0
            and s
        )
    )
    assert value(settled, "bridge_dead_letter_oldest_pending_seconds") == 0


def test_a_dead_letter_shows_in_the_depth_and_the_dispatchers_metrics_pass_promtool(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    dispatcher = f"http://127.0.0.1:{pipeline.ports['dispatcher-1']}"
    reference = post_payment(pipeline, pipeline.new_customer(tmp_path, phone=""))
    wait_for(lambda: "dead_lettered" in pipeline.stages(reference))
    depth = {"status": "manual_review", "reason": "missing_contact"}
    samples = wait_for(
        lambda: (
            (s := scrape(dispatcher)) and value(s, "bridge_dead_letter_depth", **depth) == 1 and s
        )
    )
    assert value(samples, "bridge_dead_letter_oldest_pending_seconds") > 0

    assert promtool_problems(exposition(dispatcher).encode()) == ""
