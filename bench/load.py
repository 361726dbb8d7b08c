"""The integration guide's load test: 500 distinct webhooks at once through the real pipeline.

    .venv/bin/python -m bench.load [--webhooks 500] [--per-minute 12000] [--ingest-workers N]
                                   [--rounds 3]

Every webhook is for a customer of its own (all in the directory first), signed, and posted
on its own connection (all opened first, raw sockets) at the same moment. Prints the
acknowledgement latency (ingest's 200, after the Kafka ack) p50/p95/p99/max, non-200
answers, how long until every message reached Siteti and until every one was delivered,
whether each was sent exactly once, and the peak resident memory (RSS) of each service
during the run, against the guide's targets (p95 < 100 ms here, < 5 s in the guide; RSS
< 150 MB). One burst's p95 moves by a third between identical runs on a shared machine: the
burst is repeated (`--rounds`, each after the previous one's delivery, after a warm-up burst of
100) and the median round's p95 is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.__main__ import usable_cpus
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
WARM_UP_WEBHOOKS = 100


def rss_mb(pid: int) -> float:
    """Resident memory of a service's largest process (itself, or one of its workers: ingest
    with INGEST_WORKERS > 1), from /proc (no extra dependency)."""
    largest = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            largest = int(line.split()[1]) / 1024
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        try:
            largest = max(largest, rss_mb(int(child)))
        except OSError:
            pass  # a worker between restarts
    return largest


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


def raw_request(host: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 POST, bytes ready to write, closing its connection after the answer."""
    lines = ["POST /webhooks/moniepoint HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + body


async def post_all_at_once(
    pipeline: Pipeline, payloads: list[dict[str, Any]]
) -> tuple[list[float], Counter[int]]:
    """Each webhook on a connection of its own, all connected first, then all written at
    once; (latencies ms, statuses). The time runs from a request's write to its answer's
    end: raw sockets, so that the client's own cost (an HTTP library opening 500
    connections on the cores ingest runs on) is not counted as ingest's."""
    host, port = "127.0.0.1", pipeline.ports["ingest"]
    requests = [raw_request(host, port, *pipeline.signed(p)) for p in payloads]
    connections = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in requests))
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def answer(reader: asyncio.StreamReader, written: float) -> None:
        status_line = await reader.readline()
        await reader.read()  # headers and body, until the server closes
        latencies.append((time.perf_counter() - written) * 1000)
        statuses[int(status_line.split()[1])] += 1

    waits = []
    for (reader, writer), request in zip(connections, requests, strict=True):
        writer.write(request)
        waits.append(answer(reader, time.perf_counter()))
    await asyncio.gather(*waits)
    for _, writer in connections:
        writer.close()
    return latencies, statuses


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Burst:
    latencies: list[float]  # ms, one per webhook
    statuses: Counter[int]
    counts: Counter[str]  # messages at Siteti, by reference
    all_sent: float  # s from the burst's start until every message was at Siteti
    all_delivered: float  # s until every one was delivered


