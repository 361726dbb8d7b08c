"""Issue 4: two dispatcher instances against the sandbox's failure injection.

Every scenario ends with the same two checks: no message missing, none doubled.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from bridge.events import Customer, EventData, new_event
from tests.kafka_tools import record_of

from .harness import Pipeline, make_pair, new_account, new_reference, payment, running, wait_for

pytestmark = pytest.mark.e2e

PLAN_PER_MINUTE = 3000  # 50 calls a second: a burst takes seconds, long enough to kill into


@pytest.fixture(scope="module")
def pressure(kafka_bootstrap: str) -> Iterator[Pipeline]:
    with running(
        make_pair(
            PLAN_PER_MINUTE,
            DEDUPE_LEASE_SECONDS="5",
            SITETI_MAX_RETRIES="5",
            MISSING_CONTACT_WAIT_SECONDS="5",
            DISPATCHER_SHUTDOWN_GRACE_SECONDS="10",
        )
    ) as pipeline:
        yield pipeline


@pytest.fixture(autouse=True)
def healthy(pressure: Pipeline) -> Iterator[None]:
    """Every test starts and ends with both instances up and no failure injected."""
    for name in ("dispatcher-1", "dispatcher-2"):
        process = pressure.processes[name]
        if process.popen is None or process.popen.poll() is not None:
            pressure.start(name)
    yield
    pressure.sandbox_control("DELETE", "failures")


def customers(pipeline: Pipeline, tmp_path: Path, count: int) -> list[str]:
    accounts = [new_account() for _ in range(count)]
    phones = [f"0803{index:07d}" for index in range(count)]
    pipeline.import_customers(
        tmp_path, [(a, p, "returning", 0) for a, p in zip(accounts, phones, strict=True)]
    )
    return accounts


def burst(accounts: list[str], per_customer: int) -> list[dict[str, Any]]:
    return [
        payment("payment.successful", account, new_reference(), 1000.0 + n)
        for n in range(per_customer)
        for account in accounts
    ]


def references(payloads: list[dict[str, Any]]) -> set[str]:
    return {f"moniepoint:{p['data']['transactionReference']}" for p in payloads}


def messages_by_reference(pipeline: Pipeline, refs: set[str]) -> Counter[str]:
    return Counter(
        m["reference"] for m in pipeline.sandbox_get("messages") if m["reference"] in refs
    )


def assert_exactly_once(pipeline: Pipeline, refs: set[str], timeout: float = 90) -> None:
    wait_for(
        lambda: len(messages_by_reference(pipeline, refs)) == len(refs),
        timeout=timeout,
        interval=0.5,
    )
    time.sleep(1.0)  # a late duplicate would show up now
    counts = messages_by_reference(pipeline, refs)
    missing = refs - set(counts)
    doubled = {ref: n for ref, n in counts.items() if n > 1}
    assert not missing and not doubled, f"missing {len(missing)}, doubled {doubled}"


def calls(pipeline: Pipeline, refs: set[str]) -> list[dict[str, Any]]:
    return [
        c
        for c in pipeline.sandbox_get("calls", path_contains="/trigger")
        if (c["body"] or {}).get("reference") in refs
    ]


async def test_sigkill_mid_burst_loses_and_doubles_nothing(
    pressure: Pipeline, tmp_path: Path
) -> None:
    payloads = burst(customers(pressure, tmp_path, 40), per_customer=5)
    refs = references(payloads)
    await pressure.post_many(payloads)
    wait_for(lambda: len(messages_by_reference(pressure, refs)) >= 40, timeout=60, interval=0.1)
    pressure.stop("dispatcher-1", sig=signal.SIGKILL)  # mid-call, leases held, offsets unsent
    sent_before_kill = len(messages_by_reference(pressure, refs))
    assert sent_before_kill < len(refs), "the burst finished before the kill: nothing was tested"
    assert_exactly_once(pressure, refs)


async def test_sigterm_hands_back_and_loses_nothing(pressure: Pipeline, tmp_path: Path) -> None:
    payloads = burst(customers(pressure, tmp_path, 30), per_customer=4)
    refs = references(payloads)
    await pressure.post_many(payloads)
    wait_for(lambda: len(messages_by_reference(pressure, refs)) >= 20, timeout=60, interval=0.1)
    pressure.stop("dispatcher-2", sig=signal.SIGTERM)
    assert pressure.processes["dispatcher-2"].popen.returncode is not None  # type: ignore[union-attr]
    assert_exactly_once(pressure, refs)


async def test_adding_an_instance_mid_burst_rebalances_without_duplicates(
    pressure: Pipeline, tmp_path: Path
) -> None:
    pressure.stop("dispatcher-2")
    payloads = burst(customers(pressure, tmp_path, 30), per_customer=4)
    refs = references(payloads)
    await pressure.post_many(payloads)
    wait_for(lambda: len(messages_by_reference(pressure, refs)) >= 20, timeout=60, interval=0.1)
    pressure.start("dispatcher-2")
    assert_exactly_once(pressure, refs)


async def test_lost_answers_and_timeouts_are_replayed_not_resent(
    pressure: Pipeline, tmp_path: Path
) -> None:
    # Siteti accepts, but the answer never reaches us: the retry must be a replay.
    pressure.sandbox_control(
        "POST",
        "failures",
        {
            "mode": "error_5xx",
            "share": 0.3,
            "after_processing": True,
            "paths": "/trigger",
            "seed": 7,
        },
    )
    pressure.sandbox_control(
        "POST",
        "failures",
        {
            "mode": "timeout",
            "count": 5,
            "timeout_seconds": 3,
            "after_processing": True,
            "paths": "/trigger",
        },
    )
    payloads = burst(customers(pressure, tmp_path, 20), per_customer=3)
    refs = references(payloads)
    await pressure.post_many(payloads)
    assert_exactly_once(pressure, refs)
    replays = [c for c in calls(pressure, refs) if c["replayed"]]
    assert replays, "no retry hit an answer Siteti had already given"


async def test_share_of_5xx_is_retried(pressure: Pipeline, tmp_path: Path) -> None:
    pressure.sandbox_control(
        "POST", "failures", {"mode": "error_5xx", "share": 0.3, "status": 502, "seed": 3}
    )
    payloads = burst(customers(pressure, tmp_path, 20), per_customer=3)
    refs = references(payloads)
    await pressure.post_many(payloads)
    assert_exactly_once(pressure, refs)
    assert any(c["status"] == 502 for c in calls(pressure, refs))


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_429_storm_pauses_every_instance(pressure: Pipeline, tmp_path: Path) -> None:
    # The directory first: the storm starts when asked, and an import takes seconds.
    payloads = burst(customers(pressure, tmp_path, 30), per_customer=2)
    pressure.sandbox_control(
        "POST", "failures", {"mode": "rate_limit_storm", "duration_seconds": 3, "retry_after": 2}
    )
    refs = references(payloads)
    await pressure.post_many(payloads)
    assert_exactly_once(pressure, refs)
    log = sorted(pressure.sandbox_get("calls"), key=lambda c: c["seq"])
    limited = [_seconds(c["at"]) for c in log if c["status"] == 429]
    assert limited, "the storm never hit"
    first = limited[0]
    # After the first 429, calls already on the wire may land; then nobody calls until
    # Retry-After has passed, from either instance.
    during_pause = [c for c in log if first + 0.5 < _seconds(c["at"]) < first + 1.9]
    assert during_pause == [], f"{len(during_pause)} calls during the shared pause"
    assert len(limited) < len(refs), "429s outnumber messages: the storm was hammered"


async def test_maintenance_window_is_waited_out(pressure: Pipeline, tmp_path: Path) -> None:
    pressure.sandbox_control(
        "POST", "failures", {"mode": "maintenance", "duration_seconds": 60, "retry_after": 60}
    )
    payloads = burst(customers(pressure, tmp_path, 10), per_customer=2)
    refs = references(payloads)
    started = time.monotonic()
    await pressure.post_many(payloads)
    assert_exactly_once(pressure, refs, timeout=120)
    assert time.monotonic() - started >= 55
    # New customers: the first calls to meet the window are contact upserts, then triggers.
    unavailable = [c for c in pressure.sandbox_get("calls") if c["status"] == 503]
    # One round of in-flight calls meets the window; the shared pause holds the rest.
    assert 0 < len(unavailable) <= 2 * 16


async def test_one_customers_events_keep_their_order(pressure: Pipeline, tmp_path: Path) -> None:
    account = pressure.new_customer(tmp_path, tier="returning", phone="08069990001")
    # The first attempt fails twice at Siteti before it goes through: order must still hold.
    pressure.sandbox_control(
        "POST",
        "failures",
        {"mode": "error_5xx", "count": 2, "paths": "tpl_failed_insufficient_funds"},
    )
    reference = new_reference()
    sequence = [
        payment("payment.failed", account, reference, 5000.0, reason="insufficient funds"),
        payment("payment.successful", account, reference, 5000.0),  # the successful retry
        payment("transfer.completed", account, new_reference(), 700.0),
        payment("payment.failed", account, new_reference(), 900.0, reason="bank network timeout"),
    ]
    for body in sequence:
        assert pressure.post_moniepoint(body).status_code == 200
    got = wait_for(
        lambda: (
            (m := [x for x in pressure.sandbox_get("messages") if x["to"] == "2348069990001"])
            and len(m) == 4
            and m
        ),
        timeout=30,
    )
    assert [m["template_id"] for m in got] == [
        "tpl_failed_insufficient_funds",
        "tpl_returning_good",
        "tpl_transfer_completed",
        "tpl_failed_bank_network",
    ]
    assert got[0]["reference"] == got[1]["reference"] == f"moniepoint:{reference}"


async def test_confirmations_overtake_bulk_work(
    pressure: Pipeline, tmp_path: Path, kafka_bootstrap: str
) -> None:
    accounts = customers(pressure, tmp_path, 30)
    bulk = [
        new_event(
            EventData(
                provider="reminders",
                transaction_reference=new_reference(),
                amount=100,
                customer=Customer(account_number=a),
            ),
            "payment.successful",
            priority="bulk",
        )
        for a in accounts * 3
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event in bulk:
            await producer.send(
                pressure.env["EVENTS_TOPIC"], event.to_json(), key=record_of(event)[0]
            )
        await producer.flush()
    finally:
        await producer.stop()
    bulk_refs = {e.reference for e in bulk}
    wait_for(
        lambda: len(messages_by_reference(pressure, bulk_refs)) >= 5, timeout=30, interval=0.05
    )
    confirmations = [payment("payment.successful", a, new_reference()) for a in accounts[:10]]
    await pressure.post_many(confirmations)
    # From here every confirmation is on Kafka: on a busy machine the webhooks themselves
    # arrive spread out, and a confirmation not yet accepted cannot overtake anything.
    all_waiting = time.time()
    confirmation_refs = references(confirmations)
    assert_exactly_once(pressure, confirmation_refs | bulk_refs)
    sent = [
        (m["reference"], datetime.fromisoformat(m["at"]).timestamp())
        for m in pressure.sandbox_get("messages")
        if m["reference"] in bulk_refs | confirmation_refs
    ]
    last_confirmation = max(at for ref, at in sent if ref in confirmation_refs)
    bulk_ahead = [
        ref for ref, at in sent if ref in bulk_refs and all_waiting < at < last_confirmation
    ]
    # While confirmations were waiting, only bulk calls already holding a slot went ahead.
    assert len(bulk_ahead) <= 2 * 4 + 2, bulk_ahead
    bulk_before = sum(1 for ref, at in sent if ref in bulk_refs and at < last_confirmation)
    assert bulk_before < len(bulk_refs), "every bulk message went first"


async def test_late_directory_entry_is_waited_for(pressure: Pipeline, tmp_path: Path) -> None:
    account = new_account()
    reference = new_reference()
    assert (
        pressure.post_moniepoint(payment("payment.successful", account, reference)).status_code
        == 200
    )
    await asyncio.sleep(1.5)  # the directory is a moment behind the payment
    pressure.import_customers(tmp_path, [(account, "08069990002", "first_time", 0)])
    assert_exactly_once(pressure, {f"moniepoint:{reference}"}, timeout=20)
    assert "dead_lettered" not in pressure.stages(f"moniepoint:{reference}")
