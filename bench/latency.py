"""Webhook-to-Siteti latency at idle: one webhook at a time through the real pipeline.

    .venv/bin/python -m bench.latency [--events 50]

Prints p50/p95/max of: the webhook's 200 (ingest, after the Kafka ack) and the time from
posting the webhook to the sandbox receiving the template trigger.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from tests.e2e.harness import (
    make_pipeline,
    new_account,
    new_reference,
    payment,
    stack_env,
    wait_for,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    pipeline = make_pipeline(stack_env(), LOG_LEVEL="WARNING")
    pipeline.provision()
    pipeline.start()
    try:
        account = new_account()
        with tempfile.TemporaryDirectory() as tmp:
            pipeline.import_customers(Path(tmp), [(account, "08031234567", "returning", 0)])
        # One kept-alive connection, as a provider's webhook sender keeps.
        client = httpx.Client(timeout=10)
        url = f"{pipeline.ingest}/webhooks/moniepoint"
        ingest_ms: list[float] = []
        to_siteti_ms: list[float] = []
        for _ in range(args.events):
            ref = new_reference()
            body, headers = pipeline.signed(payment("payment.successful", account, ref))
            posted = time.time()
            answer = client.post(url, content=body, headers=headers)
            ingest_ms.append((time.time() - posted) * 1000)
            assert answer.status_code == 200, answer.text
            message = wait_for(
                lambda r=ref: pipeline.sandbox_get("messages", reference=f"moniepoint:{r}"),
                interval=0.005,
            )[0]
            at = datetime.fromisoformat(message["at"].replace("Z", "+00:00")).timestamp()
            to_siteti_ms.append((at - posted) * 1000)
            time.sleep(0.05)

        def line(name: str, values: list[float]) -> str:
            p95 = statistics.quantiles(values, n=20)[18]
            p50 = statistics.median(values)
            return f"{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(values):.1f} ms"

        print(f"{args.events} webhooks, one at a time")
        print(line("webhook answered (after Kafka ack)", ingest_ms))
        print(line("webhook to Siteti trigger", to_siteti_ms))
    finally:
        pipeline.stop()
        pipeline.deprovision()


if __name__ == "__main__":
    main()
