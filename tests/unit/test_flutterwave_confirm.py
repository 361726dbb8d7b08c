"""Flutterwave "verify before process": `confirm` against the stand-in over HTTP (in-process)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.config import Settings
from bridge.events import CanonicalEvent
from bridge.signing import SignatureError
from ingest.flutterwave_standin import create_app
from ingest.providers.base import ConfirmationUnavailable, Confirming, WebhookRequest
from ingest.providers.flutterwave import Flutterwave

FIXTURES = Path(__file__).parents[1] / "fixtures" / "providers" / "flutterwave"
SECRET_KEY = "FLWSECK_TEST-standin-0001"
VECTORS_PATH = Path(__file__).parents[1] / "fixtures/contracts/signature-vectors.json"


# The stand-in runs in-process behind httpx's ASGI transport: real HTTP semantics, no port.
STANDIN_URL = "http://flutterwave-standin.test"


@pytest.fixture(scope="module")
def standin_url() -> str:
    return STANDIN_URL


@pytest.fixture(scope="module")
def standin() -> httpx.ASGITransport:
    return httpx.ASGITransport(app=create_app(SECRET_KEY))


@pytest.fixture
async def client(standin: httpx.ASGITransport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=standin, timeout=5) as http:
        await http.delete(f"{STANDIN_URL}/_standin/transactions")
        await http.delete(f"{STANDIN_URL}/_standin/transfers")
        yield http


@pytest.fixture
def settings(standin_url: str) -> Settings:
    return Settings(flutterwave_api_base_url=standin_url, flutterwave_secret_key=SECRET_KEY)


def webhook(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return result


def events_of(payload: dict[str, Any]) -> list[CanonicalEvent]:
    outcome = Flutterwave().parse(WebhookRequest(json.dumps(payload).encode(), {}))
    assert isinstance(outcome, list)
    return outcome


def verify_answer(payload: dict[str, Any]) -> dict[str, Any]:
    """What Flutterwave's verify endpoint answers for the webhook's transaction."""
    data = copy.deepcopy(payload["data"])
    data.update({"amount_settled": data["amount"] - 105, "meta": None})
    return {"status": "success", "message": "Transaction fetched successfully", "data": data}


async def register(client: httpx.AsyncClient, url: str, answer: dict[str, Any]) -> None:
    response = await client.post(f"{url}/_standin/transactions", json=answer)
    assert response.status_code == 201, response.text


async def assert_refused(
    payload: dict[str, Any], client: httpx.AsyncClient, settings: Settings, match: str
) -> None:
    """confirm() raises a SignatureError (a security alert) that matches `match`."""
    with pytest.raises(SignatureError, match=match):
        await Flutterwave().confirm(events_of(payload), client, settings)


def test_flutterwave_is_confirming() -> None:
    assert isinstance(Flutterwave(), Confirming)


async def test_the_contract_vector_is_confirmed(
    client: httpx.AsyncClient, standin_url: str, settings: Settings
) -> None:
    vector = next(
        v
        for v in json.loads(VECTORS_PATH.read_text())["vectors"]
        if v["provider"] == "flutterwave" and "verif-hash" in v["headers"]
    )
    payload = json.loads(vector["body"])
    await register(client, standin_url, verify_answer(payload))
    request = WebhookRequest(vector["body"].encode(), {"verif-hash": vector["secret"]})
    Flutterwave().verify(request, [vector["secret"]])
    outcome = Flutterwave().parse(request)
    assert isinstance(outcome, list)
    await Flutterwave().confirm(outcome, client, settings)
    # verif-hash does not bind the body: one byte changed passes verify, and confirm catches it.
    forged_body = vector["body"].replace('"amount": 7500', '"amount": 7600', 1)
    forged = WebhookRequest(forged_body.encode(), {"verif-hash": vector["secret"]})
    Flutterwave().verify(forged, [vector["secret"]])
    forged_events = Flutterwave().parse(forged)
    assert isinstance(forged_events, list)
    with pytest.raises(SignatureError, match="amount"):
        await Flutterwave().confirm(forged_events, client, settings)


def tweak(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    answer = verify_answer(payload)
    answer["data"].update(changes)
    return answer


MISMATCHES = [
    ("status", {"status": "failed"}),
    ("status", {"status": "pending"}),
    ("tx_ref", {"tx_ref": "Links-000000000000"}),
    ("amount", {"amount": 75}),
    ("currency", {"currency": "USD"}),
    ("customer email", {"customer": {"id": 1, "email": "someone-else@example.com"}}),
]


async def test_failed_charge_claimed_successful_is_refused(
    client: httpx.AsyncClient, standin_url: str, settings: Settings
) -> None:
    genuine = webhook("charge_completed_failed")
    await register(client, standin_url, verify_answer(genuine))
    forged = copy.deepcopy(genuine)
    forged["data"]["status"] = "successful"
    await assert_refused(forged, client, settings, "status")


async def test_unknown_transaction_is_a_security_alert(
    client: httpx.AsyncClient, standin_url: str, settings: Settings
) -> None:
    payload = webhook("charge_completed_successful")
    await assert_refused(payload, client, settings, "No transaction was found for this id")


async def test_error_status_in_the_answer_is_a_security_alert(
    client: httpx.AsyncClient, standin_url: str, settings: Settings
) -> None:
    payload = webhook("charge_completed_successful")
    answer = verify_answer(payload)
    answer["status"] = "error"
    answer["message"] = "Transaction not verified"
    await register(client, standin_url, answer)
    await assert_refused(payload, client, settings, "not verified")


def transfer_answer(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What Flutterwave's get-a-transfer endpoint (GET /v3/transfers/{id}) answers for the
    webhook's transfer: the same record, `full_name` where the webhook says `fullname`."""
    data = copy.deepcopy(payload["data"])
    data["full_name"] = data.pop("fullname")
    data.update(changes)
    return {"status": "success", "message": "Transfer fetched", "data": data}


