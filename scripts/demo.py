"""`make demo`: sample events from every source through the running pipeline, and a table of
what came out of each.

    python scripts/demo.py prepare   # the poller's sample orders view (before `make up`)
    python scripts/demo.py           # post, wait, print; exit 1 if any row is not as expected

Part one is the Moniepoint walk-through (tiers, failures, a duplicate, a customer without a
number); part two sends one event from each other source: Monnify, Paystack, Flutterwave
(verified against its stand-in), WasaaPay, Open Market, the generic Standard Webhooks source,
the database poller and the file drop; part three (demo_messaging.py) a number confirmation
round trip and a WhatsApp failure code acted on.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import demo_messaging
import httpx
import orjson
from demo_common import (
    RECEIPTS,
    ROOT,
    RUN,
    RUN_KOBO,
    Expect,
    Scenario,
    amount,
    post,
    secret,
    send_moniepoint,
)

from bridge.config import get_settings
from bridge.db import connect
from bridge.signing import js_stringify, sign, standard_webhooks_key
from ingest.sources.filedrop_reader import reference_prefix

PROMETHEUS = f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9090')}"
CONSOLE = f"http://127.0.0.1:{os.environ.get('CONSOLE_PORT', '8080')}"
# The webhooks the demo sent, as a graph of scripts/prometheus.sh's Prometheus.
WEBHOOK_GRAPH = {
    "g0.expr": "sum by (provider) (increase(bridge_webhooks_received_total[1m]))",
    "g0.tab": "0",
    "g0.range_input": "15m",
}
# Messages to one number go out PAIR_MIN_INTERVAL_SECONDS (6 s) apart: a customer with three
# messages, or a confirmation then the payment, takes a while.
WAIT_SECONDS = 90.0


# --- part one: Moniepoint -------------------------------------------------------------------


MONIEPOINT = (
    Scenario("first-time payer", "payment.successful", "0123456789", 500000, "tpl_first_time"),
    Scenario(
        "returning, good standing", "payment.successful", "0234567890", 25000, "tpl_returning_good"
    ),
    Scenario(
        "returning, late payments", "payment.successful", "0345678901", 7500.5, "tpl_returning_late"
    ),
    Scenario(
        "insufficient funds",
        "payment.failed",
        "0456789012",
        12000,
        "tpl_failed_insufficient_funds",
        reason="Insufficient Funds",
    ),
    Scenario(
        "bank network failure",
        "payment.failed",
        "0567890123",
        3000,
        "tpl_failed_bank_network",
        reason="bank network timeout",
    ),
    Scenario(
        "duplicate webhook", "payment.successful", "0789012345", 1500, "tpl_first_time", twice=True
    ),
    Scenario(
        "no WhatsApp number",
        "payment.successful",
        "0678901234",
        9000,
        dead_letter="missing_contact",
    ),
)


# --- part two: every other source -------------------------------------------------------------


def send_monnify(client: httpx.Client) -> Expect:
    reference = f"MNFY|DEMO|{RUN}"
    body = orjson.dumps(
        {
            "eventType": "SUCCESSFUL_TRANSACTION",
            "eventData": {
                "transactionReference": reference,
                "paymentReference": f"PAY-{RUN}",
                "amountPaid": f"{amount(2500):.2f}",
                "paymentStatus": "PAID",
                "currency": "NGN",
                "customer": {"name": "Tunde Bakare", "email": "tunde@example.com"},
            },
        }
    )
    signature = sign(secret("MONNIFY_CLIENT_SECRETS"), body, "sha512")
    post(client, "monnify", body, {"monnify-signature": signature})
    return Expect(
        f"monnify:{reference}",
        "monnify",
        "collection paid",
        "payment.successful",
        "tpl_returning_good",
    )


def send_paystack(client: httpx.Client) -> Expect:
    reference = f"PSK-DEMO-{RUN}"
    body = orjson.dumps(
        {
            "event": "charge.success",
            "data": {
                "id": int(RUN),
                "status": "success",
                "reference": reference,
                "amount": 500000 + RUN_KOBO,  # kobo
                "currency": "NGN",
                "paid_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "channel": "card",
                "customer": {"email": "ngozi@example.com", "phone": None},
            },
        }
    )
    signature = sign(secret("PAYSTACK_SECRET_KEYS"), body, "sha512")
    post(client, "paystack", body, {"x-paystack-signature": signature})
    return Expect(
        f"paystack:{reference}",
        "paystack",
        "first-time card payer (kobo)",
        "payment.successful",
        "tpl_first_time",
    )


def send_flutterwave(client: httpx.Client) -> Expect:
    transaction_id = 900000000 + int(RUN)
    data = {
        "id": transaction_id,
        "tx_ref": f"FLW-DEMO-{RUN}",
        "flw_ref": f"DEMO/FLW{RUN}",
        "amount": amount(7500),
        "currency": "NGN",
        "charged_amount": amount(7500),
        "status": "successful",
        "payment_type": "card",
        "customer": {"id": 1, "name": "Kemi Adeyemi", "email": "kemi@example.com"},
    }
    # Verify before process: Flutterwave's (stand-in) API must confirm the transaction.
    standin = os.environ.get("FLUTTERWAVE_API_BASE_URL", "http://127.0.0.1:8091")
    client.post(f"{standin}/_standin/transactions", json=data).raise_for_status()
    body = orjson.dumps({"event": "charge.completed", "data": data})
    post(client, "flutterwave", body, {"verif-hash": secret("FLUTTERWAVE_SECRET_HASHES")})
    return Expect(
        f"flutterwave:{transaction_id}",
        "flutterwave",
        "verified charge, late payer",
        "payment.successful",
        "tpl_returning_late",
    )


def send_wasaapay(client: httpx.Client) -> Expect:
    reference = f"WSP-DEMO-{RUN}"
    payload: dict[str, Any] = {
        "event": "deposit.completed",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "partnerId": "partner_demo",
        "environment": "SANDBOX",
        "data": {
            "transactionId": reference,
            "amount": amount(1500.5),
            "currency": "NGN",
            "status": "COMPLETED",
            "customer": {"phone": "+2348031234567", "name": "Ada Obi"},
        },
    }
    # WasaaPay signs JSON.stringify of the payload, and puts the signature inside it.
    payload["signature"] = "sha256=" + sign(
        secret("WASAAPAY_WEBHOOK_SECRETS"), js_stringify(payload).encode()
    )
    post(client, "wasaapay", orjson.dumps(payload), {})
    return Expect(
        f"wasaapay:{reference}",
        "wasaapay",
        "wallet deposit",
        "deposit.completed",
        "tpl_deposit_completed",
    )


def send_openmarket(client: httpx.Client) -> Expect:
    transaction_id = f"tr_demo_{RUN}"
    payload = {
        "transaction_id": transaction_id,
        "reference": f"ORDER-{RUN}",
        "meta_data": {"order_id": f"ORD-OM-{RUN}", "customer_id": "CUS_1", "product_ids": ["P1"]},
        "status": "completed",
        "transaction_type": "payment",
        "amount": f"{5000 + RUN_KOBO}.00",  # francs: XOF has no minor unit
        "currency": "XOF",
        "buyer_number": "+22961234567",
        "buyer_name": "Jean Dossou",
        "buyer_email": "jean@example.com",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    body = orjson.dumps(payload)
    post(
        client, "openmarket", body, {"opm-signature": sign(secret("OPENMARKET_PRIVATE_KEYS"), body)}
    )
    return Expect(
        f"openmarket:{transaction_id}",
        "openmarket",
        "marketplace order (XOF)",
        "payment.successful",
        "tpl_order_confirmation",
    )


def send_generic(client: httpx.Client) -> Expect:
    transaction_id = f"GEN-DEMO-{RUN}"
    body = orjson.dumps(
        {
            "event": "payment.success",
            "data": {
                "transaction_id": transaction_id,
                "amount": amount(5000),
                "currency": "NGN",
                "status": "success",
                "customer": {"email": "chidi@example.com", "name": "Chidi Okeke"},
            },
        }
    )
    message_id, timestamp = f"msg_demo_{RUN}", str(int(time.time()))
    key = standard_webhooks_key(secret("GENERIC_WEBHOOK_SECRETS"))
    signature = sign(key, f"{message_id}.{timestamp}.".encode() + body, "sha256", "base64")
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }
    post(client, "generic", body, headers)
    return Expect(
        f"generic:{transaction_id}",
        "generic",
        "Standard Webhooks payment",
        "payment.successful",
        "tpl_returning_good",
    )


def send_poller(_: httpx.Client) -> Expect:
    order_id = f"ORD-DEMO-{RUN}"

    async def insert() -> None:
        pool = await connect(get_settings().database_url, max_size=1)
        try:
            await pool.execute(
                "INSERT INTO bridge_demo_orders (order_id, status, customer_account,"
                " customer_email, customer_name, total, items) VALUES ($1, 'completed',"
                " '0234567890', 'tunde@example.com', 'Tunde Bakare', $2, 2)",
                order_id,
                amount(18500),
            )
        finally:
            await pool.close()

    asyncio.run(insert())
    return Expect(
        f"dbpoll:{order_id}",
        "db poller",
        "order row in a view",
        "order.completed",
        "tpl_order_completed",
    )


def send_filedrop(_: httpx.Client) -> Expect:
    name = f"rent-status-demo-{RUN}.csv"
    content = (
        b"record_id,tenant_account,name,phone,email,property,unit,amount_due,currency,due_date,status\n"
        b"R-1,0345678901,Kemi Adeyemi,+234 805 345 6789,kemi@example.com,Palm Court Lekki,B4,"
        + f'"{amount(450000):,.2f}",NGN,2026-01-15,overdue\n'.encode()
    )
    inbox = ROOT / get_settings().filedrop_dir
    inbox.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed in: the watcher never sees a half-written file.
    (inbox / f".{name}.part").write_bytes(content)
    (inbox / f".{name}.part").rename(inbox / name)
    prefix = reference_prefix(name, hashlib.sha256(content).hexdigest())
    return Expect(
        f"filedrop:{prefix}:R-1",
        "file drop",
        "rent overdue (CSV export)",
        "rent.overdue",
        "tpl_rent_overdue",
    )


OTHER_SOURCES: tuple[Callable[[httpx.Client], Expect], ...] = (
    send_monnify,
    send_paystack,
    send_flutterwave,
    send_wasaapay,
    send_openmarket,
    send_generic,
    send_poller,
    send_filedrop,
)


# --- what came out ----------------------------------------------------------------------------


def outcome(story: dict[str, Any] | None) -> dict[str, str]:
    row = {"template": "-", "siteti": "-", "delivery": "-", "dead_letter": "-"}
    sends, stages = 0, []
    for entry in (story or {}).get("events", []):
        detail = entry["detail"]
        stages.append(entry["stage"])
        if entry["stage"] == "dispatched":
            sends += 1
            row["template"] = detail.get("template", "-")
            row["siteti"] = f"{detail.get('siteti_status')} {detail.get('message_id')}"
        elif entry["stage"] == "dead_lettered":
            row["dead_letter"] = f"{detail.get('reason')} ({detail.get('status')})"
        elif entry["stage"] in ("sent", "delivered", "read"):
            row["delivery"] = entry["stage"]
        elif entry["stage"] == "failed":  # WhatsApp's code, and what receipts did about it
            code = (detail.get("error") or {}).get("code")
            row["delivery"] = f"failed {code} {detail.get('action')}"
    return {**row, "sends": str(sends), "stages": " ".join(stages)}


def as_expected(expect: Expect, row: dict[str, str]) -> bool:
    if not set(expect.stages) <= set(row["stages"].split()):
        return False
    if expect.template is None:  # never sent
        return row["dead_letter"].startswith(expect.dead_letter or "") and row["sends"] == "0"
    return (
        row["template"] == expect.template
        and row["delivery"] == expect.delivery
        and row["sends"] == "1"
        and row["dead_letter"].startswith(expect.dead_letter or "")
    )


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, line in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def prepare() -> int:
    """The poller's sample source: an orders table and the view it reads."""

    async def apply() -> None:
        pool = await connect(get_settings().database_url, max_size=1)
        try:
            await pool.execute((ROOT / "samples/poller/orders.sql").read_text())
        finally:
            await pool.close()

    asyncio.run(apply())
    return 0


