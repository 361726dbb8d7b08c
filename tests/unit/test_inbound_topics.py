"""receipts.topics: Siteti's `message.received` and `conversation.state` webhooks → the records
of bridge.replies.v1 and bridge.conversations.v1: valid against their JSON Schemas, keyed by a
keyed hash, and never holding a clear number, whatever the webhook holds (hypothesis)."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bridge import inbound
from bridge.events import CONVERSATIONS_TOPIC, REPLIES_TOPIC, TOPICS
from bridge.inbound import ConversationEvent, ReplyEvent
from bridge.protect import DataKeys, new_key_entry
from receipts.topics import OutboxRecord, mask_numbers, records
from receipts.webhooks import Receipt, WebhookError, parse_webhook
from tests.unit.test_receipts_hostile import created_ats, field_values, json_values

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1"
KEYS = DataKeys.parse([new_key_entry("k1")], base64.b64encode(os.urandom(32)).decode())
PHONE = "2348031234567"
RECEIVED = datetime(2026, 1, 20, 15, 0, tzinfo=UTC)


@cache
def validator(dataschema: str) -> Draft202012Validator:
    name = dataschema.removeprefix("urn:siteti-bridge:schema:").rpartition(":")[0]
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(payload: dict[str, Any]) -> list[str]:
    return [e.message for e in validator(payload["dataschema"]).iter_errors(payload)]


def body(event_type: str, **data: Any) -> bytes:
    return orjson.dumps(
        {"id": "evt_1", "type": event_type, "created_at": "2026-01-20T14:32:05Z", "data": data}
    )


def only(receipt: Receipt) -> OutboxRecord:
    (record,) = records(receipt, KEYS, "NG")
    # What the relay publishes is what PostgreSQL's jsonb gives back: no NUL anywhere.
    assert "\\u0000" not in orjson.dumps(record.payload).decode()
    assert schema_errors(record.payload) == []
    return record


# --- the mapping ------------------------------------------------------------------------------


def test_a_reply_is_sealed_hashed_and_keyed_by_the_number() -> None:
    receipt = parse_webhook(
        body(
            "message.received",
            message_id="msg_in_1",
            contact_id="ct_1",
            text="YES, it is 0803 123 4567",
            button_payload="confirm_number:yes",
            context={"message_id": "msg_out_1"},
            reference="moniepoint:MNP-1",
            bsuid="NG.abc",
            **{"from": "+234 803 123 4567"},
        )
    )
    record = only(receipt)
    assert record.topic == REPLIES_TOPIC.name == "bridge.replies.v1"
    assert record.key == KEYS.phone_index(PHONE)  # the Siteti form, as the directory's index
    event = ReplyEvent.model_validate(record.payload)
    assert (event.id, event.type, event.source) == ("evt_1", inbound.REPLY_TYPE, inbound.SOURCE)
    assert event.subject == "moniepoint:MNP-1"
    assert event.time == datetime(2026, 1, 20, 14, 32, 5, tzinfo=UTC)
    data = record.payload["data"]
    assert data["from_index"] == record.key
    assert KEYS.open(data["from"], "phone") == PHONE
    assert data["text"] == "YES, it is •••4567"
    assert data["button_payload"] == "confirm_number:yes"
    assert data["context_message_id"] == "msg_out_1"
    assert (data["message_id"], data["contact_id"], data["bsuid"]) == ("msg_in_1", "ct_1", "NG.abc")
    assert data["reference"] == "moniepoint:MNP-1"
    assert data["received_at"] == "2026-01-20T14:32:05Z"
    assert PHONE[-9:] not in orjson.dumps(record).decode()


def test_a_conversation_without_a_number_is_keyed_by_the_bsuid() -> None:
    receipt = parse_webhook(
        body(
            "conversation.state",
            contact_id="ct_1",
            state="open",
            window_expires_at="2026-01-21T15:32:05+01:00",
            bsuid="NG.abc",
        )
    )
    record = only(receipt)
    assert record.topic == CONVERSATIONS_TOPIC.name == "bridge.conversations.v1"
    assert record.key == KEYS.index("NG.abc", "bsuid")
    event = ConversationEvent.model_validate(record.payload)
    assert event.type == inbound.CONVERSATION_TYPE and event.subject == "contact:ct_1"
    assert record.payload["data"] == {
        "contact_id": "ct_1",
        "state": "open",
        "window_expires_at": "2026-01-21T14:32:05Z",
        "bsuid": "NG.abc",
        "from_index": None,
        "changed_at": "2026-01-20T14:32:05Z",
    }


def test_a_conversation_with_a_number_shares_the_replies_key() -> None:
    reply = only(parse_webhook(body("message.received", text="hi", **{"from": PHONE})))
    state = only(parse_webhook(body("conversation.state", state="closed", **{"from": PHONE})))
    assert state.key == reply.key == state.payload["data"]["from_index"]


def test_without_number_or_bsuid_the_contact_then_the_event_keys_it() -> None:
    by_contact = only(parse_webhook(body("conversation.state", contact_id="ct_9", state="open")))
    assert by_contact.key == KEYS.index("ct_9", "contact")
    by_event = only(parse_webhook(body("message.received", reference="mnp:R1", text="ok")))
    assert by_event.key == KEYS.index("evt_1", "event")


def test_a_reply_from_a_number_that_is_no_contact_is_filed_under_the_event() -> None:
    receipt = parse_webhook(body("message.received", contact_id=None, text="hi", **{"from": PHONE}))
    assert receipt.reference == "siteti:evt_1"
    assert PHONE not in orjson.dumps(receipt.detail).decode()
    assert only(receipt).payload["subject"] == "siteti:evt_1"


def test_a_button_press_without_text() -> None:
    receipt = parse_webhook(
        body("message.received", contact_id="ct_1", button_payload="no", text=None, context=None)
    )
    data = only(receipt).payload["data"]
    assert (data["text"], data["button_payload"], data["context_message_id"]) == (None, "no", None)
    assert data["from"] is None and data["from_index"] is None


def test_delivery_receipts_write_no_topic_record() -> None:
    for kind in ("message.sent", "message.delivered", "message.read", "message.failed"):
        receipt = parse_webhook(body(kind, reference="mnp:R1", **{"to": PHONE}))
        assert receipt.inbound is None
        assert records(receipt, KEYS, "NG") == []


def test_customer_text_is_cleaned_and_cut_not_refused() -> None:
    long = "a\x00b" + "x" * 5000
    receipt = parse_webhook(body("message.received", contact_id="ct_1", text=long))
    text = only(receipt).payload["data"]["text"]
    assert text.startswith("abx") and len(text) == inbound.MAX_TEXT_LENGTH


def test_an_unreadable_window_is_null_for_consumers_and_kept_for_the_audit() -> None:
    receipt = parse_webhook(
        body("conversation.state", contact_id="c", state="open", window_expires_at="soon")
    )
    assert only(receipt).payload["data"]["window_expires_at"] is None
    assert receipt.detail["window_expires_at"] == "soon"


def test_the_inbound_facts_never_show_in_a_repr() -> None:
    receipt = parse_webhook(body("message.received", text="my pin", **{"from": PHONE}))
    assert receipt.inbound is not None
    assert PHONE not in repr(receipt) and "my pin" not in repr(receipt)
    assert PHONE not in repr(receipt.inbound)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("YES", "YES"),
        ("call 08031234567 now", "call •••4567 now"),
        ("+234 (803) 123-4567", "•••4567"),
        ("0803.123.4567 or 0805 987 6543", "•••4567 or •••6543"),
        ("order 1234567 of 2026", "order 1234567 of 2026"),  # 7 digits: not a number
        ("١٢٣٤٥٦٧٨٩", "•••٦٧٨٩"),  # any script's digits
    ],
)
def test_numbers_in_text_are_masked(text: str, masked: str) -> None:
    assert mask_numbers(text) == masked


# --- the contract: limits, literals and schemas agree -----------------------------------------


@pytest.mark.parametrize("name", sorted(inbound.MODELS))
def test_schema_is_draft_2020_12_with_the_urn_as_id(name: str) -> None:
    model = inbound.MODELS[name]
    urn = f"urn:siteti-bridge:schema:{name}:v1"
    schema = validator(urn).schema
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == urn == model.model_fields["dataschema"].default
    assert schema["properties"]["type"]["const"] == model.model_fields["type"].default
    assert set(schema["required"]) >= {"specversion", "id", "source", "type", "data"}
    assert {inbound.REPLY_URN, inbound.CONVERSATION_URN} == {
        f"urn:siteti-bridge:schema:{n}:v1" for n in inbound.MODELS
    }


def test_the_topics_are_registered() -> None:
    assert {REPLIES_TOPIC, CONVERSATIONS_TOPIC} <= set(TOPICS)


def test_the_schema_refuses_a_clear_number_in_from() -> None:
    payload = only(parse_webhook(body("message.received", text="hi", **{"from": PHONE}))).payload
    payload["data"]["from"] = PHONE
    assert schema_errors(payload)
    payload["data"]["from"] = None
    payload["data"]["from_index"] = PHONE
    assert schema_errors(payload)


# --- any webhook (hypothesis) -----------------------------------------------------------------

# Nigerian mobiles as Siteti sends them, and the ways a customer may type one into a reply.
numbers = st.builds(
    lambda prefix, rest: f"234{prefix}{rest}",
    st.sampled_from(["803", "805", "806", "810", "703", "903", "913"]),
    st.text("0123456789", min_size=7, max_size=7),
)


def typed(number: str, style: int) -> str:
    national = "0" + number[3:]
    return [
        number,
        "+" + number,
        f"+234 {number[3:6]} {number[6:9]} {number[9:]}",
        national,
        f"{national[:4]}-{national[4:7]}-{national[7:]}",
        f"({national[:4]}) {national[4:7]} {national[7:]}",
    ][style]


# Mostly usable ids, sometimes hostile ones (test_receipts_hostile's).
usable = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40).filter(
    str.strip
)
ids = st.one_of(usable, usable, usable, field_values)


@st.composite
def inbound_webhooks(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """(a webhook of the two types, the number it carries): the number as `from` and typed
    anywhere into the text."""
    number = draw(numbers)
    around = st.text(max_size=30)
    text = draw(around) + typed(number, draw(st.integers(0, 5))) + draw(around)
    data = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "message_id": ids,
                "contact_id": ids,
                "reference": ids,
                "bsuid": ids,
                "state": ids,
                "window_expires_at": st.one_of(created_ats, field_values),
                "button_payload": ids,
                "context": st.one_of(json_values, st.fixed_dictionaries({"message_id": ids})),
                "text": st.just(text),
            },
        )
    )
    if draw(st.integers(0, 3)) < 3:  # mostly from a number, sometimes from a BSUID or unknown
        data["from"] = draw(st.sampled_from([number, "+" + number, typed(number, 3)]))
    kind = draw(st.sampled_from(["message.received", "conversation.state"]))
    payload = {"id": draw(ids), "type": kind, "data": data}
    if draw(st.booleans()):
        payload["created_at"] = draw(st.one_of(st.datetimes().map(datetime.isoformat), created_ats))
    return payload, number


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(inbound_webhooks())
def test_any_inbound_webhook_maps_to_valid_records_without_a_clear_number(
    case: tuple[dict[str, Any], str],
) -> None:
    payload, number = case
    try:
        receipt = parse_webhook(orjson.dumps(payload), received_at=RECEIVED)
    except WebhookError as exc:
        assert exc.status in (400, 422)
        event("refused")
        return
    record = only(receipt)
    event(record.topic)  # --hypothesis-show-statistics: both topics are reached, often
    assert record.topic in (REPLIES_TOPIC.name, CONVERSATIONS_TOPIC.name)
    assert len(record.key) == 40 and int(record.key, 16) >= 0
    model = ReplyEvent if record.topic == REPLIES_TOPIC.name else ConversationEvent
    assert model.model_validate(record.payload).id == payload["id"]
    written = orjson.dumps(record).decode()
    # The privacy scan's needles (bridge_cli.privacy): the digits, and their last nine.
    assert number not in written and number[-9:] not in written
    sender = record.payload["data"].get("from")
    if sender is not None:
        assert KEYS.open(sender, "phone") == number
        assert record.key == record.payload["data"]["from_index"] == KEYS.phone_index(number)
