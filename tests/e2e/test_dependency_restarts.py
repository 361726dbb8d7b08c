"""Issue 7, item 8: Redis, PostgreSQL and the Kafka broker each restarted mid-stream.

A steady stream of payments runs while one dependency is stopped (scripts/stack/down.sh NAME)
and started again (up.sh NAME). Ingest may answer 503 meanwhile (never another 5xx) and the
poster retries as a provider does. Afterwards every accepted webhook is delivered exactly once,
delivery resumed within 30 s of the dependency's return, and no service process was restarted.

These tests restart the stack the run uses: the shared one under `make test` (tests run one at
a time there), or a private one when STACK_DIR (and its ports: KAFKA_PORT, REDIS_PORT, …)
point the stack scripts elsewhere. The dependency is always started again, even on failure.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import (
    ROOT,
    Pipeline,
    make_pipeline,
    new_account,
    new_reference,
    payment,
    running,
    wait_for,
)

pytestmark = pytest.mark.e2e

STACK_DIR = Path(os.environ.get("STACK_DIR") or ROOT / ".stack")
WEBHOOKS = 60
STREAM_SECONDS = 12.0
RESTART_AT_SECONDS = 3.0
DOWN_SECONDS = 4.0
RECOVERY_LIMIT_SECONDS = 30.0


def stack_env() -> dict[str, str]:
    lines = (STACK_DIR / "env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


async def stack_script(script: str, component: str) -> None:
    # The URLs make the scripts treat a component as external (checked, never started), and
    # conftest points DATABASE_URL at the session's database: leave them out.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "DATABASE_URL"}
    }
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "scripts/stack" / script),
        component,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, f"{script} {component}: {output.decode()}"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    pipeline = make_pipeline(stack_env(), MISSING_CONTACT_WAIT_SECONDS="5")
    for process in pipeline.processes.values():
        process.name = f"restarts-{process.name}"  # logs of its own, to read what recovered
    with running(pipeline):
        yield pipeline


@dataclass
class Stream:
    """Webhooks posted steadily; each retried on 503 until accepted, as a provider does."""

    pipeline: Pipeline
    payloads: list[dict[str, Any]]
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: dict[str, float] = field(default_factory=dict)  # reference -> wall time

    async def run(self) -> None:
        interval = STREAM_SECONDS / len(self.payloads)
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(
                *(self._post(client, p, i * interval) for i, p in enumerate(self.payloads))
            )

    async def _post(self, client: httpx.AsyncClient, payload: dict[str, Any], at: float) -> None:
        await asyncio.sleep(at)
        body, headers = self.pipeline.signed(payload)
        deadline = time.monotonic() + 120
        while True:
            answer = await client.post(
                f"{self.pipeline.ingest}/webhooks/moniepoint", content=body, headers=headers
            )
            self.statuses[answer.status_code] += 1
            if answer.status_code == 200:
                self.accepted[f"moniepoint:{payload['data']['transactionReference']}"] = time.time()
                return
            assert answer.status_code == 503, answer.text
            assert time.monotonic() < deadline, "ingest kept answering 503"
            await asyncio.sleep(1.0)


def delivered(pipeline: Pipeline, refs: set[str]) -> list[dict[str, Any]]:
    return [m for m in pipeline.sandbox_get("messages") if m["reference"] in refs]


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("component", ["redis", "postgres", "kafka"])
async def test_dependency_restart_mid_stream(
    pipeline: Pipeline, component: str, tmp_path: Path
) -> None:
    if not (STACK_DIR / "run" / f"{component}.pid").exists():
        pytest.skip(f"{component} was not started by scripts/stack (an external one is used)")
    accounts = [new_account() for _ in range(20)]
    pipeline.import_customers(tmp_path, [(a, f"0806{a[-7:]}", "returning", 0) for a in accounts])
    payloads = [
        payment("payment.successful", accounts[n % len(accounts)], new_reference(), 1000.0 + n)
        for n in range(WEBHOOKS)
    ]
    refs = {f"moniepoint:{p['data']['transactionReference']}" for p in payloads}
    pids = {name: p.popen.pid for name, p in pipeline.processes.items() if p.popen}
    stream = Stream(pipeline, payloads)
    posting = asyncio.create_task(stream.run())

    await asyncio.sleep(RESTART_AT_SECONDS)
    try:
        await stack_script("down.sh", component)
        await asyncio.sleep(DOWN_SECONDS)
    finally:  # whatever happened, the stack is left running
        await stack_script("up.sh", component)
    back_at = time.time()

    await posting
    assert set(stream.accepted) == refs
    assert set(stream.statuses) <= {200, 503}, stream.statuses

    wait_for(
        lambda: len({m["reference"] for m in delivered(pipeline, refs)}) == len(refs),
        timeout=back_at - time.time() + RECOVERY_LIMIT_SECONDS + STREAM_SECONDS,
        interval=0.5,
    )
    await asyncio.sleep(1.5)  # a late duplicate would show up now
    messages = delivered(pipeline, refs)
    counts = Counter(m["reference"] for m in messages)
    doubled = {ref: n for ref, n in counts.items() if n > 1}
    assert set(counts) == refs and not doubled, f"missing {refs - set(counts)}, doubled {doubled}"

    # Delivery resumed: whatever was accepted before the dependency came back went out within
    # the limit of its return, and so did everything accepted after.
    sent_at = {m["reference"]: _wall(m["at"]) for m in messages}
    waiting = [ref for ref, at in stream.accepted.items() if at <= back_at]
    backlog_done = max(sent_at[ref] for ref in waiting) - back_at
    latest = max(sent_at[ref] - max(at, back_at) for ref, at in stream.accepted.items())
    print(
        f"\n{component}: backlog delivered {backlog_done:.1f} s after the restart;"
        f" slowest delivery after it {latest:.1f} s; ingest answers {dict(stream.statuses)}"
    )
    assert backlog_done < RECOVERY_LIMIT_SECONDS
    assert latest < RECOVERY_LIMIT_SECONDS

    # The audit trail lost and doubled nothing either: receipts stored every delivery webhook
    # (Siteti retries those it answered 503 while PostgreSQL was away) exactly once.
    def trails_complete() -> dict[str, Counter[str]]:
        trails = {ref: Counter(pipeline.stages(ref)) for ref in refs}
        return trails if all(t["delivered"] for t in trails.values()) else {}

    trails = wait_for(trails_complete, timeout=RECOVERY_LIMIT_SECONDS, interval=1.0)
    wrong = {
        ref: dict(t)
        for ref, t in trails.items()
        if t["sent"] != 1 or t["delivered"] != 1 or t["dispatched"] > 1
    }
    assert not wrong, wrong
    undispatched = sorted(ref for ref, t in trails.items() if not t["dispatched"])

    for name, process in pipeline.processes.items():
        assert process.popen is not None and process.popen.poll() is None, f"{name} exited"
        assert process.popen.pid == pids[name], f"{name} was restarted"
    # The 'dispatched' row is written before the dedupe key says done (pipeline._deliver).
    assert not undispatched, f"'dispatched' audit row lost for {undispatched}"
