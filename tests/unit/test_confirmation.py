"""Number confirmation's pure part: what a reply means, which number needs confirming, and
what becomes of a waiting event (confirmation.py), with the rules that pick its template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.retry import RetryPolicy
from dispatcher.confirmation import (
    Candidate,
    Request,
    RequestStatus,
    answered,
    candidate_number,
    decide,
    reply_intent,
    reply_of,
)
from dispatcher.customers import CustomerRecord
from dispatcher.directory import parse_row
from dispatcher.outcomes import Unconfirmed, dead_letter_for
from dispatcher.replies import reply_data
from dispatcher.rules.checker import check_rules
from dispatcher.rules.engine import NoRuleMatched, choose
from dispatcher.rules.model import RuleSet, load_rules

NOW = datetime(2026, 1, 20, 14, 0, tzinfo=UTC)
CONFIRMING = ["YES", "yes", " Yes! ", "y", "Yes it's me", "yes it’s me", "1", "Confirm", "ＹＥＳ"]
DECLINING = ["NO", "no.", "N", "Not me", "wrong number", "Wrong number!", "2", "no, it's not me"]


@pytest.mark.parametrize("text", CONFIRMING)
def test_confirming_replies(text: str) -> None:
    assert reply_intent(text, None) == "confirm"


@pytest.mark.parametrize("text", DECLINING)
def test_declining_replies(text: str) -> None:
    assert reply_intent(text, None) == "decline"


@pytest.mark.parametrize(
    "text", ["", "hello", "who is this?", "yes no", "no yes", "12", "3", "maybe", None]
)
def test_replies_that_say_neither(text: str | None) -> None:
    assert reply_intent(text, None) is None


def test_a_button_decides_over_the_text() -> None:
    assert reply_intent("no", "confirm_number:yes") == "confirm"
    assert reply_intent("yes", "CONFIRM_NUMBER:NO") == "decline"
    # Another template's button says nothing about the number: the text decides.
    assert reply_intent("yes", "order:track") == "confirm"
    assert reply_intent(None, "order:track") is None


def test_the_first_word_decides_unless_the_rest_says_the_opposite() -> None:
    assert reply_intent("Yes, this is Ada", None) == "confirm"
    assert reply_intent("No, this is Bola", None) == "decline"
    assert reply_intent("yes but wrong name", None) is None


@given(st.text(max_size=200), st.none() | st.text(max_size=60))
def test_any_reply_has_one_meaning_at_most(text: str, payload: str | None) -> None:
    assert reply_intent(text, payload) in ("confirm", "decline", None)


@given(
    st.sampled_from(CONFIRMING + DECLINING),
    st.text(alphabet=" \t\n.!?,", max_size=5),
    st.text(alphabet=" \t\n.!?,", max_size=5),
)
def test_case_spacing_and_punctuation_change_nothing(text: str, before: str, after: str) -> None:
    expected = reply_intent(text, None)
    assert reply_intent(before + text.swapcase() + after, None) == expected


@given(st.sampled_from(CONFIRMING), st.sampled_from(DECLINING))
def test_a_yes_and_a_no_together_say_neither_or_the_first(yes: str, no: str) -> None:
    # Never the opposite of its first word: "yes … no" is not read as a decline.
    assert reply_intent(f"{yes} {no}", None) in ("confirm", None)
    assert reply_intent(f"{no} {yes}", None) in ("decline", None)


def record(
    phone: str | None = "2348031234567", confirmed: bool = True, id: int | None = 7
) -> CustomerRecord:
    return CustomerRecord(id, "0123", None, phone, "Ada", "first_time", 0, None, confirmed)


def test_which_number_needs_confirming() -> None:
    given_phone = "2348099999999"

    def supplied() -> str | None:
        return given_phone

    assert candidate_number(record(), supplied) is None  # confirmed: sent as before
    assert candidate_number(record(confirmed=False), supplied) == Candidate(
        7, "2348031234567", supplied=False
    )
    # The directory has no number, the event gives one.
    assert candidate_number(record(phone=None), supplied) == Candidate(
        7, given_phone, supplied=True
    )
    assert candidate_number(record(phone=None), lambda: None) is None  # missing_contact
    assert candidate_number(None, supplied) is None
    # Not in the directory at all: the event's own number is used, as it always was.
    assert candidate_number(record(id=None), supplied) is None


def test_the_event_number_is_opened_only_when_needed() -> None:
    def never() -> str | None:
        raise AssertionError("opened for nothing")

    assert candidate_number(record(), never) is None
    assert candidate_number(record(confirmed=False), never) is not None


def request(status: RequestStatus, expires_in: float = 3600, id: int = 1) -> Request:
    return Request(
        id, status, NOW + timedelta(seconds=expires_in), "msg_1", "number-confirmation:x", "t"
    )


def test_a_new_event_asks_joins_or_is_declined() -> None:
    assert decide(None, None, NOW).kind == "ask"
    open_one = request("requested")
    joined = decide(None, open_one, NOW)
    assert (joined.kind, joined.request) == ("wait", open_one)
    assert decide(None, request("declined"), NOW).kind == "declined"  # nobody is asked twice
    assert decide(None, request("expired"), NOW).kind == "ask"
    assert decide(None, request("confirmed"), NOW).kind == "ask"  # re-imported unconfirmed
    assert decide(None, request("requested", expires_in=-1), NOW).kind == "ask"


def test_a_waiting_event_settles_with_its_own_request() -> None:
    assert decide(request("requested"), None, NOW).kind == "wait"
    assert decide(request("declined"), None, NOW).kind == "declined"
    assert decide(request("expired"), None, NOW).kind == "timeout"
    assert decide(request("requested", expires_in=0), None, NOW).kind == "timeout"
    # Its request was confirmed but the number is unconfirmed again: as a new event.
    assert decide(request("confirmed"), request("declined", id=2), NOW).kind == "declined"


@given(
    st.none() | st.sampled_from(["requested", "confirmed", "declined", "expired"]),
    st.none() | st.sampled_from(["requested", "confirmed", "declined", "expired"]),
    st.floats(min_value=-1e6, max_value=1e6),
)
def test_decisions_are_total_and_consistent(
    linked: RequestStatus | None, latest: RequestStatus | None, expires_in: float
) -> None:
    mine = request(linked, expires_in) if linked else None
    last = request(latest, expires_in, id=2) if latest else None
    decision = decide(mine, last, NOW)
    assert (decision.kind == "ask") == (decision.request is None)
    if decision.kind == "wait":
        assert decision.request is not None and decision.request.open_at(NOW)
    if decision.kind == "timeout":
        assert decision.request is mine


def test_answers_settle_only_open_requests() -> None:
    assert answered(request("requested"), "confirm", NOW) == "confirmed"
    assert answered(request("requested"), "decline", NOW) == "declined"
    assert answered(request("requested", expires_in=-1), "confirm", NOW) is None  # too late
    assert answered(request("confirmed"), "decline", NOW) is None


def test_a_reply_record_is_read_defensively() -> None:
    reply = reply_of(
        {
            "message_id": "msg_in_1",
            "from_index": "ab" * 20,
            "text": "YES",
            "button_payload": None,
            "context_message_id": 5,  # not a string: absent
            "reference": "",
        }
    )
    assert reply.intent == "confirm" and reply.context_message_id is None
    assert reply.reference is None and reply.from_index == "ab" * 20


@pytest.mark.parametrize(
    ("state", "reason", "status"),
    [
        ("waiting", "awaiting_number_confirmation", "pending"),
        ("declined", "number_declined", "manual_review"),
        ("timeout", "number_confirmation_timeout", "manual_review"),
        ("no_rule", "missing_contact", "manual_review"),
    ],
)
def test_where_each_state_ends(state: str, reason: str, status: str) -> None:
    wait = timedelta(hours=24) if state == "waiting" else None
    dead = dead_letter_for(Unconfirmed(state, "why", wait), policy=RetryPolicy())  # type: ignore[arg-type]
    assert (dead.reason, dead.status, dead.retry_in) == (reason, status, wait)


def event(provider: str = "moniepoint") -> CanonicalEvent:
    data = EventData(
        provider=provider,
        transaction_reference="MNP-1",
        amount=Decimal(5000),
        customer=Customer(account_number="0123", name="From Event"),
    )
    return new_event(data, "payment.successful")


def test_the_shipped_rules_ask_with_tpl_confirm_number_and_check_clean() -> None:
    rules = load_rules()
    choice = choose(rules, event(), record(), confirmation=True)
    assert (choice.template_id, choice.variables) == (
        "tpl_confirm_number",
        {"customer_name": "Ada"},
    )
    # The message rules are untouched by it.
    assert choose(rules, event(), record()).template_id == "tpl_first_time"
    assert [p for p in check_rules(rules) if "confirm" in p.message] == []


def test_the_confirmation_template_is_rule_driven() -> None:
    rules = RuleSet.model_validate(
        {
            "version": 1,
            "templates": {"tpl_first_time": ["customer_name"], "tpl_ask_om": ["customer_name"]},
            "rules": [{"name": "a", "template": "tpl_first_time"}],
            "confirmation_rules": [
                {"name": "om", "when": {"provider": "openmarket"}, "template": "tpl_ask_om"},
                {"name": "om_again", "when": {"provider": "openmarket"}, "template": "tpl_nope"},
            ],
        }
    )
    chosen = choose(rules, event("openmarket"), record(), confirmation=True)
    assert chosen.template_id == "tpl_ask_om"
    with pytest.raises(NoRuleMatched, match="no number confirmation rule"):
        choose(rules, event(), record(), confirmation=True)
    problems = {str(p) for p in check_rules(rules)}
    assert "error: rule om_again: template tpl_nope is not in templates" in problems
    assert any(p.startswith("error: rule om_again: unreachable") for p in problems)
    assert not any("tpl_ask_om is used by no rule" in p for p in problems)


@given(st.binary(max_size=300))
def test_any_record_on_the_replies_topic_is_read_or_skipped(value: bytes) -> None:
    data = reply_data(value)
    assert data is None or isinstance(data, dict)


def test_only_replies_are_read() -> None:
    reply = {"type": "bridge.message.received.v1", "data": {"text": "YES"}}
    assert reply_data(orjson.dumps(reply)) == {"text": "YES"}
    state = {"type": "bridge.conversation.state.v1", "data": {"state": "open"}}
    assert reply_data(orjson.dumps(state)) is None
    assert reply_data(orjson.dumps({**reply, "data": "YES"})) is None
    assert reply_data(b"[1, 2]") is None


@given(st.text(max_size=12))
def test_the_directory_flag_is_a_boolean_or_the_row_is_refused(flag: str) -> None:
    base = {"account_number": "0123456789", "phone": "08031234567", "phone_confirmed": flag}
    values, problem = parse_row(base, "NG")
    word = flag.strip().lower()
    if word in ("", "true", "yes", "1"):
        assert values is not None and values["phone_confirmed"] is True
    elif word in ("false", "no", "0"):
        assert values is not None and values["phone_confirmed"] is False
    else:
        assert values is None and problem is not None and "phone_confirmed" in problem


def test_a_directory_without_the_column_is_confirmed() -> None:
    values, _ = parse_row({"account_number": "0123456789", "phone": "08031234567"}, "NG")
    assert values is not None and values["phone_confirmed"] is True
