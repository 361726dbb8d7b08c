"""Where every kind of failure ends: reason, status, next attempt. No server needed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.retry import RetryPolicy
from dispatcher.outcomes import (
    MISSING_CONTACT,
    NO_RULE,
    SITETI_UNAVAILABLE,
    SUSPECTED_DOUBLE_FIRE,
    TEMPLATE_NOT_APPROVED,
    TEMPLATE_REJECTED,
    UNPROCESSABLE,
    DeadLettered,
    Duplicate,
    MissingContact,
    NoRule,
    Sent,
    SuspectedDoubleFire,
    TemplateRejected,
    Unprocessable,
    dead_letter_for,
)
from dispatcher.siteti import SitetiError

POLICY = RetryPolicy(base_seconds=1, factor=2, max_seconds=60, max_retries=5)


def test_a_customer_without_a_number_waits_for_a_person() -> None:
    dead = dead_letter_for(MissingContact(customer_found=True), policy=POLICY)
    assert (dead.reason, dead.status) == (MISSING_CONTACT, "manual_review")
    assert dead.error == "no WhatsApp number in the customer directory"
    unknown = dead_letter_for(MissingContact(customer_found=False), policy=POLICY)
    assert unknown.error.endswith("(customer not found)")


def test_no_rule_and_unprocessable_wait_for_a_person_with_the_detail() -> None:
    assert dead_letter_for(NoRule("no rule for loan.approved"), policy=POLICY) == DeadLettered(
        NO_RULE, "manual_review", "no rule for loan.approved"
    )
    assert dead_letter_for(Unprocessable("ValueError: year 0"), policy=POLICY) == DeadLettered(
        UNPROCESSABLE, "manual_review", "ValueError: year 0"
    )


@pytest.mark.parametrize(
    "error",
    [
        SitetiError(None, "unreachable", "connection refused"),
        SitetiError(503, "maintenance", "back soon", retry_after=60),
        SitetiError(429, "rate_limited", "slow down"),
        SitetiError(502, "bad_gateway", "upstream"),
    ],
    ids=lambda e: e.code,
)
def test_siteti_unavailable_after_the_retries_is_retried_later(error: SitetiError) -> None:
    dead = dead_letter_for(error, policy=POLICY, template_id="tpl_first_time")
    assert (dead.reason, dead.status) == (SITETI_UNAVAILABLE, "pending")
    assert dead.retry_in == timedelta(seconds=60)  # the policy's longest wait
    assert dead.template_id == "tpl_first_time"
    assert dead.error.startswith("gave up after 5 retries")


def test_a_template_not_approved_waits_for_approval() -> None:
    error = SitetiError(
        422, TEMPLATE_NOT_APPROVED, "not approved", detail={"template_status": "PENDING"}
    )
    dead = dead_letter_for(error, policy=POLICY, template_id="tpl_x")
    assert dead == DeadLettered(
        TEMPLATE_NOT_APPROVED, "pending", "tpl_x is PENDING", template_id="tpl_x"
    )


def test_a_rejected_template_goes_to_a_person_instead_of_waiting_forever() -> None:
    """Issue 12: at the trigger (Siteti says REJECTED) and from the retrier's poll alike."""
    error = SitetiError(
        422, TEMPLATE_NOT_APPROVED, "not approved", detail={"template_status": "REJECTED"}
    )
    expected = DeadLettered(
        TEMPLATE_REJECTED, "manual_review", "tpl_x is REJECTED", template_id="tpl_x"
    )
    assert dead_letter_for(error, policy=POLICY, template_id="tpl_x") == expected
    assert dead_letter_for(TemplateRejected("tpl_x"), policy=POLICY, template_id="tpl_x") == (
        expected
    )


def test_a_suspected_double_fire_waits_for_a_person_naming_the_first_event() -> None:
    dead = dead_letter_for(SuspectedDoubleFire("evt-1", "moniepoint:TX-1"), policy=POLICY)
    assert (dead.reason, dead.status, dead.retry_in) == (
        SUSPECTED_DOUBLE_FIRE,
        "manual_review",
        None,
    )
    assert "moniepoint:TX-1" in dead.error and "evt-1" in dead.error


@pytest.mark.parametrize("code", ["invalid_phone", "template_not_found", "validation_error"])
def test_any_other_refusal_goes_to_a_person_under_sitetis_code(code: str) -> None:
    dead = dead_letter_for(SitetiError(400, code, "refused"), policy=POLICY, template_id="t")
    assert (dead.reason, dead.status, dead.retry_in) == (code, "manual_review", None)
    assert dead.template_id == "t"


def test_outcome_labels_are_the_names_reports_use() -> None:
    assert Sent("msg_1", replayed=False).label == "sent"
    assert Duplicate("done").label == "duplicate"
    assert (
        DeadLettered(MISSING_CONTACT, "manual_review", "x").label == "dead_lettered:missing_contact"
    )
