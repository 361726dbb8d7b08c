"""Issue 7: a dispatcher killed with SIGKILL mid-burst loses nothing and doubles nothing, its
partitions resume on the survivor within seconds, and the burst keeps most of its rate.

The shape of the finding that lost events: two instances share a 600/min plan, 300 payments
over 30 customers, one instance killed with SIGKILL. Each run kills at one of three points:
- `early`: as the burst's first messages land, before the (freshly restarted) instance has
  committed anything on its partitions — where faust's own guard was skipped;
- `mid`: after about a third of the burst;
- `out_of_order`: after a third, while one customer's head event is held up at Siteti and
  later events of its partition have already settled.

`KILL_RUNS` runs (default 3: one per point) are made; `make test-kills` makes 10. Every run
counts at the Siteti sandbox: none missing, none doubled, each customer's in posting order.
It prints, per run, the failover time and the achieved rate.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.partitioner import murmur2

from bridge.events import EVENTS_TOPIC

from .harness import Pipeline, make_pair, new_account, new_reference, payment, running
from .harness import wait_for as wait_until

pytestmark = pytest.mark.e2e

PLAN_PER_MINUTE = 600
CUSTOMERS = 30
PER_CUSTOMER = 10
KILL_POINTS = ("early", "mid", "out_of_order")
RUNS = int(os.environ.get("KILL_RUNS", str(len(KILL_POINTS))))
# The survivor owns the dead instance's partitions within this (the bound).
FAILOVER_LIMIT_SECONDS = 10.0
# Its first message from them follows, after its turn in the lanes and a governor slot at a
# saturated plan (about a second more): bounded loosely here, printed exactly.
FIRST_MESSAGE_LIMIT_SECONDS = 15.0
RATE_FLOOR = 0.85


@pytest.fixture(scope="module")
def pair(kafka_bootstrap: str) -> Iterator[Pipeline]:
    # Long enough for the held-up call of `out_of_order` runs to stall its partition. The
    # shipped group and lease settings (DEDUPE_LEASE_SECONDS 6, session 6 s, heartbeat 1 s)
    # are what is under test: none is overridden here.
    with running(make_pair(PLAN_PER_MINUTE, SITETI_TIMEOUT_SECONDS="10")) as pipeline:
        yield pipeline


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _burst(pipeline: Pipeline, tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """300 payments over 30 new customers, posted customer-interleaved as a payroll run is;
    returns the payloads and each customer's phone (as Siteti sees it)."""
    accounts = [new_account() for _ in range(CUSTOMERS)]
    base = int(time.time() * 1000) % 10_000_000
    phones = {a: f"0803{(base + i) % 10_000_000:07d}" for i, a in enumerate(accounts)}
    # One customer is "first_time": its template is the one held up in `out_of_order` runs.
    tiers = {a: ("first_time" if i == 0 else "returning") for i, a in enumerate(accounts)}
    pipeline.import_customers(tmp_path, [(a, phones[a], tiers[a], 0) for a in accounts])
    payloads = [
        payment("payment.successful", account, new_reference(), 1000.0 + n)
        for n in range(PER_CUSTOMER)
        for account in accounts
    ]
    return payloads, {a: "234" + phones[a][1:] for a in accounts}


async def _post_in_customer_order(pipeline: Pipeline, payloads: list[dict[str, Any]]) -> None:
    """Customers in parallel, each customer's payments one after another (each accepted
    before the next is posted), so that each customer's order is defined."""
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for body in payloads:
        by_customer[body["data"]["customer"]["accountNumber"]].append(body)

    async with httpx.AsyncClient(timeout=30) as client:

        async def post_all(bodies: list[dict[str, Any]]) -> None:
            for body in bodies:
                content, headers = pipeline.signed(body)
                answer = await client.post(
                    f"{pipeline.ingest}/webhooks/moniepoint", content=content, headers=headers
                )
                assert answer.status_code == 200, answer.text

        await asyncio.gather(*(post_all(bodies) for bodies in by_customer.values()))


def _burst_messages(pipeline: Pipeline, refs: set[str]) -> list[dict[str, Any]]:
    return [m for m in pipeline.sandbox_get("messages") if m["reference"] in refs]


