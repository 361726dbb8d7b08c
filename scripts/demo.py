"""`make demo`: signed sample webhooks through the running pipeline, and a table of what came out.

Expects `make up` to have started the stack and the services. Exits non-zero when any
transaction does not end as it should.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bridge.signing import sign

ROOT = Path(__file__).resolve().parents[1]
INGEST = f"http://127.0.0.1:{os.environ.get('INGEST_PORT', '8000')}"
RECEIPTS = f"http://127.0.0.1:{os.environ.get('RECEIPTS_PORT', '8001')}"
WAIT_SECONDS = 45.0


@dataclass(frozen=True)
class Case:
    label: str
    event: str
    account: str
    name: str
    amount: float
    reason: str | None = None
    expect_template: str | None = None  # None: expect a dead letter
    expect_dead_letter: str | None = None
    duplicate: bool = False


CASES = (
    Case(
        "first-time payer",
        "payment.successful",
        "0123456789",
        "Ada Obi",
        500000,
        expect_template="tpl_first_time",
    ),
    Case(
        "returning, good standing",
        "payment.successful",
        "0234567890",
        "Tunde Bakare",
        25000,
        expect_template="tpl_returning_good",
    ),
    Case(
        "returning, late payments",
        "payment.successful",
        "0345678901",
        "Kemi Adeyemi",
        7500.5,
        expect_template="tpl_returning_late",
    ),
    Case(
        "insufficient funds",
        "payment.failed",
        "0456789012",
        "Chidi Okeke",
        12000,
        "Insufficient Funds",
        expect_template="tpl_failed_insufficient_funds",
    ),
    Case(
        "bank network failure",
        "payment.failed",
        "0567890123",
        "Bisi Alade",
        3000,
        "bank network timeout",
        expect_template="tpl_failed_bank_network",
    ),
    Case(
        "duplicate webhook",
        "payment.successful",
        "0789012345",
        "Ngozi Eze",
        1500,
        expect_template="tpl_first_time",
        duplicate=True,
    ),
    Case(
        "no WhatsApp number",
        "payment.successful",
        "0678901234",
        "Emeka Nwosu",
        9000,
        expect_dead_letter="missing_contact",
    ),
)


def env_value(name: str) -> str:
    """From the environment, else the local stack's generated secrets file."""
    if os.environ.get(name):
        return os.environ[name]
    for line in (ROOT / ".stack/secrets.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    sys.exit(f"{name} is not set and not in .stack/secrets.env: run `make up` first")


def moniepoint_body(case: Case, reference: str) -> bytes:
    data: dict[str, Any] = {
        "transactionReference": reference,
        "amount": case.amount,
        "currency": "NGN",
        "customer": {"accountNumber": case.account, "name": case.name},
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "description": "demo",
        "channel": "TRANSFER",
        "settlement": {"status": "PENDING"},
    }
    if case.reason:
        data["reason"] = case.reason
    return orjson.dumps({"event": case.event, "data": data})


def post(client: httpx.Client, body: bytes, secret: str) -> httpx.Response:
    return client.post(
        f"{INGEST}/webhooks/moniepoint",
        content=body,
        headers={"Content-Type": "application/json", "X-Moniepoint-Signature": sign(secret, body)},
    )


def summarise(story: dict[str, Any] | None) -> dict[str, str]:
    row = {"template": "-", "siteti": "-", "delivery": "-", "dead_letter": "-", "sends": "0"}
    for entry in (story or {}).get("events", []):
        detail = entry["detail"]
        if entry["stage"] == "dispatched":
            replay = " (replay)" if detail.get("replayed") else ""
            row["sends"] = str(int(row["sends"]) + 1)
            row["template"] = detail.get("template", "-")
            row["siteti"] = f"{detail.get('siteti_status')} {detail.get('message_id')}{replay}"
        elif entry["stage"] == "dead_lettered":
            row["dead_letter"] = f"{detail.get('reason')} ({detail.get('status')})"
        elif entry["stage"] in ("sent", "delivered", "read", "failed"):
            row["delivery"] = entry["stage"]
    return row


def finished(case: Case, row: dict[str, str]) -> bool:
    if case.expect_dead_letter:
        return row["dead_letter"] != "-"
    return row["delivery"] == "read"


def main() -> int:
    secret = env_value("MONIEPOINT_WEBHOOK_SECRETS").split(",")[0]
    print("importing the sample customer directory (samples/customers.csv)")
    subprocess.run(
        [
            str(ROOT / ".venv/bin/bridge"),
            "customers",
            "import",
            str(ROOT / "samples/customers.csv"),
        ],
        check=True,
    )

    run_id = time.strftime("%H%M%S")
    started = time.monotonic()
    references: dict[Case, str] = {}
    with httpx.Client(timeout=30) as client:
        for number, case in enumerate(CASES, start=1):
            reference = f"MNP-DEMO-{run_id}-{number:03d}"
            references[case] = reference
            body = moniepoint_body(case, reference)
            for _ in range(2 if case.duplicate else 1):
                answer = post(client, body, secret)
                if answer.status_code != 200:
                    print(f"ingest refused {reference}: {answer.status_code} {answer.text}")
                    return 1
        print(f"posted {len(CASES) + 1} signed Moniepoint webhooks (one of them twice)\n")

        rows: dict[Case, dict[str, str]] = {}
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            for case, reference in references.items():
                answer = client.get(f"{RECEIPTS}/audit/moniepoint:{reference}")
                rows[case] = summarise(answer.json() if answer.status_code == 200 else None)
            if all(finished(case, rows[case]) for case in CASES):
                break
            time.sleep(0.5)
    elapsed = time.monotonic() - started

    header = (
        "reference",
        "scenario",
        "event",
        "template",
        "Siteti answer",
        "sends",
        "delivery",
        "dead letter",
        "ok",
    )
    table = [header]
    failures = 0
    for case in CASES:
        row = rows[case]
        ok = (
            row["dead_letter"].startswith(case.expect_dead_letter) and row["template"] == "-"
            if case.expect_dead_letter
            else row["template"] == case.expect_template
            and row["delivery"] == "read"
            and row["sends"] == "1"
        )
        failures += not ok
        table.append(
            (
                f"moniepoint:{references[case]}",
                case.label,
                case.event,
                row["template"],
                row["siteti"],
                row["sends"],
                row["delivery"],
                row["dead_letter"],
                "yes" if ok else "NO",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for index, line in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(
        f"\n{len(CASES)} transactions settled in {elapsed:.1f} s (webhook to 'read' receipt);"
        " the duplicate webhook was sent once"
    )
    if failures:
        print(f"\n{failures} transaction(s) did not end as expected; logs are in .stack/logs/")
        return 1
    print("\nall transactions ended as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
