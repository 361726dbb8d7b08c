"""What every part of `make demo` shares (scripts/demo.py, scripts/demo_messaging.py): where
the services listen, the run's references and amounts, the local secrets, and the signed
Moniepoint webhook most scenarios are told with."""

from __future__ import annotations

import os
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
SANDBOX = f"http://127.0.0.1:{os.environ.get('SANDBOX_PORT', '8090')}"

_STARTED = time.time()
RUN = time.strftime("%H%M%S", time.localtime(_STARTED))
# Double-fire detection (DOUBLE_FIRE_WINDOW_SECONDS, 2 minutes) holds an event of the same
# provider, type, customer and amount as a recent one: each run adds its own few kobo to
# every amount, so that runs in a row are different payments. From the clock, not random:
# two runs less than 999 s apart never get the same.
RUN_KOBO = 1 + int(_STARTED) % 999


def amount(naira: float) -> float:
    """`naira` plus this run's kobo."""
    return round(naira + RUN_KOBO / 100, 2)


@dataclass(frozen=True)
class Expect:
    reference: str
    source: str
    scenario: str
    event: str
    template: str | None = None  # the template the message must use (None: nothing sent), or
    dead_letter: str | None = None  # the dead-letter reason it must end with
    delivery: str = "read"  # the last receipt of a sent message (demo.outcome's wording)
    stages: tuple[str, ...] = ()  # stages its audit story must also have


def secret(name: str) -> str:
    """The first listed value, from the environment or the local stack's secrets file."""
    value = os.environ.get(name)
    if not value:
        for line in (ROOT / ".stack/secrets.env").read_text().splitlines():
            key, _, found = line.partition("=")
            if key == name:
                value = found
    if not value:
        sys.exit(f"{name} is not set and not in .stack/secrets.env: run `make up` first")
    return value.split(",")[0]


def post(client: httpx.Client, provider: str, body: bytes, headers: dict[str, str]) -> None:
    answer = client.post(
        f"{INGEST}/webhooks/{provider}",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )
    if answer.status_code != 200:
        sys.exit(f"ingest refused the {provider} webhook: {answer.status_code} {answer.text}")


@dataclass(frozen=True)
class Scenario:
    """A Moniepoint payment to a customer of samples/customers.csv, and how it must end."""

    name: str
    event: str
    account: str  # in samples/customers.csv
    amount: float  # before the run's kobo
    template: str | None = None
    dead_letter: str | None = None
    reason: str | None = None
    twice: bool = False
    delivery: str = "read"
    stages: tuple[str, ...] = ()


def send_moniepoint(
    client: httpx.Client, scenarios: tuple[Scenario, ...], first: int = 1
) -> list[Expect]:
    """Each scenario as a signed Moniepoint webhook, referenced MNP-DEMO-<run>-<first…>."""
    key = secret("MONIEPOINT_WEBHOOK_SECRETS")
    expected = []
    for number, case in enumerate(scenarios, start=first):
        reference = f"MNP-DEMO-{RUN}-{number:03d}"
        data: dict[str, Any] = {
            "transactionReference": reference,
            "amount": amount(case.amount),
            "currency": "NGN",
            "customer": {"accountNumber": case.account},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "channel": "TRANSFER",
        }
        if case.reason:
            data["reason"] = case.reason
        body = orjson.dumps({"event": case.event, "data": data})
        for _ in range(2 if case.twice else 1):
            post(client, "moniepoint", body, {"X-Moniepoint-Signature": sign(key, body)})
        expected.append(
            Expect(
                f"moniepoint:{reference}",
                "moniepoint",
                case.name,
                case.event,
                case.template,
                case.dead_letter,
                case.delivery,
                case.stages,
            )
        )
    return expected
