"""The integration guide's load test: 500 distinct webhooks at once through the real pipeline.

    .venv/bin/python -m bench.load [--webhooks 500] [--per-minute 12000]

Every webhook is for a customer of its own (all in the directory first), signed, and posted
on its own connection at the same moment. Prints the acknowledgement latency (ingest's 200,
after the Kafka ack) p50/p95/p99/max, non-200 answers, how long until every message reached
Siteti and until every one was delivered, whether each was sent exactly once, and the
peak resident memory (RSS) of each service during the run, against the guide's targets
(p95 < 100 ms here, < 5 s in the guide; RSS < 150 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import (
    Pipeline,
    new_account,
    new_reference,
    on_plan,
    payment,
    wait_for,
)

RSS_TARGET_MB = 150
P95_TARGET_MS = 100


def rss_mb(pid: int) -> float:
    """Resident memory of one process, from /proc (no extra dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """Samples every service's RSS in a thread until stopped; keeps each one's peak."""

    def __init__(self, pipeline: Pipeline, every: float = 0.1) -> None:
        self.pids = {
            name: p.popen.pid for name, p in pipeline.processes.items() if p.popen is not None
        }
        self.peaks: dict[str, float] = dict.fromkeys(self.pids, 0.0)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                try:
                    self.peaks[name] = max(self.peaks[name], rss_mb(pid))
                except OSError:
                    pass  # the process is gone: the run will say so
            self._stop.wait(self._every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def post_all_at_once(
    pipeline: Pipeline, payloads: list[dict[str, Any]]
) -> tuple[list[float], Counter[int]]:
    """Each webhook on its own connection, all released together; (latencies ms, statuses)."""
    signed = [pipeline.signed(p) for p in payloads]
    url = f"{pipeline.ingest}/webhooks/moniepoint"
    limits = httpx.Limits(max_connections=len(payloads), max_keepalive_connections=0)
    start = asyncio.Event()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def post(body: bytes, headers: dict[str, str]) -> None:
            await start.wait()
            posted = time.perf_counter()
            answer = await client.post(url, content=body, headers=headers)
            latencies.append((time.perf_counter() - posted) * 1000)
            statuses[answer.status_code] += 1

        tasks = [asyncio.create_task(post(body, headers)) for body, headers in signed]
        await asyncio.sleep(0.2)  # every task waiting at the gate
        start.set()
        await asyncio.gather(*tasks)
    return latencies, statuses


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--webhooks", type=int, default=500)
    parser.add_argument("--per-minute", type=int, default=12000, help="the Siteti plan")
    args = parser.parse_args()
    pipeline = on_plan(args.per_minute, LOG_LEVEL="WARNING")
    pipeline.provision()
    pipeline.start()
    try:
        accounts = [new_account() for _ in range(args.webhooks)]
        rows = [(a, f"0803{4000000 + i:07d}", "returning", 0) for i, a in enumerate(accounts)]
        with tempfile.TemporaryDirectory() as tmp:
            pipeline.import_customers(Path(tmp), rows)
        payloads = [payment("payment.successful", a, new_reference()) for a in accounts]
        references = {f"moniepoint:{p['data']['transactionReference']}" for p in payloads}
        with PeakMemory(pipeline) as memory:
            began = time.perf_counter()
            latencies, statuses = asyncio.run(post_all_at_once(pipeline, payloads))

            def sent() -> Counter[str]:
                messages = pipeline.sandbox_get("messages")
                return Counter(m["reference"] for m in messages if m["reference"] in references)

            wait_for(lambda: len(sent()) == len(references), timeout=300, interval=0.2)
            all_sent = time.perf_counter() - began
            wait_for(
                lambda: all("delivered" in pipeline.stages(r) for r in references),
                timeout=300,
                interval=1,
            )
            all_delivered = time.perf_counter() - began
            time.sleep(2)  # a late duplicate would show now
            counts = sent()
        report(args, latencies, statuses, counts, all_sent, all_delivered, memory.peaks)
    finally:
        pipeline.stop()
        pipeline.deprovision()


def report(
    args: argparse.Namespace,
    latencies: list[float],
    statuses: Counter[int],
    counts: Counter[str],
    all_sent: float,
    all_delivered: float,
    peaks: dict[str, float],
) -> None:
    p95 = percentile(latencies, 95)
    print(f"{args.webhooks} distinct webhooks at once, Siteti plan {args.per_minute}/min")
    print(
        f"acknowledged (200 after the Kafka ack): p50 {statistics.median(latencies):.0f} ms, "
        f"p95 {p95:.0f} ms, p99 {percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms"
        f" — target p95 < {P95_TARGET_MS} ms: {'met' if p95 < P95_TARGET_MS else 'MISSED'}"
    )
    print(f"answers: {dict(sorted(statuses.items()))}")
    once = sum(1 for n in counts.values() if n == 1)
    print(f"sent exactly once: {once} of {args.webhooks} (more than once: {len(counts) - once})")
    print(
        f"every message at Siteti after {all_sent:.1f} s, every one delivered after "
        f"{all_delivered:.1f} s"
    )
    print(f"peak RSS (target < {RSS_TARGET_MB} MB each):")
    for name, peak in sorted(peaks.items()):
        print(f"  {name:<14} {peak:6.1f} MB  {'ok' if peak < RSS_TARGET_MB else 'OVER'}")


if __name__ == "__main__":
    main()
