"""Number confirmation end to end (issue 12): real ingest, dispatcher, receipts and sandbox
processes, the customer's replies through the sandbox, the replies topic and the dispatcher.

A number the directory marks unconfirmed gets one confirmation template however many events
wait for it; YES sends what waited, once each, in order; NO, or no reply before the timeout
(the clock moved on by rewriting the request's times), sends it to manual review."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Pipeline, make_pipeline, post_payment, running, stack_env, wait_for

pytestmark = pytest.mark.e2e

TEMPLATE = "tpl_confirm_number"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    # A retrier round every second, so that a timed-out request is seen at once; one number's
    # messages a second apart (not 6), so that the released ones follow quickly.
    overrides = {"DLQ_RETRY_INTERVAL_SECONDS": "1", "PAIR_MIN_INTERVAL_SECONDS": "1"}
    with running(make_pipeline(stack_env(), **overrides)) as pipeline:
        yield pipeline


def new_number() -> str:
    """A number no other test (or pipeline on the same replies topic) uses, as Siteti writes it."""
    return "234809" + str(uuid.uuid4().int)[:7]


def messages_to(pipeline: Pipeline, phone: str) -> list[dict[str, Any]]:
    return [m for m in pipeline.sandbox_get("messages") if m["to"] == phone]


async def entry(pipeline: Pipeline, reference: str) -> Any:
    return await pipeline.fetchrow(
        "SELECT status, reason, next_attempt_at FROM dead_letters WHERE reference = $1", reference
    )


async def waiting(pipeline: Pipeline, references: list[str]) -> bool:
    for reference in references:
        row = await entry(pipeline, reference)
        if row is None or (row["status"], row["reason"]) != (
            "pending",
            "awaiting_number_confirmation",
        ):
            return False
    return True


def replies_read(pipeline: Pipeline, outcome: str) -> float:
    """The dispatcher's count of replies read for number confirmations, by outcome."""
    text = httpx.get(f"http://127.0.0.1:{pipeline.ports['dispatcher-1']}/metrics").text
    pattern = rf'^bridge_number_confirmation_replies_total{{outcome="{outcome}"}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def poll(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        await asyncio.sleep(0.2)


