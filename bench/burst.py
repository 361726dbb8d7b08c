"""Drain a payroll-sized burst through the real pipeline under a Siteti plan limit.

    .venv/bin/python -m bench.burst [--events 5000] [--customers 500] [--limit 3000] [--instances 2]

Needs the local stack (`make stack-up`). Starts its own sandbox, ingest, receipts and
dispatchers on free ports and a topic of its own, posts the burst, waits until every message
is in the sandbox, and prints: ingest throughput, achieved send rate as a share of the plan
limit, 429s received, duplicates and losses.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx

from tests.e2e.harness import (
    Pipeline,
    make_pipeline,
    new_account,
    new_reference,
    payment,
    stack_env,
)


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument(
        "--limit", type=int, default=3000, help="Siteti plan limit, calls per minute"
    )
    parser.add_argument("--instances", type=int, default=2, help="dispatcher instances")
    parser.add_argument("--concurrency", type=int, default=32, help="webhooks in flight")
    args = parser.parse_args()

    pipeline = make_pipeline(
        stack_env(),
        dispatchers=args.instances,
        SITETI_RATE_LIMIT_PER_MINUTE=str(args.limit),
        SANDBOX_RATE_LIMIT_PER_MINUTE=str(args.limit),
        LOG_LEVEL="WARNING",
    )
    pipeline.provision()
    pipeline.start()
    try:
        accounts = [new_account() for _ in range(args.customers)]
        with tempfile.TemporaryDirectory() as tmp:
            rows = [(a, f"0803{i:07d}", "returning", i % 3) for i, a in enumerate(accounts)]
            pipeline.import_customers(Path(tmp), rows)
        payloads = [
            payment("payment.successful", accounts[i % len(accounts)], new_reference(), 1000.0 + i)
            for i in range(args.events)
        ]
        refs = {f"moniepoint:{p['data']['transactionReference']}" for p in payloads}  # type: ignore[index]

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
        deadline = time.monotonic() + expected_minutes * 60 * 1.5 + 60
        # Poll the sandbox's counters (cheap); read the full logs once, at the end.
        while time.monotonic() < deadline and pipeline.sandbox_get("stats")["messages"] < len(refs):
            time.sleep(2)
        time.sleep(2)
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


if __name__ == "__main__":
    main()
