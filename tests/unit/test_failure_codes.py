"""Issue 12: WHATSAPP_FAILURE_ACTIONS parsed with clear errors, and what each action decides
(bridge.failure_codes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import Settings
from bridge.failure_codes import (
    ACTIONS,
    DEFAULT_ACTIONS,
    DEFAULT_POLICY,
    MAX_RETRY_WAIT_SECONDS,
    FailurePolicy,
    PolicyError,
    parse_actions,
)


def test_the_defaults_are_the_issues_mapping() -> None:
    assert Settings().whatsapp_failure_actions == DEFAULT_ACTIONS
    assert parse_actions(DEFAULT_ACTIONS) == {
        131026: "flag",
        131047: "resend_template",
        131048: "review",
        131049: "review",
        130429: "retry",
        131056: "retry",
    }


@given(st.dictionaries(st.integers(1, 10**9), st.sampled_from(ACTIONS), max_size=8), st.data())
def test_any_well_formed_mapping_reads_back(mapping: dict[int, str], data: st.DataObject) -> None:
    spaces = st.sampled_from(["", " ", "  "])
    text = ",".join(
        f"{data.draw(spaces)}{code}{data.draw(spaces)}={data.draw(spaces)}{action}"
        for code, action in mapping.items()
    )
    assert parse_actions(text + data.draw(st.sampled_from(["", ",", ", ,"]))) == mapping


@given(st.text(max_size=60))
def test_any_text_reads_or_fails_with_a_policy_error(text: str) -> None:
    try:
        actions = parse_actions(text)
    except PolicyError as exc:
        assert "WHATSAPP_FAILURE_ACTIONS" in str(exc)
    else:
        assert all(code > 0 and action in ACTIONS for code, action in actions.items())


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("131026", "not code=action"),
        ("abc=review", "not an error code"),
        ("0=review", "not an error code"),
        ("-5=review", "not an error code"),
        ("131026=shout", "not one of flag, resend_template, review, retry"),
        ("131026=review,131026=retry", "names 131026 twice"),
    ],
)
def test_mistakes_are_named(text: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        parse_actions(text)


def test_negative_limits_are_refused() -> None:
    with pytest.raises(PolicyError):
        FailurePolicy.parse(DEFAULT_ACTIONS, -1, 5)


def test_what_each_action_decides() -> None:
    policy = FailurePolicy.parse(DEFAULT_ACTIONS, 10, 3)
    flagged = policy.decide(131026, "Message undeliverable", template_id="tpl", resends=0)
    assert (flagged.status, flagged.flag, flagged.reason) == (
        "manual_review",
        True,
        "whatsapp_undeliverable",
    )
    assert flagged.taken == "manual_review_flagged" and "Message undeliverable" in flagged.note
    spam = policy.decide(131048, None, template_id="tpl", resends=0)
    assert (spam.status, spam.flag, spam.reason) == ("manual_review", False, "whatsapp_spam_limit")
    first, third = (policy.decide(130429, None, template_id="t", resends=n) for n in (0, 2))
    assert (first.status, first.retry_in, third.retry_in) == ("pending", 10, 40)
    assert policy.decide(130429, None, template_id="t", resends=3).status == "manual_review"
    assert policy.decide(131056, None, template_id="t", resends=0).reason == "whatsapp_pair_limit"
    free_form = policy.decide(131047, None, template_id=None, resends=0)
    assert (free_form.status, free_form.retry_in, free_form.taken) == (
        "pending",
        0,
        "resend_as_template",
    )
    assert policy.decide(131047, None, template_id="tpl", resends=0).status == "manual_review"
    unknown = policy.decide(131000, None, template_id="t", resends=0)
    assert (unknown.status, unknown.reason) == ("manual_review", "whatsapp_failed")
    assert DEFAULT_POLICY.decide(None, None, template_id="t", resends=0).status == "manual_review"


@given(st.integers(0, 10_000))
def test_the_wait_is_capped(resends: int) -> None:
    policy = FailurePolicy.parse(DEFAULT_ACTIONS, 60, 10**6)
    wait = policy.decide(130429, None, template_id="t", resends=resends).retry_in
    assert wait is not None and 0 < wait <= MAX_RETRY_WAIT_SECONDS
