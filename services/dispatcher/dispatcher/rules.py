"""Template selection: the first matching rule of the YAML rule file wins. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.events import CanonicalEvent

from .directory import CustomerRecord

VARIABLES = (
    "customer_name",
    "amount",
    "trans_ref",
    "next_due_date",
    "reason",
    "currency",
    "provider",
    "description",
)
CURRENCY_SYMBOLS = {"NGN": "₦"}


class Comparison(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eq: Decimal | None = None
    gt: Decimal | None = None
    gte: Decimal | None = None
    lt: Decimal | None = None
    lte: Decimal | None = None

    def holds(self, value: Decimal) -> bool:
        return (
            (self.eq is None or value == self.eq)
            and (self.gt is None or value > self.gt)
            and (self.gte is None or value >= self.gte)
            and (self.lt is None or value < self.lt)
            and (self.lte is None or value <= self.lte)
        )


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: list[str] | None = None
    tier: Literal["first_time", "returning"] | None = None
    late_payments: Comparison | None = None
    reason_contains: list[str] | None = None
    amount: Comparison | None = None
    currency: list[str] | None = None
    provider: list[str] | None = None

    _lists = field_validator("type", "reason_contains", "currency", "provider", mode="before")(
        _as_list
    )


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    when: Condition = Field(default_factory=Condition)
    template: str


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1]
    templates: dict[str, list[str]]
    rules: list[Rule]


@dataclass(frozen=True)
class Choice:
    rule: str
    template_id: str
    variables: dict[str, str]


class NoRuleMatched(Exception):
    pass


class MissingVariable(Exception):
    pass


def load_rules(path: Path | None = None) -> RuleSet:
    text = path.read_text() if path else files("dispatcher").joinpath("rules.yaml").read_text()
    return RuleSet.model_validate(yaml.safe_load(text))


def format_amount(amount: Decimal, currency: str) -> str:
    """`₦500,000.00` for naira; `XOF 5,000.00` for other currencies."""
    text = f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency.upper())
    return f"{symbol}{text}" if symbol else f"{currency.upper()} {text}"


def matches(condition: Condition, event: CanonicalEvent, customer: CustomerRecord) -> bool:
    data = event.data
    if condition.type is not None and event.type not in condition.type:
        return False
    if condition.tier is not None and customer.tier != condition.tier:
        return False
    if condition.late_payments is not None and not condition.late_payments.holds(
        Decimal(customer.late_payments)
    ):
        return False
    if condition.reason_contains is not None:
        reason = (data.reason or "").lower()
        if not any(word.lower() in reason for word in condition.reason_contains):
            return False
    if condition.amount is not None and not condition.amount.holds(data.amount):
        return False
    if condition.currency is not None and data.currency.upper() not in condition.currency:
        return False
    return condition.provider is None or data.provider in condition.provider


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


def choose(rules: RuleSet, event: CanonicalEvent, customer: CustomerRecord) -> Choice:
    for rule in rules.rules:
        if matches(rule.when, event, customer):
            values = variable_values(event, customer)
            variables: dict[str, str] = {}
            for spec in rules.templates.get(rule.template, []):
                name = spec.rstrip("?")
                value = values.get(name)
                if value:
                    variables[name] = value
                elif not spec.endswith("?"):
                    raise MissingVariable(f"rule {rule.name}: no value for {name}")
            return Choice(rule.name, rule.template, variables)
    raise NoRuleMatched(f"no template rule matches a {event.type} event")
