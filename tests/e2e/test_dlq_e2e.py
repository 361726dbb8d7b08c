"""Issue 4: the dead-letter store's tools against the running pipeline: the admin HTTP API on
the dispatcher's port, the background retrier (every second here), and `bridge dlq`.

Needs `dispatcher.admin.register_admin` and the `Retrier` task wired into dispatcher/app.py;
until then the module is skipped (GET /dlq answers 404).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from .harness import (
    ROOT,
    Pipeline,
    make_pipeline,
    new_reference,
    payment,
    post_payment,
    stack_env,
    wait_for,
)

pytestmark = pytest.mark.e2e

TOKEN = "e2e-dlq-admin-token"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str) -> Iterator[Pipeline]:
    pipeline = make_pipeline(
        stack_env(), ADMIN_API_TOKENS=f"old-token,{TOKEN}", DLQ_RETRY_INTERVAL_SECONDS="1"
    )
    pipeline.provision()
    pipeline.start()
    try:
        if httpx.get(f"{admin_url(pipeline)}/dlq", timeout=10).status_code == 404:
            pytest.skip("the admin API is not wired into dispatcher/app.py yet")
        yield pipeline
    finally:
        pipeline.stop()
        pipeline.deprovision()


def admin_url(pipeline: Pipeline) -> str:
    return f"http://127.0.0.1:{pipeline.ports['dispatcher-1']}"


def admin(pipeline: Pipeline, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    return httpx.request(
        method, f"{admin_url(pipeline)}{path}", headers=headers, timeout=60, **kwargs
    )


def entry_of(pipeline: Pipeline, reference: str) -> dict[str, Any] | None:
    provider, _, _ = reference.partition(":")
    response = admin(pipeline, "GET", "/dlq", params={"provider": provider, "limit": "500"})
    assert response.status_code == 200, response.text
    matches = [e for e in response.json()["entries"] if e["reference"] == reference]
    return matches[0] if matches else None


def bridge(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv/bin/bridge"), "dlq", *args],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_admin_api_requires_a_token(pipeline: Pipeline) -> None:
    url = f"{admin_url(pipeline)}/dlq"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    ok = httpx.get(url, headers={"Authorization": "Bearer old-token"}, timeout=10)
    assert ok.status_code == 200 and "entries" in ok.json()
    denied = httpx.post(f"{admin_url(pipeline)}/dlq/1/retry", timeout=10)
    assert denied.status_code == 401


def test_retry_through_the_api_after_siteti_comes_back(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path)
    pipeline.stop("sandbox")  # nothing listens on Siteti's port now
    try:
        reference = post_payment(pipeline, account)
        entry = wait_for(lambda: entry_of(pipeline, reference), timeout=30)
        assert entry["reason"] == "siteti_unavailable"
    finally:
        pipeline.start("sandbox")

    response = admin(pipeline, "POST", f"/dlq/{entry['id']}/retry")
    assert response.status_code in (200, 409), response.text  # 409: the retrier was first
    wait_for(lambda: pipeline.sandbox_get("messages", reference=reference), timeout=30)
    detail = wait_for(
        lambda: (
            (d := admin(pipeline, "GET", f"/dlq/{entry['id']}").json())["status"] == "completed"
            and d
        )
    )
    assert "retried" in [h["stage"] for h in detail["history"]]
    again = admin(pipeline, "POST", f"/dlq/{entry['id']}/retry")
    assert again.status_code == 200 and again.json()["outcome"] == "not_retryable:completed"
    assert len(pipeline.sandbox_get("messages", reference=reference)) == 1


def test_retrier_sends_once_the_directory_has_the_number(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    account = pipeline.new_customer(tmp_path, phone="")
    ref = new_reference()
    assert pipeline.post_moniepoint(payment("payment.successful", account, ref)).status_code == 200
    reference = f"moniepoint:{ref}"
    entry = wait_for(lambda: entry_of(pipeline, reference), timeout=30)
    assert (entry["status"], entry["reason"]) == ("manual_review", "missing_contact")

    pipeline.import_customers(tmp_path, [(account, "08037654321", "first_time", 0)])
    messages = wait_for(lambda: pipeline.sandbox_get("messages", reference=reference), timeout=30)
    assert [m["to"] for m in messages] == ["2348037654321"]
    wait_for(lambda: (entry_of(pipeline, reference) or {}).get("status") == "completed")


def test_retrier_sends_once_the_template_is_approved(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path)
    pipeline.sandbox_control("PUT", "templates/tpl_first_time", {"status": "PENDING"})
    try:
        ref = new_reference()
        body = payment("payment.successful", account, ref)
        assert pipeline.post_moniepoint(body).status_code == 200
        reference = f"moniepoint:{ref}"
        entry = wait_for(lambda: entry_of(pipeline, reference), timeout=30)
        assert (entry["status"], entry["reason"]) == ("pending", "template_not_approved")
        assert entry["template_id"] == "tpl_first_time"
    finally:
        pipeline.sandbox_control("PUT", "templates/tpl_first_time", {"status": "APPROVED"})
    messages = wait_for(lambda: pipeline.sandbox_get("messages", reference=reference), timeout=30)
    assert [m["template_id"] for m in messages] == ["tpl_first_time"]
    wait_for(lambda: (entry_of(pipeline, reference) or {}).get("status") == "completed")


def test_cli_lists_and_closes(pipeline: Pipeline, tmp_path: Path) -> None:
    account = pipeline.new_customer(tmp_path, phone="")
    ref = new_reference()
    assert pipeline.post_moniepoint(payment("payment.successful", account, ref)).status_code == 200
    reference = f"moniepoint:{ref}"
    entry = wait_for(lambda: entry_of(pipeline, reference), timeout=30)

    listed = bridge(
        pipeline, "list", "--reason", "missing_contact", "--newer-than", "10m", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    lines = [orjson.loads(line) for line in listed.stdout.splitlines()]
    mine = [line for line in lines if line["reference"] == reference]
    assert len(mine) == 1
    assert {"id", "reference", "status", "reason", "retry_count"} <= set(mine[0])
    assert mine[0]["id"] == entry["id"]

    closed = bridge(pipeline, "close", str(entry["id"]), "--note", "customer unreachable")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    after = admin(pipeline, "GET", f"/dlq/{entry['id']}").json()
    assert after["status"] == "failed"
    assert [h["detail"].get("note") for h in after["history"] if h["stage"] == "resolved"] == [
        "customer unreachable"
    ]
