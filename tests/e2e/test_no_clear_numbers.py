"""Issue 9: after a full run, no clear phone number anywhere but the directory's sealed columns.

Every way a number enters the bridge is used: the directory import (Moniepoint), numbers in
webhooks (WasaaPay's customer phone, Open Market's buyer_number), a file-drop row, a dead
letter whose event holds a number, and a customer's reply and conversation state (Siteti's
`from`, and a number typed into the reply: bridge.replies.v1, bridge.conversations.v1).
Then `bridge privacy scan`'s searches go over a dump of the pipeline's database, every Redis
key and value, every record of every Kafka topic and every log file, for every form of those
numbers.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bridge.config import Settings
from bridge.events import CONVERSATIONS_TOPIC, REPLIES_TOPIC
from bridge.signing import js_stringify, sign
from bridge_cli.privacy import Place, scan_all
from tests.e2e.harness import (
    LOGS,
    ROOT,
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


def fresh_number(prefix: str) -> str:
    return prefix + str(uuid.uuid4().int)[:7]


def post_wasaapay(pipeline: Pipeline, event: str, reference: str, phone: str) -> None:
    payload: dict[str, Any] = {
        "event": event,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "partnerId": "partner_test",
        "environment": "SANDBOX",
        "data": {
            "transactionId": reference,
            "amount": 1500.5,
            "currency": "NGN",
            "status": "COMPLETED",
            "customer": {"phone": phone, "name": "Ada Obi"},
        },
    }
    secret = pipeline.env["WASAAPAY_WEBHOOK_SECRETS"]
    payload["signature"] = "sha256=" + sign(secret, js_stringify(payload).encode())
    answer = httpx.post(f"{pipeline.ingest}/webhooks/wasaapay", content=orjson.dumps(payload))
    assert answer.status_code == 200, answer.text


def post_openmarket(pipeline: Pipeline, transaction_id: str, buyer_number: str) -> None:
    body = orjson.dumps(
        {
            "transaction_id": transaction_id,
            "reference": f"ORDER-{transaction_id}",
            "meta_data": {"order_id": "ORD-1", "customer_id": "CUS_1", "product_ids": ["P1"]},
            "status": "completed",
            "transaction_type": "payment",
            "amount": "5000.00",
            "currency": "XOF",
            "buyer_number": buyer_number,
            "buyer_name": "Jean Dossou",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    signature = sign(pipeline.env["OPENMARKET_PRIVATE_KEYS"], body)
    answer = httpx.post(
        f"{pipeline.ingest}/webhooks/openmarket", content=body, headers={"opm-signature": signature}
    )
    assert answer.status_code == 200, answer.text


def drop_file(pipeline: Pipeline, inbox: Path, account: str, phone: str) -> None:
    """One overdue-rent row, read by the real file-drop watcher (`--once`)."""
    inbox.mkdir(parents=True)
    (inbox / "rent.csv").write_text(
        "record_id,tenant_account,name,phone,email,property,unit,amount_due,currency,due_date,"
        f"status\nR-1,{account},Kemi Adeyemi,{phone},kemi@example.com,Palm Court,B4,"
        '"450,000.00",NGN,2026-01-15,overdue\n'
    )
    env = {**pipeline.env, "FILEDROP_DIR": str(inbox), "FILEDROP_SETTLE_SECONDS": "0"}
    with (LOGS / "filedrop.log").open("ab") as log:
        subprocess.run(
            [sys.executable, "-m", "ingest.sources", "filedrop", "--once"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
        )


def emit(pipeline: Pipeline, control: str, body: dict[str, Any]) -> str:
    """A webhook the sandbox sends the receipts service (its /_sandbox/ control); its id."""
    answer = httpx.post(f"{pipeline.sandbox}/_sandbox/{control}", json=body)
    assert answer.status_code == 200, answer.text
    event_id: str = answer.json()["event_id"]
    return event_id


def relayed(pipeline: Pipeline, event_ids: list[str]) -> bool:
    """Stored, and their records on the replies and conversations topics: none left in the
    outbox (so the scan reads them on the topics)."""
    row = asyncio.run(
        pipeline.fetchrow(
            "SELECT (SELECT count(*) FROM siteti_webhook_events WHERE event_id = ANY($1))"
            " AS stored, (SELECT count(*) FROM outbox WHERE topic = ANY($2)) AS waiting",
            event_ids,
            [REPLIES_TOPIC.name, CONVERSATIONS_TOPIC.name],
        )
    )
    return bool(row["stored"] == len(event_ids) and row["waiting"] == 0)


def test_a_full_run_stores_no_clear_number(tmp_path: Path) -> None:
    directory_phone = fresh_number("0803")  # national form, as a directory export has it
    wasaapay_phone = "+234805" + fresh_number("")
    openmarket_phone = "+22997" + fresh_number("")[:6]
    filedrop_phone = fresh_number("+234 806 ")
    parked_phone = "+234807" + fresh_number("")
    typed_phone = "0809" + fresh_number("")  # typed into a reply
    numbers = [
        directory_phone,
        wasaapay_phone,
        openmarket_phone,
        filedrop_phone,
        parked_phone,
        typed_phone,
    ]

    pipeline = make_pipeline(
        stack_env(),
        WASAAPAY_WEBHOOK_SECRETS=secrets.token_hex(32),
        OPENMARKET_PRIVATE_KEYS=secrets.token_hex(32),
    )
    with running(pipeline):
        # Every template of the shipped rules, approved, as `make up` registers them.
        subprocess.run(
            [sys.executable, "scripts/sandbox_templates.py", "--sandbox", pipeline.sandbox],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        account = new_account()
        pipeline.import_customers(tmp_path, [(account, directory_phone, "returning", 0)])
        # This template waits for approval: its event becomes a dead letter, number and all.
        pipeline.sandbox_control("PUT", "templates/tpl_withdrawal_completed", {"status": "PENDING"})

        moniepoint_ref = new_reference()
        answer = pipeline.post_moniepoint(payment("payment.successful", account, moniepoint_ref))
        assert answer.status_code == 200, answer.text
        wasaapay_ref, parked_ref = f"WSP-{uuid.uuid4().hex[:10]}", f"WSP-{uuid.uuid4().hex[:10]}"
        post_wasaapay(pipeline, "deposit.completed", wasaapay_ref, wasaapay_phone)
        post_wasaapay(pipeline, "withdrawal.completed", parked_ref, parked_phone)
        openmarket_id = f"tr_{uuid.uuid4().hex[:12]}"
        post_openmarket(pipeline, openmarket_id, openmarket_phone)
        drop_file(pipeline, tmp_path / "inbox", new_account(), filedrop_phone)

        sent = [
            f"moniepoint:{moniepoint_ref}",
            f"wasaapay:{wasaapay_ref}",
            f"openmarket:{openmarket_id}",
        ]

        def delivered() -> bool:
            return all("delivered" in pipeline.stages(reference) for reference in sent)

        try:
            wait_for(delivered, timeout=60)
        except AssertionError:
            raise AssertionError({r: pipeline.audit(r) for r in sent}) from None
        wait_for(lambda: "dead_lettered" in pipeline.stages(f"wasaapay:{parked_ref}"), 60)
        wait_for(
            lambda: any(
                m["reference"].startswith("filedrop:") for m in pipeline.sandbox_get("messages")
            ),
            60,
        )
        # Siteti got the real numbers (the bridge must still be able to message people).
        contacts = {c["phone"] for c in pipeline.sandbox_get("contacts")}
        assert {"234" + directory_phone[1:], wasaapay_phone[1:], openmarket_phone[1:]} <= contacts

        # The directory's customer writes back, typing another number, and their conversation
        # opens: Siteti's webhooks to receipts, then the replies and conversations topics.
        customer = "234" + directory_phone[1:]
        emitted = [
            emit(pipeline, "replies", {"from": customer, "text": f"or call {typed_phone}"}),
            emit(pipeline, "conversations", {"from": customer, "state": "open"}),
        ]
        wait_for(lambda: relayed(pipeline, emitted), 60)

        pipeline.stop()  # every log line written
        settings = Settings(
            database_url=pipeline.env["DATABASE_URL"],
            kafka_bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP_SERVERS"],
            redis_url=pipeline.env["REDIS_URL"],
        )
        places = asyncio.run(scan_all(settings, numbers, [LOGS, ROOT / ".stack/logs"]))
    report = {p.name: (p.items, p.size) for p in places}
    print(f"\nscanned: {report}")  # the note's "size of the grep"
    found = {p.name: p.hits for p in places if p.hits}
    assert not found, found
    assert all(p.items for p in places), report  # each place was really searched


def test_the_scan_finds_a_clear_number(tmp_path: Path, settings: Settings) -> None:
    """The search above can fail: a number written in clear in a log is found and reported."""
    number = "+234809" + fresh_number("")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "service.log").write_text(f'{{"event":"oops","to":"{number[1:]}"}}\n')
    places: list[Place] = asyncio.run(scan_all(settings, [number], [logs]))
    hits = {p.name: p.hits for p in places if p.hits}
    assert hits == {"log files": {str(logs / "service.log"): {"•••" + number[-4:]}}}
    assert os.path.exists(logs / "service.log")
