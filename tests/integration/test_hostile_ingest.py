"""Issue 7 ("crashes and hostile input"): one regression test per finding, through the real
ingest app (its lifespan starts the real Kafka producer on the session's topic).

The edge never answers 5xx for what a caller sends (503 is for a real dependency outage):
hostile bytes without a valid signature are a bad signature, authentic but unusable payloads
are 422 naming the field, and the canonical model refuses what the dispatcher could not
process (bad times, control characters, over-long text, absurd amounts).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from bridge.config import Settings
from bridge.signing import sign
from ingest.app import create_app
from ingest.flutterwave_standin import create_app as create_standin
from tests.conftest import free_port
from tests.problem_tools import problem_detail
from tests.unit.test_event_schemas import MONIEPOINT_PAYLOAD
from tests.unit.test_flutterwave_confirm import SECRET_KEY
from tests.unit.test_providers import wasaapay_body

pytestmark = pytest.mark.integration

SECRETS = {
    "moniepoint_webhook_secrets": ["mnp_secret"],
    "monnify_client_secrets": ["monnify_secret"],
    "paystack_secret_keys": ["sk_test_secret"],
    "flutterwave_secret_hashes": ["flw_hash"],
    "wasaapay_webhook_secrets": ["wasaapay_secret"],
    "openmarket_private_keys": ["opm_private_key"],
    "generic_webhook_secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
}


def ingest_settings(settings: Settings, **changes: Any) -> Settings:
    """The session's settings with every provider's secret, and no rejection limit (these
    tests send many rejected requests from one client on purpose)."""
    return settings.model_copy(
        update={**SECRETS, "ingest_ip_limit_per_minute": 1_000_000, **changes}
    )


@pytest.fixture(scope="module")
def standin_url() -> Iterator[str]:
    """The Flutterwave stand-in on a real port: ingest's own HTTP client calls it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_standin(SECRET_KEY), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the Flutterwave stand-in did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def client(settings: Settings, events_topic: str, standin_url: str) -> Iterator[TestClient]:
    app = create_app(
        ingest_settings(
            settings, flutterwave_api_base_url=standin_url, flutterwave_secret_key=SECRET_KEY
        )
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def moniepoint(client: TestClient, payload: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    header = sign(SECRETS["moniepoint_webhook_secrets"][0], body)
    return client.post(
        "/webhooks/moniepoint", content=body, headers={"X-Moniepoint-Signature": header}
    )


def moniepoint_with(data_changes: dict[str, Any], **customer: Any) -> dict[str, Any]:
    data = {**MONIEPOINT_PAYLOAD["data"], **data_changes}
    data["transactionReference"] = data_changes.get(
        "transactionReference", f"MNP-{uuid.uuid4().hex[:12]}"
    )
    data["customer"] = {**MONIEPOINT_PAYLOAD["data"]["customer"], **customer}
    return {"event": "payment.successful", "data": data}


def signed(provider: str, payload: Any, header: str, algorithm: Any = "sha256") -> dict[str, Any]:
    body = json.dumps(payload).encode()
    key = SECRETS[next(k for k in SECRETS if k.startswith(provider))][0]
    return {"content": body, "headers": {header: sign(key, body, algorithm)}}


def assert_refused(response: httpx.Response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    message = problem_detail(status, response.headers["content-type"], response.json())
    for needle in needles:
        assert needle in message, message


# --- 500 without a valid signature (bridge.signing) -------------------------------------------


def test_generic_webhook_timestamp_of_309_nines_is_a_bad_signature(client: TestClient) -> None:
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "9" * 309,
        "webhook-signature": "v1,AAAA",
    }
    response = client.post("/webhooks/generic", content=b"{}", headers=headers)
    assert_refused(response, 401, "not a Unix time")


NESTED_646 = b'{"a":' + b"[" * 320 + b"]" * 320 + b"}"


@pytest.mark.parametrize(("provider", "status"), [("wasaapay", 401), ("openmarket", 400)])
def test_320_nested_arrays_are_a_bad_signature(
    client: TestClient, provider: str, status: int
) -> None:
    assert len(NESTED_646) == 646
    headers = {"opm-signature": "00"} if provider == "openmarket" else {}
    response = client.post(f"/webhooks/{provider}", content=NESTED_646, headers=headers)
    assert_refused(response, status, "signature check failed")


def test_a_non_ascii_digit_content_length_is_not_a_crash(client: TestClient) -> None:
    response = client.post(
        "/webhooks/moniepoint",
        content=b"{}",
        headers={"Content-Length": "\u00b2".encode("latin-1")},
    )
    assert response.status_code < 500


# --- 500 with a valid signature: wrong-typed fields are 422 naming the field -------------------


def test_moniepoint_event_array_is_422(client: TestClient) -> None:
    assert_refused(moniepoint(client, {"event": [], "data": {}}), 422, "event must be a string")


@pytest.mark.parametrize(
    ("changes", "customer", "field"),
    [
        ({}, {"email": ["a@x.ng"]}, "data.customer.email"),
        ({}, {"name": {"first": "Ada"}}, "data.customer.name"),
        ({"description": 12}, {}, "data.description"),
        ({"channel": ["TRANSFER"]}, {}, "data.channel"),
        ({"reason": {"code": 51}}, {}, "data.reason"),
        ({"nextDueDate": 20260220}, {}, "data.nextDueDate"),
        ({"timestamp": "x"}, {}, "data.timestamp"),
        ({"timestamp": []}, {}, "data.timestamp"),
    ],
    ids=lambda v: str(v),
)
def test_moniepoint_wrong_typed_field_is_422_naming_it(
    client: TestClient, changes: dict[str, Any], customer: dict[str, Any], field: str
) -> None:
    assert_refused(moniepoint(client, moniepoint_with(changes, **customer)), 422, field)


@pytest.mark.parametrize("event", ["transfer.success", "transfer.failed", "transfer.reversed"])
def test_paystack_transfer_recipient_array_is_422(client: TestClient, event: str) -> None:
    payload = {"event": event, "data": {"reference": "T-1", "amount": 100, "recipient": []}}
    response = client.post(
        "/webhooks/paystack", **signed("paystack", payload, "x-paystack-signature", "sha512")
    )
    assert_refused(response, 422, "data.recipient must be an object")


def test_wasaapay_customer_array_is_422(client: TestClient) -> None:
    payload = {
        "event": "deposit.completed",
        "timestamp": now_iso(),
        "data": {"transactionId": "WSP-1", "amount": 10, "currency": "KES", "customer": []},
    }
    body = wasaapay_body(payload, SECRETS["wasaapay_webhook_secrets"][0]).encode()
    assert_refused(
        client.post("/webhooks/wasaapay", content=body), 422, "data.customer must be an object"
    )


# --- references are strings or integers, never str() of anything else --------------------------


@pytest.mark.parametrize("reference", [{"a": 1}, [1, 2], 12.5, True])
def test_a_non_string_reference_is_422(client: TestClient, reference: Any) -> None:
    response = moniepoint(client, moniepoint_with({"transactionReference": reference}))
    assert_refused(response, 422, "data.transactionReference must be a string or an integer")


def test_an_integer_reference_is_accepted(client: TestClient) -> None:
    reference = int(time.time() * 1000)
    response = moniepoint(client, moniepoint_with({"transactionReference": reference}))
    assert response.status_code == 200, response.text
    assert response.json()["events"][0]["subject"] == f"moniepoint:{reference}"


# --- the canonical model refuses what the dispatcher cannot process -----------------------------

FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("changes", "customer", "needles"),
    [
        ({"timestamp": "0001-01-01T00:00:00+05:00"}, {}, ("occurred_at", "before 2000-01-01")),
        ({"timestamp": "1999-12-31T23:59:59Z"}, {}, ("occurred_at", "before 2000-01-01")),
        ({"timestamp": FUTURE}, {}, ("occurred_at", "ahead of our clock")),
        ({}, {"name": "Ada\u0000Obi"}, ("name:", "control characters")),
        ({"description": "bell\u0007"}, {}, ("description", "control characters")),
        ({}, {"accountNumber": "0123\u001b456789"}, ("account_number", "control characters")),
        ({"transactionReference": "R" * 129}, {}, ("transaction_reference", "128")),
        ({"description": "d" * 1001}, {}, ("description", "1000")),
        ({}, {"name": "n" * 201}, ("name:", "200")),
        ({"amount": 1e12}, {}, ("data.amount", "below 1,000,000,000,000")),
        ({"amount": -1}, {}, ("data.amount", "negative")),
        ({"amount": "1e999999"}, {}, ("data.amount", "below")),
        ({"currency": "naira"}, {}, ("currency", "ISO 4217")),
    ],
    ids=lambda v: str(v)[:40],
)
def test_the_canonical_model_refuses_it_with_422(
    client: TestClient, changes: dict[str, Any], customer: dict[str, Any], needles: tuple[str, ...]
) -> None:
    assert_refused(moniepoint(client, moniepoint_with(changes, **customer)), 422, *needles)


def test_free_text_keeps_tabs_and_line_breaks(client: TestClient) -> None:
    response = moniepoint(client, moniepoint_with({"description": "line one\n\tline two\r\n"}))
    assert response.status_code == 200, response.text


# --- item 6: WasaaPay's signed timestamp, Flutterwave transfers confirmed ----------------------


@pytest.mark.parametrize("age", [timedelta(minutes=6), -timedelta(minutes=6), timedelta(days=30)])
def test_wasaapay_replay_outside_five_minutes_is_a_bad_signature(
    client: TestClient, age: timedelta
) -> None:
    payload = {
        "event": "deposit.completed",
        "timestamp": (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {
            "transactionId": f"WSP-{uuid.uuid4().hex[:8]}",
            "amount": 10,
            "currency": "KES",
            "customer": {"phone": "+254712345678"},
        },
    }
    body = wasaapay_body(payload, SECRETS["wasaapay_webhook_secrets"][0]).encode()
    response = client.post("/webhooks/wasaapay", content=body)
    assert_refused(response, 401, "timestamp is more than 300 s from our clock")
    payload["timestamp"] = now_iso()
    fresh = wasaapay_body(payload, SECRETS["wasaapay_webhook_secrets"][0]).encode()
    assert client.post("/webhooks/wasaapay", content=fresh).status_code == 200


def test_flutterwave_transfer_is_confirmed_before_it_is_accepted(
    client: TestClient,
    standin_url: str,
) -> None:
    transfer_id = int(time.time() * 1000)
    data = {
        "id": transfer_id,
        "account_number": "0690000033",
        "fullname": "Bale Gary",
        "currency": "NGN",
        "amount": 30020,
        "status": "SUCCESSFUL",
        "reference": f"payout-{transfer_id}",
        "created_at": now_iso(),
    }
    request = {
        "content": json.dumps({"event": "transfer.completed", "data": data}).encode(),
        "headers": {"verif-hash": SECRETS["flutterwave_secret_hashes"][0]},
    }
    refused = client.post("/webhooks/flutterwave", **request)
    assert_refused(refused, 401, "not confirmed", "No transfer was found")
    answer = {**data, "full_name": data["fullname"]}
    registered = httpx.post(f"{standin_url}/_standin/transfers", json=answer)
    assert registered.status_code == 201, registered.text
    accepted = client.post("/webhooks/flutterwave", **request)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["events"][0]["subject"] == f"flutterwave:{transfer_id}"
