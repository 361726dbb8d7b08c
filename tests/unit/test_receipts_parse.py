"""Siteti webhook parsing, the audit summary, and the contract's signature vector."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.signing import SignatureError, verify_siteti_webhook
from receipts.status import summarize
from receipts.webhooks import (
    InvalidWebhook,
    MalformedBody,
    UnknownType,
    parse_webhook,
)

# CI and the work tree keep the steering repo's shared/ beside the project's checkout.
VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "contracts" / "signature-vectors.json"
PHONE = "2348031234567"
RECEIVED = datetime(2026, 1, 20, 15, 0, tzinfo=UTC)


def _vector() -> dict[str, Any]:
    if not VECTORS.exists():
        pytest.skip(f"{VECTORS} is not beside the repository")
    vectors = json.loads(VECTORS.read_text())["vectors"]
    found: dict[str, Any] = next(v for v in vectors if v["provider"] == "siteti-webhook")
    return found


def _body(event_type: str, **data: Any) -> bytes:
    payload = {
        "id": "evt_1",
        "type": event_type,
        "created_at": "2026-01-20T14:32:05Z",
        "data": {"message_id": "msg_1", "contact_id": "ct_1", "to": PHONE, **data},
    }
    return orjson.dumps(payload)


# --- the contract's vector -----------------------------------------------------------------


def test_vector_is_accepted_with_the_clock_at_t() -> None:
    vector = _vector()
    header = vector["headers"]["X-Siteti-Signature"]
    t = int(header.split(",")[0].removeprefix("t="))
    verify_siteti_webhook(header, vector["body"].encode(), [vector["secret"]], now=t)


def test_vector_with_one_byte_changed_is_refused() -> None:
    vector = _vector()
    header = vector["headers"]["X-Siteti-Signature"]
    t = int(header.split(",")[0].removeprefix("t="))
    tampered = vector["body"].replace("delivered", "Delivered", 1).encode()
    with pytest.raises(SignatureError, match="no v1 value"):
        verify_siteti_webhook(header, tampered, [vector["secret"]], now=t)


def test_vector_is_stale_on_the_real_clock() -> None:
    vector = _vector()
    with pytest.raises(SignatureError, match="300 s"):
        verify_siteti_webhook(
            vector["headers"]["X-Siteti-Signature"], vector["body"].encode(), [vector["secret"]]
        )


def test_vector_parses_to_a_delivered_receipt_without_the_phone() -> None:
    vector = _vector()
    receipt = parse_webhook(vector["body"].encode())
    assert vector["headers"]["X-Siteti-Event-Id"] == receipt.event_id
    assert receipt.event_id == "evt_0001"
    assert receipt.stage == "delivered"
    assert receipt.reference == "moniepoint:MNP-889900"
    assert receipt.occurred_at == datetime(2025, 11, 22, 10, 0, 5, tzinfo=UTC)
    assert receipt.detail == {
        "message_id": "msg_0001",
        "event_id": "evt_0001",
        "type": "message.delivered",
        "contact_id": "ct_31234567",
        "status": "delivered",
    }
    assert "2348031234567" not in orjson.dumps(receipt.detail).decode()


# --- stages and details ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "stage"),
    [
        ("message.sent", "sent"),
        ("message.delivered", "delivered"),
        ("message.read", "read"),
        ("message.failed", "failed"),
        ("message.received", "replied"),
        ("conversation.state", "conversation"),
    ],
)
def test_types_map_to_stages(event_type: str, stage: str) -> None:
    receipt = parse_webhook(_body(event_type, reference="mnp:R1"))
    assert receipt.stage == stage
    assert receipt.type == event_type
    assert {"message_id", "event_id", "type", "contact_id"} <= receipt.detail.keys()
    assert PHONE not in orjson.dumps(receipt.detail).decode()


def test_failed_keeps_the_error_code_and_title() -> None:
    body = _body(
        "message.failed",
        reference="mnp:R1",
        error={"code": 131026, "title": "Message undeliverable", "href": "x"},
    )
    receipt = parse_webhook(body)
    assert receipt.detail["error"] == {"code": 131026, "title": "Message undeliverable"}


def test_received_keeps_neither_text_nor_sender() -> None:
    body = _body(
        "message.received", reference="mnp:R1", text="call me on 08031234567", **{"from": PHONE}
    )
    receipt = parse_webhook(body)
    stored = orjson.dumps(receipt.detail).decode()
    assert "call me" not in stored
    assert PHONE not in stored
    assert "08031234567" not in stored
    assert receipt.detail["text_length"] == len("call me on 08031234567")


def test_conversation_state_without_reference_is_filed_under_the_contact() -> None:
    body = _body(
        "conversation.state",
        state="open",
        window_expires_at="2026-01-21T14:32:05Z",
        bsuid="NG.abc123",
    )
    receipt = parse_webhook(body)
    assert receipt.reference == "contact:ct_1"
    assert receipt.detail["state"] == "open"
    assert receipt.detail["window_expires_at"] == "2026-01-21T14:32:05Z"
    assert receipt.detail["bsuid"] == "NG.abc123"


def test_a_contact_known_only_by_bsuid_is_filed_under_it() -> None:
    payload = {"id": "e", "type": "conversation.state", "data": {"bsuid": "NG.x", "state": "open"}}
    receipt = parse_webhook(orjson.dumps(payload), received_at=RECEIVED)
    assert receipt.reference == "bsuid:NG.x"
    assert receipt.occurred_at == RECEIVED  # no created_at: the arrival time stands in


def test_the_event_id_is_the_signed_body_id() -> None:
    # The unsigned X-Siteti-Event-Id header is not even an input: it cannot decide dedupe.
    body = _body("message.sent", reference="mnp:R1")
    assert parse_webhook(body).event_id == "evt_1"
    assert parse_webhook(body).detail["event_id"] == "evt_1"


def test_created_at_with_an_offset_and_without_one() -> None:
    payload = orjson.loads(_body("message.sent", reference="mnp:R1"))
    payload["created_at"] = "2026-01-20T15:32:05+01:00"
    receipt = parse_webhook(orjson.dumps(payload))
    assert receipt.occurred_at == datetime(2026, 1, 20, 14, 32, 5, tzinfo=UTC)
    payload["created_at"] = "2026-01-20T14:32:05"
    receipt = parse_webhook(orjson.dumps(payload))
    assert receipt.occurred_at == datetime(2026, 1, 20, 14, 32, 5, tzinfo=UTC)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(MalformedBody) as info:
        parse_webhook(body)
    assert info.value.status == 400


@pytest.mark.parametrize("missing", ["id", "type", "data"])
def test_missing_fields_are_named(missing: str) -> None:
    payload = orjson.loads(_body("message.sent", reference="mnp:R1"))
    del payload[missing]
    with pytest.raises(InvalidWebhook, match=missing) as info:
        parse_webhook(orjson.dumps(payload))
    assert info.value.status == 422


def test_data_must_be_an_object() -> None:
    payload = {"id": "e", "type": "message.sent", "data": "x"}
    with pytest.raises(InvalidWebhook, match="data"):
        parse_webhook(orjson.dumps(payload))


def test_bad_created_at() -> None:
    payload = orjson.loads(_body("message.sent", reference="mnp:R1"))
    payload["created_at"] = "yesterday"
    with pytest.raises(InvalidWebhook, match="created_at"):
        parse_webhook(orjson.dumps(payload))


def test_nothing_to_file_the_event_under() -> None:
    payload = {"id": "e", "type": "message.sent", "data": {"message_id": "m"}}
    with pytest.raises(InvalidWebhook, match="reference"):
        parse_webhook(orjson.dumps(payload))


def test_unknown_type_is_its_own_error() -> None:
    with pytest.raises(UnknownType):
        parse_webhook(_body("template.approved", reference="mnp:R1"))


# --- summary status --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stages", "status"),
    [
        ([], None),
        (["received"], "received"),
        (["received", "dispatched"], "dispatched"),
        (["received", "dispatched", "sent", "read", "delivered"], "read"),
        (["received", "dead_lettered"], "dead_lettered"),
        (["received", "dead_lettered", "retried", "dispatched", "sent"], "sent"),
        (["received", "dispatched", "sent", "failed"], "failed"),
        (["received", "dispatched", "failed", "sent"], "failed"),
        (["received", "dispatched", "failed", "sent", "delivered"], "delivered"),
        # A failure after delivery is stale: the phone has the message (issue 12).
        (["received", "dispatched", "delivered", "failed"], "delivered"),
        (["received", "dispatched", "read", "delivered"], "read"),
        (["conversation"], "conversation"),
        (["conversation", "replied"], "replied"),
    ],
)
def test_summary(stages: list[str], status: str | None) -> None:
    assert summarize(stages) == status


def test_summary_follows_each_message() -> None:
    # WhatsApp refused the first message; the re-send is on its way, then delivered.
    stages = ["received", "dispatched", "sent", "failed", "dead_lettered", "retried", "dispatched"]
    ids = [None, "msg_a", "msg_a", "msg_a", None, None, "msg_b"]
    assert summarize(stages, ids) == "dispatched"
    assert summarize([*stages, "sent"], [*ids, "msg_b"]) == "sent"
    assert summarize([*stages, "delivered", "sent"], [*ids, "msg_b", "msg_a"]) == "delivered"
    # Not re-sent (manual review): the reference's message failed.
    assert summarize(stages[:5], ids[:5]) == "failed"
