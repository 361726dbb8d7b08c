"""Drain bursts through the real pipeline under a Siteti plan limit.

    .venv/bin/python -m bench.burst [--events 5000] [--customers 500] [--limit 3000] [--instances 2]
    .venv/bin/python -m bench.burst --scenario single|burst|pair|all [--json]

Needs the local stack (`make stack-up`). Starts its own sandbox and services on free ports and
a topic of its own.

`--scenario live` (the default) posts the burst to ingest while the dispatchers run, waits
until every message is in the sandbox, and prints: ingest throughput, achieved send rate as a
share of the plan limit, 429s received, duplicates and losses.

The other scenarios measure the dispatcher alone (issue 11): the customers are imported in
bulk and the dispatchers are in their consumer group before the clock starts; then the whole
burst lands on the topic at once, as ingest would publish it, and the clock stops at the last
call Siteti accepted. The plan-limited ideal is the calls made ÷ the plan's rate (a first
event of a customer costs a contact upsert and a trigger, a later one the trigger alone). The
sandbox sends no status webhooks here: receipts is not what is measured.

- `single`: 2,000 events of distinct customers, one instance, unlimited plan: messages/s.
- `burst`: 500 events of distinct customers, one instance, 6,000/min: drain ÷ ideal.
- `pair`: 5,000 events of 500 customers, two instances, 3,000/min: share of the plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bridge.config import Settings
from bridge.events import EVENTS_TOPIC, CanonicalEvent, Customer, EventData, new_event
from bridge.kafka import client_options
from bridge.protect import sealer
from tests.e2e.harness import (
    Pipeline,
    new_account,
    new_reference,
    on_plan,
    payment,
)


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


async def post_all(
    pipeline: Pipeline, payloads: list[dict[str, object]], concurrency: int
) -> list[float]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def post(payload: dict[str, object]) -> None:
            body, headers = pipeline.signed(payload)
            async with gate:
                started = time.perf_counter()
                answer = await client.post(
                    f"{pipeline.ingest}/webhooks/moniepoint", content=body, headers=headers
                )
                latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise SystemExit(f"ingest refused a webhook: {answer.status_code} {answer.text}")

        await asyncio.gather(*(post(p) for p in payloads))
    return latencies


def import_directory(pipeline: Pipeline, count: int) -> list[str]:
    """`count` customers with distinct numbers, in the directory in one import."""
    accounts = [new_account() for _ in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(a, f"0803{i:07d}", "returning", i % 3) for i, a in enumerate(accounts)]
        pipeline.import_customers(Path(tmp), rows)
    return accounts


def wait_for_messages(pipeline: Pipeline, expected: int, timeout: float) -> None:
    # Poll the sandbox's counters (cheap); read the full logs once, at the end.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pipeline.sandbox_get("stats")["messages"] < expected:
        time.sleep(0.5)
    time.sleep(2)  # a duplicate, if any, would land now


def run_live(args: argparse.Namespace) -> None:
    pipeline = on_plan(args.limit, dispatchers=args.instances, LOG_LEVEL="WARNING")
    pipeline.provision()
    pipeline.start()
    try:
        accounts = import_directory(pipeline, args.customers)
        payloads = [
            payment("payment.successful", accounts[i % len(accounts)], new_reference(), 1000.0 + i)
            for i in range(args.events)
        ]
        refs = {f"moniepoint:{p['data']['transactionReference']}" for p in payloads}

        started = time.monotonic()
        latencies = asyncio.run(post_all(pipeline, payloads, args.concurrency))
        ingest_seconds = time.monotonic() - started
        print(
            f"ingest: {len(payloads)} webhooks in {ingest_seconds:.1f} s "
            f"({len(payloads) / ingest_seconds:.0f}/s); 200 after Kafka ack: "
            f"p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {statistics.quantiles(latencies, n=100)[98] * 1000:.1f} ms"
        )

        expected_minutes = (args.events + args.customers) / args.limit
        wait_for_messages(pipeline, len(refs), expected_minutes * 60 * 1.5 + 60)
        messages = httpx.get(f"{pipeline.sandbox}/_sandbox/messages", timeout=120).json()
        delivered = Counter(m["reference"] for m in messages if m["reference"] in refs)
        calls = httpx.get(f"{pipeline.sandbox}/_sandbox/calls", timeout=120).json()
        drained = time.monotonic() - started

        stamps = sorted(seconds(c["at"]) for c in calls if c["status"] < 400)
        window = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
        rate = (len(stamps) - 1) / window * 60 if window else float("nan")
        per_minute = Counter(int((s - stamps[0]) // 60) for s in stamps)
        by_status = Counter(c["status"] for c in calls)
        print(
            f"drain: {len(delivered)}/{len(refs)} messages in {drained:.1f} s"
            " from the first webhook"
        )
        print(
            f"siteti calls: {len(calls)} ({dict(sorted(by_status.items()))}), "
            f"accepted over {window:.1f} s = {rate:.0f}/min = {rate / args.limit:.1%} of the "
            f"{args.limit}/min plan"
        )
        print(
            f"busiest 60 s window from the first call: {max(per_minute.values())} calls "
            f"(plan {args.limit})"
        )
        print(f"429s received: {by_status.get(429, 0)}")
        doubled = sum(1 for n in delivered.values() if n > 1)
        print(f"duplicates: {doubled}, losses: {len(refs - set(delivered))}")
    finally:
        pipeline.stop()
        pipeline.deprovision()


# --- The dispatcher's scenarios (issue 11) --------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    events: int
    customers: int
    limit: int  # the plan, calls per minute (100,000: unlimited for one dispatcher)
    instances: int


SCENARIOS = {
    "single": Scenario("single", 2000, 2000, 100_000, 1),
    "burst": Scenario("burst", 500, 500, 6000, 1),
    "pair": Scenario("pair", 5000, 500, 3000, 2),
}


@dataclass(frozen=True)
class Drain:
    scenario: str
    events: int
    customers: int
    instances: int
    plan_per_minute: int
    calls: int  # accepted by Siteti
    calls_per_event: float
    status_429: int
    duplicates: int
    losses: int
    drain_seconds: float  # first event on the topic → last call accepted
    ideal_seconds: float  # calls ÷ plan rate
    ratio: float  # drain ÷ ideal
    plan_share: float  # ideal ÷ drain: the share of the plan used over the whole drain
    messages_per_second: float
    load_before: str
    load_after: str


def assigned(pipeline: Pipeline, names: list[str]) -> bool:
    """Whether every instance owns partitions of the topic and together they own them all
    once (their lag gauges), so no rebalance is pending when the burst lands."""
    topic = pipeline.env["EVENTS_TOPIC"]
    owned: list[set[str]] = []
    for name in names:
        text = httpx.get(f"http://127.0.0.1:{pipeline.ports[name]}/metrics", timeout=5).text
        owned.append(
            {
                line.split('partition="', 1)[1].split('"', 1)[0]
                for line in text.splitlines()
                if line.startswith("bridge_consumer_lag{") and f'topic="{topic}"' in line
            }
        )
    every = set().union(*owned)
    return all(owned) and len(every) == EVENTS_TOPIC.partitions == sum(map(len, owned))


def wait_assigned(pipeline: Pipeline, names: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    while time.monotonic() < deadline:
        if assigned(pipeline, names):
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 3:
                return
        else:
            stable_since = None
        time.sleep(0.5)
    raise SystemExit("the dispatchers never settled their partitions")


async def produce(pipeline: Pipeline, events: list[CanonicalEvent]) -> None:
    """The events on the pipeline's topic, keyed and sealed exactly as ingest publishes them."""
    settings = Settings()
    seal = sealer(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP_SERVERS"],
        acks="all",
        linger_ms=5,
        **client_options(settings),
    )
    await producer.start()
    try:
        for event in events:
            key, value = seal(event)
            await producer.send(pipeline.env["EVENTS_TOPIC"], value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def run_drain(scenario: Scenario) -> Drain:
    pipeline = on_plan(
        scenario.limit,
        dispatchers=scenario.instances,
        SANDBOX_WEBHOOK_URL="",
        METRICS_REFRESH_SECONDS="0.5",
        LOG_LEVEL="WARNING",
    )
    dispatchers = [f"dispatcher-{i}" for i in range(1, scenario.instances + 1)]
    pipeline.provision()
    try:
        pipeline.start("sandbox")
        accounts = import_directory(pipeline, scenario.customers)
        pipeline.start(*dispatchers)
        wait_assigned(pipeline, dispatchers)
        events = [
            new_event(
                EventData(
                    provider="moniepoint",
                    transaction_reference=new_reference(),
                    amount=Decimal(1000 + i),
                    customer=Customer(account_number=accounts[i % len(accounts)]),
                ),
                "payment.successful",
            )
            for i in range(scenario.events)
        ]
        refs = {e.reference for e in events}
        load_before = load()
        started = time.time()
        asyncio.run(produce(pipeline, events))
        calls_expected = scenario.events + min(scenario.events, scenario.customers)
        wait_for_messages(pipeline, len(refs), calls_expected / scenario.limit * 60 * 3 + 60)
        load_after = load()
        messages = httpx.get(f"{pipeline.sandbox}/_sandbox/messages", timeout=120).json()
        calls = httpx.get(f"{pipeline.sandbox}/_sandbox/calls", timeout=120).json()
    finally:
        pipeline.stop()
        pipeline.deprovision()

    delivered = Counter(m["reference"] for m in messages if m["reference"] in refs)
    accepted = [seconds(c["at"]) for c in calls if c["status"] < 400]
    drain = max(accepted) - started
    ideal = len(accepted) / (scenario.limit / 60)
    return Drain(
        scenario=scenario.name,
        events=scenario.events,
        customers=scenario.customers,
        instances=scenario.instances,
        plan_per_minute=scenario.limit,
        calls=len(accepted),
        calls_per_event=round(len(accepted) / scenario.events, 3),
        status_429=sum(1 for c in calls if c["status"] == 429),
        duplicates=sum(1 for n in delivered.values() if n > 1),
        losses=len(refs - set(delivered)),
        drain_seconds=round(drain, 2),
        ideal_seconds=round(ideal, 2),
        ratio=round(drain / ideal, 3),
        plan_share=round(ideal / drain, 3),
        messages_per_second=round(len(delivered) / drain, 1),
        load_before=load_before,
        load_after=load_after,
    )


def describe(d: Drain) -> str:
    head = (
        f"{d.scenario}: {d.events} events ({d.customers} customers), {d.instances} instance(s), "
        f"plan {d.plan_per_minute}/min: {d.calls} calls ({d.calls_per_event}/event) "
        f"drained in {d.drain_seconds:.1f} s"
    )
    if d.scenario == "single":
        figure = f"{d.messages_per_second:.1f} messages/s sustained"
    else:
        figure = (
            f"ideal {d.ideal_seconds:.1f} s, ratio {d.ratio:.2f}x, "
            f"{d.plan_share:.1%} of the plan over the drain"
        )
    return (
        f"{head}; {figure}; 429s {d.status_429}, duplicates {d.duplicates}, "
        f"losses {d.losses}; load {d.load_before} -> {d.load_after}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario", choices=["live", *SCENARIOS, "all"], default="live", help="what to run"
    )
    parser.add_argument("--json", action="store_true", help="the dispatcher scenarios as JSON")
    parser.add_argument("--events", type=int, default=5000, help="live: webhooks")
    parser.add_argument("--customers", type=int, default=500, help="live: distinct customers")
    parser.add_argument(
        "--limit", type=int, default=3000, help="live: Siteti plan limit, calls per minute"
    )
    parser.add_argument("--instances", type=int, default=2, help="live: dispatcher instances")
    parser.add_argument("--concurrency", type=int, default=32, help="live: webhooks in flight")
    args = parser.parse_args()

    if args.scenario == "live":
        run_live(args)
        return
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results: list[dict[str, Any]] = []
    for name in names:
        drain = run_drain(SCENARIOS[name])
        results.append(asdict(drain))
        if not args.json:
            print(describe(drain), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
