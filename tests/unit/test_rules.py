"""The default template rules of ../shared/contracts/templates.md, as a table."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bridge.events import Customer, EventData, new_event
from dispatcher.directory import CustomerRecord
from dispatcher.rules import (
    MissingVariable,
    NoRuleMatched,
    RuleSet,
    choose,
    format_amount,
    load_rules,
)

RULES = load_rules()


def event(
    kind: str,
    amount: str = "5000",
    reason: str | None = None,
    currency: str = "NGN",
    due: str | None = None,
):  # type: ignore[no-untyped-def]
    data = EventData(
        provider="moniepoint",
        transaction_reference="MNP-1",
        amount=Decimal(amount),
        currency=currency,
        customer=Customer(account_number="0123456789", name="From Event"),
        reason=reason,
        next_due_date=due,
    )
    return new_event(data, kind)


def customer(
    tier: str = "first_time", late: int = 0, name: str | None = "Ada Obi"
) -> CustomerRecord:
    return CustomerRecord(1, "0123456789", None, "2348031234567", name, tier, late, None)


@pytest.mark.parametrize(
    ("kind", "tier", "late", "reason", "template"),
    [
        ("payment.successful", "first_time", 0, None, "tpl_first_time"),
        ("payment.successful", "first_time", 3, None, "tpl_first_time"),
        ("payment.successful", "returning", 0, None, "tpl_returning_good"),
        ("payment.successful", "returning", 1, None, "tpl_returning_late"),
        ("payment.failed", "returning", 0, "insufficient funds", "tpl_failed_insufficient_funds"),
        (
            "payment.failed",
            "returning",
            0,
            "Insufficient Funds in account",
            "tpl_failed_insufficient_funds",
        ),
        ("payment.failed", "first_time", 0, "bank network timeout", "tpl_failed_bank_network"),
        ("payment.failed", "first_time", 0, "Network error", "tpl_failed_bank_network"),
        ("payment.failed", "first_time", 0, "upstream TIMEOUT", "tpl_failed_bank_network"),
        ("payment.failed", "first_time", 0, "card blocked", "tpl_failed_generic"),
        ("transfer.completed", "first_time", 0, None, "tpl_transfer_completed"),
        ("transfer.failed", "returning", 2, "whatever", "tpl_transfer_failed"),
    ],
)
def test_default_rules(kind: str, tier: str, late: int, reason: str | None, template: str) -> None:
    choice = choose(RULES, event(kind, reason=reason), customer(tier, late))
    assert choice.template_id == template


def test_variables_are_filled_from_directory_and_event() -> None:
    choice = choose(RULES, event("payment.successful", "500000"), customer())
    assert choice.variables == {
        "customer_name": "Ada Obi",
        "amount": "₦500,000.00",
        "trans_ref": "MNP-1",
    }


def test_optional_variable_sent_only_when_known() -> None:
    with_due = choose(RULES, event("payment.successful", due="2026-02-20"), customer("returning"))
    without = choose(RULES, event("payment.successful"), customer("returning"))
    assert with_due.variables["next_due_date"] == "2026-02-20"
    assert "next_due_date" not in without.variables


def test_name_falls_back_to_the_event() -> None:
    choice = choose(RULES, event("payment.successful"), customer(name=None))
    assert choice.variables["customer_name"] == "From Event"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("500000", "NGN", "₦500,000.00"),
        ("5000.5", "NGN", "₦5,000.50"),
        ("0.005", "NGN", "₦0.01"),
        ("1234567.891", "ngn", "₦1,234,567.89"),
        ("5000", "XOF", "XOF 5,000.00"),
        ("1500.5", "KES", "KES 1,500.50"),
    ],
)
def test_format_amount(amount: str, currency: str, text: str) -> None:
    assert format_amount(Decimal(amount), currency) == text


def test_no_rule_raises() -> None:
    rules = RuleSet.model_validate({"version": 1, "templates": {}, "rules": []})
    with pytest.raises(NoRuleMatched):
        choose(rules, event("payment.successful"), customer())


def test_missing_required_variable_raises() -> None:
    rules = RuleSet.model_validate(
        {
            "version": 1,
            "templates": {"tpl_x": ["customer_name", "next_due_date"]},
            "rules": [{"name": "x", "when": {"type": "payment.successful"}, "template": "tpl_x"}],
        }
    )
    with pytest.raises(MissingVariable):
        choose(rules, event("payment.successful"), customer())


def test_conditions_on_amount_currency_provider() -> None:
    rules = RuleSet.model_validate(
        {
            "version": 1,
            "templates": {"tpl_big": ["amount"], "tpl_small": ["amount"]},
            "rules": [
                {
                    "name": "big",
                    "when": {
                        "amount": {"gte": 1000000},
                        "currency": "NGN",
                        "provider": "moniepoint",
                    },
                    "template": "tpl_big",
                },
                {"name": "small", "when": {}, "template": "tpl_small"},
            ],
        }
    )
    assert (
        choose(rules, event("payment.successful", "1000000"), customer()).template_id == "tpl_big"
    )
    assert (
        choose(rules, event("payment.successful", "999999.99"), customer()).template_id
        == "tpl_small"
    )
    assert (
        choose(
            rules, event("payment.successful", "1000000", currency="XOF"), customer()
        ).template_id
        == "tpl_small"
    )


def test_unknown_rule_field_is_rejected() -> None:
    with pytest.raises(ValueError, match="tierr"):
        RuleSet.model_validate(
            {
                "version": 1,
                "templates": {},
                "rules": [{"name": "x", "when": {"tierr": "a"}, "template": "t"}],
            }
        )
