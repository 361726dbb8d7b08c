"""INGEST_WORKERS: several ingest processes on one port, as `python -m ingest` runs them by
default on a machine with several cores. Every webhook is accepted by one of them and
delivered once, and `/metrics`, whichever worker answers it, counts them all."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import (
    Pipeline,
    make_pipeline,
    new_account,
    new_reference,
    payment,
    running,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.e2e
WORKERS = 2


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    with running(make_pipeline(stack_env(), INGEST_WORKERS=str(WORKERS))) as pipeline:
        yield pipeline


def accepted(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "bridge_webhooks_received_total"
        and sample.labels == {"provider": "moniepoint", "outcome": "accepted"}
    )


def test_workers_share_the_port_and_every_webhook_is_delivered_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    supervisor = pipeline.processes["ingest"].popen
    assert supervisor is not None
    # The supervisor's spawned children (not multiprocessing's resource tracker).
    workers = subprocess.run(
        ["pgrep", "-P", str(supervisor.pid), "-f", "spawn_main"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert len(workers) == WORKERS, workers

    # A customer (and number) each: messages to one number are paced seconds apart.
    accounts = [new_account() for _ in range(40)]
    rows = [(a, f"0803{4000000 + i:07d}", "first_time", 0) for i, a in enumerate(accounts)]
    pipeline.import_customers(tmp_path, rows)
    refs = [new_reference() for _ in accounts]
    payments = [payment("payment.successful", a, r) for a, r in zip(accounts, refs, strict=True)]
    # Concurrent connections, so that the kernel hands them to both workers.
    asyncio.run(pipeline.post_many(payments))

    # Each scrape is answered by whichever worker accepts it: all of them count every webhook.
    for _ in range(6):
        assert accepted(pipeline.ingest) == len(refs)
    for ref in refs:
        wait_for(lambda ref=ref: "dispatched" in pipeline.stages(f"moniepoint:{ref}"), 60)
        assert len(pipeline.trigger_calls(f"moniepoint:{ref}")) == 1
