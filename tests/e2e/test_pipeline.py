"""Issue 2's four end-to-end scenarios, through real HTTP, Kafka, Redis and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.problem_tools import problem_detail

from .harness import Pipeline, new_reference, payment, post_payment, wait_for

pytestmark = pytest.mark.e2e


def test_success_flow(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path, tier="returning", late=0)
    ref = new_reference()
    answer = pipeline.post_moniepoint(payment("payment.successful", account, ref, 500000.0))
    assert answer.status_code == 200, answer.text
    reference = f"moniepoint:{ref}"

    messages = wait_for(lambda: pipeline.sandbox_get("messages", reference=reference))
    assert len(messages) == 1
    message = messages[0]
    assert message["template_id"] == "tpl_returning_good"
    assert message["to"] == "2348031234567"
    assert message["variables"] == {
        "customer_name": f"Ada {account}",
        "amount": "₦500,000.00",
        "trans_ref": ref,
    }
    assert message["contact_id"], "the contact was upserted first and its id sent along"
    contact_calls = [
        c
        for c in pipeline.sandbox_get("calls")
        if c["path"].endswith("/contacts") and c["body"]["phone"] == "2348031234567"
    ]
    assert contact_calls and contact_calls[-1]["status"] == 200
    assert len(pipeline.trigger_calls(reference)) == 1

    wait_for(lambda: "read" in pipeline.stages(reference))
    story = pipeline.audit(reference)
    assert story is not None and story["status"] == "read"
    got = [e["stage"] for e in story["events"]]
    assert (
        got.index("received") < got.index("dispatched") < got.index("delivered") < got.index("read")
    )
    dispatched = next(e for e in story["events"] if e["stage"] == "dispatched")
    assert dispatched["detail"]["template"] == "tpl_returning_good"
    assert dispatched["detail"]["siteti_status"] == 202
    assert dispatched["detail"]["message_id"] == message["message_id"]


def test_bad_signature_is_rejected_and_nothing_sent(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path)
    ref = new_reference()
    answer = pipeline.post_moniepoint(
        payment("payment.successful", account, ref), secret="not-the-secret"
    )
    assert answer.status_code == 401
    assert "signature" in problem_detail(401, answer.headers["content-type"], answer.json())
    time.sleep(1.0)
    assert pipeline.sandbox_get("messages", reference=f"moniepoint:{ref}") == []


def test_failure_flow(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path, tier="returning")
    ref = new_reference()
    answer = pipeline.post_moniepoint(
        payment("payment.failed", account, ref, 12000.0, reason="insufficient funds")
    )
    assert answer.status_code == 200, answer.text
    reference = f"moniepoint:{ref}"
    messages = wait_for(lambda: pipeline.sandbox_get("messages", reference=reference))
    assert [m["template_id"] for m in messages] == ["tpl_failed_insufficient_funds"]
    assert messages[0]["variables"]["amount"] == "₦12,000.00"
    time.sleep(0.5)  # a success message would have come by now
    assert len(pipeline.sandbox_get("messages", reference=reference)) == 1


def test_duplicate_webhook_makes_exactly_one_call(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path)
    ref = new_reference()
    body = payment("payment.successful", account, ref)
    for _ in range(3):
        assert pipeline.post_moniepoint(body).status_code == 200
    reference = f"moniepoint:{ref}"
    wait_for(lambda: "read" in pipeline.stages(reference))
    time.sleep(1.0)  # give any second copy every chance to show up
    assert len(pipeline.trigger_calls(reference)) == 1
    assert len(pipeline.sandbox_get("messages", reference=reference)) == 1
    assert pipeline.stages(reference).count("dispatched") == 1


async def test_missing_number_goes_to_manual_review(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path, phone="")
    ref = new_reference()
    assert pipeline.post_moniepoint(payment("payment.successful", account, ref)).status_code == 200
    reference = f"moniepoint:{ref}"
    wait_for(lambda: "dead_lettered" in pipeline.stages(reference))
    assert pipeline.trigger_calls(reference) == []
    row = await pipeline.fetchrow("SELECT * FROM dead_letters WHERE reference = $1", reference)
    assert row["status"] == "manual_review" and row["reason"] == "missing_contact"
    assert row["retry_count"] == 0 and "no WhatsApp number" in row["last_error"]
    assert row["created_at"] <= row["updated_at"]


async def test_siteti_unreachable_lands_in_dead_letter_store(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    account = pipeline.new_customer(tmp_path)
    pipeline.stop("sandbox")  # nothing listens on Siteti's port now
    try:
        reference = post_payment(pipeline, account)
        wait_for(lambda: "dead_lettered" in pipeline.stages(reference), timeout=30)
        row = await pipeline.fetchrow("SELECT * FROM dead_letters WHERE reference = $1", reference)
        assert row["status"] == "pending"
        assert row["reason"] == "siteti_unavailable"
        assert "unreachable" in row["last_error"]
        assert row["payload"]["subject"] == reference
    finally:
        pipeline.start("sandbox")
