"""Issue 12 through the running pipeline: per-number pacing and provider double-fires.

One dispatcher with a single transactional lane: a customer waiting for its number's slot
would hold up everyone else unless it lends its turn while it waits.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import (
    Pipeline,
    make_pipeline,
    new_account,
    new_reference,
    payment,
    running,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.e2e

INTERVAL = 4.0  # PAIR_MIN_INTERVAL_SECONDS here (6 by default): the test stays short
WINDOW = 120.0
TOKEN = "e2e-pacing-admin-token"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    with running(
        make_pipeline(
            stack_env(),
            PAIR_MIN_INTERVAL_SECONDS=str(INTERVAL),
            DOUBLE_FIRE_WINDOW_SECONDS=str(WINDOW),
            DISPATCHER_LANES="1",
            ADMIN_API_TOKENS=TOKEN,
        )
    ) as pipeline:
        yield pipeline


def fresh_phone() -> str:
    """A number no other test (or earlier run) has paced: national form, as directories have."""
    return f"0809{uuid.uuid4().int % 10**7:07d}"


def customer(pipeline: Pipeline, tmp_path: Path) -> str:
    account = new_account()
    pipeline.import_customers(tmp_path, [(account, fresh_phone(), "returning", 0)])
    return account


def post(pipeline: Pipeline, account: str, amount: float, **extra: Any) -> str:
    ref = new_reference()
    body = payment("payment.successful", account, ref, amount, **extra)
    assert pipeline.post_moniepoint(body).status_code == 200
    return f"moniepoint:{ref}"


def sent_at(pipeline: Pipeline, reference: str) -> float:
    """When Siteti received the reference's one trigger call (the sandbox's clock)."""
    calls = wait_for(lambda: pipeline.trigger_calls(reference), timeout=30)
    assert len(calls) == 1, calls
    return datetime.fromisoformat(calls[0]["at"].replace("Z", "+00:00")).timestamp()


def now_iso(offset_seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).isoformat()


def test_one_customers_payments_two_seconds_apart_are_sent_an_interval_apart(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    payer, other = customer(pipeline, tmp_path), customer(pipeline, tmp_path)
    first = post(pipeline, payer, 1000.0, timestamp=now_iso())
    first_at = sent_at(pipeline, first)
    time.sleep(2.0)  # the scenario: the same customer pays again two seconds later
    second = post(pipeline, payer, 2500.0, timestamp=now_iso())
    unrelated = post(pipeline, other, 1000.0, timestamp=now_iso())

    second_at, unrelated_at = sent_at(pipeline, second), sent_at(pipeline, unrelated)
    assert second_at - first_at >= INTERVAL - 0.002  # the call log keeps milliseconds
    amounts = [
        m["variables"]["amount"]
        for m in pipeline.sandbox_get("messages")
        if m["reference"] in (first, second)
    ]
    assert amounts == ["₦1,000.00", "₦2,500.00"]  # in order
    # The other customer, queued behind the waiting one on the only lane, went first.
    assert unrelated_at < second_at
    assert pipeline.stages(second).count("dispatched") == 1


def admin(pipeline: Pipeline, method: str, path: str) -> httpx.Response:
    url = f"http://127.0.0.1:{pipeline.ports['dispatcher-1']}{path}"
    return httpx.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_a_provider_double_fire_is_sent_once_and_told_in_the_story(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    payer = customer(pipeline, tmp_path)
    first = post(pipeline, payer, 7000.0, timestamp=now_iso(-1))
    second = post(pipeline, payer, 7000.0, timestamp=now_iso())  # another id, the same money

    wait_for(lambda: "dead_lettered" in pipeline.stages(second), timeout=30)
    sent_at(pipeline, first)
    assert pipeline.trigger_calls(second) == []
    story = pipeline.audit(second)
    assert story is not None
    stages = [e["stage"] for e in story["events"]]
    assert stages.index("received") < stages.index("double_fire_suspected")
    assert stages.index("double_fire_suspected") < stages.index("dead_lettered")
    suspicion = next(e for e in story["events"] if e["stage"] == "double_fire_suspected")
    assert suspicion["detail"]["first_reference"] == first
    assert 0.5 <= suspicion["detail"]["seconds_apart"] <= 2
    dead = next(e for e in story["events"] if e["stage"] == "dead_lettered")["detail"]
    assert (dead["status"], dead["reason"]) == ("manual_review", "suspected_double_fire")
    assert dead["error"].startswith("suspected double-fire of ")

    # The provider confirms a genuine second payment: an operator's retry sends it.
    answer = admin(pipeline, "POST", f"/dlq/{dead['id']}/retry")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "sent"
    sent_at(pipeline, second)
    assert len(pipeline.trigger_calls(first)) == 1