async def register_transfer(client: httpx.AsyncClient, url: str, answer: dict[str, Any]) -> None:
    response = await client.post(f"{url}/_standin/transfers", json=answer)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "name",
    [
        "charge_completed_successful",
        "charge_completed_failed",
        "transfer_completed_successful",
        "transfer_completed_failed",
    ],
)
async def test_confirmed_when_flutterwave_agrees(
    client: httpx.AsyncClient, standin_url: str, settings: Settings, name: str
) -> None:
    """Charges with verify-by-id; transfers with get-a-transfer."""
    payload = webhook(name)
    await register(client, standin_url, verify_answer(payload))
    if name.startswith("transfer_"):
        # A charge with the same id is no confirmation of a transfer.
        await assert_refused(payload, client, settings, "No transfer was found for this id")
        await register_transfer(client, standin_url, transfer_answer(payload))
    await Flutterwave().confirm(events_of(payload), client, settings)


TRANSFER_MISMATCHES = [
    ("status", {"status": "FAILED"}),
    ("status", {"status": "PENDING"}),
    ("amount", {"amount": 30}),
    ("currency", {"currency": "USD"}),
    ("account_number", {"account_number": "0690000099"}),
]


@pytest.mark.parametrize(
    ("kind", "field", "changes"),
    [("charge", *m) for m in MISMATCHES] + [("transfer", *m) for m in TRANSFER_MISMATCHES],
    ids=[f"charge-{m[0]}" for m in MISMATCHES] + [f"transfer-{m[0]}" for m in TRANSFER_MISMATCHES],
)
async def test_mismatch_is_a_security_alert(
    client: httpx.AsyncClient,
    standin_url: str,
    settings: Settings,
    kind: str,
    field: str,
    changes: dict[str, Any],
) -> None:
    """A charge (verify-by-id) or a transfer (get-a-transfer) whose answer disagrees."""
    payload = webhook(f"{kind}_completed_successful")
    if kind == "charge":
        await register(client, standin_url, tweak(payload, **changes))
    else:
        await register_transfer(client, standin_url, transfer_answer(payload, **changes))
    await assert_refused(payload, client, settings, field)


async def test_transfer_confirmation_needs_the_secret_key(standin_url: str) -> None:
    settings = Settings(flutterwave_api_base_url=standin_url, flutterwave_secret_key="")
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(ConfirmationUnavailable, match="flutterwave_secret_key"):
            await Flutterwave().confirm(
                events_of(webhook("transfer_completed_successful")), http, settings
            )


async def test_wrong_secret_key_is_unavailable_not_forgery(
    client: httpx.AsyncClient, standin_url: str
) -> None:
    payload = webhook("charge_completed_successful")
    await register(client, standin_url, verify_answer(payload))
    settings = Settings(flutterwave_api_base_url=standin_url, flutterwave_secret_key="FLWSECK-x")
    with pytest.raises(ConfirmationUnavailable, match="401"):
        await Flutterwave().confirm(events_of(payload), client, settings)


async def test_missing_secret_key_is_unavailable(
    client: httpx.AsyncClient, standin_url: str
) -> None:
    settings = Settings(flutterwave_api_base_url=standin_url, flutterwave_secret_key="")
    with pytest.raises(ConfirmationUnavailable, match="flutterwave_secret_key"):
        await Flutterwave().confirm(
            events_of(webhook("charge_completed_successful")), client, settings
        )


async def test_unreachable_api_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    settings = Settings(flutterwave_api_base_url=STANDIN_URL, flutterwave_secret_key="k")
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as unreachable:
        with pytest.raises(ConfirmationUnavailable, match="failed"):
            await Flutterwave().confirm(
                events_of(webhook("charge_completed_successful")), unreachable, settings
            )


async def test_standin_contract(client: httpx.AsyncClient, standin_url: str) -> None:
    auth = {"Authorization": f"Bearer {SECRET_KEY}"}
    unknown = await client.get(f"{standin_url}/v3/transactions/1/verify", headers=auth)
    assert unknown.status_code == 404
    assert unknown.json() == {
        "status": "error",
        "message": "No transaction was found for this id",
        "data": None,
    }
    # Registering just the data object wraps it in a success answer.
    created = await client.post(
        f"{standin_url}/_standin/transactions", json={"id": 1, "status": "successful"}
    )
    assert created.status_code == 201
    found = await client.get(f"{standin_url}/v3/transactions/1/verify", headers=auth)
    assert found.status_code == 200
    assert found.json()["status"] == "success"
    assert found.json()["data"] == {"id": 1, "status": "successful"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET_KEY}):
        refused = await client.get(f"{standin_url}/v3/transactions/1/verify", headers=headers)
        assert refused.status_code == 401
    bad = await client.post(f"{standin_url}/_standin/transactions", json={"status": "x"})
    assert bad.status_code == 400
    # Transfers: their own endpoint and registry.
    assert (await client.get(f"{standin_url}/v3/transfers/1", headers=auth)).status_code == 404
    await client.post(f"{standin_url}/_standin/transfers", json={"id": 1, "status": "SUCCESSFUL"})
    transfer = await client.get(f"{standin_url}/v3/transfers/1", headers=auth)
    assert transfer.json() == {
        "status": "success",
        "message": "Transfer fetched successfully",
        "data": {"id": 1, "status": "SUCCESSFUL"},
    }
    assert (await client.get(f"{standin_url}/v3/transfers/1")).status_code == 401
    await client.delete(f"{standin_url}/_standin/transfers")
    assert (await client.get(f"{standin_url}/v3/transfers/1", headers=auth)).status_code == 404