async def test_yes_sends_every_waiting_message_once_in_order(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    phone = new_number()
    account = pipeline.new_customer(tmp_path, phone=phone, phone_confirmed=False)
    first, second = post_payment(pipeline, account), post_payment(pipeline, account)
    await poll(lambda: waiting(pipeline, [first, second]))

    # One confirmation for both, to the candidate number; nothing else went to it.
    asked = messages_to(pipeline, phone)
    assert [m["template_id"] for m in asked] == [TEMPLATE]
    assert asked[0]["variables"] == {"customer_name": f"Ada {account}"}
    assert pipeline.trigger_calls(first) == [] and pipeline.trigger_calls(second) == []
    request = await pipeline.fetchrow(
        "SELECT status, expires_at - requested_at AS timeout, message_id FROM number_confirmations"
        " WHERE message_id = $1",
        asked[0]["message_id"],
    )
    assert request["status"] == "requested" and request["message_id"] == asked[0]["message_id"]
    assert request["timeout"].total_seconds() == 86400  # NUMBER_CONFIRMATION_TIMEOUT's default
    for reference in (first, second):
        stages = pipeline.stages(reference)
        assert stages[0] == "received"
        assert sorted(stages[1:]) == ["confirmation_requested", "dead_lettered"]

    # The customer answers (a plain YES, quoting nothing: matched by the number it comes from).
    pipeline.sandbox_control("POST", "replies", {"from": phone, "text": "Yes"})
    sent = wait_for(lambda: len(messages_to(pipeline, phone)) == 3 and messages_to(pipeline, phone))
    assert [m["reference"] for m in sent] == [asked[0]["reference"], first, second]
    assert [m["template_id"] for m in sent[1:]] == ["tpl_first_time"] * 2
    for reference in (first, second):
        wait_for(lambda r=reference: "dispatched" in pipeline.stages(r))
        stages = pipeline.stages(reference)
        assert stages.index("number_confirmed") < stages.index("dispatched")
        assert len(pipeline.trigger_calls(reference)) == 1
        assert (await entry(pipeline, reference))["status"] == "completed"
    customer = await pipeline.fetchrow(
        "SELECT phone_confirmed FROM customers WHERE account_number = $1", account
    )
    assert customer["phone_confirmed"] is True

    # Confirmed from now on: the next payment goes straight out, with no new question.
    third = post_payment(pipeline, account)
    wait_for(lambda: pipeline.sandbox_get("messages", reference=third))
    assert [m["template_id"] for m in messages_to(pipeline, phone)].count(TEMPLATE) == 1


async def test_no_sends_them_to_manual_review_and_is_not_asked_again(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    phone = new_number()
    # The recipient of the confirmation answers by itself, quoting it (matched by message).
    pipeline.sandbox_control(
        "PUT", f"auto-replies/{TEMPLATE}", {"text": "No, wrong number", "numbers": [phone]}
    )
    account = pipeline.new_customer(tmp_path, phone=phone, phone_confirmed=False)
    reference = post_payment(pipeline, account)

    async def declined() -> bool:
        row = await entry(pipeline, reference)
        return row is not None and (row["status"], row["reason"]) == (
            "manual_review",
            "number_declined",
        )

    await poll(declined)
    assert "number_declined" in pipeline.stages(reference)
    assert [m["template_id"] for m in messages_to(pipeline, phone)] == [TEMPLATE]

    # Another payment: straight to manual review, nobody asked twice, nothing sent.
    later = post_payment(pipeline, account)
    await poll(lambda: _has(pipeline, later, "manual_review", "number_declined"))
    assert [m["template_id"] for m in messages_to(pipeline, phone)] == [TEMPLATE]
    pipeline.sandbox_control("DELETE", "auto-replies")


async def _has(pipeline: Pipeline, reference: str, status: str, reason: str) -> bool:
    row = await entry(pipeline, reference)
    return row is not None and (row["status"], row["reason"]) == (status, reason)


async def test_no_reply_before_the_timeout_goes_to_manual_review(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    phone = new_number()
    account = pipeline.new_customer(tmp_path, phone=phone, phone_confirmed=False)
    reference = post_payment(pipeline, account)
    await poll(lambda: waiting(pipeline, [reference]))
    waits = await entry(pipeline, reference)
    request = await pipeline.fetchrow(
        "SELECT id, expires_at FROM number_confirmations WHERE status = 'requested'"
        " AND message_id = $1",
        messages_to(pipeline, phone)[0]["message_id"],
    )
    # It waits until the request expires, 24 h from now (the dead-letter store reckons the
    # wait on the dispatcher's clock, the request on the database's: the same host here).
    assert abs((waits["next_attempt_at"] - request["expires_at"]).total_seconds()) < 1

    # Retried early (an operator, a clock ahead of the database's): it waits again, until the
    # same expiry, and the retry is not counted against it.
    await pipeline.fetchrow(
        "UPDATE dead_letters SET next_attempt_at = now() WHERE reference = $1 RETURNING id",
        reference,
    )
    wait_for(lambda: "retried" in pipeline.stages(reference))
    again = await pipeline.fetchrow(
        "SELECT status, reason, retry_count, next_attempt_at FROM dead_letters"
        " WHERE reference = $1",
        reference,
    )
    assert (again["status"], again["reason"], again["retry_count"]) == (
        "pending",
        "awaiting_number_confirmation",
        0,
    )
    assert abs((again["next_attempt_at"] - request["expires_at"]).total_seconds()) < 1
    assert [m["template_id"] for m in messages_to(pipeline, phone)] == [TEMPLATE]

    # The clock moves on 24 h: the request and its waiting event are due now.
    await pipeline.fetchrow(
        "UPDATE number_confirmations SET requested_at = requested_at - interval '24 hours',"
        " expires_at = now() - interval '1 second' WHERE id = $1 RETURNING id",
        request["id"],
    )
    await pipeline.fetchrow(
        "UPDATE dead_letters SET next_attempt_at = now() - interval '1 second'"
        " WHERE reference = $1 RETURNING id",
        reference,
    )
    await poll(lambda: _has(pipeline, reference, "manual_review", "number_confirmation_timeout"))
    expired = await pipeline.fetchrow(
        "SELECT status FROM number_confirmations WHERE id = $1", request["id"]
    )
    assert expired["status"] == "expired"

    # A YES that comes too late (quoting the request) sends nothing: the event stays with the
    # operators.
    late = replies_read(pipeline, "late")
    asked = messages_to(pipeline, phone)[0]["message_id"]
    pipeline.sandbox_control(
        "POST", "replies", {"from": phone, "text": "YES", "context_message_id": asked}
    )
    wait_for(lambda: replies_read(pipeline, "late") > late)
    assert [m["template_id"] for m in messages_to(pipeline, phone)] == [TEMPLATE]
    assert await _has(pipeline, reference, "manual_review", "number_confirmation_timeout")
