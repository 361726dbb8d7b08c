"""The sandbox's customer-side controls without a server: rule matching and the control bodies'
validation (outside input: any JSON either validates or is a clean ValidationError)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from siteti_sandbox.messaging import MessagingControls
from siteti_sandbox.messaging_control import (
    AutoReplyBody,
    ConversationBody,
    DeliveryFailureBody,
    ReplyBody,
)

PHONE, OTHER = "2348031234567", "2348099998888"
MODELS: list[type[BaseModel]] = [ReplyBody, AutoReplyBody, DeliveryFailureBody, ConversationBody]
FIELDS = [
    "from",
    "text",
    "button_payload",
    "context_message_id",
    "bsuid",
    "delay_seconds",
    "numbers",
    "code",
    "title",
    "to",
    "template_id",
    "times",
    "contact_id",
    "state",
    "window_expires_at",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from([PHONE, "open", "closed", "2030-01-02T03:04:05Z", "131026"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(
    model=st.sampled_from(MODELS),
    body=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=6),
)
def test_any_body_validates_or_is_a_validation_error(
    model: type[BaseModel], body: dict[str, Any]
) -> None:
    try:
        parsed = model.model_validate(body)
    except ValidationError:
        return
    # What the handlers rely on once a body is accepted.
    if isinstance(parsed, ReplyBody | AutoReplyBody):
        assert any(v and v.strip() for v in (parsed.text, parsed.button_payload))
    if isinstance(parsed, ReplyBody):
        assert parsed.sender or parsed.bsuid or parsed.context_message_id
    if isinstance(parsed, ConversationBody):
        assert parsed.contact_id or parsed.sender or parsed.bsuid
        assert parsed.window_expires_at is None or parsed.window_expires_at.tzinfo is not None
    if isinstance(parsed, DeliveryFailureBody):
        assert type(parsed.code) is int and parsed.code >= 0


@given(times=st.integers(min_value=1, max_value=5), sent=st.integers(min_value=0, max_value=8))
def test_times_counts_failures_actually_injected(times: int, sent: int) -> None:
    controls = MessagingControls()
    controls.add_failure(131026, None, PHONE, None, times)
    failed = [controls.failure_for(PHONE, "tpl_a") is not None for _ in range(sent)]
    assert failed == [True] * min(times, sent) + [False] * max(0, sent - times)


def test_rules_match_by_recipient_and_template() -> None:
    controls = MessagingControls()
    by_template = controls.add_failure(131056, "custom", None, "tpl_a", None)
    by_phone = controls.add_failure(131047, None, OTHER, None, None)
    assert by_template.title == "custom"
    assert by_phone.error() == {"code": 131047, "title": "Re-engagement message"}
    assert controls.failure_for(PHONE, "tpl_a") is by_template
    assert controls.failure_for(PHONE, "tpl_b") is None
    assert controls.failure_for(PHONE, None) is None  # free-form: no template to match
    assert controls.failure_for(OTHER, None) is by_phone
    assert controls.add_failure(1, None, None, None, None).title == "Message failed"


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"from": PHONE, "text": "YES"}, True),
        ({"context_message_id": "msg_1", "button_payload": "confirm_number:yes"}, True),
        ({"bsuid": "NG.x", "text": "hi", "delay_seconds": 0}, True),
        ({"from": PHONE, "text": "x" * 4097}, False),
        ({"from": PHONE, "text": "YES", "delay_seconds": 3601}, False),
        ({"from_": PHONE, "text": "YES"}, False),
    ],
)
def test_reply_bodies(body: dict[str, Any], valid: bool) -> None:
    if valid:
        ReplyBody.model_validate(body)
    else:
        with pytest.raises(ValidationError):
            ReplyBody.model_validate(body)
