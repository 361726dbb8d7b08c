"""Issue 10: one payment's log lines joined across ingest, the dispatcher and receipts.

The provider's `traceparent` goes into ingest, through the Kafka record to the dispatcher and
on to Siteti's API; every line the three services write is JSON, and the payment's lines
carry its reference and the one trace id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import tracing

from .harness import (
    LOGS,
    Pipeline,
    make_pipeline,
    new_reference,
    payment,
    running,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.e2e

SERVICES = ("ingest", "dispatcher-1", "receipts")


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    """A pipeline writing logs of its own: no other test's lines in the files read here."""
    pipeline = make_pipeline(stack_env())
    logs = LOGS / f"correlation-{uuid.uuid4().hex[:8]}"
    for process in pipeline.processes.values():
        process.log_dir = logs
    with running(pipeline):
        yield pipeline


def read_log(pipeline: Pipeline, name: str) -> list[dict[str, Any]]:
    lines = pipeline.processes[name].log_path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{name}.log line {number} is not JSON: {line[:200]!r}")
        assert isinstance(record, dict), line
        assert {"event", "service", "level", "timestamp"} <= set(record), line
        records.append(record)
    return records


def test_one_reference_is_joined_across_services_by_its_trace(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    provider = tracing.new_trace()
    account = pipeline.new_customer(tmp_path)
    ref = new_reference()
    reference = f"moniepoint:{ref}"
    body, headers = pipeline.signed(payment("payment.successful", account, ref))
    answer = httpx.post(
        f"{pipeline.ingest}/webhooks/moniepoint",
        content=body,
        headers={**headers, "traceparent": provider.traceparent},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    # Every delivery webhook is stored, so receipts has logged them all.
    wait_for(lambda: {"sent", "delivered", "read"} <= set(pipeline.stages(reference)))

    # (c) Siteti was called in the provider's trace, from a span of the dispatcher's own.
    (call,) = pipeline.trigger_calls(reference)
    sent = tracing.parse(call["traceparent"])
    assert sent is not None and sent.trace_id == provider.trace_id
    assert sent.span_id != provider.span_id

    pipeline.stop()  # every line written and flushed before the files are read
    for name in SERVICES:
        # (a) every line of every file is one JSON object
        records = read_log(pipeline, name)
        # (b) the payment's lines are there, all in the provider's trace
        mine = [r for r in records if r.get("reference") == reference]
        assert mine, f"no line of {name} names {reference}"
        assert {r.get("trace_id") for r in mine} == {provider.trace_id}, (name, mine)
        # and the trace names no other reference
        others = {r.get("reference") for r in records if r.get("trace_id") == provider.trace_id}
        assert others <= {reference, None}, (name, others)
    dispatched = [r["event"] for r in read_log(pipeline, "dispatcher-1") if r.get("reference")]
    assert "message_dispatched" in dispatched
