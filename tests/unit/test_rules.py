"""The default template rules of the templates contract (templates.md), as a table."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.events import EVENT_TYPES, CanonicalEvent, Customer, EventData, new_event
from dispatcher.customers import CustomerRecord
from dispatcher.rules.checker import check_rules
from dispatcher.rules.engine import (
    MissingVariable,
    NoRuleMatched,
    choose,
    fill,
    format_amount,
    why_not,
)
from dispatcher.rules.model import Condition, Rule, RuleSet, Variable, load_rules
from ingest.sources.filedrop_reader import FiledropConfig, plan_file

RULES = load_rules()
ROOT = Path(__file__).resolve().parents[2]


def event(
    kind: str,
    amount: str = "5000",
    reason: str | None = None,
    currency: str = "NGN",
    due: str | None = None,
) -> CanonicalEvent:
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


# --- the shipped rule set -------------------------------------------------------------------

TEMPLATES_MD = {
    "tpl_first_time": ["customer_name", "amount", "trans_ref"],
    "tpl_returning_good": ["customer_name", "amount", "trans_ref", "next_due_date?"],
    "tpl_returning_late": ["customer_name", "amount", "trans_ref", "next_due_date?"],
    "tpl_failed_insufficient_funds": ["customer_name", "amount", "trans_ref"],
    "tpl_failed_bank_network": ["customer_name", "amount", "trans_ref"],
    "tpl_failed_generic": ["customer_name", "amount", "trans_ref"],
    "tpl_transfer_completed": ["customer_name", "amount", "trans_ref"],
    "tpl_transfer_failed": ["customer_name", "amount", "trans_ref"],
}
BASE = {"customer_name": "Ada Obi", "amount": "₦5,000.00", "trans_ref": "MNP-1"}


def make(
    kind: str,
    *,
    provider: str = "moniepoint",
    reason: str | None = None,
    due: str | None = None,
    description: str | None = None,
    details: dict[str, str] | None = None,
    currency: str = "NGN",
) -> CanonicalEvent:
    data = EventData(
        provider=provider,
        transaction_reference="MNP-1",
        amount=Decimal("5000"),
        currency=currency,
        customer=Customer(account_number="0123456789", name="From Event"),
        reason=reason,
        next_due_date=due,
        description=description,
        details=details or {},
    )
    return new_event(data, kind)


def test_shipped_file_keeps_the_contract_templates_first() -> None:
    assert dict(list(RULES.templates.items())[:8]) == TEMPLATES_MD


def test_shipped_file_has_no_problems() -> None:
    assert [str(p) for p in check_rules(RULES)] == []


def test_shipped_file_has_a_rule_for_every_event_type_and_no_catch_all() -> None:
    covered = {t for rule in RULES.rules for t in rule.when.type or []}
    assert covered >= EVENT_TYPES
    assert all(rule.when.type for rule in RULES.rules)


# (rule, event, customer tier, late payments, template, variables beyond BASE or exact)
SEEDS = [
    ("openmarket_order", make("payment.successful", provider="openmarket",
                              details={"order_id": "ORDER123ABC"}), "returning", 2,
     "tpl_order_confirmation", {**BASE, "amount": "₦5,000.00", "order_id": "ORDER123ABC"}),
    ("first_time_payment", make("payment.successful"), "first_time", 0, "tpl_first_time", BASE),
    ("returning_good_standing", make("payment.successful", due="2026-02-20"), "returning", 0,
     "tpl_returning_good", {**BASE, "next_due_date": "2026-02-20"}),
    ("returning_late", make("payment.successful"), "returning", 3, "tpl_returning_late", BASE),
    ("failed_insufficient_funds", make("payment.failed", reason="Insufficient funds"),
     "first_time", 0, "tpl_failed_insufficient_funds", BASE),
    ("failed_bank_network", make("payment.failed", reason="bank network timeout"), "returning",
     0, "tpl_failed_bank_network", BASE),
    ("failed_generic", make("payment.failed", reason="card blocked"), "first_time", 0,
     "tpl_failed_generic", BASE),
    ("transfer_completed", make("transfer.completed"), "first_time", 0,
     "tpl_transfer_completed", BASE),
    ("transfer_failed", make("transfer.failed", reason="x"), "first_time", 0,
     "tpl_transfer_failed", BASE),
    ("transfer_reversed", make("transfer.reversed", reason="reversed"), "first_time", 0,
     "tpl_transfer_reversed", BASE),
    ("refund_processed", make("refund.processed"), "returning", 0, "tpl_refund_processed", BASE),
    ("refund_failed", make("refund.failed", reason="refund failed"), "first_time", 0,
     "tpl_refund_failed", BASE),
    ("subscription_created", make("subscription.created", due="2026-02-20",
                                  description="Monthly cleaning"), "first_time", 0,
     "tpl_subscription_created",
     {**BASE, "next_due_date": "2026-02-20", "description": "Monthly cleaning"}),
    ("subscription_renewed", make("subscription.renewed", due="2026-03-20"), "returning", 0,
     "tpl_subscription_renewed", {**BASE, "next_due_date": "2026-03-20"}),
    ("subscription_disabled", make("subscription.disabled", description="Monthly cleaning"),
     "returning", 0, "tpl_subscription_disabled",
     {"customer_name": "Ada Obi", "trans_ref": "MNP-1", "description": "Monthly cleaning"}),
    ("deposit_completed", make("deposit.completed", provider="wasaapay", currency="KES"),
     "first_time", 0, "tpl_deposit_completed", {**BASE, "amount": "KES 5,000.00"}),
    ("deposit_failed", make("deposit.failed", provider="wasaapay", reason="no funds"),
     "first_time", 0, "tpl_deposit_failed", BASE),
    ("withdrawal_completed", make("withdrawal.completed", provider="wasaapay"), "first_time", 0,
     "tpl_withdrawal_completed", BASE),
    ("withdrawal_failed", make("withdrawal.failed", provider="wasaapay", reason="limit"),
     "first_time", 0, "tpl_withdrawal_failed", BASE),
    ("bill_completed", make("bill.completed", provider="wasaapay",
                            details={"biller": "IKEDC Prepaid"}), "first_time", 0,
     "tpl_bill_completed", {**BASE, "biller": "IKEDC Prepaid"}),
    ("bill_failed", make("bill.failed", provider="wasaapay", reason="biller timeout"),
     "first_time", 0, "tpl_bill_failed", BASE),
    ("rent_overdue", make("rent.overdue", provider="filedrop",
                          details={"property": "Palm Court Lekki", "unit": "B4",
                                   "due_date": "2026-01-15", "status": "overdue"}),
     "returning", 1, "tpl_rent_overdue",
     {"customer_name": "Ada Obi", "amount": "₦5,000.00", "due_date": "2026-01-15",
      "property": "Palm Court Lekki", "unit": "B4"}),
    ("rent_reminder", make("rent.reminder", provider="filedrop",
                           details={"due_date": "2026-02-01"}), "returning", 0,
     "tpl_rent_reminder",
     {"customer_name": "Ada Obi", "amount": "₦5,000.00", "due_date": "2026-02-01"}),
    ("order_completed", make("order.completed", provider="dbpoll",
                             details={"order_id": "ORD-42", "source_id": "42"}), "first_time", 0,
     "tpl_order_completed", {**BASE, "order_id": "ORD-42"}),
    ("order_shipped", make("order.shipped", provider="dbpoll",
                           details={"order_id": "ORD-1002", "carrier": "GIG Logistics",
                                    "tracking_number": "GIG-55810"}),
     "first_time", 0, "tpl_order_shipped",
     {"customer_name": "Ada Obi", "trans_ref": "MNP-1", "order_id": "ORD-1002",
      "carrier": "GIG Logistics", "tracking_number": "GIG-55810"}),
    ("booking_confirmed", make("booking.confirmed", provider="dbpoll"), "first_time", 0,
     "tpl_booking_confirmed", {"customer_name": "Ada Obi", "trans_ref": "MNP-1"}),
    ("loan_approved", make("loan.approved", provider="dbpoll", due="2026-04-01"), "returning", 0,
     "tpl_loan_approved", {**BASE, "next_due_date": "2026-04-01"}),
]  # fmt: skip


def test_every_shipped_rule_is_in_the_seed_table() -> None:
    assert [row[0] for row in SEEDS] == [rule.name for rule in RULES.rules]


@pytest.mark.parametrize(
    ("rule", "ev", "tier", "late", "template", "variables"), SEEDS, ids=[s[0] for s in SEEDS]
)
def test_seed_rule(
    rule: str, ev: CanonicalEvent, tier: str, late: int, template: str, variables: dict[str, str]
) -> None:
    choice = choose(RULES, ev, customer(tier, late))
    assert (choice.rule, choice.template_id) == (rule, template)
    assert choice.variables == variables


def test_openmarket_order_wins_over_the_tier_rules_only_for_openmarket() -> None:
    for tier, late in (("first_time", 0), ("returning", 0), ("returning", 5)):
        om = choose(RULES, make("payment.successful", provider="openmarket"), customer(tier, late))
        assert om.template_id == "tpl_order_confirmation"
        assert "order_id" not in om.variables  # optional, and this event has none
    other = choose(RULES, make("payment.successful", provider="paystack"), customer())
    assert other.template_id == "tpl_first_time"


def test_a_type_without_rule_dead_letters() -> None:
    rules = RuleSet.model_validate(
        {"version": 1, "templates": {"t": ["amount"]}, "rules": [
            {"name": "only", "when": {"type": "payment.successful"}, "template": "t"}]}
    )  # fmt: skip
    with pytest.raises(NoRuleMatched, match=r"rent\.overdue"):
        choose(rules, make("rent.overdue"), customer())


# --- variables from data.details --------------------------------------------------------------


def details_rules(*specs: str) -> RuleSet:
    return RuleSet.model_validate(
        {
            "version": 1,
            "templates": {"t": list(specs)},
            "rules": [{"name": "r", "when": {}, "template": "t"}],
        }
    )


def test_a_non_builtin_variable_comes_from_details() -> None:
    ev = make("rent.overdue", details={"property": "Flat 3B", "reason": "from details"})
    choice = choose(details_rules("property", "details.reason", "reason?"), ev, customer())
    # `details.reason` is the details key, sent as `reason`; the built-in `reason?` is unknown.
    assert choice.variables == {"property": "Flat 3B", "reason": "from details"}


def test_a_missing_details_variable() -> None:
    rules = details_rules("customer_name", "property")
    with pytest.raises(MissingVariable, match="property"):
        choose(rules, make("rent.overdue"), customer())
    optional = choose(details_rules("customer_name", "property?"), make("rent.overdue"), customer())
    assert optional.variables == {"customer_name": "Ada Obi"}


def test_fill_reports_the_optional_variables_left_out() -> None:
    rule = Rule(name="r", template="t")
    variables, left_out = fill(
        rule, ["amount", "property?", "details.due_date?"], make("rent.overdue"), customer()
    )
    assert variables == {"amount": "₦5,000.00"}
    assert left_out == ["property", "due_date"]


@pytest.mark.parametrize(
    ("spec", "name", "optional", "details_key"),
    [
        ("amount", "amount", False, None),
        ("next_due_date?", "next_due_date", True, None),
        ("property", "property", False, "property"),
        ("details.due_date?", "due_date", True, "due_date"),
        ("details.amount", "amount", False, "amount"),
    ],
)
def test_variable_spec(spec: str, name: str, optional: bool, details_key: str | None) -> None:
    variable = Variable(spec)
    assert (variable.name, variable.optional, variable.details_key) == (
        name,
        optional,
        details_key,
    )


def test_currency_condition_is_case_insensitive() -> None:
    rules = RuleSet.model_validate(
        {"version": 1, "templates": {"t": ["amount"]},
         "rules": [{"name": "r", "when": {"currency": "ngn"}, "template": "t"}]}
    )  # fmt: skip
    assert choose(rules, make("payment.successful"), customer()).rule == "r"


# --- why_not (what `bridge templates explain` prints) -----------------------------------------


@pytest.mark.parametrize(
    ("when", "text"),
    [
        ({"type": ["transfer.failed", "refund.failed"]},
         "type is payment.failed, not transfer.failed, refund.failed"),
        ({"tier": "returning"}, "tier is first_time, not returning"),
        ({"late_payments": {"gt": 0}}, "late_payments is 0, not gt 0"),
        ({"reason_contains": ["network"]},
         "reason ('card blocked') contains none of: network"),
        ({"amount": {"gte": 10000, "lt": 20000}}, "amount is 5000, not gte 10000 and lt 20000"),
        ({"currency": ["XOF"]}, "currency is NGN, not XOF"),
        ({"provider": ["openmarket"]}, "provider is moniepoint, not openmarket"),
        ({"type": "payment.failed", "tier": "returning", "provider": "x"},
         "tier is first_time, not returning"),
        ({"type": "payment.failed"}, None),
    ],
)  # fmt: skip
def test_why_not(when: dict[str, Any], text: str | None) -> None:
    condition = Condition.model_validate(when)
    assert why_not(condition, make("payment.failed", reason="card blocked"), customer()) == text


def test_why_not_an_empty_reason() -> None:
    condition = Condition.model_validate({"reason_contains": ["network"]})
    assert why_not(condition, make("payment.successful"), customer()) == (
        "reason (empty) contains none of: network"
    )


# --- check_rules ----------------------------------------------------------------------------


def ruleset(rules: list[dict[str, Any]], templates: dict[str, list[str]] | None = None) -> RuleSet:
    names = {rule["template"] for rule in rules}
    return RuleSet.model_validate(
        {
            "version": 1,
            "templates": templates if templates is not None else {t: ["amount"] for t in names},
            "rules": rules,
        }
    )


def problems(
    rules: RuleSet, types: tuple[str, ...] = ("payment.successful", "payment.failed")
) -> list[str]:
    return [str(p) for p in check_rules(rules, types)]


def r(name: str, template: str = "t", **when: Any) -> dict[str, Any]:
    return {"name": name, "when": when, "template": template}


UNREACHABLE = [
    # A type-only rule before a narrower rule of the same type (the classic mistake).
    ([r("generic", type="payment.failed"), r("network", type="payment.failed",
                                             reason_contains=["network"])],
     "rule network: unreachable: earlier rule generic matches every event it matches"),
    # An identical condition.
    ([r("a", type="payment.failed", tier="returning"),
      r("b", type="payment.failed", tier="returning")],
     "rule b: unreachable: earlier rule a has the same condition"),
    # No condition at all: a catch-all shadows everything after it.
    ([r("all"), r("late", type="payment.successful", tier="returning")],
     "rule late: unreachable: earlier rule all matches every event it matches"),
    # A list of types that includes the later rule's.
    ([r("both", type=["payment.failed", "payment.successful"]),
      r("one", type="payment.successful", amount={"gte": 1000})],
     "rule one: unreachable: earlier rule both matches every event it matches"),
    # A broader word: "network" is in every reason containing "bank network".
    ([r("net", reason_contains=["network"]), r("bank", reason_contains=["Bank Network"])],
     "rule bank: unreachable: earlier rule net matches every event it matches"),
    # Several earlier rules together: both tiers, then every late-payment count.
    ([r("first", type="payment.successful", tier="first_time"),
      r("good", type="payment.successful", tier="returning", late_payments={"eq": 0}),
      r("late", type="payment.successful", tier="returning", late_payments={"gte": 1}),
      r("rest", type="payment.successful")],
     "rule rest: unreachable: earlier rules first, good, late together match every event"
     " it matches"),
    ([r("small", amount={"lt": 100}), r("big", amount={"gte": 100}), r("ngn", currency="NGN")],
     "rule ngn: unreachable: earlier rules small, big together match every event it matches"),
    # A condition that can never hold.
    ([r("never", amount={"gt": 100, "lt": 50})],
     "rule never: can never match: its conditions contradict each other"),
    ([r("fraction", late_payments={"gt": 0, "lt": 1})],
     "rule fraction: can never match: its conditions contradict each other"),
]  # fmt: skip


@pytest.mark.parametrize(("rules", "expected"), UNREACHABLE, ids=[e for _, e in UNREACHABLE])
def test_check_finds_unreachable_rules(rules: list[dict[str, Any]], expected: str) -> None:
    assert f"error: {expected}" in problems(ruleset(rules))


REACHABLE = [
    # The shipped order: specific reasons first, then the type-only fallback.
    [r("funds", type="payment.failed", reason_contains=["insufficient funds"]),
     r("net", type="payment.failed", reason_contains=["network", "timeout"]),
     r("generic", type="payment.failed")],
    # Open intervals leave room: amount exactly 100 reaches "ngn".
    [r("small", amount={"lt": 100}), r("big", amount={"gt": 100}), r("ngn", currency="NGN")],
    # "bank" is not inside "network": a reason "bank error" reaches the second rule.
    [r("net", reason_contains=["network"]), r("bank", reason_contains=["bank", "network"])],
    # Different providers.
    [r("om", type="payment.successful", provider="openmarket"),
     r("first", type="payment.successful", tier="first_time")],
    # A type the earlier rules do not name.
    [r("first", type="payment.successful", tier="first_time"), r("x", tier="first_time")],
]  # fmt: skip


@pytest.mark.parametrize("rules", REACHABLE, ids=range(len(REACHABLE)))
def test_check_accepts_reachable_rules(rules: list[dict[str, Any]]) -> None:
    assert not [p for p in problems(ruleset(rules)) if "unreachable" in p or "never" in p]


def test_check_finds_an_unknown_template() -> None:
    rules = ruleset([r("a", "tpl_missing", type="payment.failed")], templates={"t": ["amount"]})
    assert "error: rule a: template tpl_missing is not in templates" in problems(rules)
    assert "warning: template t is used by no rule" in problems(rules)


def test_check_finds_variables_an_event_type_cannot_fill() -> None:
    rules = ruleset(
        [r("ok", "tpl_ok", type="payment.failed"), r("due", "tpl_due", type="payment.successful")],
        templates={
            "tpl_ok": ["customer_name", "amount", "reason", "next_due_date?"],
            "tpl_due": ["customer_name", "next_due_date"],
        },
    )
    assert problems(rules) == [
        "error: rule due: template tpl_due needs next_due_date, which payment.successful events"
        " may lack (mark it optional: next_due_date?)"
    ]


def test_check_reason_is_known_when_the_rule_tests_it() -> None:
    rules = ruleset(
        [r("rev", type="payment.successful", reason_contains=["reversed"]), r("rest")],
        templates={"t": ["reason"]},
    )
    assert problems(rules) == [
        "error: rule rest: template t needs reason, which payment.successful events may lack"
        " (mark it optional: reason?)"
    ]


def test_check_details_variables() -> None:
    rules = ruleset(
        [r("bill", "tpl_bill", type="bill.completed"), r("pay", "tpl_pay", type="payment.failed"),
         r("rent", "tpl_rent", type="rent.overdue")],
        templates={
            "tpl_bill": ["biller?", "property?"],  # bill events never carry a property
            "tpl_pay": ["details.order_id"],  # payment.failed never carries an order id
            "tpl_rent": ["due_date", "anything?"],  # the rent file's columns: any key
        },
    )  # fmt: skip
    assert problems(rules, ("bill.completed", "payment.failed", "rent.overdue")) == [
        "warning: rule bill: template tpl_bill uses details.property, which bill.completed"
        " events never carry",
        "error: rule pay: template tpl_pay needs details.order_id, which payment.failed events"
        " never carry (every such message would dead-letter)",
        "warning: rule rent: template tpl_rent needs details.due_date: every rent.overdue row of"
        " the source must have a due_date column (rows without one dead-letter)",
    ]


def test_check_a_required_details_key_a_type_only_sometimes_has() -> None:
    rules = ruleset([r("bill", type="bill.failed")], templates={"t": ["biller"]})
    assert problems(rules, ("bill.failed",)) == [
        "error: rule bill: template t needs details.biller, which bill.failed events may lack"
        " (mark it optional: biller?)"
    ]


def test_check_warns_about_uncovered_and_unknown_types() -> None:
    rules = ruleset([r("typo", type="payment.sucessful")])
    assert problems(rules) == [
        "warning: rule typo: type payment.sucessful is not a canonical event type"
        " (did you mean payment.successful?)",
        "warning: no rule for payment.failed events (they dead-letter as no_template_rule)",
        "warning: no rule for payment.successful events (they dead-letter as no_template_rule)",
    ]


def test_check_finds_duplicate_names_and_variables() -> None:
    rules = ruleset(
        [r("a", type="payment.failed"), r("a", type="payment.successful")],
        templates={"t": ["amount", "amount?"]},
    )
    assert problems(rules) == [
        "error: rule a: another rule has the same name",
        "error: template t lists amount more than once",
    ]


def test_the_sample_rent_file_gets_rent_templates_with_property_and_due_date() -> None:
    sample = ROOT / "samples" / "filedrop" / "rent-status-2026-01-20.csv"
    data = sample.read_bytes()
    plan = plan_file(sample.name, data, hashlib.sha256(data).hexdigest(), FiledropConfig())
    assert plan.events
    for _, ev in plan.events:
        choice = choose(RULES, ev, customer("returning", 1))
        assert choice.template_id == {"rent.overdue": "tpl_rent_overdue",
                                      "rent.reminder": "tpl_rent_reminder"}[ev.type]  # fmt: skip
        assert {"due_date", "property"} <= set(choice.variables)
