"""Parsing of the provider fixtures (tests/fixtures/providers/<provider>/*.json) into canonical
events: one table row per fixture, so every fixture is asserted and none is left unread."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.events import EVENT_TYPES, CanonicalEvent
from ingest.providers.base import (
    Ignored,
    PayloadError,
    WebhookRequest,
    minor_to_decimal,
    phone_digits,
    to_datetime,
    to_decimal,
)
from tests.provider_tools import ADAPTERS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "providers"

WAT = timezone(timedelta(hours=1))


def load(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / f"{name}.json").read_bytes()


def parse(provider: str, name: str) -> Any:
    return ADAPTERS[provider].parse(WebhookRequest(load(provider, name), {}))


@dataclass(frozen=True)
class Expect:
    provider: str
    fixture: str
    type: str
    ref: str
    amount: str  # compared as Decimal and as its exact text ("5000.00")
    currency: str
    customer_key: str
    fields: dict[str, Any] = field(default_factory=dict)  # other EventData fields


EXPECTED = [
    # Monnify
    Expect("monnify", "successful_transaction", "payment.successful", "MNFY|20|20260122|000001",
           "2500.00", "NGN", "email:tunde@example.com",
           {"channel": "ACCOUNT_TRANSFER", "description": "Office cleaning",
            "occurred_at": datetime(2026, 1, 22, 10, 15, 2, tzinfo=WAT)}),
    Expect("monnify", "successful_transaction_numeric_amount", "payment.successful",
           "MNFY|73|20260123113347|000476", "30000", "NGN", "email:bala@example.com"),
    Expect("monnify", "successful_disbursement", "transfer.completed", "MFDS20260122060005AAAA",
           "10000.0", "NGN", "acct:0123456789",
           {"reason": None, "occurred_at": datetime(2026, 1, 22, 6, 0, 6, tzinfo=WAT)}),
    Expect("monnify", "failed_disbursement", "transfer.failed", "MFDS20260122070005BBBB",
           "10000.0", "NGN", "acct:0123456789",
           {"reason": "Beneficiary bank network timeout"}),
    Expect("monnify", "reversed_disbursement", "transfer.reversed", "MFDS20260122080005CCCC",
           "10000.0", "NGN", "acct:0123456789"),
    Expect("monnify", "successful_refund_with_customer", "refund.processed", "1769158800000",
           "2500.00", "NGN", "email:tunde@example.com",
           {"description": "refund of MNFY|20|20260122|000001",
            "occurred_at": datetime(2026, 1, 23, 9, 0, tzinfo=UTC)}),
    Expect("monnify", "failed_refund_with_customer", "refund.failed", "1769158800001",
           "2500.00", "NGN", "email:tunde@example.com", {"reason": "refund failed"}),
    # Paystack: kobo -> naira, exactly
    Expect("paystack", "charge_success", "payment.successful", "qTPrJoy9Bx", "5000.00", "NGN",
           "email:ngozi@example.com",
           {"channel": "card", "occurred_at": datetime(2026, 1, 20, 14, 30, tzinfo=UTC)}),
    Expect("paystack", "charge_success_kobo", "payment.successful", "T2049857361", "12345.67",
           "NGN", "email:chidi@example.com"),
    Expect("paystack", "invoice_payment_failed", "payment.failed", "INV_3kfeg1zsmp1ilwe",
           "15000.00", "NGN", "email:ngozi@example.com",
           {"reason": "Insufficient Funds", "next_due_date": "2026-03-20"}),
    Expect("paystack", "transfer_success", "transfer.completed", "payout_2026_01_0001",
           "30000.00", "NGN", "acct:0123456789",
           {"reason": None, "description": "January payout"}),
    Expect("paystack", "transfer_failed", "transfer.failed", "payout_2026_01_0002", "30000.00",
           "NGN", "acct:0123456789", {"reason": "Bank network timeout"}),
    Expect("paystack", "transfer_reversed", "transfer.reversed", "payout_2026_01_0003",
           "30000.00", "NGN", "acct:0123456789", {"reason": "reversed"}),
    Expect("paystack", "refund_processed", "refund.processed", "RFD_0q4nzd8wtbpz5r2", "2000.00",
           "NGN", "email:ngozi@example.com", {"description": "refund of qTPrJoy9Bx"}),
    Expect("paystack", "refund_failed", "refund.failed", "RFD_8xl0n3k1qhm2c7a", "3000.00", "NGN",
           "email:ngozi@example.com", {"reason": "refund failed"}),
    Expect("paystack", "subscription_create", "subscription.created", "SUB_vsyqdmlzble3uii",
           "15000.00", "NGN", "email:ngozi@example.com",
           {"next_due_date": "2026-02-20", "description": "Monthly cleaning"}),
    Expect("paystack", "subscription_disable", "subscription.disabled", "SUB_vsyqdmlzble3uii",
           "15000.00", "NGN", "email:ngozi@example.com", {"next_due_date": None}),
    # Flutterwave: the reference is Flutterwave's transaction id; tx_ref is the description
    Expect("flutterwave", "charge_completed_successful", "payment.successful", "285959875",
           "7500", "NGN", "email:kemi@example.com",
           {"description": "Links-616626414629", "channel": "card", "reason": None}),
    Expect("flutterwave", "charge_completed_failed", "payment.failed", "285959876", "7500",
           "NGN", "email:kemi@example.com", {"reason": "Insufficient funds"}),
    Expect("flutterwave", "transfer_completed_successful", "transfer.completed", "33286",
           "30020", "NGN", "acct:0690000033", {"reason": None}),
    Expect("flutterwave", "transfer_completed_failed", "transfer.failed", "33287", "30020",
           "NGN", "acct:0690000033",
           {"reason": "DISBURSE FAILED: Insufficient funds in customer wallet"}),
    # WasaaPay: the phone is given, as digits without '+'
    Expect("wasaapay", "deposit_completed", "deposit.completed", "WSP-0001", "1500.5", "KES",
           "email:w@example.com",
           {"occurred_at": datetime(2026, 1, 22, 10, 30, 45, tzinfo=UTC)}),
    Expect("wasaapay", "deposit_failed", "deposit.failed", "WSP-0003", "1500.0", "KES",
           "email:w@example.com", {"reason": "Insufficient funds in M-Pesa account"}),
    Expect("wasaapay", "withdrawal_completed", "withdrawal.completed", "WSP-0002", "2000.0",
           "NGN", "email:ada@example.com"),
    Expect("wasaapay", "withdrawal_failed", "withdrawal.failed", "WSP-0005", "2000.0", "NGN",
           "email:ada@example.com", {"reason": "bank network timeout"}),
    Expect("wasaapay", "transfer_completed", "transfer.completed", "WSP-0006", "750.25", "NGN",
           "email:ada@example.com"),
    Expect("wasaapay", "transfer_failed", "transfer.failed", "WSP-0007", "750.25", "NGN",
           "email:ada@example.com", {"reason": "recipient wallet suspended"}),
    Expect("wasaapay", "bill_completed", "bill.completed", "WSP-0008", "3500", "NGN",
           "email:ada@example.com", {"description": "IKEDC Prepaid", "reason": None}),
    Expect("wasaapay", "bill_failed", "bill.failed", "WSP-0009", "3500", "NGN",
           "email:ada@example.com", {"description": "IKEDC Prepaid", "reason": "biller timeout"}),
    # Open Market: transaction_id is the reference; the buyer's number is given
    Expect("openmarket", "payment_completed", "payment.successful", "tr_123456789", "5000.00",
           "XOF", "email:john@example.com",
           {"description": "ORDER123ABC",
            "occurred_at": datetime(2024, 1, 20, 14, 32, tzinfo=UTC)}),
    Expect("openmarket", "payment_completed_no_email", "payment.successful", "tr_223456789",
           "12500.50", "XOF", "phone:22997123456"),
    # Generic
    Expect("generic", "payment_success", "payment.successful", "123456789", "5000", "NGN",
           "email:customer@example.com", {"channel": "card", "description": "Invoice 42"}),
    Expect("generic", "payment_failed", "payment.failed", "123456790", "5000", "NGN",
           "email:customer@example.com", {"reason": "Insufficient funds"}),
    Expect("generic", "refund_processed", "refund.processed", "RF-123456789", "1250.75", "NGN",
           "email:customer@example.com"),
    Expect("generic", "transfer_success", "transfer.completed", "TR-555", "20000", "NGN",
           "email:customer@example.com"),
    Expect("generic", "transfer_failed", "transfer.failed", "TR-556", "20000", "NGN",
           "email:customer@example.com", {"reason": "bank network timeout"}),
    Expect("generic", "subscription_renew", "subscription.renewed", "SUB-7788-2026-02", "15000",
           "NGN", "email:customer@example.com", {"next_due_date": "2026-03-20"}),
]  # fmt: skip

IGNORED = [
    ("monnify", "settlement"),
    ("monnify", "successful_refund"),  # Monnify's refund payload names no customer
    ("paystack", "charge_dispute_create"),
    ("flutterwave", "charge_completed_pending"),
    ("flutterwave", "subscription_cancelled"),
    ("wasaapay", "deposit_initiated"),
    ("openmarket", "payment_pending"),
    ("generic", "customer_created"),
]

PHONES = {
    ("wasaapay", "deposit_completed"): "254712345678",
    ("wasaapay", "deposit_failed"): "254712345678",
    ("wasaapay", "withdrawal_completed"): "2348031234567",
    ("openmarket", "payment_completed"): "22961234567",
    ("openmarket", "payment_completed_no_email"): "22997123456",
}


def test_every_fixture_is_in_a_table() -> None:
    on_disk = {(path.parent.name, path.stem) for path in FIXTURES.glob("*/*.json")}
    tabled = {(e.provider, e.fixture) for e in EXPECTED} | set(IGNORED)
    assert on_disk == tabled


def test_every_mapped_type_is_canonical() -> None:
    assert {e.type for e in EXPECTED} <= EVENT_TYPES


@pytest.mark.parametrize("expect", EXPECTED, ids=lambda e: f"{e.provider}-{e.fixture}")
def test_parse_fixture(expect: Expect) -> None:
    outcome = parse(expect.provider, expect.fixture)
    assert isinstance(outcome, list) and len(outcome) == 1
    event = outcome[0]
    assert event.type == expect.type
    assert event.subject == f"{expect.provider}:{expect.ref}"
    assert event.reference == event.subject
    assert event.source == f"/siteti-bridge/ingest/{expect.provider}"
    data = event.data
    assert data.provider == expect.provider
    assert data.transaction_reference == expect.ref
    assert isinstance(data.amount, Decimal)
    assert data.amount == Decimal(expect.amount)
    assert str(data.amount) == expect.amount
    assert data.currency == expect.currency
    assert data.customer.key == expect.customer_key
    assert data.customer.phone == PHONES.get((expect.provider, expect.fixture), data.customer.phone)
    for name, value in expect.fields.items():
        assert getattr(data, name) == value, name
    if expect.type.endswith(".failed"):
        assert data.reason
    if data.occurred_at is not None:
        assert data.occurred_at.tzinfo is not None
        assert event.time == data.occurred_at


@pytest.mark.parametrize("expect", EXPECTED, ids=lambda e: f"{e.provider}-{e.fixture}")
def test_event_round_trips_through_json(expect: Expect) -> None:
    outcome = parse(expect.provider, expect.fixture)
    assert isinstance(outcome, list)
    for event in outcome:
        again = CanonicalEvent.model_validate_json(event.to_json())
        assert again == event
        assert str(again.data.amount) == expect.amount


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_each_adapter_round_trips(provider: str) -> None:
    fixtures = [e.fixture for e in EXPECTED if e.provider == provider]
    assert fixtures
    for name in fixtures:
        outcome = parse(provider, name)
        assert isinstance(outcome, list)
        for event in outcome:
            assert CanonicalEvent.model_validate_json(event.to_json()) == event


@pytest.mark.parametrize(("provider", "fixture"), IGNORED, ids=lambda v: str(v))
def test_ignored_fixture(provider: str, fixture: str) -> None:
    outcome = parse(provider, fixture)
    assert isinstance(outcome, Ignored)
    assert outcome.reason


def test_redelivery_gives_the_same_event_id() -> None:
    first = parse("paystack", "charge_success")
    second = parse("paystack", "charge_success")
    assert isinstance(first, list) and isinstance(second, list)
    assert first[0].id == second[0].id
    assert first[0].dedupe_key == "paystack:qTPrJoy9Bx:payment.successful"


def test_first_time_payer_from_any_provider_is_payment_successful() -> None:
    types = {e.provider for e in EXPECTED if e.type == "payment.successful"}
    assert types == {"monnify", "paystack", "flutterwave", "openmarket", "generic"}


# --- unusable payloads --------------------------------------------------------------------


def fixture_json(provider: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(load(provider, name))
    return result


def parse_payload(provider: str, payload: Any) -> Any:
    return ADAPTERS[provider].parse(WebhookRequest(json.dumps(payload).encode(), {}))


def with_change(provider: str, name: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    payload = fixture_json(provider, name)
    target = payload
    for part in path[:-1]:
        target = target[part]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


PAYLOAD_ERRORS = [
    ("monnify", "successful_transaction", ("eventData", "amountPaid"), "2,500.00", "amountPaid"),
    ("monnify", "successful_transaction", ("eventData", "customer", "email"), ..., "email"),
    ("monnify", "successful_disbursement", ("eventData", "destinationAccountNumber"), ...,
     "destinationAccountNumber"),
    ("paystack", "charge_success", ("data", "amount"), 500000.5, "whole number"),
    ("paystack", "charge_success", ("data", "amount"), -100, "must not be negative"),
    ("paystack", "charge_success", ("data", "customer", "email"), None, "email"),
    ("paystack", "charge_success", ("data", "reference"), "", "reference"),
    ("paystack", "transfer_success", ("data", "recipient", "details"), {}, "recipient"),
    ("flutterwave", "charge_completed_successful", ("data", "tx_ref"), ..., "tx_ref"),
    ("flutterwave", "charge_completed_successful", ("data", "amount"), "NaN", "amount"),
    ("wasaapay", "deposit_completed", ("data", "customer"), {"phone": "0712345678"}, "phone"),
    ("wasaapay", "deposit_completed", ("data", "currency"), ..., "currency"),
    ("openmarket", "payment_completed", ("buyer_email",), 42, "email"),
    ("openmarket", "payment_completed", ("amount",), "five thousand", "amount"),
    ("generic", "payment_success", ("data", "customer", "name"), {"first": "John"}, "name"),
    ("generic", "payment_success", ("data", "transaction_id"), ..., "transaction_id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "fixture", "path", "value", "match"),
    PAYLOAD_ERRORS,
    ids=[f"{p}-{'.'.join(path)}" for p, _, path, _, _ in PAYLOAD_ERRORS],
)
def test_unusable_payload_is_a_payload_error(
    provider: str, fixture: str, path: tuple[str, ...], value: Any, match: str
) -> None:
    with pytest.raises(PayloadError, match=match):
        parse_payload(provider, with_change(provider, fixture, path, value))


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
@pytest.mark.parametrize("body", [[], "text", 12])
def test_non_object_body_is_a_payload_error(provider: str, body: Any) -> None:
    with pytest.raises(PayloadError, match="object"):
        parse_payload(provider, body)


@pytest.mark.parametrize(
    ("provider", "payload"),
    [
        ("monnify", {"eventType": "SUCCESSFUL_TRANSACTION", "eventData": "x"}),
        ("paystack", {"event": "charge.success", "data": []}),
        ("flutterwave", {"event": "charge.completed"}),
        ("wasaapay", {"event": "deposit.completed", "data": None}),
        ("generic", {"event": "payment.success", "data": 5}),
    ],
)
def test_missing_or_malformed_data_is_a_payload_error(provider: str, payload: Any) -> None:
    with pytest.raises(PayloadError):
        parse_payload(provider, payload)


def test_monnify_unpaid_transaction_is_ignored() -> None:
    payload = with_change(
        "monnify", "successful_transaction", ("eventData", "paymentStatus"), "PENDING"
    )
    assert isinstance(parse_payload("monnify", payload), Ignored)


def test_paystack_charge_success_with_other_status_is_ignored() -> None:
    payload = with_change("paystack", "charge_success", ("data", "status"), "abandoned")
    assert isinstance(parse_payload("paystack", payload), Ignored)


def test_openmarket_non_payment_transaction_is_ignored() -> None:
    payload = with_change("openmarket", "payment_completed", ("transaction_type",), "refund")
    assert isinstance(parse_payload("openmarket", payload), Ignored)


def test_failed_events_always_carry_a_reason() -> None:
    payload = with_change("generic", "payment_failed", ("data", "reason"), ...)
    outcome = parse_payload("generic", payload)
    assert isinstance(outcome, list)
    assert outcome[0].data.reason == "payment failed"
    payload = with_change("wasaapay", "bill_failed", ("data", "reason"), ...)
    outcome = parse_payload("wasaapay", payload)
    assert isinstance(outcome, list)
    assert outcome[0].data.reason == "bill failed"
    payload = with_change(
        "flutterwave", "charge_completed_failed", ("data", "processor_response"), ...
    )
    outcome = parse_payload("flutterwave", payload)
    assert isinstance(outcome, list)
    assert outcome[0].data.reason == "payment failed"


# --- shared helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (500000, "5000.00"),
        ("500000", "5000.00"),
        (1, "0.01"),
        (0, "0.00"),
        (1234567, "12345.67"),
        (500000.0, "5000.00"),
    ],
)
def test_minor_to_decimal(value: Any, expected: str) -> None:
    assert str(minor_to_decimal(value, "amount")) == expected


@pytest.mark.parametrize(
    "value", [True, None, "", "1e999999", "1e-999999", "1e15", "inf", "NaN", "-1", [], {}]
)
def test_to_decimal_rejects(value: Any) -> None:
    with pytest.raises(PayloadError):
        to_decimal(value, "amount")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+254712345678", "254712345678"),
        ("+234 803 123 4567", "2348031234567"),
        ("+229-97-12-34-56", "22997123456"),
        ("002348031234567", "2348031234567"),
        ("08031234567", None),
        ("+0803", None),
        ("+12", None),
        ("call me", None),
        ("+٢٣٤٨٠٣١٢٣٤٥٦٧", None),
        (None, None),
        (2348031234567, None),
    ],
)
def test_phone_digits(value: Any, expected: str | None) -> None:
    assert phone_digits(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-20T14:30:00Z", datetime(2026, 1, 20, 14, 30, tzinfo=UTC)),
        ("2026-01-20T14:30:00.000Z", datetime(2026, 1, 20, 14, 30, tzinfo=UTC)),
        ("2021-11-17T11:30:20.000+0000", datetime(2021, 11, 17, 11, 30, 20, tzinfo=UTC)),
        ("2026-01-22 10:15:02.0", datetime(2026, 1, 22, 10, 15, 2, tzinfo=UTC)),
        ("17/03/2021 6:00:05 PM", datetime(2021, 3, 17, 18, 0, 5, tzinfo=UTC)),
        (1763805600, datetime(2025, 11, 22, 10, 0, tzinfo=UTC)),
        (1763805600000, datetime(2025, 11, 22, 10, 0, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
        ("", None),
        (True, None),
    ],
)
def test_to_datetime(value: Any, expected: datetime | None) -> None:
    assert to_datetime(value) == expected
