"""Receipts' parser and summary under any input (hypothesis): whatever a body holds, the parser
answers a Receipt that PostgreSQL can store or a WebhookError (a 4xx), never anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.inbound import MAX_ID_LENGTH, MAX_REFERENCE_LENGTH
from receipts.status import PROGRESS, summarize
from receipts.webhooks import (
    STAGE_BY_TYPE,
    InvalidWebhook,
    Receipt,
    UnknownType,
    WebhookError,
    parse_webhook,
    storable,
)

MARKER = "2348031234567"  # a phone number: must never reach the stored detail

# JSON as orjson reads it: integers within 64 bits, finite floats, any text (NUL included).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
texts = st.one_of(
    st.text(max_size=20),
    st.text(min_size=MAX_ID_LENGTH - 2, max_size=MAX_REFERENCE_LENGTH + 2),
    st.sampled_from(["evt_1", " ", "", "a\x00b", "\x00"]),
)
fixed_offsets = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)
).map(timezone)
created_ats = st.one_of(
    st.datetimes(timezones=st.none() | fixed_offsets).map(datetime.isoformat),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01"]),
    json_values,
)
field_values = st.one_of(texts, json_values)
data_objects = st.fixed_dictionaries(
    {},
    optional={
        "reference": field_values,
        "contact_id": field_values,
        "bsuid": field_values,
        "message_id": field_values,
        "status": field_values,
        "state": field_values,
        "window_expires_at": field_values,
        "error": st.one_of(
            json_values, st.fixed_dictionaries({}, optional={"code": json_values, "title": texts})
        ),
        "to": st.just(MARKER),
        "from": st.just(MARKER),
        "text": st.just(f"call me on {MARKER}"),
    },
)
webhooks = st.fixed_dictionaries(
    {},
    optional={
        "id": field_values,
        "type": st.one_of(st.sampled_from(sorted(STAGE_BY_TYPE)), field_values),
        "created_at": created_ats,
        "data": st.one_of(data_objects, json_values),
    },
)


def assert_storable(receipt: Receipt) -> None:
    """What PostgreSQL needs: text without NUL within its index limits, aware UTC times,
    jsonb without \\u0000; and what privacy needs: no phone number, no reply text."""
    assert storable(receipt.event_id, MAX_ID_LENGTH) and receipt.event_id.strip()
    assert receipt.type in STAGE_BY_TYPE and receipt.stage == STAGE_BY_TYPE[receipt.type]
    assert storable(receipt.reference, MAX_REFERENCE_LENGTH + len("contact:"))
    assert receipt.occurred_at.utcoffset() == timedelta(0)
    detail = orjson.dumps(receipt.detail).decode()
    assert "\\u0000" not in detail
    assert MARKER not in detail
    assert receipt.detail["event_id"] == receipt.event_id


@given(st.binary(max_size=400))
def test_any_bytes_are_a_receipt_or_a_webhook_error(body: bytes) -> None:
    try:
        assert_storable(parse_webhook(body))
    except WebhookError as exc:
        assert exc.status in (200, 400, 422)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(webhooks)
def test_any_json_webhook_is_storable_or_refused(payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    try:
        receipt = parse_webhook(body, received_at=datetime(2026, 1, 20, tzinfo=UTC))
    except UnknownType as exc:
        assert exc.status == 200
        assert payload.get("type") not in STAGE_BY_TYPE
        return
    except WebhookError as exc:
        assert exc.status in (400, 422)
        assert len(str(exc)) < 1000  # the answer never echoes a whole hostile field
        return
    assert_storable(receipt)
    assert receipt.event_id == payload["id"]


@given(st.sampled_from(sorted(STAGE_BY_TYPE)), created_ats)
def test_any_created_at_is_utc_or_refused(event_type: str, created_at: Any) -> None:
    body = orjson.dumps(
        {"id": "evt_1", "type": event_type, "created_at": created_at, "data": {"reference": "r"}}
    )
    try:
        receipt = parse_webhook(body)
    except InvalidWebhook as exc:
        assert "created_at" in str(exc)
        return
    assert receipt.occurred_at.tzinfo is not None
    assert receipt.occurred_at.utcoffset() == timedelta(0)
    if isinstance(created_at, str):
        parsed = datetime.fromisoformat(created_at)
        assert receipt.occurred_at == (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "e" * (MAX_ID_LENGTH + 1)),
        ("id", "evt\x00"),
        ("reference", "r" * (MAX_REFERENCE_LENGTH + 1)),
        ("reference", "moniepoint:\x00"),
        ("created_at", "0001-01-01T00:00:00+01:00"),
    ],
)
def test_values_postgresql_cannot_hold_are_422(field: str, value: str) -> None:
    payload: dict[str, Any] = {"id": "evt_1", "type": "message.sent", "data": {"reference": "r"}}
    if field == "reference":
        payload["data"]["reference"] = value
    else:
        payload[field] = value
    with pytest.raises(InvalidWebhook) as info:
        parse_webhook(orjson.dumps(payload))
    assert info.value.status == 422


def test_detail_values_are_flat_clean_and_bounded() -> None:
    data = {
        "reference": "r",
        "message_id": {"nested": ["x"]},
        "contact_id": "ct\x00_1",
        "status": "s" * 10_000,
    }
    payload = {"id": "e", "type": "message.delivered", "data": data}
    detail = parse_webhook(orjson.dumps(payload)).detail
    assert detail["message_id"] is None
    assert detail["contact_id"] == "ct_1"
    assert len(detail["status"]) == 500


# --- the summary -----------------------------------------------------------------------------

stages = st.lists(st.one_of(st.sampled_from([*PROGRESS, "failed", "replied"]), st.text()))


@given(stages)
def test_summary_is_one_of_the_stages_or_none(history: list[str]) -> None:
    status = summarize(history)
    assert (status is None) == (not history)
    assert status is None or status in history


@given(stages, st.sampled_from(["delivered", "read"]))
def test_a_delivery_wins_over_a_failure_in_any_order(history: list[str], success: str) -> None:
    # Issue 12: the status follows the delivery state machine, which never moves backwards.
    assert summarize([*history, "failed", success]) in ("delivered", "read")
    assert summarize([*history, success, "failed"]) in ("delivered", "read")
