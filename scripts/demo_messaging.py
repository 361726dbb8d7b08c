"""`make demo`, part three: the customer's side of WhatsApp (docs/runbooks.md).

- A number confirmation round trip. Femi Johnson's directory number is unconfirmed
  (`phone_confirmed` false in samples/customers.csv): his payment waits while
  `tpl_confirm_number` asks him; the sandbox answers YES for him (an auto-reply), and the
  payment's message goes out once the bridge has read the answer.
- A failure code acted on. The sandbox makes WhatsApp refuse the next message to Tobi Lawal's
  number with 131026 (undeliverable): receipts send the event to manual review
  (`whatsapp_undeliverable`) and flag the number.

Both customers have numbers of their own, so no other demo message is held by the flag or
paced (PAIR_MIN_INTERVAL_SECONDS) behind theirs. The sandbox controls are armed before the
run's webhooks and removed after, so that every run behaves the same.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
from demo_common import RECEIPTS, SANDBOX, Expect, Scenario

from bridge.config import get_settings
from bridge.db import connect

# In Siteti's form: what the sandbox matches a control's recipients against.
CONFIRMING = "2348123456789"  # Femi Johnson (0890123456)
UNDELIVERABLE = "2347039012345"  # Tobi Lawal (0901234567)
CONFIRM_TEMPLATE = "tpl_confirm_number"
UNDELIVERABLE_CODE = 131026

SCENARIOS = (
    Scenario(
        "number confirmed first",
        "payment.successful",
        "0890123456",
        12500,
        "tpl_returning_good",
        stages=("confirmation_requested", "number_confirmed"),
    ),
    Scenario(
        f"WhatsApp error {UNDELIVERABLE_CODE}",
        "payment.successful",
        "0901234567",
        4000,
        "tpl_first_time",
        dead_letter="whatsapp_undeliverable",
        delivery=f"failed {UNDELIVERABLE_CODE} manual_review_flagged",
    ),
)

# What the stories print of each stage's detail, in this order.
_SHOWN = (
    "amount",
    "template",
    "confirmation_reference",
    "reason",
    "status",
    "siteti_status",
    "message_id",
    "action",
)


def _control(client: httpx.Client, method: str, path: str, body: Any = None) -> None:
    answer = client.request(method, f"{SANDBOX}/_sandbox/{path}", json=body)
    answer.raise_for_status()


def _database(query: str, *args: Any) -> Any:
    """One statement as the database owner (the demo's own housekeeping); its first value."""

    async def run() -> Any:
        pool = await connect(get_settings().database_url, max_size=1)
        try:
            return await pool.fetchval(query, *args)
        finally:
            await pool.close()

    return asyncio.run(run())


def arm(client: httpx.Client) -> None:
    """Femi answers the question YES; WhatsApp refuses the next message to Tobi's number."""
    disarm(client)
    # An earlier run flagged Tobi's number: later messages to it would be held for review
    # (`number_flagged`) instead of sent. In production an operator's retry lifts a flag.
    _database("DELETE FROM flagged_numbers WHERE reference LIKE 'moniepoint:MNP-DEMO-%'")
    _control(
        client, "PUT", f"auto-replies/{CONFIRM_TEMPLATE}", {"text": "YES", "numbers": [CONFIRMING]}
    )
    _control(
        client,
        "POST",
        "delivery-failures",
        {"code": UNDELIVERABLE_CODE, "to": UNDELIVERABLE, "times": 1},
    )


def disarm(client: httpx.Client) -> None:
    _control(client, "DELETE", "auto-replies")
    _control(client, "DELETE", "delivery-failures")


def _summary(detail: dict[str, Any]) -> str:
    parts = [f"{key}={detail[key]}" for key in _SHOWN if detail.get(key) not in (None, "")]
    error = detail.get("error")
    if isinstance(error, dict):
        parts.insert(0, f"error={error.get('code')} {error.get('title')}")
    return " ".join(parts)


def _story(client: httpx.Client, auth: dict[str, str], reference: str) -> list[dict[str, Any]]:
    """`GET /audit/{reference}`'s events, printed one line a stage."""
    answer = client.get(f"{RECEIPTS}/audit/{reference}", headers=auth)
    events: list[dict[str, Any]] = answer.json()["events"] if answer.status_code == 200 else []
    for entry in events:
        at = datetime.fromisoformat(entry["occurred_at"]).strftime("%H:%M:%S.%f")[:-3]
        print(f"  {at}  {entry['stage']:<23} {_summary(entry['detail'])}")
    print("  " + " -> ".join(entry["stage"] for entry in events))
    return events


def print_stories(auth: dict[str, str], expected: list[Expect]) -> None:
    """The two transactions' audit stories, the question's own, and the flag."""
    with httpx.Client(timeout=30) as client:
        _print_stories(client, auth, expected)


def _print_stories(client: httpx.Client, auth: dict[str, str], expected: list[Expect]) -> None:
    confirmed, refused = expected
    print(f"\nnumber confirmation round trip ({confirmed.reference}):")
    events = _story(client, auth, confirmed.reference)
    question = next(
        (
            e["detail"].get("confirmation_reference")
            for e in events
            if e["stage"] == "confirmation_requested"
        ),
        None,
    )
    if question:
        print(f"the question's own story ({question}):")
        _story(client, auth, question)

    print(f"\nWhatsApp error {UNDELIVERABLE_CODE} acted on ({refused.reference}):")
    _story(client, auth, refused.reference)
    flagged = _database("SELECT code FROM flagged_numbers WHERE reference = $1", refused.reference)
    print(f"  number flagged: {f'yes (code {flagged})' if flagged else 'NO'}")
