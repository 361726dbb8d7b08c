"""Template selection: the first rule whose condition an event and its customer meet wins, and
its template's variables are filled from them. Pure functions; `bridge templates explain`
shows `why_not` for every rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from bridge.events import CanonicalEvent

from ..customers import CustomerRecord
from .model import Condition, Rule, RuleSet, Variable

CURRENCY_SYMBOLS = {"NGN": "₦"}


@dataclass(frozen=True)
class Choice:
    rule: str
    template_id: str
    variables: dict[str, str]


class NoRuleMatched(Exception):
    pass


class MissingVariable(Exception):
    pass


def format_amount(amount: Decimal, currency: str) -> str:
    """`₦500,000.00` for naira; `XOF 5,000.00` for other currencies."""
    text = f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{currency.upper()} {text}"


def _listing(values: Iterable[str]) -> str:
    return ", ".join(values)


def why_not(condition: Condition, event: CanonicalEvent, customer: CustomerRecord) -> str | None:
    """None when the condition holds; otherwise the first condition that fails, in words."""
    data = event.data
    if condition.type is not None and event.type not in condition.type:
        return f"type is {event.type}, not {_listing(condition.type)}"
    if condition.tier is not None and customer.tier != condition.tier:
        return f"tier is {customer.tier}, not {condition.tier}"
    if condition.late_payments is not None and not condition.late_payments.holds(
        Decimal(customer.late_payments)
    ):
        return (
            f"late_payments is {customer.late_payments}, not {condition.late_payments.describe()}"
        )
    if condition.reason_contains is not None:
        reason = (data.reason or "").lower()
        if not any(word.lower() in reason for word in condition.reason_contains):
            shown = repr(data.reason) if data.reason else "empty"
            return f"reason ({shown}) contains none of: {_listing(condition.reason_contains)}"
    if condition.amount is not None and not condition.amount.holds(data.amount):
        return f"amount is {data.amount}, not {condition.amount.describe()}"
    if condition.currency is not None and data.currency.upper() not in condition.currency:
        return f"currency is {data.currency.upper()}, not {_listing(condition.currency)}"
    if condition.provider is not None and data.provider not in condition.provider:
        return f"provider is {data.provider}, not {_listing(condition.provider)}"
    return None


def matches(condition: Condition, event: CanonicalEvent, customer: CustomerRecord) -> bool:
    return why_not(condition, event, customer) is None


def variable_values(event: CanonicalEvent, customer: CustomerRecord) -> dict[str, str | None]:
    data = event.data
    return {
        "customer_name": customer.name or data.customer.name,
        "amount": format_amount(data.amount, data.currency),
        "trans_ref": data.transaction_reference,
        "next_due_date": data.next_due_date,
        "reason": data.reason,
        "currency": data.currency,
        "provider": data.provider,
        "description": data.description,
    }


def fill(
    rule: Rule, specs: Sequence[str], event: CanonicalEvent, customer: CustomerRecord
) -> tuple[dict[str, str], list[str]]:
    """The variables to send, and the optional ones left out because the event lacks them.
    Raises MissingVariable when a required one has no value."""
    values = variable_values(event, customer)
    variables: dict[str, str] = {}
    left_out: list[str] = []
    for spec in specs:
        variable = Variable(spec)
        value = variable.value(values, event.data.details)
        if value:
            variables[variable.name] = value
        elif variable.optional:
            left_out.append(variable.name)
        else:
            raise MissingVariable(
                f"rule {rule.name}: no value for {variable.name}"
                f" (template {rule.template}, {event.type} event)"
            )
    return variables, left_out


def choose(
    rules: RuleSet, event: CanonicalEvent, customer: CustomerRecord, *, confirmation: bool = False
) -> Choice:
    """The event's message (or, with `confirmation`, the template that asks its customer to
    confirm a number: `confirmation_rules`)."""
    for rule in rules.confirmation_rules if confirmation else rules.rules:
        if matches(rule.when, event, customer):
            variables, _ = fill(rule, rules.templates.get(rule.template, []), event, customer)
            return Choice(rule.name, rule.template, variables)
    which = "number confirmation rule" if confirmation else "template rule"
    raise NoRuleMatched(f"no {which} matches a {event.type} event")