async def _assignment(pipeline: Pipeline) -> dict[str, set[int]]:
    """The consumer group's members and their partitions of the events topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP_SERVERS"])
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([pipeline.env["DISPATCHER_GROUP_ID"]])
    finally:
        await admin.close()
    _error, _group, state, _type, _protocol, members = response.groups[0][:6]
    if state != "Stable":
        return {}
    owned: dict[str, set[int]] = {}
    for member_id, *_rest, assignment in members:
        decoded = ConsumerProtocolMemberAssignment.decode(assignment)
        owned[member_id] = {p for topic, parts in decoded.assignment for p in parts}
    return owned


def _partition_of(account: str) -> int:
    key = f"acct:{account}".encode()
    return (murmur2(key) & 0x7FFFFFFF) % EVENTS_TOPIC.partitions


def _victim(run: int) -> str:
    return "dispatcher-1" if run % 2 == 0 else "dispatcher-2"


@pytest.mark.parametrize("run", range(RUNS))
async def test_sigkill_mid_burst_loses_nothing_and_fails_over_in_seconds(
    pair: Pipeline, tmp_path: Path, run: int
) -> None:
    point = KILL_POINTS[run % len(KILL_POINTS)]
    victim = _victim(run)
    survivor = "dispatcher-2" if victim == "dispatcher-1" else "dispatcher-1"
    # The survivor is up (an earlier run may have killed it) and the victim starts fresh:
    # nothing committed by this process on any partition yet.
    if pair.processes[survivor].popen.poll() is not None:  # type: ignore[union-attr]
        pair.start(survivor)
    pair.stop(victim)
    pair.start(victim)
    time.sleep(2)  # both in the group before the burst

    payloads, phone_of = _burst(pair, tmp_path)
    refs = {f"moniepoint:{p['data']['transactionReference']}" for p in payloads}
    calls_before = len(pair.sandbox_get("calls"))
    if point == "out_of_order":
        # The first-time customer's first trigger hangs 8 s at Siteti: its partition's head
        # stays unsettled while later records of the partition settle, and the kill lands
        # inside that window.
        pair.sandbox_control(
            "POST",
            "failures",
            {"mode": "timeout", "count": 1, "timeout_seconds": 8, "paths": "tpl_first_time"},
        )
    try:
        await _post_in_customer_order(pair, payloads)
        threshold = {"early": 1, "mid": len(refs) // 3, "out_of_order": 40}[point]
        wait_until(
            lambda: len(_burst_messages(pair, refs)) >= threshold, timeout=120, interval=0.05
        )
        before = await _assignment(pair)
        pair.stop(victim, sig=signal.SIGKILL)
        killed_at = time.time()
        sent_at_kill = _burst_messages(pair, refs)
        assert len(sent_at_kill) < len(refs), "the burst ended before the kill: nothing tested"
        # The group hands the dead member's partitions over: one member left, Stable.
        while len(after := await _assignment(pair)) != 1:
            assert time.time() - killed_at < 60, "the group never settled on the survivor"
            await asyncio.sleep(0.1)
        handover = time.time() - killed_at

        wait_until(lambda: len(_burst_messages(pair, refs)) >= len(refs), timeout=180)
        time.sleep(2.0)  # a late duplicate would land now
    finally:
        pair.sandbox_control("DELETE", "failures")
    assert pair.processes[survivor].popen.poll() is None  # type: ignore[union-attr]

    messages = _burst_messages(pair, refs)
    counts: dict[str, int] = defaultdict(int)
    for message in messages:
        counts[message["reference"]] += 1
    missing = refs - set(counts)
    doubled = {ref: n for ref, n in counts.items() if n > 1}
    assert not missing and not doubled, f"missing {len(missing)}, doubled {doubled}"

    # Per customer, the messages went out in the order the payments were posted.
    posted: dict[str, list[str]] = defaultdict(list)
    for body in payloads:
        account = body["data"]["customer"]["accountNumber"]
        posted[phone_of[account]].append(f"moniepoint:{body['data']['transactionReference']}")
    received: dict[str, list[str]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: _seconds(m["at"])):
        received[message["to"]].append(message["reference"])
    assert received == posted

    # Failover: the first message sent, after the kill, for an event of the dead instance's
    # partitions. (Later ones of those partitions wait their turn behind the survivor's own
    # backlog: the plan, not the failover, sets that pace — hence the rate check below.)
    [survivor_member] = after
    dead_partitions = set().union(*before.values()) - before.get(survivor_member, set())
    assert dead_partitions, f"the victim owned no partition: {before}"
    dead_refs = {
        f"moniepoint:{body['data']['transactionReference']}"
        for body in payloads
        if _partition_of(body["data"]["customer"]["accountNumber"]) in dead_partitions
    }
    sent_refs = {m["reference"] for m in sent_at_kill}
    failover = min(
        _seconds(m["at"]) - killed_at for m in messages if m["reference"] in dead_refs - sent_refs
    )
    after_kill = sorted(_seconds(m["at"]) for m in messages if m["reference"] not in sent_refs)
    longest_pause = max(b - a for a, b in zip([killed_at, *after_kill], after_kill, strict=False))

    calls = pair.sandbox_get("calls")[calls_before:]
    span = _seconds(calls[-1]["at"]) - _seconds(calls[0]["at"])
    rate = (len(calls) - 1) / span * 60 / PLAN_PER_MINUTE
    limited = sum(1 for c in calls if c["status"] == 429)
    print(
        f"\nkill run {run} ({point}, {victim}): {len(refs)} delivered once, in order; "
        f"{len(sent_at_kill)} sent before the kill; group handover {handover:.1f} s; "
        f"first message of the dead partitions {failover:.1f} s after the kill; "
        f"longest pause in sending {longest_pause:.1f} s; "
        f"{len(calls)} calls in {span:.1f} s = {rate:.0%} of plan; {limited} × 429"
    )
    assert handover <= FAILOVER_LIMIT_SECONDS, f"the group took {handover:.1f} s"
    assert failover <= FIRST_MESSAGE_LIMIT_SECONDS, f"first message after {failover:.1f} s"
    assert longest_pause <= FAILOVER_LIMIT_SECONDS, f"sending stopped {longest_pause:.1f} s"
    assert rate >= RATE_FLOOR, f"achieved {rate:.0%} of the plan"