def burst(pipeline: Pipeline, webhooks: int) -> Burst:
    """One burst of `webhooks` distinct webhooks (customers of their own), followed until
    every message was delivered."""
    accounts = [new_account() for _ in range(webhooks)]
    rows = [(a, f"0803{4000000 + i:07d}", "returning", 0) for i, a in enumerate(accounts)]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline.import_customers(Path(tmp), rows)
    payloads = [payment("payment.successful", a, new_reference()) for a in accounts]
    references = {f"moniepoint:{p['data']['transactionReference']}" for p in payloads}
    began = time.perf_counter()
    latencies, statuses = asyncio.run(post_all_at_once(pipeline, payloads))

    def sent() -> Counter[str]:
        messages = pipeline.sandbox_get("messages")
        return Counter(m["reference"] for m in messages if m["reference"] in references)

    wait_for(lambda: len(sent()) == len(references), timeout=300, interval=0.2)
    all_sent = time.perf_counter() - began
    try:
        wait_for(
            lambda: all("delivered" in pipeline.stages(r) for r in references),
            timeout=300,
            interval=1,
        )
    except AssertionError:
        sys.exit(undelivered(pipeline, references))
    all_delivered = time.perf_counter() - began
    time.sleep(2)  # a late duplicate would show now
    return Burst(latencies, statuses, sent(), all_sent, all_delivered)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--webhooks", type=int, default=500)
    parser.add_argument("--per-minute", type=int, default=12000, help="the Siteti plan")
    parser.add_argument(
        "--ingest-workers",
        type=int,
        default=usable_cpus(),
        help="INGEST_WORKERS (default: ingest's own, one per usable CPU)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="bursts, one after the other's delivery; the figure is the median round's p95",
    )
    args = parser.parse_args()
    pipeline = on_plan(
        args.per_minute, LOG_LEVEL="WARNING", INGEST_WORKERS=str(args.ingest_workers)
    )
    pipeline.provision()
    pipeline.start()
    try:
        # Warm-up, not reported: a serving ingest has made its first connections, imports
        # and Kafka metadata requests long before a payroll run arrives.
        burst(pipeline, WARM_UP_WEBHOOKS)
        with PeakMemory(pipeline) as memory:
            bursts = [burst(pipeline, args.webhooks) for _ in range(args.rounds)]
        report(args, bursts, memory.peaks)
    finally:
        pipeline.stop()
        pipeline.deprovision()


def undelivered(pipeline: Pipeline, references: set[str]) -> str:
    """What to look at when messages were sent but not all delivered: their stories and the
    delivery webhooks the sandbox gave up on (it tries SANDBOX_WEBHOOK_MAX_ATTEMPTS times)."""
    missing = sorted(r for r in references if "delivered" not in pipeline.stages(r))
    gave_up = [
        w
        for w in pipeline.sandbox_get("webhooks")
        if w.get("gave_up") and w.get("reference") in references
    ]
    stories = Counter(" → ".join(pipeline.stages(r)) for r in missing[:50])
    lines = [f"{len(missing)} of {len(references)} messages not delivered after 300 s"]
    lines += [f"  {count} × {story or '(no audit rows)'}" for story, count in stories.items()]
    lines.append(f"delivery webhooks the sandbox gave up on: {len(gave_up)}")
    lines += [
        f"  {w['type']} {w['reference']}: status {w['status_code']}, {w['error']}"
        for w in gave_up[:10]
    ]
    return "\n".join(lines)


def report(args: argparse.Namespace, bursts: list[Burst], peaks: dict[str, float]) -> None:
    print(
        f"{args.webhooks} distinct webhooks at once, {len(bursts)} round(s), Siteti plan"
        f" {args.per_minute}/min, {args.ingest_workers} ingest worker(s)"
    )
    p95s = []
    for number, b in enumerate(bursts, 1):
        p95s.append(p95 := percentile(b.latencies, 95))
        once = sum(1 for n in b.counts.values() if n == 1)
        print(
            f"round {number}: acknowledged (200 after the Kafka ack) p50"
            f" {statistics.median(b.latencies):.0f} ms, p95 {p95:.0f} ms, p99"
            f" {percentile(b.latencies, 99):.0f} ms, max {max(b.latencies):.0f} ms; answers"
            f" {dict(sorted(b.statuses.items()))}; sent exactly once {once} of {args.webhooks}"
            f" (more than once: {len(b.counts) - once}); every message at Siteti after"
            f" {b.all_sent:.1f} s, delivered after {b.all_delivered:.1f} s"
        )
    p95 = statistics.median(p95s)
    print(
        f"acknowledgement p95, median round: {p95:.0f} ms"
        f" — target p95 < {P95_TARGET_MS} ms: {'met' if p95 < P95_TARGET_MS else 'MISSED'}"
    )
    print(f"peak RSS over the rounds (target < {RSS_TARGET_MB} MB each):")
    for name, peak in sorted(peaks.items()):
        print(f"  {name:<14} {peak:6.1f} MB  {'ok' if peak < RSS_TARGET_MB else 'OVER'}")


if __name__ == "__main__":
    main()
