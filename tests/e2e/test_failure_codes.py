"""Issue 12: WhatsApp failure codes acted on, through the real pipeline: the sandbox reports
`message.failed` with Meta's code (POST /_sandbox/delivery-failures), receipts act on it, the
dispatcher and its retrier follow."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Pipeline, make_pipeline, post_payment, running, stack_env, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    # The retrier every second, and a re-send's first wait of one second.
    overrides = {"DLQ_RETRY_INTERVAL_SECONDS": "1", "WHATSAPP_RETRY_BASE_SECONDS": "1"}
    with running(make_pipeline(stack_env(), **overrides)) as pipeline:
        yield pipeline


def customer_failing_once(pipeline: Pipeline, tmp_path: Path, code: int) -> str:
    """A new customer (its account) with a number no other test uses (a flag is per number),
    whose next message the sandbox reports failed with `code`."""
    national = f"0803{random.randrange(10**7):07d}"
    account = pipeline.new_customer(tmp_path, phone=national)
    failure = {"code": code, "to": f"234{national[1:]}", "times": 1}  # Siteti's form
    pipeline.sandbox_control("POST", "delivery-failures", failure)
    return account


async def entry(pipeline: Pipeline, reference: str) -> Any:
    return await pipeline.fetchrow("SELECT * FROM dead_letters WHERE reference = $1", reference)


def failed_detail(pipeline: Pipeline, reference: str) -> dict[str, Any] | None:
    story = pipeline.audit(reference) or {"events": []}
    failed = [e["detail"] for e in story["events"] if e["stage"] == "failed"]
    return failed[0] if failed else None


async def test_undeliverable_goes_to_review_and_holds_the_numbers_next_message(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    account = customer_failing_once(pipeline, tmp_path, 131026)
    first = post_payment(pipeline, account)

    detail = wait_for(lambda: failed_detail(pipeline, first))
    assert detail["error"]["code"] == 131026
    assert detail["action"] == "manual_review_flagged"
    row = await entry(pipeline, first)
    assert (row["status"], row["reason"]) == ("manual_review", "whatsapp_undeliverable")
    assert row["key_generation"] == 1  # a retry must not replay the refused message
    story = pipeline.audit(first)
    assert story is not None and story["status"] == "failed"
    assert len(pipeline.trigger_calls(first)) == 1

    # The next payment to that number waits for review, without a call to Siteti.
    second = post_payment(pipeline, account)
    wait_for(lambda: "dead_lettered" in pipeline.stages(second))
    row = await entry(pipeline, second)
    assert (row["status"], row["reason"]) == ("manual_review", "number_flagged")
    assert first in row["last_error"]
    assert pipeline.trigger_calls(second) == []


async def test_a_rate_limit_is_sent_again_later_under_a_new_key(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    account = customer_failing_once(pipeline, tmp_path, 130429)
    reference = post_payment(pipeline, account)

    story = wait_for(
        lambda: (s := pipeline.audit(reference)) and s["status"] in ("delivered", "read") and s,
        timeout=30,
    )
    calls = pipeline.trigger_calls(reference)
    assert len(calls) == 2
    assert calls[0]["idempotency_key"] != calls[1]["idempotency_key"]
    assert not any(c["replayed"] for c in calls)
    messages = pipeline.sandbox_get("messages", reference=reference)
    assert len(messages) == 2 and messages[0]["message_id"] != messages[1]["message_id"]

    stages = [e["stage"] for e in story["events"]]
    failed = next(e["detail"] for e in story["events"] if e["stage"] == "failed")
    assert (failed["error"]["code"], failed["action"]) == (130429, "retry")
    assert stages.count("dispatched") == 2 and stages.count("failed") == 1
    # Delivered once: the second message; the first never was.
    delivered = [e["detail"]["message_id"] for e in story["events"] if e["stage"] == "delivered"]
    assert delivered == [messages[1]["message_id"]]
    row = await entry(pipeline, reference)
    assert (row["status"], row["reason"], row["retry_count"]) == (
        "completed",
        "whatsapp_rate_limit",
        1,
    )