def main() -> int:
    print("importing the sample customer directory (samples/customers.csv)")
    bridge = str(ROOT / ".venv/bin/bridge")
    subprocess.run([bridge, "customers", "import", str(ROOT / "samples/customers.csv")], check=True)

    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        demo_messaging.arm(client)
        expected = send_moniepoint(client, MONIEPOINT)
        expected += [send(client) for send in OTHER_SOURCES]
        messaging = send_moniepoint(client, demo_messaging.SCENARIOS, len(MONIEPOINT) + 1)
        expected += messaging
        print(f"sent {len(expected)} events from {len({e.source for e in expected})} sources\n")

        rows: dict[str, dict[str, str]] = {}
        # An investigator's token: `make up` lists `support:<token>` first in API_TOKENS.
        auth = {"Authorization": f"Bearer {secret('API_TOKENS').partition(':')[2]}"}
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            for expect in expected:
                answer = client.get(f"{RECEIPTS}/audit/{expect.reference}", headers=auth)
                rows[expect.reference] = outcome(
                    answer.json() if answer.status_code == 200 else None
                )
            if all(as_expected(e, rows[e.reference]) for e in expected):
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        demo_messaging.disarm(client)

    table: list[tuple[str, ...]] = [
        ("source", "reference", "scenario", "event", "template", "Siteti answer", "sends",
         "delivery", "dead letter", "ok"),
    ]  # fmt: skip
    failures = 0
    for expect in expected:
        row = rows[expect.reference]
        ok = as_expected(expect, row)
        failures += not ok
        table.append((
            expect.source, expect.reference, expect.scenario, expect.event, row["template"],
            row["siteti"], row["sends"], row["delivery"], row["dead_letter"], "yes" if ok else "NO",
        ))  # fmt: skip
    print_table(table)
    print(f"\n{len(expected)} transactions settled in {elapsed:.1f} s (event to its last receipt);"
          " the duplicate webhook was sent once")  # fmt: skip
    demo_messaging.print_stories(auth, messaging)
    if failures:
        print(f"\n{failures} transaction(s) did not end as expected; logs are in .stack/logs/")
        return 1
    print("\nall transactions ended as expected")
    print("no number stored in clear? `.venv/bin/bridge privacy scan` (docs/data-protection.md)")
    print(f"the demo's webhooks in Prometheus: {PROMETHEUS}/graph?{urlencode(WEBHOOK_GRAPH)}")
    print(f"the dead letter in the operations console: {CONSOLE}/dlq?reason=missing_contact"
          " (sign in with a token of API_TOKENS in .stack/secrets.env)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(prepare() if sys.argv[1:] == ["prepare"] else main())
