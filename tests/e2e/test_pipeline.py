"""Issue 2's four end-to-end scenarios, through real HTTP, Kafka, Redis and PostgreSQL."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import ROOT, Pipeline, make_pipeline, wait_for

pytestmark = pytest.mark.e2e


def stack_env() -> dict[str, str]:
    lines = (ROOT / ".stack/env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    pipeline = make_pipeline(stack_env())
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()


def new_customer(
    pipeline: Pipeline,
    tmp_path: Path,
    *,
    tier: str = "first_time",
    late: int = 0,
    phone: str = "08031234567",
) -> str:
    """A fresh directory entry, imported through the real CLI; returns its account number."""
    account = str(uuid.uuid4().int)[:10]
    csv = tmp_path / f"{account}.csv"
    csv.write_text(
        "account_number,email,phone,name,tier,late_payments\n"
        f"{account},{account}@example.com,{phone},Ada {account},{tier},{late}\n"
    )
    subprocess.run(
        [str(ROOT / ".venv/bin/bridge"), "customers", "import", str(csv)],
        check=True,
        env=pipeline.env,
        capture_output=True,
    )
    return account


def payment(
    event: str, account: str, reference: str, amount: float = 5000.0, **extra: Any
) -> dict[str, Any]:
    data = {
        "transactionReference": reference,
        "amount": amount,
        "currency": "NGN",
        "customer": {"accountNumber": account, "name": "Ada Obi", "email": "ada@example.com"},
        "timestamp": "2026-01-20T14:30:00Z",
        "description": "Office cleaning",
        "channel": "TRANSFER",
        "settlement": {"status": "PENDING"},
        **extra,
    }
    return {"event": event, "data": data}


def stages(pipeline: Pipeline, reference: str) -> list[str]:
    story = pipeline.audit(reference)
    return [e["stage"] for e in story["events"]] if story else []


def trigger_calls(pipeline: Pipeline, reference: str) -> list[dict[str, Any]]:
    calls = pipeline.sandbox_get("calls", reference=reference)
    return [c for c in calls if c["path"].endswith("/trigger")]


def test_success_flow(pipeline: Pipeline, tmp_path: Path) -> None:
    account = new_customer(pipeline, tmp_path, tier="returning", late=0)
    ref = f"MNP-{uuid.uuid4().hex[:10]}"
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
    assert len(trigger_calls(pipeline, reference)) == 1

    wait_for(lambda: "read" in stages(pipeline, reference))
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
    account = new_customer(pipeline, tmp_path)
    ref = f"MNP-{uuid.uuid4().hex[:10]}"
    answer = pipeline.post_moniepoint(
        payment("payment.successful", account, ref), secret="not-the-secret"
    )
    assert answer.status_code == 401
    assert "signature" in answer.json()["error"]
    time.sleep(1.0)
    assert pipeline.sandbox_get("messages", reference=f"moniepoint:{ref}") == []


def test_failure_flow(pipeline: Pipeline, tmp_path: Path) -> None:
    account = new_customer(pipeline, tmp_path, tier="returning")
    ref = f"MNP-{uuid.uuid4().hex[:10]}"
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
    account = new_customer(pipeline, tmp_path)
    ref = f"MNP-{uuid.uuid4().hex[:10]}"
    body = payment("payment.successful", account, ref)
    for _ in range(3):
        assert pipeline.post_moniepoint(body).status_code == 200
    reference = f"moniepoint:{ref}"
    wait_for(lambda: "read" in stages(pipeline, reference))
    time.sleep(1.0)  # give any second copy every chance to show up
    assert len(trigger_calls(pipeline, reference)) == 1
    assert len(pipeline.sandbox_get("messages", reference=reference)) == 1
    assert stages(pipeline, reference).count("dispatched") == 1


async def test_missing_number_goes_to_manual_review(
    pipeline: Pipeline, tmp_path: Path, pg_pool: Any
) -> None:
    account = new_customer(pipeline, tmp_path, phone="")
    ref = f"MNP-{uuid.uuid4().hex[:10]}"
    assert pipeline.post_moniepoint(payment("payment.successful", account, ref)).status_code == 200
    reference = f"moniepoint:{ref}"
    wait_for(lambda: "dead_lettered" in stages(pipeline, reference))
    assert trigger_calls(pipeline, reference) == []
    row = await pg_pool.fetchrow("SELECT * FROM dead_letters WHERE reference = $1", reference)
    assert row["status"] == "manual_review" and row["reason"] == "missing_contact"
    assert row["retry_count"] == 0 and "no WhatsApp number" in row["last_error"]
    assert row["created_at"] <= row["updated_at"]


async def test_siteti_unreachable_lands_in_dead_letter_store(
    pipeline: Pipeline, tmp_path: Path, pg_pool: Any
) -> None:
    account = new_customer(pipeline, tmp_path)
    pipeline.stop("sandbox")  # nothing listens on Siteti's port now
    try:
        ref = f"MNP-{uuid.uuid4().hex[:10]}"
        assert (
            pipeline.post_moniepoint(payment("payment.successful", account, ref)).status_code == 200
        )
        reference = f"moniepoint:{ref}"
        wait_for(lambda: "dead_lettered" in stages(pipeline, reference), timeout=30)
        row = await pg_pool.fetchrow("SELECT * FROM dead_letters WHERE reference = $1", reference)
        assert row["status"] == "pending"
        assert row["reason"] == "siteti_unavailable"
        assert "unreachable" in row["last_error"]
        assert row["payload"]["subject"] == reference
    finally:
        pipeline.start("sandbox")
