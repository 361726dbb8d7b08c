"""INGEST_WORKERS: several ingest processes on one port, as `python -m ingest` runs them by
default on a machine with several cores. Every webhook is accepted by one of them and
delivered once, and `/metrics`, whichever worker answers it, counts them all. Each worker
accepts on a socket of its own (bridge.workers), so a burst is spread over them, and a
worker that dies leaves no socket behind that takes connections nobody answers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import MULTIPROCESS_DIR

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


def worker_pids(pipeline: Pipeline) -> list[int]:
    """The supervisor's spawned children (not multiprocessing's resource tracker)."""
    supervisor = pipeline.processes["ingest"].popen
    assert supervisor is not None
    found = subprocess.run(
        ["pgrep", "-P", str(supervisor.pid), "-f", "spawn_main"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return [int(pid) for pid in found]


def accepted_by(pid: int) -> float:
    """The webhooks one worker accepted: its own file in the multiprocess metrics directory."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    variables = dict(entry.decode().partition("=")[::2] for entry in environ if b"=" in entry)
    path = Path(variables[MULTIPROCESS_DIR]) / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    total = 0.0
    for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
        _, name, labels, _ = json.loads(key)
        if name == "bridge_webhooks_received_total" and labels == {
            "provider": "moniepoint",
            "outcome": "accepted",
        }:
            total += value
    return total


async def post_on_new_connections(pipeline: Pipeline, payloads: list[dict[str, object]]) -> None:
    """Every webhook on a connection of its own, all at once (as a burst of providers' posts)."""

    async def post(payload: dict[str, object]) -> None:
        body, headers = pipeline.signed(payload)
        async with httpx.AsyncClient(timeout=15) as client:
            answer = await client.post(
                f"{pipeline.ingest}/webhooks/moniepoint", content=body, headers=headers
            )
        assert answer.status_code == 200, answer.text

    await asyncio.gather(*(post(p) for p in payloads))


def test_workers_share_the_port_and_every_webhook_is_delivered_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    workers = worker_pids(pipeline)
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


def test_a_burst_is_spread_over_the_workers(pipeline: Pipeline) -> None:
    workers = worker_pids(pipeline)
    before = {pid: accepted_by(pid) for pid in workers}
    burst = [payment("payment.successful", new_account(), new_reference()) for _ in range(60)]
    asyncio.run(post_on_new_connections(pipeline, burst))
    taken = {pid: accepted_by(pid) - before[pid] for pid in workers}
    assert sum(taken.values()) == len(burst), taken
    # The kernel hashes each connection to a socket: 60 split 50/50 on average, below 10
    # about once in 10**8. With one shared socket, one worker took nearly all of a burst.
    assert min(taken.values()) >= 10, taken


def test_a_dead_worker_is_replaced_and_no_connection_waits_for_it(pipeline: Pipeline) -> None:
    victim = worker_pids(pipeline)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in worker_pids(pipeline) and len(worker_pids(pipeline)) == 2, 30)

    # Had the supervisor kept a copy of the dead worker's socket, it would still listen, and
    # the connections the kernel hashed to it would wait until the client's timeout (a
    # failed post). Bursts until the replacement, once it has started, takes its share.
    def replacement_serves() -> bool:
        burst = [payment("payment.successful", new_account(), new_reference()) for _ in range(20)]
        asyncio.run(post_on_new_connections(pipeline, burst))
        return all(accepted_by(pid) > 0 for pid in worker_pids(pipeline))

    wait_for(replacement_serves, 60, interval=0.5)
